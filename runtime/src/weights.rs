//! Weight matrices borrowed in place from the file, one type per storage dtype, behind one trait.

use half::f16;

use crate::format::groups_per_row;
use crate::ops::{matvec, matvec_i8};

/// An activation vector prepared for a matvec: the f32 values, and (for int8 weights) their
/// per-group int8 quantization. Prepared once, shared by every matvec that reads the same input.
#[derive(Debug, Clone, Copy)]
pub struct Input<'x> {
    /// The activations.
    pub f: &'x [f32],
    /// int8 quantization of `f` (empty for float weights).
    pub q: &'x [i8],
    /// One scale per group of `q`.
    pub s: &'x [f32],
    /// `q` widened to 16-bit pairs by [`crate::ops::widen_pairs`] on targets whose int8 kernel
    /// reads them ([`crate::ops::WIDEN_PAIRS`]); empty elsewhere.
    pub p: &'x [u32],
}

/// A `[rows, cols]` weight matrix in some storage type. The forward pass is generic over this.
pub trait Matrix<'a>: Copy {
    /// Whether matvecs need the int8 quantization of their input.
    const QUANTIZED_INPUT: bool;
    /// Wraps the tensor bytes (already checked to have the right size and alignment).
    fn from_bytes(bytes: &'a [u8], rows: usize, cols: usize, group_size: usize) -> Self;
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

/// int8 weights with one f32 scale per group of `group_size` along each row.
#[derive(Debug, Clone, Copy)]
pub struct I8Matrix<'a> {
    /// `[rows, groups]` scales.
    scales: &'a [f32],
    /// `[rows, cols]` values.
    q: &'a [i8],
    cols: usize,
    group_size: usize,
    groups: usize,
}

impl<'a> Matrix<'a> for F32Matrix<'a> {
    const QUANTIZED_INPUT: bool = false;
    fn from_bytes(bytes: &'a [u8], _rows: usize, cols: usize, _gs: usize) -> Self {
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
    const QUANTIZED_INPUT: bool = false;
    fn from_bytes(bytes: &'a [u8], _rows: usize, cols: usize, _gs: usize) -> Self {
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

impl<'a> I8Matrix<'a> {
    /// Bytes taken by the scales of a `[rows, cols]` matrix (the values follow them).
    pub fn scale_bytes(rows: usize, cols: usize, group_size: usize) -> usize {
        rows * groups_per_row(cols, group_size) * 4
    }
}

impl<'a> Matrix<'a> for I8Matrix<'a> {
    const QUANTIZED_INPUT: bool = true;
    fn from_bytes(bytes: &'a [u8], rows: usize, cols: usize, group_size: usize) -> Self {
        let (s, q) = bytes.split_at(Self::scale_bytes(rows, cols, group_size));
        I8Matrix {
            scales: bytemuck::cast_slice(s),
            q: bytemuck::cast_slice(q),
            cols,
            group_size,
            groups: groups_per_row(cols, group_size),
        }
    }
    fn matvec(&self, out: &mut [f32], x: &Input<'_>) {
        let n = out.len();
        matvec_i8(out, &self.q[..n * self.cols], &self.scales[..n * self.groups], x.q, x.s, x.p, self.group_size);
    }
    fn row(&self, r: usize, out: &mut [f32]) {
        let qrow = &self.q[r * self.cols..(r + 1) * self.cols];
        let srow = &self.scales[r * self.groups..(r + 1) * self.groups];
        for ((og, qg), &s) in out.chunks_mut(self.group_size).zip(qrow.chunks(self.group_size)).zip(srow) {
            for (o, &v) in og.iter_mut().zip(qg) {
                *o = v as f32 * s;
            }
        }
    }
}
