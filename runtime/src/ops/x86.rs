//! x86_64: the same kernels compiled with AVX2 enabled, chosen at run time. They run the same
//! operations in the same order on wider vectors (no FMA contraction), so results are
//! bit-identical to the portable kernels (`tests/kernels.rs` checks this).
//!
//! With `std` the CPU's features come from `is_x86_feature_detected!` and the test switches
//! ([`set_portable`], [`set_vnni`]) are per thread; without it (a `no_std` program) from `cpuid`
//! and `xgetbv` directly, read once, and the switches are process-wide.

use super::FloatWeight;

#[cfg(feature = "std")]
std::thread_local! {
    static PORTABLE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    static NO_VNNI: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// A switch of the calling thread (with `std`) or of the process (without).
#[cfg(feature = "std")]
macro_rules! switch {
    (get $s:ident) => {
        $s.with(core::cell::Cell::get)
    };
    (set $s:ident $v:expr) => {
        $s.with(|p| p.set($v))
    };
}

#[cfg(not(feature = "std"))]
static PORTABLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
#[cfg(not(feature = "std"))]
static NO_VNNI: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

#[cfg(not(feature = "std"))]
macro_rules! switch {
    (get $s:ident) => {
        $s.load(core::sync::atomic::Ordering::Relaxed)
    };
    (set $s:ident $v:expr) => {
        $s.store($v, core::sync::atomic::Ordering::Relaxed)
    };
}

/// Which VNNI instructions the integer kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vnni {
    /// None: AVX2 `vpmaddubsw` + `vpmaddwd`.
    None,
    /// AVX-VNNI (VEX-encoded `vpdpbusd`).
    Avx,
    /// AVX512-VNNI with AVX512VL (EVEX-encoded `vpdpbusd` on 256-bit registers).
    Avx512,
}

/// Turns the VNNI kernels off (or back on), for tests and comparisons.
pub fn set_vnni(on: bool) {
    switch!(set NO_VNNI !on);
}

/// The VNNI instructions the int8 and int4 kernels use (on this thread, with `std`).
#[inline]
pub fn vnni() -> Vnni {
    if switch!(get NO_VNNI) {
        Vnni::None
    } else if cpu::avxvnni() {
        Vnni::Avx
    } else if cpu::avx512vnni() {
        Vnni::Avx512
    } else {
        Vnni::None
    }
}

/// Forces the portable kernels (for tests and comparisons; with `std` on the calling thread only,
/// so tests running in parallel do not switch each other).
pub fn set_portable(portable: bool) {
    switch!(set PORTABLE portable);
}

/// Whether the AVX2 kernels are used (on this thread, with `std`): the CPU has AVX2 and F16C
/// (every AVX2 CPU has F16C; the integer kernels widen f16 scales with it).
#[inline]
pub fn avx2() -> bool {
    !switch!(get PORTABLE) && cpu::avx2()
}

/// The CPU features the kernels need.
#[cfg(feature = "std")]
mod cpu {
    #[inline]
    pub fn avx2() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c")
    }
    #[inline]
    pub fn avxvnni() -> bool {
        std::is_x86_feature_detected!("avxvnni")
    }
    #[inline]
    pub fn avx512vnni() -> bool {
        std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl")
    }
}

/// The CPU features the kernels need, read with `cpuid` once: an instruction set counts only
/// where the CPU has it and the operating system saves its registers (`xgetbv`), as
/// `is_x86_feature_detected!` decides.
#[cfg(not(feature = "std"))]
mod cpu {
    use core::arch::x86_64::{CpuidResult, __cpuid, __cpuid_count};
    use core::sync::atomic::{AtomicU8, Ordering};

    const KNOWN: u8 = 1;
    const AVX2: u8 = 2;
    const AVXVNNI: u8 = 4;
    const AVX512VNNI: u8 = 8;
    static FEATURES: AtomicU8 = AtomicU8::new(0);

    fn bit(r: u32, n: u32) -> bool {
        (r >> n) & 1 == 1
    }

    // `cpuid` is safe to call from Rust 1.94 on, unsafe before (the crate's rust-version is older).
    #[allow(unused_unsafe)]
    fn detect() -> u8 {
        // SAFETY: `cpuid` exists on every x86_64 CPU; leaves above the maximum are not asked.
        let leaf = |l: u32, s: u32| -> CpuidResult { unsafe { __cpuid_count(l, s) } };
        let max = unsafe { __cpuid(0) }.eax;
        let l1 = leaf(1, 0);
        // OSXSAVE: the OS enabled XSAVE, so XCR0 can be read.
        if max < 7 || !bit(l1.ecx, 27) {
            return KNOWN;
        }
        let (lo, _hi): (u32, u32);
        // SAFETY: `xgetbv` with ECX = 0 is valid when OSXSAVE is set (checked above).
        unsafe { core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi, options(nomem, nostack, preserves_flags)) };
        // XMM and YMM state (bits 1, 2); opmask and ZMM state (bits 5, 6, 7) for AVX-512.
        let ymm = lo & 0b110 == 0b110;
        let zmm = ymm && lo & 0b1110_0000 == 0b1110_0000;
        let l7 = leaf(7, 0);
        let l7s1 = if l7.eax >= 1 { leaf(7, 1) } else { CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 } };
        let avx = ymm && bit(l1.ecx, 28);
        let avx2 = avx && bit(l7.ebx, 5) && bit(l1.ecx, 29);
        let mut f = KNOWN;
        if avx2 {
            f |= AVX2;
        }
        if avx && bit(l7s1.eax, 4) {
            f |= AVXVNNI;
        }
        if zmm && bit(l7.ebx, 16) && bit(l7.ecx, 11) && bit(l7.ebx, 31) {
            f |= AVX512VNNI;
        }
        f
    }

    #[inline]
    fn features() -> u8 {
        let f = FEATURES.load(Ordering::Relaxed);
        if f != 0 {
            return f;
        }
        let f = detect();
        FEATURES.store(f, Ordering::Relaxed);
        f
    }
    #[inline]
    pub fn avx2() -> bool {
        features() & AVX2 != 0
    }
    #[inline]
    pub fn avxvnni() -> bool {
        features() & AVXVNNI != 0
    }
    #[inline]
    pub fn avx512vnni() -> bool {
        features() & AVX512VNNI != 0
    }
}

#[target_feature(enable = "avx2")]
pub(super) unsafe fn matvec_avx2<W: FloatWeight>(out: &mut [f32], w: &[W], x: &[f32]) {
    super::matvec_portable(out, w, x)
}

/// The portable int8 kernel's general loop compiled with AVX2, out of line: the shapes the
/// three int8 kernels leave to it (group sizes that are not a multiple of 32, the rows after the
/// last block of eight) share this one copy rather than each inlining the portable kernel with
/// its loops unrolled per group size (a program's size). The same sums in the same order as
/// every other int8 kernel.
#[inline(never)]
#[target_feature(enable = "avx2,f16c")]
unsafe fn matvec_i8_rest<S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
    super::matvec_i8_any(out, wq, ws, xq, xs, group_size)
}

/// The portable int4 kernel compiled with AVX2, out of line, as [`matvec_i8_rest`].
#[inline(never)]
#[target_feature(enable = "avx2,f16c")]
unsafe fn matvec_i4_rest<S: FloatWeight>(out: &mut [f32], w: &[u8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
    super::matvec_i4_portable(out, w, ws, xq, xs, group_size)
}

/// int8 matvec with AVX2 integer instructions, eight rows at a time (with VNNI where the CPU has
/// it, see [`matvec_i8`]). Same result, bit for bit,
/// as [`super::matvec_i8_portable`]: each group's dot product is an exact integer sum (the
/// order of integer additions does not matter), and each of the eight f32 lanes then runs the
/// portable kernel's float operations for its row in the same order (`acc += dot · (s_w·s_x)`,
/// multiply then add, no FMA).
///
/// Per 32 bytes the products `|w| · sign(x, w)` (unsigned times signed bytes) are summed in
/// groups of four into i32 lanes: by `vpdpbusd` with VNNI, else by `vpmaddubsw` (sixteen exact
/// i16 pair sums, at most 2·128·127 = 32512, so never saturating) and `vpmaddwd` with ones. This
/// needs `x ≠ -128` (`sign` cannot negate it); activations quantized by [`super::quantize`] are
/// clamped to ±127, and any other input takes the portable kernel. Group sizes that are not
/// a multiple of 32, and the rows left after the last block of eight, take the portable
/// kernel too.
macro_rules! matvec_i8_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
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
            return matvec_i8_rest(out, wq, ws, xq, xs, group_size);
        }
        let full = cols / group_size;
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
                        *s = $dot(*s, _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
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
        matvec_i8_rest(
            &mut out[blocked..],
            &wq[blocked * cols..rows * cols],
            &ws[blocked * groups..rows * groups],
            xq,
            xs,
            group_size,
        )
        }
    };
}
matvec_i8_kernel!(matvec_i8_avx2, "avx2,f16c", dot4_avx2);
matvec_i8_kernel!(matvec_i8_avxvnni, "avx2,f16c,avxvnni", dot4_avxvnni);
matvec_i8_kernel!(matvec_i8_avx512vnni, "avx2,f16c,avx512vnni,avx512vl", dot4_avx512vnni);

/// The int8 matvec on the best instruction set this CPU (and thread, see [`set_vnni`]) has.
///
/// # Safety
/// The CPU must support AVX2.
pub(super) unsafe fn matvec_i8<S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
    // SAFETY (all three): AVX2 by the caller's promise, the VNNI features as detected.
    unsafe {
        match vnni() {
            Vnni::Avx => matvec_i8_avxvnni(out, wq, ws, xq, xs, group_size),
            Vnni::Avx512 => matvec_i8_avx512vnni(out, wq, ws, xq, xs, group_size),
            Vnni::None => matvec_i8_avx2(out, wq, ws, xq, xs, group_size),
        }
    }
}

/// `acc + Σ` of each four adjacent products `a · b` (`a` unsigned, `b` signed bytes), in i32
/// lanes; exact as long as each pair of products fits in i16 (true for every caller: `a` is at
/// most 128, or 15, and `|b|` at most 128, with `a · b` pairs never both 128 · 128).
#[inline]
#[target_feature(enable = "avx2")]
fn dot4_avx2(acc: core::arch::x86_64::__m256i, a: core::arch::x86_64::__m256i, b: core::arch::x86_64::__m256i) -> core::arch::x86_64::__m256i {
    use core::arch::x86_64::*;
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)))
}

/// [`dot4_avx2`] in one instruction (VEX-encoded `vpdpbusd`; exact, never saturating).
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn dot4_avxvnni(acc: core::arch::x86_64::__m256i, a: core::arch::x86_64::__m256i, b: core::arch::x86_64::__m256i) -> core::arch::x86_64::__m256i {
    core::arch::x86_64::_mm256_dpbusd_avx_epi32(acc, a, b)
}

/// [`dot4_avx2`] in one instruction (EVEX-encoded `vpdpbusd` on 256-bit registers).
#[inline]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
fn dot4_avx512vnni(acc: core::arch::x86_64::__m256i, a: core::arch::x86_64::__m256i, b: core::arch::x86_64::__m256i) -> core::arch::x86_64::__m256i {
    core::arch::x86_64::_mm256_dpbusd_epi32(acc, a, b)
}

/// int4 matvec with AVX2 integer instructions, eight rows at a time; the same result, bit for
/// bit, as [`super::matvec_i4_portable`] (exact integer sums per group, then each f32 lane runs
/// the portable float steps for its row in the same order).
///
/// Per 64 columns of a row: 32 bytes masked into their low nibbles (the even columns) and high
/// nibbles (the odd ones), the offset values `u = q + 8` as unsigned bytes (0..=15), against the
/// even and the odd activations (split once for the eight rows); products summed by
/// [`dot4_avx2`] (pairs at most 2·15·128, never saturating) or `vpdpbusd`. A group's last 32
/// columns or more take sixteen bytes interleaved back into column order (`vpunpcklbw`,
/// `vpunpckhbw`), and its last columns after a multiple of 32 plain code. Per group,
/// `Σ q·x = Σ u·x − 8·Σ x`, with `Σ x` computed once for the eight rows; the i32 arithmetic wraps,
/// and the exact result (at most 2^30 in magnitude) is what remains. Any activation value
/// works, −128 included. Group sizes that are not a multiple of 32, and the rows after the last
/// block of eight, take the portable kernel.
macro_rules! matvec_i4_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<S: FloatWeight>(out: &mut [f32], w: &[u8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
            use core::arch::x86_64::*;
            let cols = xq.len();
            let groups = xs.len();
            let rows = out.len();
            let rb = crate::format::i4_row_bytes(cols);
            let blocked = rows / 8 * 8;
            if blocked == 0
                || group_size == 0
                || group_size % 32 != 0
                || cols < group_size
                || groups != cols.div_ceil(group_size)
                || w.len() < rows * rb
                || ws.len() < rows * groups
            {
                return matvec_i4_rest(out, w, ws, xq, xs, group_size);
            }
            let mask = _mm_set1_epi8(0x0F);
            let mask256 = _mm256_set1_epi8(0x0F);
            let ones8 = _mm256_set1_epi8(1);
            for r0 in (0..blocked).step_by(8) {
                let mut acc = _mm256_setzero_ps();
                for (g, &sx) in xs.iter().enumerate() {
                    let (c0, c1) = (g * group_size, ((g + 1) * group_size).min(cols));
                    let mut sums = [_mm256_setzero_si256(); 8];
                    let mut xsum = _mm256_setzero_si256();
                    let mut c = c0;
                    // SAFETY (the loads of both loops): c0 is a multiple of 32 and c + 64 (or
                    // 32) ≤ c1 ≤ cols, so the activations read are inside xq and the bytes
                    // (r0 + i) · rb + c / 2 .. + 32 (or 16) inside row r0 + i; rows · rb ≤
                    // w.len() (checked above).
                    while c + 64 <= c1 {
                        // 64 columns: the even and odd activations apart (shared by the eight
                        // rows), against the low and the high nibbles of 32 weight bytes.
                        let a = _mm256_loadu_si256(xq.as_ptr().add(c) as *const __m256i);
                        let b = _mm256_loadu_si256(xq.as_ptr().add(c + 32) as *const __m256i);
                        xsum = $dot($dot(xsum, ones8, a), ones8, b);
                        let (xe, xo) = split_even_odd(a, b);
                        for (i, s) in sums.iter_mut().enumerate() {
                            let v = _mm256_loadu_si256(w.as_ptr().add((r0 + i) * rb + c / 2) as *const __m256i);
                            let lo = _mm256_and_si256(v, mask256);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask256);
                            *s = $dot($dot(*s, lo, xe), hi, xo);
                        }
                        c += 64;
                    }
                    while c + 32 <= c1 {
                        // 32 columns: sixteen bytes, nibbles interleaved back into column order.
                        let x = _mm256_loadu_si256(xq.as_ptr().add(c) as *const __m256i);
                        xsum = $dot(xsum, ones8, x);
                        for (i, s) in sums.iter_mut().enumerate() {
                            let v = _mm_loadu_si128(w.as_ptr().add((r0 + i) * rb + c / 2) as *const __m128i);
                            let lo = _mm_and_si128(v, mask);
                            let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
                            let u = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
                            *s = $dot(*s, u, x);
                        }
                        c += 32;
                    }
                    let xsum8 = _mm256_slli_epi32::<3>(_mm256_set1_epi32(hsum1(xsum)));
                    let mut dots = _mm256_sub_epi32(hsum8(&sums), xsum8);
                    if c < c1 {
                        // The last columns of a short last group, in plain code.
                        let mut d = [0i32; 8];
                        for (i, v) in d.iter_mut().enumerate() {
                            *v = super::dot_i4(&w[(r0 + i) * rb..(r0 + i + 1) * rb], c, &xq[c..c1]);
                        }
                        dots = _mm256_add_epi32(dots, _mm256_loadu_si256(d.as_ptr() as *const __m256i));
                    }
                    let sw = row_scales(ws, r0 * groups + g, groups);
                    let scale = _mm256_mul_ps(sw, _mm256_set1_ps(sx));
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(dots), scale));
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(r0), acc);
            }
            matvec_i4_rest(
                &mut out[blocked..],
                &w[blocked * rb..rows * rb],
                &ws[blocked * groups..rows * groups],
                xq,
                xs,
                group_size,
            )
        }
    };
}
matvec_i4_kernel!(matvec_i4_avx2, "avx2,f16c", dot4_avx2);
matvec_i4_kernel!(matvec_i4_avxvnni, "avx2,f16c,avxvnni", dot4_avxvnni);
matvec_i4_kernel!(matvec_i4_avx512vnni, "avx2,f16c,avx512vnni,avx512vl", dot4_avx512vnni);

/// The int4 matvec on the best instruction set this CPU (and thread) has.
///
/// # Safety
/// The CPU must support AVX2.
pub(super) unsafe fn matvec_i4<S: FloatWeight>(out: &mut [f32], w: &[u8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
    // SAFETY (all three): AVX2 by the caller's promise, the VNNI features as detected.
    unsafe {
        match vnni() {
            Vnni::Avx => matvec_i4_avxvnni(out, w, ws, xq, xs, group_size),
            Vnni::Avx512 => matvec_i4_avx512vnni(out, w, ws, xq, xs, group_size),
            Vnni::None => matvec_i4_avx2(out, w, ws, xq, xs, group_size),
        }
    }
}

/// The even and the odd bytes of the 64 bytes `a, b` (`a` first), each in order.
#[inline]
#[target_feature(enable = "avx2")]
fn split_even_odd(
    a: core::arch::x86_64::__m256i,
    b: core::arch::x86_64::__m256i,
) -> (core::arch::x86_64::__m256i, core::arch::x86_64::__m256i) {
    use core::arch::x86_64::*;
    // Per 128-bit lane: the eight even bytes, then the eight odd ones.
    let m = _mm256_setr_epi8(
        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
    );
    // Quadwords [even 0, odd 0, even 1, odd 1] → [even 0, even 1, odd 0, odd 1].
    let a = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(a, m));
    let b = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(b, m));
    (_mm256_permute2x128_si256::<0x20>(a, b), _mm256_permute2x128_si256::<0x31>(a, b))
}

/// The sum of the eight i32 lanes of `v` (wrapping).
#[inline]
#[target_feature(enable = "avx2")]
fn hsum1(v: core::arch::x86_64::__m256i) -> i32 {
    use core::arch::x86_64::*;
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
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

/// The eight scales `ws[at + i · stride]`, `i` in `0..8`, as f32 (f16 widened by `vcvtph2ps`,
/// exactly, as `f16::to_f32` does).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn row_scales<S: FloatWeight>(ws: &[S], at: usize, stride: usize) -> core::arch::x86_64::__m256 {
    use core::arch::x86_64::*;
    if S::IS_F16 {
        let h = |i: usize| ws[at + i * stride].f16_bits() as i16;
        _mm256_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)))
    } else {
        let s = |i: usize| ws[at + i * stride].f32();
        _mm256_setr_ps(s(0), s(1), s(2), s(3), s(4), s(5), s(6), s(7))
    }
}
