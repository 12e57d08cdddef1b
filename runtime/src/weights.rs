//! Weight matrices borrowed in place from the file, one type per storage dtype, behind one trait.

use core::marker::PhantomData;

/// The half-precision type (a [`ScaleChoice`] among others), re-exported for programs that name
/// the f16-scale storage.
pub use half::f16;

use crate::format::{groups_per_row, DType, i4_row_bytes, scale_region_bytes, ScaleDType};
use crate::ops::{self, matvec, matvec_i4, matvec_i8};

/// An activation vector prepared for a matvec: the f32 values, and (for int8 weights) their
/// per-group int8 quantization. Prepared once, shared by every matvec that reads the same input.
#[derive(Debug, Clone, Copy)]
pub struct Input<'x> {
    /// The activations.
    pub f: &'x [f32],
    /// int8 quantization of `f` (empty for float weights), also for int4 weights.
    pub q: &'x [i8],
    /// One scale per group of `q`.
    pub s: &'x [f32],
    /// `q` widened to 16-bit pairs by [`Matrix::widen`] on targets whose integer kernels read
    /// them ([`crate::ops::WIDEN_PAIRS`]); empty elsewhere.
    pub p: &'x [u32],
}

/// A `[rows, cols]` weight matrix in some storage type. The forward pass is generic over this.
pub trait Matrix<'a>: Copy {
    /// The file's weight type this storage reads.
    const DTYPE: DType;
    /// The group-scale type it reads, when it reads only one ([`ScaleChoice`]); `None`: either.
    const SCALES: Option<ScaleDType> = None;
    /// The group size it is compiled for, 0 for any (quantized types' `G` parameter).
    const GROUP_SIZE: usize = 0;
    /// Whether matvecs need the int8 quantization of their input.
    const QUANTIZED_INPUT: bool;
    /// Wraps the tensor bytes (already checked to have the right size and alignment); `scales`
    /// is the storage type of group scales (quantized types only).
    fn from_bytes(bytes: &'a [u8], rows: usize, cols: usize, group_size: usize, scales: ScaleDType) -> Self;
    /// Widens the int8 input `xq` into `out` in the pair order this type's DSP kernel reads
    /// (only called where [`crate::ops::WIDEN_PAIRS`] is true, for quantized inputs).
    fn widen(out: &mut [u32], xq: &[i8]) {
        ops::widen_pairs(out, xq)
    }
    /// [`Matrix::from_bytes`] for a file whose weight type is `dtype` (which a type that reads
    /// one weight type knows already).
    #[inline(always)]
    fn from_file(bytes: &'a [u8], rows: usize, cols: usize, group_size: usize, scales: ScaleDType, dtype: DType) -> Self {
        let _ = dtype;
        Self::from_bytes(bytes, rows, cols, group_size, scales)
    }
    /// Whether matvecs of a file of weight type `dtype` need the int8 quantization of their input.
    #[inline(always)]
    fn quantized_input(dtype: DType) -> bool {
        let _ = dtype;
        Self::QUANTIZED_INPUT
    }
    /// [`Matrix::widen`] for a file of weight type `dtype`.
    #[inline(always)]
    fn widen_for(dtype: DType, out: &mut [u32], xq: &[i8]) {
        let _ = dtype;
        Self::widen(out, xq)
    }
    /// `out[r] = Σ_c W[r, c] · x[c]` for `r < out.len()`.
    fn matvec(&self, out: &mut [f32], x: &Input<'_>);
    /// Row `r` as f32 (embedding lookup).
    fn row(&self, r: usize, out: &mut [f32]);
}

/// f32 weights.
#[derive(Debug, Clone, Copy)]
pub struct F32Matrix<'a> {
    w: &'a [f32],
    cols: usize,
}

/// f16 weights.
#[derive(Debug, Clone, Copy)]
pub struct F16Matrix<'a> {
    w: &'a [f16],
    cols: usize,
}

/// Group scales of a quantized matrix, `[rows, groups]`, in their storage type.
#[derive(Debug, Clone, Copy)]
pub enum Scales<'a> {
    /// f32 scales.
    F32(&'a [f32]),
    /// f16 scales.
    F16(&'a [f16]),
}

/// Which group-scale storage a quantized matrix type reads: [`AnyScales`] (the file's, f32 or
/// f16, chosen when the file is read), or only `f32` or only `f16` (for a program built for one
/// model, [`crate::Session::new_typed`]: the kernels of the other type are then not linked).
pub trait ScaleChoice: Copy + core::fmt::Debug {
    /// The one scale type read, or `None` for either.
    const ONLY: Option<ScaleDType>;
}

/// Either scale type, as the file says (the default).
#[derive(Debug, Clone, Copy)]
pub struct AnyScales;

impl ScaleChoice for AnyScales {
    const ONLY: Option<ScaleDType> = None;
}
impl ScaleChoice for f32 {
    const ONLY: Option<ScaleDType> = Some(ScaleDType::F32);
}
impl ScaleChoice for f16 {
    const ONLY: Option<ScaleDType> = Some(ScaleDType::F16);
}

/// Whether a matrix type with scale choice `S` has code for scales of type `t` (a constant once
/// `S` is known, so the other arm of every match on [`Scales`] is compiled out).
#[inline(always)]
fn reads<S: ScaleChoice>(t: ScaleDType) -> bool {
    match S::ONLY {
        None => true,
        Some(ScaleDType::F32) => matches!(t, ScaleDType::F32),
        Some(ScaleDType::F16) => matches!(t, ScaleDType::F16),
    }
}

impl<'a> Scales<'a> {
    fn new(bytes: &'a [u8], n: usize, ty: ScaleDType) -> Self {
        match ty {
            ScaleDType::F32 => Scales::F32(&bytemuck::cast_slice(bytes)[..n]),
            ScaleDType::F16 => Scales::F16(&bytemuck::cast_slice(bytes)[..n]),
        }
    }
    #[inline(always)]
    fn get<S: ScaleChoice>(&self, i: usize) -> f32 {
        match self {
            Scales::F32(s) if reads::<S>(ScaleDType::F32) => s[i],
            Scales::F16(s) if reads::<S>(ScaleDType::F16) => s[i].to_f32(),
            // Unreachable: `Session::new_typed` refuses a model with the other scale type.
            _ => 0.0,
        }
    }
}

/// int8 weights with one scale per group of `group_size` along each row. `S` says which scale
/// storage it reads ([`ScaleChoice`]) and `G`, when not 0, the one group size it is compiled for
/// ([`crate::Session::new_typed`] checks both against the model).
#[derive(Debug, Clone, Copy)]
pub struct I8Matrix<'a, S: ScaleChoice = AnyScales, const G: usize = 0> {
    /// `[rows, groups]` scales.
    scales: Scales<'a>,
    /// `[rows, cols]` values.
    q: &'a [i8],
    cols: usize,
    group_size: usize,
    groups: usize,
    choice: PhantomData<S>,
}

impl<'a> Matrix<'a> for F32Matrix<'a> {
    const DTYPE: DType = DType::F32;
    const QUANTIZED_INPUT: bool = false;
    fn from_bytes(bytes: &'a [u8], _rows: usize, cols: usize, _gs: usize, _s: ScaleDType) -> Self {
        F32Matrix { w: bytemuck::cast_slice(bytes), cols }
    }
    fn matvec(&self, out: &mut [f32], x: &Input<'_>) {
        matvec(out, &self.w[..out.len() * self.cols], x.f);
    }
    fn row(&self, r: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.w[r * self.cols..(r + 1) * self.cols]);
    }
}

impl<'a> Matrix<'a> for F16Matrix<'a> {
    const DTYPE: DType = DType::F16;
    const QUANTIZED_INPUT: bool = false;
    fn from_bytes(bytes: &'a [u8], _rows: usize, cols: usize, _gs: usize, _s: ScaleDType) -> Self {
        F16Matrix { w: bytemuck::cast_slice(bytes), cols }
    }
    fn matvec(&self, out: &mut [f32], x: &Input<'_>) {
        matvec(out, &self.w[..out.len() * self.cols], x.f);
    }
    fn row(&self, r: usize, out: &mut [f32]) {
        for (o, v) in out.iter_mut().zip(&self.w[r * self.cols..(r + 1) * self.cols]) {
            *o = v.to_f32();
        }
    }
}

impl<'a, S: ScaleChoice, const G: usize> Matrix<'a> for I8Matrix<'a, S, G> {
    const DTYPE: DType = DType::I8;
    const SCALES: Option<ScaleDType> = S::ONLY;
    const GROUP_SIZE: usize = G;
    const QUANTIZED_INPUT: bool = true;
    fn from_bytes(bytes: &'a [u8], rows: usize, cols: usize, group_size: usize, scales: ScaleDType) -> Self {
        let groups = groups_per_row(cols, group_size);
        let (s, q) = bytes.split_at(scale_region_bytes(rows, cols, group_size, scales).unwrap_or(0));
        I8Matrix {
            scales: Scales::new(s, rows * groups, scales),
            q: bytemuck::cast_slice(q),
            cols,
            group_size,
            groups,
            choice: PhantomData,
        }
    }
    fn matvec(&self, out: &mut [f32], x: &Input<'_>) {
        let n = out.len();
        // A constant when the type names its group size: the kernel is compiled for that one.
        let gs = if G != 0 { G } else { self.group_size };
        let (q, g) = (&self.q[..n * self.cols], n * self.groups);
        match self.scales {
            Scales::F32(s) if reads::<S>(ScaleDType::F32) => matvec_i8(out, q, &s[..g], x.q, x.s, x.p, gs),
            Scales::F16(s) if reads::<S>(ScaleDType::F16) => matvec_i8(out, q, &s[..g], x.q, x.s, x.p, gs),
            // Unreachable: `Session::new_typed` refuses a model with the other scale type.
            _ => out.fill(0.0),
        }
    }
    fn row(&self, r: usize, out: &mut [f32]) {
        let qrow = &self.q[r * self.cols..(r + 1) * self.cols];
        for (g, (og, qg)) in out.chunks_mut(self.group_size).zip(qrow.chunks(self.group_size)).enumerate() {
            let s = self.scales.get::<S>(r * self.groups + g);
            for (o, &v) in og.iter_mut().zip(qg) {
                *o = v as f32 * s;
            }
        }
    }
}

/// int4 weights (values −7..=7 stored offset by 8, two a byte, low nibble first; each row
/// `ceil(cols / 2)` bytes) with one scale per group of `group_size` along each row.
#[derive(Debug, Clone, Copy)]
pub struct I4Matrix<'a, S: ScaleChoice = AnyScales, const G: usize = 0> {
    /// `[rows, groups]` scales.
    scales: Scales<'a>,
    /// `[rows, ceil(cols / 2)]` packed values.
    q: &'a [u8],
    cols: usize,
    group_size: usize,
    groups: usize,
    choice: PhantomData<S>,
}

impl<'a, S: ScaleChoice, const G: usize> Matrix<'a> for I4Matrix<'a, S, G> {
    const DTYPE: DType = DType::I4;
    const SCALES: Option<ScaleDType> = S::ONLY;
    const GROUP_SIZE: usize = G;
    const QUANTIZED_INPUT: bool = true;
    fn from_bytes(bytes: &'a [u8], rows: usize, cols: usize, group_size: usize, scales: ScaleDType) -> Self {
        let groups = groups_per_row(cols, group_size);
        let (s, q) = bytes.split_at(scale_region_bytes(rows, cols, group_size, scales).unwrap_or(0));
        I4Matrix { scales: Scales::new(s, rows * groups, scales), q, cols, group_size, groups, choice: PhantomData }
    }
    fn widen(out: &mut [u32], xq: &[i8]) {
        ops::widen_pairs_i4(out, xq)
    }
    fn matvec(&self, out: &mut [f32], x: &Input<'_>) {
        let n = out.len();
        let gs = if G != 0 { G } else { self.group_size };
        let (q, g) = (&self.q[..n * i4_row_bytes(self.cols)], n * self.groups);
        match self.scales {
            Scales::F32(s) if reads::<S>(ScaleDType::F32) => matvec_i4(out, q, &s[..g], x.q, x.s, x.p, gs),
            Scales::F16(s) if reads::<S>(ScaleDType::F16) => matvec_i4(out, q, &s[..g], x.q, x.s, x.p, gs),
            // Unreachable: `Session::new_typed` refuses a model with the other scale type.
            _ => out.fill(0.0),
        }
    }
    fn row(&self, r: usize, out: &mut [f32]) {
        let rb = i4_row_bytes(self.cols);
        let row = &self.q[r * rb..(r + 1) * rb];
        for (c, o) in out.iter_mut().enumerate().take(self.cols) {
            *o = ops::i4_at(row, c) as f32 * self.scales.get::<S>(r * self.groups + c / self.group_size);
        }
    }
}

/// Whichever weight type the file has, chosen at every matvec: the forward pass of a program that
/// runs any model ([`crate::Session::new`]) is compiled once for it, rather than once per weight
/// type (a program's size; the cost is one branch per matrix). Only the session's own forward
/// pass uses it: [`crate::Session::new_typed`] is for one weight type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AnyMatrix<'a> {
    F32(F32Matrix<'a>),
    F16(F16Matrix<'a>),
    I8(I8Matrix<'a>),
    #[cfg(feature = "int4")]
    I4(I4Matrix<'a>),
}

impl<'a> Matrix<'a> for AnyMatrix<'a> {
    // Not a weight type: `new_typed` never sees this type (it is private to the crate).
    const DTYPE: DType = DType::F32;
    const QUANTIZED_INPUT: bool = true;
    fn from_bytes(bytes: &'a [u8], rows: usize, cols: usize, group_size: usize, scales: ScaleDType) -> Self {
        AnyMatrix::F32(F32Matrix::from_bytes(bytes, rows, cols, group_size, scales))
    }
    #[inline]
    fn from_file(bytes: &'a [u8], rows: usize, cols: usize, group_size: usize, scales: ScaleDType, dtype: DType) -> Self {
        match dtype {
            DType::F32 => AnyMatrix::F32(F32Matrix::from_bytes(bytes, rows, cols, group_size, scales)),
            DType::F16 => AnyMatrix::F16(F16Matrix::from_bytes(bytes, rows, cols, group_size, scales)),
            DType::I8 => AnyMatrix::I8(I8Matrix::from_bytes(bytes, rows, cols, group_size, scales)),
            #[cfg(feature = "int4")]
            DType::I4 => AnyMatrix::I4(I4Matrix::from_bytes(bytes, rows, cols, group_size, scales)),
            // Without the feature `Model::from_bytes` refuses int4 files, so none gets here.
            #[cfg(not(feature = "int4"))]
            DType::I4 => AnyMatrix::F32(F32Matrix::from_bytes(&[], rows, cols, group_size, scales)),
        }
    }
    #[inline(always)]
    fn quantized_input(dtype: DType) -> bool {
        dtype.quantized()
    }
    #[inline(always)]
    fn widen_for(dtype: DType, out: &mut [u32], xq: &[i8]) {
        match dtype {
            #[cfg(feature = "int4")]
            DType::I4 => ops::widen_pairs_i4(out, xq),
            _ => ops::widen_pairs(out, xq),
        }
    }
    #[inline(never)]
    fn matvec(&self, out: &mut [f32], x: &Input<'_>) {
        match self {
            AnyMatrix::F32(m) => m.matvec(out, x),
            AnyMatrix::F16(m) => m.matvec(out, x),
            AnyMatrix::I8(m) => m.matvec(out, x),
            #[cfg(feature = "int4")]
            AnyMatrix::I4(m) => m.matvec(out, x),
        }
    }
    #[inline(never)]
    fn row(&self, r: usize, out: &mut [f32]) {
        match self {
            AnyMatrix::F32(m) => m.row(r, out),
            AnyMatrix::F16(m) => m.row(r, out),
            AnyMatrix::I8(m) => m.row(r, out),
            #[cfg(feature = "int4")]
            AnyMatrix::I4(m) => m.row(r, out),
        }
    }
}

/// Every element of tensor `id` of a parsed file as f32, row-major, into `out` (`rows · cols`
/// elements; fewer fill only a prefix): vectors and f32 matrices as stored, f16 widened, int8 and
/// int4 dequantized (`q · s`), whatever the scale type. The file must be 16-byte aligned in memory
/// (as [`crate::Model::from_bytes`] needs).
pub fn tensor_f32(p: &crate::format::Parsed<'_>, id: crate::format::TensorId, out: &mut [f32]) {
    use crate::format::{tensor_bytes, tensor_shape};
    let cfg = &p.header.config;
    let s = tensor_shape(cfg, id);
    let gs = cfg.group_size as usize;
    let off = p.layout.offset(id);
    let len = tensor_bytes(s, cfg.dtype, gs, p.scales).unwrap_or(0);
    let b = &p.data[off..off + len];
    if s.vector || cfg.dtype == DType::F32 {
        for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        return;
    }
    fn rows<'a, M: Matrix<'a>>(m: M, cols: usize, out: &mut [f32]) {
        for (r, o) in out.chunks_exact_mut(cols).enumerate() {
            m.row(r, o);
        }
    }
    let m = (b, s.rows, s.cols, gs, p.scales);
    match cfg.dtype {
        DType::F32 => {}
        DType::F16 => rows(F16Matrix::from_bytes(m.0, m.1, m.2, m.3, m.4), s.cols, out),
        DType::I8 => rows(I8Matrix::<AnyScales>::from_bytes(m.0, m.1, m.2, m.3, m.4), s.cols, out),
        DType::I4 => rows(I4Matrix::<AnyScales>::from_bytes(m.0, m.1, m.2, m.3, m.4), s.cols, out),
    }
}
