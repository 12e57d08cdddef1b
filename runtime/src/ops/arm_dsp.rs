//! Cortex-M4 DSP extension: two 16×16 multiply-accumulates per `SMLAD`.
//!
//! The int8 matvec reads four weight bytes with one load, unpacks them into two registers of
//! two 16-bit halves (`SXTB16`, `SXTB16 ROR #8`), and multiplies each against a word of
//! activations widened beforehand by [`super::widen_pairs`] (once per matvec, not per row).
//! Eight columns cost ten instructions: `LDRD` (weights), `LDM` (four activation words), four
//! `SXTB16` and four `SMLAD`. Integer sums are exact, and the float steps per group are the
//! portable kernel's, in the same order, so the result is bit-identical.

use super::FloatWeight;

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
#[inline(always)]
pub fn matvec_i8<S: FloatWeight>(out: &mut [f32], wq: &[i8], ws: &[S], xq: &[i8], xs: &[f32], xp: &[u32], gs: usize) -> bool {
    let cols = xq.len();
    let groups = xs.len();
    let rows = out.len();
    if !fits(rows, cols, cols, gs, groups, wq, xp) || ws.len() < rows * groups {
        return false;
    }
    // SAFETY: checked by `fits`, and `rows·groups` weight scales.
    unsafe { rows_by_group::<true, S>(out, wq.as_ptr(), cols, ws.as_ptr(), xs, xp.as_ptr(), cols, gs) };
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
    unsafe { rows_by_group::<false, f32>(out, w.as_ptr(), stride, core::ptr::null(), xs, xp.as_ptr(), cols, gs) };
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
unsafe fn rows_by_group<const WS: bool, S: FloatWeight>(
    out: &mut [f32],
    w: *const i8,
    stride: usize,
    ws: *const S,
    xs: &[f32],
    x: *const u32,
    cols: usize,
    gs: usize,
) {
    // SAFETY: passed on from the caller.
    unsafe {
        match gs {
            16 => rows::<2, WS, S>(out, w, stride, ws, xs, x, cols, gs),
            32 => rows::<4, WS, S>(out, w, stride, ws, xs, x, cols, gs),
            64 => rows::<8, WS, S>(out, w, stride, ws, xs, x, cols, gs),
            128 => rows::<16, WS, S>(out, w, stride, ws, xs, x, cols, gs),
            _ => rows::<0, WS, S>(out, w, stride, ws, xs, x, cols, gs),
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
unsafe fn rows<const N: usize, const WS: bool, S: FloatWeight>(
    out: &mut [f32],
    w: *const i8,
    stride: usize,
    ws: *const S,
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
                    acc += dot as f32 * ((*ps).f32() * sx);
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
                    acc += dot as f32 * ((*ps).f32() * xs[full]);
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

/// The asm text of `n` blocks of eight int4 columns: one (unaligned) word of eight packed
/// weights, four activation words, and per pair of columns one `AND` with the mask `0x000F000F`
/// after a shift of 0, 8, 4 or 12 bits (the offset nibbles of columns (0, 4), (2, 6), (1, 5),
/// (3, 7) in the two halves) and one `SMLAD`: ten instructions per eight weights.
///
/// `block_i4!(first)` is one block that starts the sum: its first pair with `SMUAD`.
macro_rules! block_i4 {
    (@ $first:literal) => {
        concat!(
            "ldr {w}, [{pw}], #4
            ldm {px}!, {{r0, r1, r2, r3}}
            and {t}, {m}, {w}
            ",
            $first,
            "
            and {t}, {m}, {w}, lsr #8
            smlad {acc}, {t}, r1, {acc}
            and {t}, {m}, {w}, lsr #4
            smlad {acc}, {t}, r2, {acc}
            and {t}, {m}, {w}, lsr #12
            smlad {acc}, {t}, r3, {acc}
            "
        )
    };
    (1) => { block_i4!(@ "smlad {acc}, {t}, r0, {acc}") };
    (first) => { block_i4!(@ "smuad {acc}, {t}, r0") };
    (4) => { concat!(block_i4!(1), block_i4!(1), block_i4!(1), block_i4!(1)) };
}

/// `acc + Σ u·x` over the next `8·n` columns of offset int4 weights (`u = q + 8`, 0..=15) and
/// activations widened by [`super::widen_pairs_i4`], wrapping; advances both pointers past them.
///
/// # Safety
/// `*w` must have `4·n` readable bytes (any alignment); `*x` must be 4-byte aligned with `4·n`
/// readable words.
#[inline(always)]
unsafe fn dot_u4(w: &mut *const u8, x: &mut *const u32, n: usize, mut acc: i32) -> i32 {
    let m = 0x000F_000Fu32;
    macro_rules! asm_blocks {
        ($n:tt) => {
            core::arch::asm!(
                block_i4!($n),
                pw = inout(reg) *w,
                px = inout(reg) *x,
                acc = inout(reg) acc,
                m = in(reg) m,
                w = out(reg) _,
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
    // registers it declares. Cortex-M4 (and ARMv7-A) allow unaligned `LDR`.
    unsafe {
        for _ in 0..n / 4 {
            asm_blocks!(4);
        }
        for _ in 0..n % 4 {
            asm_blocks!(1);
        }
    }
    acc
}

/// Defines `$name(w, x, dots, full, half)`: the offset sums `Σ u·x` of a row's groups of `8·N`
/// int4 columns (`$blocks`, the asm text of N blocks of eight), one i32 per group into `dots`,
/// in one assembly loop (10·N + 3 instructions a group): `full` whole groups, then, if `half`, a
/// last group of half as many columns (`$half`). Advances `*w` past them.
///
/// # Safety (of the function)
/// `*w` must have `4N·full + 2N·half` readable bytes (any alignment), `x` `4N·full + 2N·half`
/// readable words (4-byte aligned) and `dots` room for `full + half` values.
macro_rules! group_dots_u4 {
    ($name:ident, $blocks:expr, $half:expr) => {
        #[inline(always)]
        unsafe fn $name(w: &mut *const u8, x: *const u32, dots: *mut i32, full: usize, half: bool) {
            let m = 0x000F_000Fu32;
            // One counter: 2·full + half, two off per whole group.
            let n = 2 * full + half as usize;
            // SAFETY: the caller guarantees the reads and the writes; the asm touches only the
            // memory behind its pointers and the registers it declares.
            unsafe {
                core::arch::asm!(
                    "subs {n}, {n}, #2
                    bmi 3f",
                    "2:",
                    $blocks,
                    "str {acc}, [{pd}], #4
                    subs {n}, {n}, #2
                    bpl 2b",
                    // n is now -2 (no half group) or -1.
                    "3:
                    adds {n}, {n}, #2
                    beq 4f",
                    $half,
                    "str {acc}, [{pd}], #4",
                    "4:",
                    pw = inout(reg) *w,
                    px = inout(reg) x => _,
                    pd = inout(reg) dots => _,
                    n = inout(reg) n => _,
                    m = in(reg) m,
                    acc = out(reg) _,
                    w = out(reg) _,
                    t = out(reg) _,
                    out("r0") _,
                    out("r1") _,
                    out("r2") _,
                    out("r3") _,
                    options(nostack),
                );
            }
        }
    };
}
// The first block of a group starts its sum (SMUAD), the rest add to it.
group_dots_u4!(
    group_dots_u4_64,
    concat!(block_i4!(first), block_i4!(1), block_i4!(1), block_i4!(1), block_i4!(4)),
    concat!(block_i4!(first), block_i4!(1), block_i4!(1), block_i4!(1))
);
group_dots_u4!(
    group_dots_u4_128,
    concat!(block_i4!(first), block_i4!(1), block_i4!(1), block_i4!(1), block_i4!(4), block_i4!(4), block_i4!(4)),
    concat!(block_i4!(first), block_i4!(1), block_i4!(1), block_i4!(1), block_i4!(4))
);

/// What every row of [`rows_i4`] shares: the widened activations, their group scales and sums,
/// and the group layout (`full` groups of `words` words, then one of `last_words` if
/// `full < xs.len()`).
struct RowsI4<'a> {
    xp: *const u32,
    xs: &'a [f32],
    xsum: &'a [i32],
    words: usize,
    last_words: usize,
    full: usize,
}

/// The rows of [`matvec_i4`] for rows of at most 64 groups whose groups are whole words: `W = 8`
/// or 16 (groups of 64 or 128 columns, the last one whole or half: the assembly loops), or 0
/// (`k.words` words a group, `k.last_words` the last): `out[r]` is row r's sum over its groups,
/// in the portable kernel's order, from `acc = 0`. `w` and `ws` run on from row to row.
///
/// # Safety
/// `w` must have `out.len()·Σ 4·words` readable bytes and `ws` `out.len()·xs.len()` scales, `k.xp`
/// the `Σ 4·words` words of a row, 4-byte aligned.
#[inline(always)]
unsafe fn rows_i4<S: FloatWeight, const W: usize>(out: &mut [f32], mut w: *const u8, mut ws: *const S, k: &RowsI4<'_>) {
    let (full, groups) = (k.full, k.xs.len());
    let mut dots = [0i32; 64];
    for o in out.iter_mut() {
        let mut acc = 0.0f32;
        // The float steps are the portable kernel's, in its order.
        let mut add = |u: i32, s: i32, sx: f32| {
            let dot = u.wrapping_sub(s.wrapping_mul(8));
            // SAFETY: one of the row's scales (the caller guarantees them).
            let sw = unsafe { *ws };
            ws = unsafe { ws.add(1) };
            acc += dot as f32 * (sw.f32() * sx);
        };
        if W == 8 || W == 16 {
            // The integer sums of all the row's groups first, in assembly with every register
            // its own (a last group of half the columns too), then the float steps.
            // SAFETY: the caller guarantees the reads; groups ≤ 64 = dots.len().
            unsafe {
                if W == 8 {
                    group_dots_u4_64(&mut w, k.xp, dots.as_mut_ptr(), full, full < groups)
                } else {
                    group_dots_u4_128(&mut w, k.xp, dots.as_mut_ptr(), full, full < groups)
                }
            };
            let (mut pd, mut ps, mut px) = (dots.as_ptr(), k.xsum.as_ptr(), k.xs.as_ptr());
            for _ in 0..groups {
                // SAFETY: `groups` values each (dots, xsum, xs all hold at least that many).
                unsafe {
                    add(*pd, *ps, *px);
                    (pd, ps, px) = (pd.add(1), ps.add(1), px.add(1));
                }
            }
        } else {
            let mut px = k.xp;
            for (&s, &sx) in k.xsum[..full].iter().zip(&k.xs[..full]) {
                // SAFETY: the caller guarantees the reads.
                add(unsafe { dot_u4(&mut w, &mut px, k.words, 0) }, s, sx);
            }
            if full < groups {
                // SAFETY: as above.
                add(unsafe { dot_u4(&mut w, &mut px, k.last_words, 0) }, k.xsum[full], k.xs[full]);
            }
        }
        *o = acc;
    }
}

/// The int4 matvec with `SMLAD` on offset nibbles; returns false (doing nothing) where its
/// conditions do not hold: a group size that is a multiple of 8, and `xp` widened by
/// [`super::widen_pairs_i4`] for the whole row. Rows may start at any byte. The caller then uses
/// the portable kernel.
///
/// Per group, `Σ q·x = Σ u·x − 8·Σ x` in wrapping i32 arithmetic (exact: the true sum is at most
/// 2^30 in magnitude); the columns of a short last group after its last multiple of 8 are
/// summed in plain code. The float steps are the portable kernel's, in its order: `Σ x` is
/// computed for up to 64 groups at a time, and each row's running sum waits in `out` between
/// those batches.
pub fn matvec_i4<S: FloatWeight>(out: &mut [f32], w: &[u8], ws: &[S], xq: &[i8], xs: &[f32], xp: &[u32], gs: usize) -> bool {
    let cols = xq.len();
    let groups = xs.len();
    let rows = out.len();
    let rb = crate::format::i4_row_bytes(cols);
    if gs == 0
        || gs % 8 != 0
        || cols == 0
        || groups != cols.div_ceil(gs)
        || xp.len() < super::i4_pair_words(cols)
        || w.len() < rows * rb
        || ws.len() < rows * groups
        || xp.as_ptr() as usize % 4 != 0
    {
        return false;
    }
    const BATCH: usize = 64;
    if cols % 8 == 0 && groups <= BATCH {
        // Every group a whole number of words of eight columns (the last group may be shorter
        // than the others): one pass per row, the weight, scale and activation pointers running
        // on from group to group, and the weight and scale pointers on from row to row.
        let words = gs / 8;
        let last_words = (cols - (groups - 1) * gs) / 8;
        let full = if last_words == words { groups } else { groups - 1 };
        let mut xsum = [0i32; BATCH];
        for (x, s) in xq.chunks(gs).zip(xsum.iter_mut()) {
            *s = x.iter().map(|&v| v as i32).sum();
        }
        let k = RowsI4 { xp: xp.as_ptr(), xs: &xs[..groups], xsum: &xsum[..groups], words, last_words, full };
        // SAFETY: rows of `rb = cols/2` bytes (cols is even) and `groups` scales follow each
        // other in `w` and `ws` (w.len() ≥ rows·rb, ws.len() ≥ rows·groups, checked above), and
        // every row reads the `cols/2 = i4_pair_words(cols)` words of `xp` (checked above).
        unsafe {
            if words == 8 && (last_words == 8 || last_words == 4) {
                rows_i4::<S, 8>(out, w.as_ptr(), ws.as_ptr(), &k)
            } else if words == 16 && (last_words == 16 || last_words == 8) {
                rows_i4::<S, 16>(out, w.as_ptr(), ws.as_ptr(), &k)
            } else {
                rows_i4::<S, 0>(out, w.as_ptr(), ws.as_ptr(), &k)
            }
        }
        return true;
    }
    out.fill(0.0);
    if cols % 8 == 0 {
        // As above for rows of more than BATCH groups: `Σ x` for BATCH groups at a time, and
        // each row's running sum waits in `out` between those batches.
        let words = gs / 8;
        let last_words = (cols - (groups - 1) * gs) / 8;
        let mut g0 = 0;
        while g0 < groups {
            let g1 = (g0 + BATCH).min(groups);
            let mut xsum = [0i32; BATCH];
            for (x, s) in xq[g0 * gs..(g1 * gs).min(cols)].chunks(gs).zip(xsum.iter_mut()) {
                *s = x.iter().map(|&v| v as i32).sum();
            }
            // Groups g0..full run `words` words each; a last, shorter group comes after.
            let full = if g1 == groups && last_words != words { g1 - 1 } else { g1 };
            for (r, o) in out.iter_mut().enumerate() {
                let srow = &ws[r * groups + g0..r * groups + g1];
                // SAFETY: groups g0..g1 of row r are bytes r·rb + g0·gs/2 .. r·rb + min(g1·gs,
                // cols)/2 of `w` (rb = cols/2 as cols is even; w.len() ≥ rows·rb, checked above)
                // and words g0·gs/2 .. min(g1·gs, cols)/2 of `xp` (i4_pair_words(cols) = cols/2 as
                // cols is a multiple of 8; checked above).
                let mut pw = unsafe { w.as_ptr().add(r * rb + g0 * gs / 2) };
                let mut px = unsafe { xp.as_ptr().add(g0 * gs / 2) };
                let mut acc = *o;
                let n = full - g0;
                for ((&s, sw), &sx) in xsum[..n].iter().zip(&srow[..n]).zip(&xs[g0..full]) {
                    let u = unsafe { dot_u4(&mut pw, &mut px, words, 0) };
                    let dot = u.wrapping_sub(s.wrapping_mul(8));
                    acc += dot as f32 * (sw.f32() * sx);
                }
                if full < g1 {
                    let u = unsafe { dot_u4(&mut pw, &mut px, last_words, 0) };
                    let dot = u.wrapping_sub(xsum[n].wrapping_mul(8));
                    acc += dot as f32 * (srow[n].f32() * xs[full]);
                }
                *o = acc;
            }
            g0 = g1;
        }
        return true;
    }
    let mut g0 = 0;
    while g0 < groups {
        let g1 = (g0 + BATCH).min(groups);
        let mut xsum = [0i32; BATCH];
        for (g, s) in (g0..g1).zip(xsum.iter_mut()) {
            // The columns the SMLAD loop takes: the group's whole chunks of eight.
            let (c, end) = (g * gs, ((g + 1) * gs).min(cols));
            *s = xq[c..c + (end - c) / 8 * 8].iter().map(|&v| v as i32).sum();
        }
        for (r, o) in out.iter_mut().enumerate() {
            let row = &w[r * rb..(r + 1) * rb];
            let mut acc = *o;
            for (g, &s) in (g0..g1).zip(xsum.iter()) {
                let (c, end) = (g * gs, ((g + 1) * gs).min(cols));
                let blocks = (end - c) / 8;
                // SAFETY: columns c..c + 8·blocks ≤ end ≤ cols are bytes c/2..c/2 + 4·blocks of
                // the row (c is a multiple of 8) and words c/2..c/2 + 4·blocks of the pairs
                // (every full chunk of eight of the row is widened: xp.len() ≥ i4_pair_words).
                let mut pw = unsafe { row.as_ptr().add(c / 2) };
                let mut px = unsafe { xp.as_ptr().add(c / 2) };
                let u = unsafe { dot_u4(&mut pw, &mut px, blocks, 0) };
                let mut dot = u.wrapping_sub(s.wrapping_mul(8));
                let done = c + 8 * blocks;
                if done < end {
                    dot = dot.wrapping_add(super::dot_i4(row, done, &xq[done..end]));
                }
                acc += dot as f32 * (ws[r * groups + g].f32() * xs[g]);
            }
            *o = acc;
        }
        g0 = g1;
    }
    true
}
