//! x86_64 with `std`: the same kernels compiled with AVX2 enabled, chosen at run time. They run
//! the same operations in the same order on wider vectors (no FMA contraction), so results are
//! bit-identical to the portable kernels (`tests/kernels.rs` checks this).

use super::FloatWeight;
use std::cell::Cell;

std::thread_local! {
    static PORTABLE: Cell<bool> = const { Cell::new(false) };
}

/// Forces the portable kernels on the calling thread (for tests and comparisons; other
/// threads keep their choice, so tests running in parallel do not switch each other).
pub fn set_portable(portable: bool) {
    PORTABLE.with(|p| p.set(portable));
}

/// Whether the AVX2 kernels are used (on this thread).
#[inline]
pub fn avx2() -> bool {
    !PORTABLE.with(Cell::get) && std::is_x86_feature_detected!("avx2")
}

#[target_feature(enable = "avx2")]
pub(super) unsafe fn matvec_avx2<W: FloatWeight>(out: &mut [f32], w: &[W], x: &[f32]) {
    super::matvec_portable(out, w, x)
}

/// int8 matvec with AVX2 integer instructions, eight rows at a time. Same result, bit for bit,
/// as [`super::matvec_i8_portable`]: each group's dot product is an exact integer sum (the
/// order of integer additions does not matter), and each of the eight f32 lanes then runs the
/// portable kernel's float operations for its row in the same order (`acc += dot · (s_w·s_x)`,
/// multiply then add, no FMA).
///
/// Per 32 bytes: `vpmaddubsw(|w|, sign(x, w))` gives sixteen exact i16 pair sums (at most
/// 2·128·127 = 32512, so never saturating) and `vpmaddwd` with ones widens them to i32. This
/// needs `x ≠ -128` (`sign` cannot negate it); activations quantized by [`super::quantize`] are
/// clamped to ±127, and any other input takes the portable kernel. Group sizes that are not
/// a multiple of 32, and the rows left after the last block of eight, take the portable
/// kernel too.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn matvec_i8_avx2(
    out: &mut [f32],
    wq: &[i8],
    ws: &[f32],
    xq: &[i8],
    xs: &[f32],
    group_size: usize,
) {
    use core::arch::x86_64::*;
    let cols = xq.len();
    let groups = xs.len();
    let rows = out.len();
    let blocked = rows / 8 * 8;
    if blocked == 0
        || group_size == 0
        || group_size % 32 != 0
        || cols < group_size
        || groups != cols.div_ceil(group_size)
        || wq.len() < rows * cols
        || ws.len() < rows * groups
        || xq.contains(&i8::MIN)
    {
        return super::matvec_i8_portable(out, wq, ws, xq, xs, group_size);
    }
    let full = cols / group_size;
    let ones = _mm256_set1_epi16(1);
    for r0 in (0..blocked).step_by(8) {
        let mut acc = _mm256_setzero_ps();
        for (g, &sx) in xs[..full].iter().enumerate() {
            let mut sums = [_mm256_setzero_si256(); 8];
            let mut c = g * group_size;
            while c < (g + 1) * group_size {
                // SAFETY: c + 32 ≤ full · group_size ≤ cols, and (r0 + i) · cols + c + 32 ≤
                // rows · cols ≤ wq.len() (checked above).
                let x = _mm256_loadu_si256(xq.as_ptr().add(c) as *const __m256i);
                for (i, s) in sums.iter_mut().enumerate() {
                    let w = _mm256_loadu_si256(wq.as_ptr().add((r0 + i) * cols + c) as *const __m256i);
                    let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(p, ones));
                }
                c += 32;
            }
            let dots = hsum8(&sums);
            let sw = row_scales(ws, r0 * groups + g, groups);
            let scale = _mm256_mul_ps(sw, _mm256_set1_ps(sx));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(dots), scale));
        }
        if full < groups {
            // The short last group: its dot products in plain code, then the same lane-wise
            // float step as the full groups.
            let c = full * group_size;
            let mut d = [0i32; 8];
            for (i, v) in d.iter_mut().enumerate() {
                let row = (r0 + i) * cols;
                *v = super::dot_i8(&wq[row + c..row + cols], &xq[c..]);
            }
            let dots = _mm256_loadu_si256(d.as_ptr() as *const __m256i);
            let sw = row_scales(ws, r0 * groups + full, groups);
            let scale = _mm256_mul_ps(sw, _mm256_set1_ps(xs[full]));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(dots), scale));
        }
        _mm256_storeu_ps(out.as_mut_ptr().add(r0), acc);
    }
    super::matvec_i8_portable(
        &mut out[blocked..],
        &wq[blocked * cols..rows * cols],
        &ws[blocked * groups..rows * groups],
        xq,
        xs,
        group_size,
    )
}

/// Lane `i` = the sum of the eight i32 lanes of `v[i]`.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum8(v: &[core::arch::x86_64::__m256i; 8]) -> core::arch::x86_64::__m256i {
    use core::arch::x86_64::*;
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    // Per 128-bit half: [v0, v1, v2, v3] and [v4, v5, v6, v7], each the sum of that half.
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    let lo = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
    let hi = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
    _mm256_add_epi32(lo, hi)
}

/// The eight scales `ws[at + i · stride]`, `i` in `0..8`.
#[inline]
#[target_feature(enable = "avx2")]
fn row_scales(ws: &[f32], at: usize, stride: usize) -> core::arch::x86_64::__m256 {
    use core::arch::x86_64::*;
    let s = |i: usize| ws[at + i * stride];
    _mm256_setr_ps(s(0), s(1), s(2), s(3), s(4), s(5), s(6), s(7))
}
