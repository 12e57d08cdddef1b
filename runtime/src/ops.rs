//! Building blocks of the forward pass. Each takes its output first and never allocates.
//!
//! Every target runs the same code in the same order, so the same model gives the same numbers on
//! x86_64, ARM Linux and the Cortex-M4. Float dot products use eight interleaved partial sums that
//! are combined in a fixed tree; int8 dot products are exact integer sums per group.

/// Math functions: `libm` by default, `micromath` approximations with the `fast-math` feature.
pub mod math {
    /// e^x.
    #[inline]
    pub fn expf(x: f32) -> f32 {
        #[cfg(feature = "fast-math")]
        {
            micromath::F32Ext::exp(x)
        }
        #[cfg(not(feature = "fast-math"))]
        {
            libm::expf(x)
        }
    }
    /// √x.
    #[inline]
    pub fn sqrtf(x: f32) -> f32 {
        #[cfg(feature = "fast-math")]
        {
            micromath::F32Ext::sqrt(x)
        }
        #[cfg(not(feature = "fast-math"))]
        {
            libm::sqrtf(x)
        }
    }
    /// Cosine and sine of `x`.
    #[inline]
    pub fn cos_sin(x: f32) -> (f32, f32) {
        #[cfg(feature = "fast-math")]
        {
            (micromath::F32Ext::cos(x), micromath::F32Ext::sin(x))
        }
        #[cfg(not(feature = "fast-math"))]
        {
            (libm::cosf(x), libm::sinf(x))
        }
    }
    /// The error function (libm in both modes: GELU's accuracy matters more than its speed).
    #[inline]
    pub fn erff(x: f32) -> f32 {
        libm::erff(x)
    }
    /// x^y.
    #[inline]
    pub fn powf(x: f32, y: f32) -> f32 {
        libm::powf(x, y)
    }
    /// Round half away from zero.
    #[inline]
    pub fn roundf(x: f32) -> f32 {
        libm::roundf(x)
    }
}

use math::*;

/// Number of partial sums in float dot products (fixed: it defines the summation order).
pub const LANES: usize = 8;

/// A float weight element: f32 or f16, widened to f32 for arithmetic.
pub trait FloatWeight: Copy {
    /// The value as f32.
    fn f32(self) -> f32;
}
impl FloatWeight for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}
impl FloatWeight for half::f16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self.to_f32()
    }
}
impl FloatWeight for i8 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self as f32
    }
}

/// Attention scores of one head: `att[t] = Σ_i q[i] · kt[i·stride + t]` for `t < att.len()`, over a
/// transposed key cache (row `i` holds element `i` of every position). Each score sums over `i` in
/// order, starting from 0. Positions go in blocks of 64 or 8 (then 8, then one at a time) whose sums
/// stay in registers while the loop reads row `i` of the block: no dependency chain between
/// positions, and no load and store of the scores per row.
#[inline(always)]
pub fn scores<W: FloatWeight>(att: &mut [f32], q: &[f32], kt: &[W], stride: usize) {
    let n = att.len();
    let mut t0 = 0;
    while t0 + SCORE_BLOCK <= n {
        scores_block::<SCORE_BLOCK, W>(&mut att[t0..t0 + SCORE_BLOCK], q, kt, stride, t0);
        t0 += SCORE_BLOCK;
    }
    while t0 + LANES <= n {
        scores_block::<LANES, W>(&mut att[t0..t0 + LANES], q, kt, stride, t0);
        t0 += LANES;
    }
    for (t, a) in att.iter_mut().enumerate().skip(t0) {
        let mut s = 0.0f32;
        for (i, &qi) in q.iter().enumerate() {
            s += qi * kt[i * stride + t].f32();
        }
        *a = s;
    }
}

/// Positions per block of [`scores`] where sixteen or more vector registers hold the sums (eight
/// vectors of eight); elsewhere (no vector unit: the sums would live on the stack, and the code
/// would only take flash) blocks of eight. The results are the same either way.
const SCORE_BLOCK: usize = if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) { 8 * LANES } else { LANES };

/// [`scores`] of exactly `B` positions from `t0`.
#[inline(always)]
fn scores_block<const B: usize, W: FloatWeight>(out: &mut [f32], q: &[f32], kt: &[W], stride: usize, t0: usize) {
    let mut acc = [0.0f32; B];
    for (i, &qi) in q.iter().enumerate() {
        let k: &[W; B] = match kt.get(i * stride + t0..i * stride + t0 + B).map(<&[W; B]>::try_from) {
            Some(Ok(k)) => k,
            _ => return, // unreachable: the caller's cache holds every row of the block
        };
        for j in 0..B {
            acc[j] += qi * k[j].f32();
        }
    }
    out.copy_from_slice(&acc);
}

/// `out[i] = Σ_t a[t] · v(t)[i]` over the rows `v(t) = cache[first + t·stride..][..out.len()]`,
/// summed in order of `t` for every element, starting from 0. Works on up to 32 outputs at a
/// time, kept in registers (four independent vectors of eight on AVX2).
#[inline(always)]
pub fn weighted_sum<W: FloatWeight>(out: &mut [f32], a: &[f32], cache: &[W], first: usize, stride: usize) {
    let n = out.len();
    // Every row the sums read, as one slice: its chunks of `stride` start at the rows.
    let span = match a.len() {
        0 => 0,
        t => (t - 1) * stride + n,
    };
    let rows = match cache.get(first..first + span) {
        Some(rows) if stride >= n => rows,
        _ => {
            out.fill(0.0); // unreachable: the caller's cache holds every row
            return;
        }
    };
    let mut c0 = 0;
    while c0 < n {
        let w = n - c0;
        if w >= 4 * LANES {
            weighted_sum_block::<{ 4 * LANES }, W>(&mut out[c0..c0 + 4 * LANES], a, rows, c0, stride);
            c0 += 4 * LANES;
        } else if w >= LANES {
            weighted_sum_block::<LANES, W>(&mut out[c0..c0 + LANES], a, rows, c0, stride);
            c0 += LANES;
        } else {
            let mut acc = [0.0f32; LANES];
            for (&at, row) in a.iter().zip(rows.chunks(stride)) {
                for (x, v) in acc.iter_mut().zip(&row[c0..n]) {
                    *x += at * v.f32();
                }
            }
            out[c0..].copy_from_slice(&acc[..w]);
            c0 = n;
        }
    }
}

/// [`weighted_sum`] of exactly `B` outputs, columns `c0..c0 + B` of each row.
#[inline(always)]
fn weighted_sum_block<const B: usize, W: FloatWeight>(out: &mut [f32], a: &[f32], rows: &[W], c0: usize, stride: usize) {
    let mut acc = [0.0f32; B];
    let Some((&last, init)) = a.split_last() else {
        out.fill(0.0);
        return;
    };
    // Every row but the last is a whole chunk of `stride`; the last one may be shorter.
    let split = init.len() * stride;
    let (head, tail) = rows.split_at(split.min(rows.len()));
    for (&at, row) in init.iter().zip(head.chunks_exact(stride)) {
        let v: &[W; B] = match row.get(c0..c0 + B).map(<&[W; B]>::try_from) {
            Some(Ok(v)) => v,
            _ => continue, // unreachable: every row holds at least `c0 + B` columns
        };
        for j in 0..B {
            acc[j] += at * v[j].f32();
        }
    }
    if let Some(Ok(v)) = tail.get(c0..c0 + B).map(<&[W; B]>::try_from) {
        for j in 0..B {
            acc[j] += last * v[j].f32();
        }
    }
    out.copy_from_slice(&acc);
}

/// `Σ a[i]·b[i]` in the runtime's canonical order: lane `j` sums elements `i ≡ j (mod 8)` of the
/// full chunks, the tail is added to lanes `0..`, then lanes combine as `((0+1)+(2+3))+((4+5)+(6+7))`.
/// Every float dot product of the runtime (matvec rows, attention scores) has this order.
#[inline(always)]
pub fn dot<W: FloatWeight>(a: &[f32], b: &[W]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j].f32();
        }
    }
    for (j, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[j] += x * y.f32();
    }
    combine(acc)
}

/// [`dot`] over f32.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b)
}

/// [`dot`] with half-precision `b`.
#[inline]
pub fn dot_f16(a: &[f32], b: &[half::f16]) -> f32 {
    dot(a, b)
}

#[inline(always)]
fn combine(acc: [f32; LANES]) -> f32 {
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Rows processed together by [`matvec`]: they share the loads of `x`.
const ROW_BLOCK: usize = 4;

/// `out[r] = dot(x, w[r, ..])` for a row-major `[out.len(), x.len()]` matrix. Each row is summed
/// exactly as [`dot`] does (same lanes, same order), four rows at a time.
#[inline]
pub fn matvec<W: FloatWeight>(out: &mut [f32], w: &[W], x: &[f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if simd::avx2() {
        // SAFETY: the CPU supports AVX2 (checked by `simd::avx2`).
        unsafe { simd::matvec_avx2(out, w, x) };
        return;
    }
    matvec_portable(out, w, x)
}

/// The body of [`matvec`], compiled once per instruction set.
#[inline(always)]
fn matvec_portable<W: FloatWeight>(out: &mut [f32], w: &[W], x: &[f32]) {
    let cols = x.len();
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    let full = cols / LANES * LANES;
    let mut rows = w.chunks_exact(cols * ROW_BLOCK);
    let mut outs = out.chunks_exact_mut(ROW_BLOCK);
    for (wb, ob) in (&mut rows).zip(&mut outs) {
        let (w0, rest) = wb.split_at(cols);
        let (w1, rest) = rest.split_at(cols);
        let (w2, w3) = rest.split_at(cols);
        let mut acc = [[0.0f32; LANES]; ROW_BLOCK];
        let chunks = x[..full]
            .chunks_exact(LANES)
            .zip(w0.chunks_exact(LANES))
            .zip(w1.chunks_exact(LANES))
            .zip(w2.chunks_exact(LANES).zip(w3.chunks_exact(LANES)));
        for (((xs, r0), r1), (r2, r3)) in chunks {
            for j in 0..LANES {
                acc[0][j] += xs[j] * r0[j].f32();
                acc[1][j] += xs[j] * r1[j].f32();
                acc[2][j] += xs[j] * r2[j].f32();
                acc[3][j] += xs[j] * r3[j].f32();
            }
        }
        for ((a, o), row) in acc.iter_mut().zip(ob.iter_mut()).zip([w0, w1, w2, w3]) {
            for (j, (xv, wv)) in x[full..].iter().zip(&row[full..]).enumerate() {
                a[j] += xv * wv.f32();
            }
            *o = combine(*a);
        }
    }
    for (o, row) in outs.into_remainder().iter_mut().zip(rows.remainder().chunks_exact(cols)) {
        *o = dot(x, row);
    }
}

/// `out[r] = Σ_g dot_i8(w[r, g], xq[g]) · (w_scale[r, g] · x_scale[g])`: int8 weights against
/// int8-quantized activations, exact integer sums per group, f32 accumulation across groups in
/// group order.
///
/// `xp` is `xq` widened by [`widen_pairs`] when [`WIDEN_PAIRS`] is true (Cortex-M4 and other
/// targets with the DSP extension, whose kernel multiplies pairs of 16-bit values); it may be
/// empty elsewhere. Every kernel gives the same bits.
#[inline]
pub fn matvec_i8(out: &mut [f32], wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32], xp: &[u32], group_size: usize) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if simd::avx2() {
        // SAFETY: the CPU supports AVX2 (checked by `simd::avx2`).
        unsafe { simd::matvec_i8_avx2(out, wq, ws, xq, xs, group_size) };
        return;
    }
    #[cfg(all(target_arch = "arm", tinygpt_dsp))]
    if dsp::matvec_i8(out, wq, ws, xq, xs, xp, group_size) {
        return;
    }
    let _ = xp;
    matvec_i8_portable(out, wq, ws, xq, xs, group_size)
}

/// `out[r] = Σ_g (Σ_{c∈g} w[r·stride + c] · x[c]) · xs[g]` for int8 rows `stride` apart and
/// int16 activations `x` in groups of `group_size` with scales `xs` (the last group may be
/// shorter). Exact integer sums per group, f32 accumulation in group order. Attention uses it
/// over an int8 value cache: rows are value elements, columns positions, and `x` the attention
/// weights (times each position's value scale) quantized to int16. `xp` is `x` widened by
/// [`widen_pairs_i16`] where [`WIDEN_PAIRS`] is true, else ignored.
///
/// A group sums at most `group_size · 32767 · 128` in magnitude, so `group_size` up to 512 never
/// overflows i32.
#[inline]
pub fn matvec_i8_i16(out: &mut [f32], w: &[i8], stride: usize, x: &[i16], xs: &[f32], xp: &[u32], group_size: usize) {
    #[cfg(all(target_arch = "arm", tinygpt_dsp))]
    if dsp::matvec_i8_i16(out, w, stride, x, xs, xp, group_size) {
        return;
    }
    let _ = xp;
    let cols = x.len();
    for (r, o) in out.iter_mut().enumerate() {
        let row = &w[r * stride..r * stride + cols];
        let mut acc = 0.0f32;
        for ((wg, xg), &s) in row.chunks(group_size).zip(x.chunks(group_size)).zip(xs) {
            let dot: i32 = wg.iter().zip(xg).map(|(&a, &b)| a as i32 * b as i32).sum();
            acc += dot as f32 * s;
        }
        *o = acc;
    }
}

/// [`widen_pairs`] for int16 values: `out[2k]` holds `x[4k]` and `x[4k+2]`, `out[2k+1]` holds
/// `x[4k+1]` and `x[4k+3]`.
pub fn widen_pairs_i16(out: &mut [u32], x: &[i16]) {
    let h = |v: i16| v as u16 as u32;
    for (o, c) in out.chunks_exact_mut(2).zip(x.chunks_exact(4)) {
        o[0] = h(c[0]) | h(c[2]) << 16;
        o[1] = h(c[1]) | h(c[3]) << 16;
    }
}

/// Whether int8 matvecs on this target read the activations widened by [`widen_pairs`].
pub const WIDEN_PAIRS: bool = cfg!(all(target_arch = "arm", tinygpt_dsp));

/// Words [`widen_pairs`] writes for `n` activations.
pub const fn pair_words(n: usize) -> usize {
    n / 4 * 2
}

/// Widens int8 activations to the 16-bit pairs the DSP kernel multiplies: for every full chunk
/// `x[4k..4k+4]`, `out[2k]` holds `x[4k]` (low half) and `x[4k+2]` (high half) and `out[2k+1]`
/// holds `x[4k+1]` and `x[4k+3]`, each sign-extended to 16 bits. That is the order in which
/// `SXTB16` and `SXTB16 ROR #8` unpack four weight bytes, so one `SMLAD` multiplies two weights by
/// their two activations. A last partial chunk is not widened (the kernels read it from `x`).
pub fn widen_pairs(out: &mut [u32], x: &[i8]) {
    let h = |v: i8| v as i16 as u16 as u32;
    for (o, c) in out.chunks_exact_mut(2).zip(x.chunks_exact(4)) {
        o[0] = h(c[0]) | h(c[2]) << 16;
        o[1] = h(c[1]) | h(c[3]) << 16;
    }
}

#[inline(always)]
fn matvec_i8_portable(out: &mut [f32], wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32], group_size: usize) {
    match group_size {
        32 => matvec_i8_fixed::<32>(out, wq, ws, xq, xs),
        64 => matvec_i8_fixed::<64>(out, wq, ws, xq, xs),
        128 => matvec_i8_fixed::<128>(out, wq, ws, xq, xs),
        _ => matvec_i8_any(out, wq, ws, xq, xs, group_size),
    }
}

/// Any group size.
#[inline(always)]
fn matvec_i8_any(out: &mut [f32], wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32], group_size: usize) {
    let cols = xq.len();
    let groups = xs.len();
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    for (o, (qrow, srow)) in out.iter_mut().zip(wq.chunks_exact(cols).zip(ws.chunks_exact(groups))) {
        let mut acc = 0.0f32;
        let mut c = 0;
        for (&s_w, &s_x) in srow.iter().zip(xs) {
            let end = (c + group_size).min(cols);
            acc += dot_i8(&qrow[c..end], &xq[c..end]) as f32 * (s_w * s_x);
            c = end;
        }
        *o = acc;
    }
}

/// A group size known at compile time: full groups are fixed-size arrays the compiler unrolls and
/// vectorizes; the short last group (if any) takes the general path. Same sums, same order.
#[inline(always)]
fn matvec_i8_fixed<const G: usize>(out: &mut [f32], wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32]) {
    let cols = xq.len();
    let groups = xs.len();
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    let full = cols / G;
    for (o, (qrow, srow)) in out.iter_mut().zip(wq.chunks_exact(cols).zip(ws.chunks_exact(groups))) {
        let mut acc = 0.0f32;
        let blocks = qrow.chunks_exact(G).zip(xq.chunks_exact(G)).zip(srow.iter().zip(xs));
        for ((a, b), (&s_w, &s_x)) in blocks {
            let (a, b): (&[i8; G], &[i8; G]) = match (a.try_into(), b.try_into()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => continue, // unreachable: chunks_exact yields exactly G elements
            };
            acc += dot_i8(&a[..], &b[..]) as f32 * (s_w * s_x);
        }
        if full < groups {
            let c = full * G;
            acc += dot_i8(&qrow[c..], &xq[c..]) as f32 * (srow[full] * xs[full]);
        }
        *o = acc;
    }
}

/// x86_64 with `std`: the same kernels compiled with AVX2 enabled, chosen at run time. They run
/// the same operations in the same order on wider vectors (no FMA contraction), so results are
/// bit-identical to the portable kernels (`tests/kernels.rs` checks this).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub mod simd {
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
}

/// Exact integer dot product of two int8 vectors.
#[inline(always)]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(all(target_arch = "arm", tinygpt_dsp))]
    {
        crate::ops::dsp::dot_i8(a, b)
    }
    #[cfg(not(all(target_arch = "arm", tinygpt_dsp)))]
    {
        dot_i8_ref(a, b)
    }
}

/// The plain reference int8 dot product; fast versions are tested against it.
#[inline(always)]
pub fn dot_i8_ref(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// Public so that the tests can call the kernels directly and check that they, not the portable
/// fallback, ran.
#[cfg(all(target_arch = "arm", tinygpt_dsp))]
pub mod dsp {
    //! Cortex-M4 DSP extension: two 16×16 multiply-accumulates per `SMLAD`.
    //!
    //! The int8 matvec reads four weight bytes with one load, unpacks them into two registers of
    //! two 16-bit halves (`SXTB16`, `SXTB16 ROR #8`), and multiplies each against a word of
    //! activations widened beforehand by [`super::widen_pairs`] (once per matvec, not per row).
    //! Eight columns cost ten instructions: `LDRD` (weights), `LDM` (four activation words), four
    //! `SXTB16` and four `SMLAD`. Integer sums are exact, and the float steps per group are the
    //! portable kernel's, in the same order, so the result is bit-identical.

    #[inline(always)]
    fn smlad(x: u32, y: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: SMLAD only reads its three registers and writes one; no memory access.
        unsafe {
            core::arch::asm!("smlad {r}, {x}, {y}, {a}", r = lateout(reg) r, x = in(reg) x, y = in(reg) y,
                             a = in(reg) acc, options(pure, nomem, nostack));
        }
        r
    }
    #[inline(always)]
    fn sxtb16(x: u32) -> u32 {
        let r: u32;
        // SAFETY: register-only instruction.
        unsafe {
            core::arch::asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack));
        }
        r
    }
    #[inline(always)]
    fn sxtb16_ror8(x: u32) -> u32 {
        let r: u32;
        // SAFETY: register-only instruction.
        unsafe {
            core::arch::asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
                             options(pure, nomem, nostack));
        }
        r
    }

    /// The asm text of `n` blocks of eight columns: weights `LDRD`, activations `LDM`, four
    /// `SXTB16` and four `SMLAD`.
    macro_rules! block {
        (1) => {
            "ldrd {w0}, {w1}, [{pw}], #8
            ldm {px}!, {{r0, r1, r2, r3}}
            sxtb16 {t}, {w0}
            smlad {acc}, {t}, r0, {acc}
            sxtb16 {t}, {w0}, ror #8
            smlad {acc}, {t}, r1, {acc}
            sxtb16 {t}, {w1}
            smlad {acc}, {t}, r2, {acc}
            sxtb16 {t}, {w1}, ror #8
            smlad {acc}, {t}, r3, {acc}
            "
        };
        (4) => { concat!(block!(1), block!(1), block!(1), block!(1)) };
        (8) => { concat!(block!(4), block!(4)) };
        (16) => { concat!(block!(8), block!(8)) };
    }

    /// `Σ w[i]·x[i]` over the next `8·N` columns, fully unrolled; advances both pointers past them.
    ///
    /// # Safety
    /// `*w` must be 4-byte aligned with `8·N` readable bytes; `*x` must have `4·N` readable words.
    #[inline(always)]
    unsafe fn dot_unrolled<const N: usize>(w: &mut *const i8, x: &mut *const u32) -> i32 {
        let mut acc = 0i32;
        // The blocks are spelled out rather than `.rept`: LLVM sizes inline asm by its lines, and
        // the branches around it must be placed knowing the real size.
        macro_rules! asm_blocks {
            ($n:tt) => {
                core::arch::asm!(
                    block!($n),
                    pw = inout(reg) *w,
                    px = inout(reg) *x,
                    acc = inout(reg) acc,
                    w0 = out(reg) _,
                    w1 = out(reg) _,
                    t = out(reg) _,
                    out("r0") _,
                    out("r1") _,
                    out("r2") _,
                    out("r3") _,
                    options(readonly, nostack),
                )
            };
        }
        // SAFETY: the caller guarantees the reads; the asm only reads memory and writes the
        // registers it declares.
        unsafe {
            match N {
                1 => asm_blocks!(1),
                4 => asm_blocks!(4),
                8 => asm_blocks!(8),
                16 => asm_blocks!(16),
                _ => {
                    for _ in 0..N {
                        asm_blocks!(1);
                    }
                }
            }
        }
        acc
    }

    /// `Σ w[i]·x[i]` over the next `n` columns (a multiple of 4): blocks of eight, then four;
    /// advances both pointers past them.
    ///
    /// # Safety
    /// `*w` must be 4-byte aligned with `n` readable bytes; `*x` must have `n / 2` readable words.
    #[inline(always)]
    unsafe fn dot_any(w: &mut *const i8, x: &mut *const u32, n: usize) -> i32 {
        let mut acc = 0i32;
        for _ in 0..n / 8 {
            // SAFETY: eight of the caller's `n` columns.
            acc = acc.wrapping_add(unsafe { dot_unrolled::<1>(w, x) });
        }
        if n % 8 != 0 {
            // SAFETY: the last four columns: one word of `w`, two of `x`.
            unsafe {
                let (wv, x0, x1) = ((*w as *const u32).read(), x.read(), x.add(1).read());
                acc = smlad(sxtb16(wv), x0, acc);
                acc = smlad(sxtb16_ror8(wv), x1, acc);
                *w = w.add(4);
                *x = x.add(2);
            }
        }
        acc
    }

    /// The int8 matvec with `SMLAD`; returns false (doing nothing) where its conditions do not
    /// hold: group size and row length multiples of 4, weights 4-byte aligned, `xp` widened for
    /// the whole row. The caller then uses the portable kernel.
    pub fn matvec_i8(out: &mut [f32], wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32], xp: &[u32], gs: usize) -> bool {
        let cols = xq.len();
        let groups = xs.len();
        let rows = out.len();
        if !fits(rows, cols, cols, gs, groups, wq, xp) || ws.len() < rows * groups {
            return false;
        }
        // SAFETY: checked by `fits`, and `rows·groups` weight scales.
        unsafe { rows_by_group::<true>(out, wq.as_ptr(), cols, ws.as_ptr(), xs, xp.as_ptr(), cols, gs) };
        true
    }

    /// [`super::matvec_i8_i16`] with `SMLAD`, under the same conditions as [`matvec_i8`] (and a
    /// row stride that is a multiple of 4).
    pub fn matvec_i8_i16(out: &mut [f32], w: &[i8], stride: usize, x: &[i16], xs: &[f32], xp: &[u32], gs: usize) -> bool {
        let cols = x.len();
        if !fits(out.len(), cols, stride, gs, xs.len(), w, xp) {
            return false;
        }
        // SAFETY: checked by `fits`.
        unsafe { rows_by_group::<false>(out, w.as_ptr(), stride, core::ptr::null(), xs, xp.as_ptr(), cols, gs) };
        true
    }

    /// The conditions of the `SMLAD` kernels: `rows` rows of `cols` columns, `stride` bytes apart,
    /// from a 4-byte aligned base, groups of `gs` columns (all multiples of 4), and the pairs of
    /// the whole row.
    fn fits(rows: usize, cols: usize, stride: usize, gs: usize, groups: usize, w: &[i8], xp: &[u32]) -> bool {
        gs != 0
            && gs % 4 == 0
            && cols != 0
            && cols % 4 == 0
            && stride % 4 == 0
            && stride >= cols
            && groups == cols.div_ceil(gs)
            && xp.len() >= super::pair_words(cols)
            && (rows == 0 || w.len() >= (rows - 1) * stride + cols)
            && w.as_ptr() as usize % 4 == 0
    }

    /// Every row, dispatched on the group size (unrolled for 16, 32, 64 and 128).
    ///
    /// # Safety
    /// As checked by [`fits`]; with `WS`, `ws` holds `out.len() · groups` scales.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows_by_group<const WS: bool>(
        out: &mut [f32],
        w: *const i8,
        stride: usize,
        ws: *const f32,
        xs: &[f32],
        x: *const u32,
        cols: usize,
        gs: usize,
    ) {
        // SAFETY: passed on from the caller.
        unsafe {
            match gs {
                16 => rows::<2, WS>(out, w, stride, ws, xs, x, cols, gs),
                32 => rows::<4, WS>(out, w, stride, ws, xs, x, cols, gs),
                64 => rows::<8, WS>(out, w, stride, ws, xs, x, cols, gs),
                128 => rows::<16, WS>(out, w, stride, ws, xs, x, cols, gs),
                _ => rows::<0, WS>(out, w, stride, ws, xs, x, cols, gs),
            }
        }
    }

    /// `out[r] = Σ_g dot(row r, group g) · scale`, groups of `gs = 8·N` columns (`N = 0`: any
    /// `gs`), the last group possibly shorter; scale is `ws[r, g] · xs[g]` with `WS`, else `xs[g]`
    /// (the portable kernels' float steps, in their order).
    ///
    /// # Safety
    /// As for [`rows_by_group`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const N: usize, const WS: bool>(
        out: &mut [f32],
        w: *const i8,
        stride: usize,
        ws: *const f32,
        xs: &[f32],
        x: *const u32,
        cols: usize,
        gs: usize,
    ) {
        let full = cols / gs;
        let tail = cols - full * gs;
        let mut ps = ws;
        for (r, o) in out.iter_mut().enumerate() {
            // SAFETY (every access below): row `r` is bytes `r·stride..r·stride+cols` of the
            // weights, 4-byte aligned; group `g` of it reads words `g·gs/2..` of the pairs; `ps`
            // walks the row's `groups` scales.
            let mut pw = unsafe { w.add(r * stride) };
            let mut px = x;
            let mut acc = 0.0f32;
            for &sx in &xs[..full] {
                unsafe {
                    let dot = if N > 0 { dot_unrolled::<N>(&mut pw, &mut px) } else { dot_any(&mut pw, &mut px, gs) };
                    if WS {
                        acc += dot as f32 * (*ps * sx);
                        ps = ps.add(1);
                    } else {
                        acc += dot as f32 * sx;
                    }
                }
            }
            if tail != 0 {
                unsafe {
                    let dot = dot_any(&mut pw, &mut px, tail);
                    if WS {
                        acc += dot as f32 * (*ps * xs[full]);
                        ps = ps.add(1);
                    } else {
                        acc += dot as f32 * xs[full];
                    }
                }
            }
            *o = acc;
        }
    }

    /// Same result as `dot_i8_ref` (integer sums are exact), any alignment and length.
    #[inline]
    pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let mut acc = 0i32;
        let mut i = 0;
        while i + 4 <= n {
            // One (unaligned) word load each: Cortex-M4 allows unaligned LDR.
            // SAFETY: `i + 4 <= n` keeps both 4-byte reads inside `a[..n]` and `b[..n]`.
            let (wa, wb) = unsafe {
                (
                    core::ptr::read_unaligned(a.as_ptr().add(i) as *const u32),
                    core::ptr::read_unaligned(b.as_ptr().add(i) as *const u32),
                )
            };
            // Even bytes (0, 2) and odd bytes (1, 3) sign-extended into 16-bit halves.
            acc = smlad(sxtb16(wa), sxtb16(wb), acc);
            acc = smlad(sxtb16_ror8(wa), sxtb16_ror8(wb), acc);
            i += 4;
        }
        while i < n {
            acc += a[i] as i32 * b[i] as i32;
            i += 1;
        }
        acc
    }
}

/// The larger of `m` and `v`, ignoring a NaN `v` as `f32::max` does, with one comparison: the
/// Cortex-M4's FPU has no max instruction, and `f32::max` becomes a call to `fmaxf` there.
#[inline(always)]
pub fn max_num(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

/// Scale and inverse scale of symmetric int8 quantization of `x`: `s = max|x| / 127` and `127 / max|x|`.
/// An all-zero group gives `(0, 0)` (every value quantizes to 0, no division by zero).
#[inline]
pub fn quant_params(x: &[f32]) -> (f32, f32) {
    let amax = x.iter().fold(0.0f32, |m, &v| max_num(m, v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        return (if amax.is_finite() { 0.0 } else { f32::NAN }, 0.0);
    }
    (amax / 127.0, 127.0 / amax)
}

/// One value quantized with inverse scale `inv`: round half away from zero, clamped to ±127.
#[inline(always)]
pub fn quant_one(v: f32, inv: f32) -> i8 {
    // Round half away from zero without a libm call (so the loop vectorizes): truncate, then step
    // away from zero when the exact remainder is at least one half. Identical to `roundf` here,
    // where |x| ≤ 127 (plus rounding) keeps `x - trunc(x)` exact.
    let x = (v * inv).clamp(-127.0, 127.0);
    let t = x as i32;
    let d = x - t as f32;
    let r = t + (d >= 0.5) as i32 - (d <= -0.5) as i32;
    r as i8
}

/// Symmetric int8 quantization of one group: returns the scale `max|x| / 127` and writes
/// `q[i] = round(x[i] / scale)`. An all-zero group gets scale 0 and zeros (no division by zero).
#[inline]
pub fn quantize_group(q: &mut [i8], x: &[f32]) -> f32 {
    let (scale, inv) = quant_params(x);
    for (o, &v) in q.iter_mut().zip(x) {
        *o = quant_one(v, inv);
    }
    scale
}

/// Quantizes `x` group by group into `q` and `scales` (the last group may be shorter).
#[inline]
pub fn quantize(q: &mut [i8], scales: &mut [f32], x: &[f32], group_size: usize) {
    for ((qg, s), xg) in q.chunks_mut(group_size).zip(scales.iter_mut()).zip(x.chunks(group_size)) {
        *s = quantize_group(qg, xg);
    }
}

/// One value quantized to int16 with inverse scale `inv`: round half away from zero, clamped
/// to ±32767 (as [`quant_one`]; `x - trunc(x)` is exact below 2^15).
#[inline(always)]
pub fn quant_one_i16(v: f32, inv: f32) -> i16 {
    let x = (v * inv).clamp(-32767.0, 32767.0);
    let t = x as i32;
    let d = x - t as f32;
    (t + (d >= 0.5) as i32 - (d <= -0.5) as i32) as i16
}

/// Symmetric int16 quantization group by group: `scale = max|x| / 32767` per group (0 for an
/// all-zero group) and `q[i] = round(x[i] / scale)`.
#[inline]
pub fn quantize_i16(q: &mut [i16], scales: &mut [f32], x: &[f32], group_size: usize) {
    for ((qg, s), xg) in q.chunks_mut(group_size).zip(scales.iter_mut()).zip(x.chunks(group_size)) {
        let amax = xg.iter().fold(0.0f32, |m, &v| max_num(m, v.abs()));
        let (scale, inv) = if amax == 0.0 || !amax.is_finite() {
            (if amax.is_finite() { 0.0 } else { f32::NAN }, 0.0)
        } else {
            (amax / 32767.0, 32767.0 / amax)
        };
        for (o, &v) in qg.iter_mut().zip(xg) {
            *o = quant_one_i16(v, inv);
        }
        *s = scale;
    }
}

/// RMSNorm: `out = x / sqrt(mean(x²) + eps) * w`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss = dot_f32(x, x) / x.len() as f32;
    let inv = 1.0 / sqrtf(ss + eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
}

/// LayerNorm without bias: `out = (x - mean) / sqrt(var + eps) * w` (biased variance, as torch).
pub fn layernorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / sqrtf(var + eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v - mean) * inv * g;
    }
}

/// `e^x` for `x ≤ 0`, as softmax needs after subtracting the maximum: `x = n·ln2 + r` with
/// `|r| ≤ ln2/2`, a degree-6 polynomial for `e^r` and the exponent bits for `2^n`. Relative error
/// below 4e-7 (about 3 ulp; tested against f64), `e^0 = 1` exactly, and 0 below −87. Only
/// additions and multiplications in a fixed order, so every target gets the same bits; unlike a
/// libm call it vectorizes, which matters because softmax is most of the exponentials the
/// forward pass computes.
#[inline(always)]
pub fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75; // ln 2 rounded to 16 significant bits: n·LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 − LN2_HI
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 0.0);
    let y = x * LOG2E + ROUND;
    let n = y - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n is in -126..=0, so the biased exponent n + 127 is a normal number's. y lies in the binade
    // of ROUND, where one unit in the last place is 1, so the integer n is the difference of the
    // bit patterns: no float-to-integer conversion, which keeps the loop vectorized.
    let n_int = y.to_bits() as i32 - ROUND.to_bits() as i32;
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// `Σ x[i]` in the canonical order of [`dot`]: eight partial sums over the full chunks, the tail
/// added to lanes `0..`, then the fixed tree. The same bits on every target, and it vectorizes
/// (a plain left-to-right sum cannot). The lanes are eight named variables rather than an array
/// so that a build for size (the firmware's) still keeps them in registers.
#[inline(always)]
pub fn sum_lanes(x: &[f32]) -> f32 {
    let mut chunks = x.chunks_exact(LANES);
    let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7) = (0.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for c in &mut chunks {
        if let Ok(&[c0, c1, c2, c3, c4, c5, c6, c7]) = <&[f32; LANES]>::try_from(c) {
            (a0, a1, a2, a3) = (a0 + c0, a1 + c1, a2 + c2, a3 + c3);
            (a4, a5, a6, a7) = (a4 + c4, a5 + c5, a6 + c6, a7 + c7);
        }
    }
    let mut a = [a0, a1, a2, a3, a4, a5, a6, a7];
    for (l, &v) in a.iter_mut().zip(chunks.remainder()) {
        *l += v;
    }
    combine(a)
}

/// The largest element (NaNs ignored, `-inf` for an empty slice), eight running maxima at a
/// time (named variables, as in [`sum_lanes`]). Maxima are exact, so the order changes nothing
/// but speed.
#[inline(always)]
pub fn max_lanes(x: &[f32]) -> f32 {
    let mut chunks = x.chunks_exact(LANES);
    let ninf = f32::NEG_INFINITY;
    let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7) = (ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf);
    for c in &mut chunks {
        if let Ok(&[c0, c1, c2, c3, c4, c5, c6, c7]) = <&[f32; LANES]>::try_from(c) {
            (a0, a1, a2, a3) = (max_num(a0, c0), max_num(a1, c1), max_num(a2, c2), max_num(a3, c3));
            (a4, a5, a6, a7) = (max_num(a4, c4), max_num(a5, c5), max_num(a6, c6), max_num(a7, c7));
        }
    }
    let m = max_num(max_num(max_num(a0, a1), max_num(a2, a3)), max_num(max_num(a4, a5), max_num(a6, a7)));
    chunks.remainder().iter().fold(m, |m, &v| max_num(m, v))
}

/// In-place softmax.
#[inline(always)]
pub fn softmax(x: &mut [f32]) {
    let max = max_lanes(x);
    for v in x.iter_mut() {
        *v = exp_nonpos(*v - max);
    }
    let sum = sum_lanes(x);
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Exact GELU (erf form), as torch `nn.GELU()`.
#[inline]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erff(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// SiLU: `x · sigmoid(x)`, from the exponential of `-|x|` only ([`exp_nonpos`]: no overflow,
/// the same bits on every target, and the loop over a hidden vector vectorizes):
/// `x / (1 + e^-x)` for `x ≥ 0`, `x · e^x / (1 + e^x)` for `x < 0`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    let e = exp_nonpos(-x.abs());
    if x >= 0.0 {
        x / (1.0 + e)
    } else {
        x * e / (1.0 + e)
    }
}

/// `out[i] += x[i]`.
#[inline]
pub fn add_assign(out: &mut [f32], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o += v;
    }
}

/// RoPE on interleaved pairs of one head vector: `(v[2i], v[2i+1])` rotated by `cos_sin[i]`.
#[inline]
pub fn rope(v: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((pair, &c), &s) in v.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * c - b * s;
        pair[1] = a * s + b * c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_nonpos_is_accurate() {
        assert_eq!(exp_nonpos(0.0), 1.0);
        // Far below the f32 range: zero or at most about e^-87, never negative, NaN or large.
        let tiny = exp_nonpos(-1000.0);
        assert!((0.0..=(-87f64).exp() * 1.01).contains(&(tiny as f64)), "exp_nonpos(-1000) = {tiny}");
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0f32 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let got = exp_nonpos(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn silu_is_accurate() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 0.0005;
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            let got = silu(x) as f64;
            let err = (got - want).abs() / want.abs().max(1e-30);
            worst = worst.max(if want == 0.0 { got.abs() } else { err });
        }
        // exp_nonpos's 4e-7 plus three roundings (about 1.6e-6 measured; `x / (1 + libm::expf(-x))`
        // is within 1.2e-7 for x ≥ 0 and loses accuracy the same way for x < 0).
        assert!(worst < 2.5e-6, "worst relative error {worst:e}");
        assert_eq!(silu(0.0), 0.0);
        assert_eq!(silu(200.0), 200.0);
        assert!(silu(-200.0).abs() < 1e-30);
        assert!(silu(f32::NAN).is_nan());
    }

    #[test]
    fn lane_sums_and_maxima() {
        for n in 0..40 {
            let x: [f32; 40] = core::array::from_fn(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25);
            let x = &x[..n];
            let exact: f64 = x.iter().map(|&v| v as f64).sum();
            assert!((sum_lanes(x) as f64 - exact).abs() < 1e-5, "n = {n}");
            let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max_lanes(x), m, "n = {n}");
        }
        assert_eq!(max_lanes(&[f32::NAN, 1.0, f32::NAN]), 1.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = [1.0f32, -3.0, 2.5, 0.0, -50.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[0] && x[0] > x[3] && x[3] > x[1]);
    }

    #[test]
    fn quant_one_rounds_half_away_from_zero_like_roundf() {
        for i in -140_000..=140_000 {
            let x = i as f32 * 0.000_913;
            let want = libm::roundf(x).clamp(-127.0, 127.0) as i8;
            assert_eq!(quant_one(x, 1.0), want, "x = {x}");
        }
        for x in [0.5f32, -0.5, 1.5, -2.5, 126.5, -126.5, 0.49999997, -0.49999997, 127.4, 200.0, -1e9] {
            assert_eq!(quant_one(x, 1.0), libm::roundf(x).clamp(-127.0, 127.0) as i8, "x = {x}");
        }
    }

    #[test]
    fn quantize_zero_group_has_zero_scale() {
        let mut q = [5i8; 7];
        assert_eq!(quantize_group(&mut q, &[0.0; 7]), 0.0);
        assert_eq!(q, [0; 7]);
    }

    #[test]
    fn quantize_short_last_group() {
        let x = [1.0f32, -2.0, 0.5, 4.0, -8.0];
        let (mut q, mut s) = ([0i8; 5], [0f32; 2]);
        quantize(&mut q, &mut s, &x, 3);
        assert_eq!(s, [2.0 / 127.0, 8.0 / 127.0]);
        assert_eq!(q, [64, -127, 32, 64, -127]);
    }

    #[test]
    fn dot_f32_matches_f64_sum() {
        let a: [f32; 19] = core::array::from_fn(|i| (i as f32 * 0.37).sin());
        let b: [f32; 19] = core::array::from_fn(|i| (i as f32 * 0.11).cos());
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        assert!((dot_f32(&a, &b) as f64 - exact).abs() < 1e-5);
    }
}
