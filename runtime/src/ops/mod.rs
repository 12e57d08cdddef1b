//! Building blocks of the forward pass. Each takes its output first and never allocates.
//!
//! Every target runs the same code in the same order, so the same model gives the same numbers on
//! x86_64, ARM Linux and the Cortex-M4. Float dot products use eight interleaved partial sums that
//! are combined in a fixed tree; int8 and int4 dot products are exact integer sums per group.
//!
//! This file holds the portable kernels (the ones every fast kernel is held to, bit for bit);
//! `x86.rs` the AVX2/VNNI ones and `arm_dsp.rs` the Cortex-M4 `SMLAD` ones, each checked against
//! these in `tests/kernels.rs`.

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
    /// Cosine and sine of the angle `turn / 2^64` of a full turn (RoPE's angles, reduced
    /// exactly in integers: see `model.rs`).
    ///
    /// Not libm's `cosf`/`sinf`: the argument is already reduced, and theirs would link their
    /// own reduction (`rem_pio2f`) and double-precision kernels, with the soft-float double
    /// arithmetic they need on a Cortex-M4, about 5.5 KB of the board's flash. The octant comes
    /// from the top three bits; the rest, folded to `[0, π/4]`, goes through Cephes' single-
    /// precision polynomials (relative error about 1e-7, as libm's within one or two ulps).
    #[inline]
    pub fn cos_sin_turn(turn: u64) -> (f32, f32) {
        #[cfg(feature = "fast-math")]
        {
            const RADIANS_PER_STEP: f32 = core::f32::consts::TAU / 4_294_967_296.0;
            let x = (turn >> 32) as u32 as f32 * RADIANS_PER_STEP;
            (micromath::F32Ext::cos(x), micromath::F32Ext::sin(x))
        }
        #[cfg(not(feature = "fast-math"))]
        {
            // Quadrant q, and the angle g within it as a fraction of a quarter turn (62 bits).
            let q = (turn >> 62) as u32;
            let g = turn & ((1 << 62) - 1);
            // Past an eighth of a turn, use the complement and swap cosine and sine.
            let upper = g >> 61 != 0;
            let h = if upper { (1u64 << 62) - g } else { g };
            // h ≤ 2^61, rounded to 24 significant bits by the conversion; 2^62 is a quarter turn.
            const RADIANS_PER_STEP: f32 = core::f32::consts::FRAC_PI_2 / 4_611_686_018_427_387_904.0;
            let x = h as f32 * RADIANS_PER_STEP;
            let z = x * x;
            let sin = ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * x + x;
            let cos = ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
            let (c, s) = if upper { (sin, cos) } else { (cos, sin) };
            match q {
                0 => (c, s),
                1 => (-s, c),
                2 => (-c, -s),
                _ => (s, -c),
            }
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

/// Half to single precision, exactly as `half::f16::to_f32`, in two integer steps and one
/// float multiply: the half's sign, exponent and mantissa bits, moved into an f32's places (one
/// arithmetic shift of the sign-extended half and a mask), are the value times 2^-112 (a
/// subnormal half becomes a subnormal f32, the sign rides along as the multiply keeps it), so
/// multiplying by 2^112 gives the value exactly; infinities and NaNs take half's own routine. On
/// 32-bit ARM with an FPU (`tinygpt_fpu_f16`) this replaces half's software conversion of every
/// group scale (the FPU's own `VCVTB.F32.F16` is out of reach: stable Rust gives inline assembly
/// no float registers on FPv4-SP); it needs the FPU's subnormals, not flushed to zero (the reset
/// state, and Linux's default).
#[inline(always)]
pub fn f16_to_f32_by_multiply(bits: u16) -> f32 {
    if bits & 0x7c00 == 0x7c00 {
        return half::f16::from_bits(bits).to_f32();
    }
    const TWO_POW_112: u32 = (112 + 127) << 23;
    // Bit 15 (the sign) lands on bit 28 and, sign-extended, on bits 29 to 31; the mask keeps bit
    // 31 and the exponent and mantissa in bits 13 to 27.
    let placed = ((bits as i16 as i32) << 13) as u32 & 0x8fff_e000;
    f32::from_bits(placed) * f32::from_bits(TWO_POW_112)
}

/// A float weight element: f32 or f16, widened to f32 for arithmetic.
pub trait FloatWeight: Copy {
    /// The value as f32.
    fn f32(self) -> f32;
    /// Whether this is IEEE half precision (the x86 kernels then widen eight at a time with F16C).
    const IS_F16: bool = false;
    /// The bits of a half-precision value (0 for other types).
    #[inline(always)]
    fn f16_bits(self) -> u16 {
        0
    }
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
        #[cfg(tinygpt_fpu_f16)]
        {
            f16_to_f32_by_multiply(self.to_bits())
        }
        #[cfg(not(tinygpt_fpu_f16))]
        {
            self.to_f32()
        }
    }
    const IS_F16: bool = true;
    #[inline(always)]
    fn f16_bits(self) -> u16 {
        self.to_bits()
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
    #[cfg(target_arch = "x86_64")]
    if x86::avx2() {
        // SAFETY: the CPU supports AVX2 (checked by `x86::avx2`).
        unsafe { x86::matvec_avx2(out, w, x) };
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
///
/// Inlined into every caller: where the group size is a constant there (a session typed to one
/// model, [`crate::Session::new_typed`]), the kernel's dispatch on it folds to the one unrolled
/// loop that size needs.
#[inline(always)]
pub fn matvec_i8<S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32], xp: &[u32], group_size: usize) {
    #[cfg(target_arch = "x86_64")]
    if x86::avx2() {
        // SAFETY: the CPU supports AVX2 (checked by `x86::avx2`).
        unsafe { x86::matvec_i8(out, wq, ws, xq, xs, group_size) };
        return;
    }
    #[cfg(all(target_arch = "arm", tinygpt_dsp))]
    {
        if arm_dsp::matvec_i8(out, wq, ws, xq, xs, xp, group_size) {
            return;
        }
        // Only shapes the SMLAD kernel does not take (rows or groups that are not multiples of
        // 4) come here: the general loop serves them, rather than one unrolled loop per group
        // size, which would take flash from the model. Same sums, same order. Out of line: one
        // copy serves every caller the SMLAD kernel is inlined into.
        #[inline(never)]
        fn fallback<S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32], gs: usize) {
            matvec_i8_any(out, wq, ws, xq, xs, gs)
        }
        fallback(out, wq, ws, xq, xs, group_size)
    }
    #[cfg(not(all(target_arch = "arm", tinygpt_dsp)))]
    {
        let _ = xp;
        matvec_i8_portable(out, wq, ws, xq, xs, group_size)
    }
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
    if arm_dsp::matvec_i8_i16(out, w, stride, x, xs, xp, group_size) {
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

// Not used where the SMLAD kernel's fallback is the general loop.
#[cfg_attr(all(target_arch = "arm", tinygpt_dsp), allow(dead_code))]
#[inline(always)]
fn matvec_i8_portable<S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
    match group_size {
        32 => matvec_i8_fixed::<32, S>(out, wq, ws, xq, xs),
        64 => matvec_i8_fixed::<64, S>(out, wq, ws, xq, xs),
        128 => matvec_i8_fixed::<128, S>(out, wq, ws, xq, xs),
        _ => matvec_i8_any(out, wq, ws, xq, xs, group_size),
    }
}

/// Any group size.
#[inline(always)]
fn matvec_i8_any<S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
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
            acc += dot_i8(&qrow[c..end], &xq[c..end]) as f32 * (s_w.f32() * s_x);
            c = end;
        }
        *o = acc;
    }
}

/// A group size known at compile time: full groups are fixed-size arrays the compiler unrolls and
/// vectorizes; the short last group (if any) takes the general path. Same sums, same order.
// Not used where the SMLAD kernel's fallback is the general loop.
#[cfg_attr(all(target_arch = "arm", tinygpt_dsp), allow(dead_code))]
#[inline(always)]
fn matvec_i8_fixed<const G: usize, S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32]) {
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
            acc += dot_i8(&a[..], &b[..]) as f32 * (s_w.f32() * s_x);
        }
        if full < groups {
            let c = full * G;
            acc += dot_i8(&qrow[c..], &xq[c..]) as f32 * (srow[full].f32() * xs[full]);
        }
        *o = acc;
    }
}

/// The int4 value at column `c` of a packed row: byte `c / 2`, low nibble for even `c`, high
/// nibble for odd `c`, stored offset by 8 (nibble `u` is the value `u − 8`; the writer stores
/// 1..=15, and a 0 nibble reads as −8 in every kernel alike).
#[inline(always)]
pub fn i4_at(row: &[u8], c: usize) -> i32 {
    let b = row[c / 2];
    (if c % 2 == 0 { b & 15 } else { b >> 4 }) as i32 - 8
}

/// Exact `Σ_i q(row, c0 + i) · x[i]` over the int4 columns `c0..c0 + x.len()` of a packed row.
/// At most `8 · 128 · 2^20 = 2^30` in magnitude, so it never overflows.
#[inline(always)]
pub fn dot_i4(row: &[u8], c0: usize, x: &[i8]) -> i32 {
    let mut acc = 0i32;
    let (mut x, mut c) = (x, c0);
    if c % 2 == 1 {
        if let Some((&v, rest)) = x.split_first() {
            acc += i4_at(row, c) * v as i32;
            (x, c) = (rest, c + 1);
        }
    }
    let bytes = &row[c / 2..];
    let mut pairs = x.chunks_exact(2);
    for (p, &b) in (&mut pairs).zip(bytes) {
        acc += ((b & 15) as i32 - 8) * p[0] as i32 + ((b >> 4) as i32 - 8) * p[1] as i32;
    }
    if let [v] = pairs.remainder() {
        acc += ((bytes[x.len() / 2] & 15) as i32 - 8) * *v as i32;
    }
    acc
}

/// `out[r] = Σ_g dot_i4(w[r, g], xq[g]) · (w_scale[r, g] · x_scale[g])`: int4 weights (rows of
/// `ceil(cols / 2)` bytes, see [`i4_at`]) against int8-quantized activations, exact integer sums
/// per group, f32 accumulation across groups in group order, exactly as [`matvec_i8`].
///
/// `xp` is `xq` widened by [`widen_pairs_i4`] when [`WIDEN_PAIRS`] is true (the DSP kernel reads
/// it), else ignored. Every kernel gives the same bits.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn matvec_i4<S: FloatWeight>(out: &mut [f32], w: &[u8], ws: &[S], xq: &[i8], xs: &[f32], xp: &[u32], group_size: usize) {
    #[cfg(target_arch = "x86_64")]
    if x86::avx2() {
        // SAFETY: the CPU supports AVX2 (checked by `x86::avx2`).
        unsafe { x86::matvec_i4(out, w, ws, xq, xs, group_size) };
        return;
    }
    #[cfg(all(target_arch = "arm", tinygpt_dsp))]
    if arm_dsp::matvec_i4(out, w, ws, xq, xs, xp, group_size) {
        return;
    }
    let _ = xp;
    matvec_i4_portable(out, w, ws, xq, xs, group_size)
}

/// The portable int4 kernel, the one the fast ones are held to.
#[inline(always)]
pub(crate) fn matvec_i4_portable<S: FloatWeight>(out: &mut [f32], w: &[u8], ws: &[S], xq: &[i8], xs: &[f32], group_size: usize) {
    let cols = xq.len();
    let groups = xs.len();
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    let rb = crate::format::i4_row_bytes(cols);
    for (o, (row, srow)) in out.iter_mut().zip(w.chunks_exact(rb).zip(ws.chunks_exact(groups))) {
        let mut acc = 0.0f32;
        let mut c = 0;
        for (&s_w, &s_x) in srow.iter().zip(xs) {
            let end = (c + group_size).min(cols);
            acc += dot_i4(row, c, &xq[c..end]) as f32 * (s_w.f32() * s_x);
            c = end;
        }
        *o = acc;
    }
}

/// Words [`widen_pairs_i4`] writes for `n` activations (at most [`pair_words`]`(n)`).
pub const fn i4_pair_words(n: usize) -> usize {
    n / 8 * 4
}

/// Widens int8 activations to the 16-bit pairs the DSP int4 kernel multiplies: for every full
/// chunk `x[8k..8k+8]`, words `4k..4k+4` hold `(x0, x4)`, `(x2, x6)`, `(x1, x5)`, `(x3, x7)` of
/// the chunk (low half first, sign-extended). A word of eight packed int4 weights masked with
/// `0x000F000F` after shifts by 0, 8, 4 and 12 bits gives the weights of those columns in the
/// same halves. A last partial chunk is not widened.
pub fn widen_pairs_i4(out: &mut [u32], x: &[i8]) {
    let h = |v: i8| v as i16 as u16 as u32;
    for (o, c) in out.chunks_exact_mut(4).zip(x.chunks_exact(8)) {
        o[0] = h(c[0]) | h(c[4]) << 16;
        o[1] = h(c[2]) | h(c[6]) << 16;
        o[2] = h(c[1]) | h(c[5]) << 16;
        o[3] = h(c[3]) | h(c[7]) << 16;
    }
}

/// x86_64: the same kernels compiled with AVX2 enabled, chosen at run time (with or without `std`). They run
/// the same operations in the same order on wider vectors (no FMA contraction), so results are
/// bit-identical to the portable kernels (`tests/kernels.rs` checks this).
#[cfg(target_arch = "x86_64")]
pub mod x86;

/// Exact integer dot product of two int8 vectors.
#[inline(always)]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(all(target_arch = "arm", tinygpt_dsp))]
    {
        crate::ops::arm_dsp::dot_i8(a, b)
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
pub mod arm_dsp;

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
    round_half_away_clamped(v * inv, 127) as i8
}

/// `round(x)`, half away from zero, clamped to `±limit` (`limit < 2^30`); NaN gives 0. Without
/// libm and with one float-to-integer conversion (a loop of it vectorizes, and a Cortex-M4 runs it
/// in a few integer steps): `n = trunc(2x)` is exact (`2x` is), and for `x ≥ 0`, `round(x) =
/// floor((2x + 1) / 2) = (n + 1) >> 1`; for `x < 0`, `−round(−x) = n >> 1` (arithmetic shifts).
/// Clamping `n` to `±2·limit` first clamps the result to `±limit` (`as` saturates the rest and
/// maps NaN to 0). Equal to `roundf(x).clamp(−limit, limit)` on every f32 the unit test tries
/// (one bit pattern in 4,099, every multiple of 2^-6 up to ±40,000, the halves and limits).
#[inline(always)]
pub fn round_half_away_clamped(x: f32, limit: i32) -> i32 {
    let n = ((x * 2.0) as i32).clamp(-2 * limit, 2 * limit);
    (n + 1 + (n >> 31)) >> 1
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
/// to ±32767 (as [`quant_one`]).
#[inline(always)]
pub fn quant_one_i16(v: f32, inv: f32) -> i16 {
    round_half_away_clamped(v * inv, 32767) as i16
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

    /// The multiply trick equals half's conversion bit for bit on all 65,536 halves (NaNs: the
    /// same bits, as both take half's routine).
    #[test]
    fn f16_by_multiply_is_exact_for_every_half() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32().to_bits();
            assert_eq!(f16_to_f32_by_multiply(bits).to_bits(), want, "half {bits:#06x}");
        }
    }

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

    /// The integer rounding equals the float steps it replaced (truncate, then step away from
    /// zero when the exact remainder is at least one half, after a float clamp) and libm's
    /// `roundf`, on every 2^32 / 4099-th f32 bit pattern (NaNs, infinities and subnormals
    /// among them), on every multiple of 2^-6 up to ±40,000, and at the halves and limits.
    #[test]
    fn round_half_away_clamped_equals_the_float_steps() {
        fn old(x: f32, limit: f32) -> i32 {
            let x = x.clamp(-limit, limit);
            let t = x as i32;
            let d = x - t as f32;
            t + (d >= 0.5) as i32 - (d <= -0.5) as i32
        }
        let check = |x: f32| {
            for limit in [127, 32767] {
                let want = old(x, limit as f32);
                assert_eq!(round_half_away_clamped(x, limit), want, "x = {x:e} ({:#010x}), limit {limit}", x.to_bits());
                if !x.is_nan() {
                    assert_eq!(want, libm::roundf(x).clamp(-limit as f32, limit as f32) as i32, "x = {x:e}");
                }
            }
        };
        for i in 0..=(u32::MAX / 4099) {
            check(f32::from_bits(i * 4099));
        }
        for i in -2_560_000..=2_560_000 {
            check(i as f32 / 64.0);
        }
        for x in [0.5f32, -0.5, 1.5, -2.5, 126.5, -126.5, 127.5, -127.5, 128.0, -128.0, 0.49999997, -0.49999997, 32766.5, -32766.5, 32767.5, -32768.0, 1e9, -1e9, f32::MAX, f32::MIN, 0.0, -0.0] {
            check(x);
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
