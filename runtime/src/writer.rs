//! Writing `.tgpt` files (`alloc` feature): quantization, layout, checksum; atomic writes to a
//! file with `std`.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Deref;
#[cfg(feature = "std")]
use std::fs;
#[cfg(feature = "std")]
use std::io::{self, Write};
#[cfg(feature = "std")]
use std::path::Path;

use half::f16;

use crate::format::{
    self, align_up, for_each_tensor, groups_per_row, i4_row_bytes, tensor_shape, Config, DType, Header, Metadata,
    QuantHeader, ScaleDType, TokenizerHeader, TokenizerKind, FORMAT_VERSION, MAGIC, PREAMBLE_LEN, TENSOR_ALIGN,
    TRAILER_LEN,
};
use crate::ops::quantize_group;

/// Storage type of group scales the writer uses for int8 and int4 matrices unless told otherwise
/// ([`encode_model_scaled`]); `runtime/FORMAT.md` ("Group scales") gives the measurements behind it.
pub const DEFAULT_SCALES: ScaleDType = ScaleDType::F16;
use crate::Error;

/// A tokenizer to store in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerData {
    /// One token per character, ids in the order given.
    Char {
        /// The vocabulary.
        chars: Vec<char>,
    },
    /// Byte-level BPE: ids 0..256 are the bytes; id `256 + i` is `merges[i]`, the concatenation of
    /// its pair. Merges are in rank order (earlier merges apply first).
    ByteBpe {
        /// The merges.
        merges: Vec<(u32, u32)>,
    },
    /// Sentencepiece-style pieces (llama2.c, llama): ids in the order given.
    SentencePiece {
        /// Every token.
        pieces: Vec<Piece>,
        /// The beginning-of-sequence token.
        bos: Option<u32>,
        /// The token of characters that have neither a piece nor byte tokens.
        unk: Option<u32>,
        /// Whether encoding starts with `bos`.
        add_bos: bool,
        /// Whether a space is put before a non-empty text (and dropped again after BOS).
        space_prefix: bool,
        /// The token generation stops at (stored as the file's end-of-text token).
        eot: Option<u32>,
    },
}

/// One token of a sentencepiece vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// What the token decodes to: the piece's text with `▁` as a space; a byte token's one byte;
    /// a control token's name (which decodes to nothing).
    pub bytes: Vec<u8>,
    /// Merge score: of two adjacent pairs, the one forming the higher-scoring piece merges first.
    pub score: f32,
    /// Normal piece, byte token or control token.
    pub kind: PieceKind,
}

// Scores are compared as numbers; the writer refuses NaN, so equality is an equivalence there.
impl Eq for Piece {}

/// What a sentencepiece token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// Text is built from these.
    Normal,
    /// A byte fallback token `<0xXX>`.
    Byte,
    /// A control or unknown token (`<s>`, `</s>`, `<unk>`): decodes to nothing.
    Control,
}

/// A tensor given to [`encode_model_tensors`].
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Values, stored in the configuration's dtype.
    F32(Vec<f32>),
    /// An already quantized int8 matrix in the file's layout (row-major scales, `rows ×
    /// ceil(cols / group_size)`, then the values), stored as it is; only for int8 files.
    I8 {
        /// Scales.
        scales: Vec<f32>,
        /// Values.
        values: Vec<i8>,
    },
}

impl TokenizerData {
    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        match self {
            TokenizerData::Char { chars } => chars.len(),
            TokenizerData::ByteBpe { merges } => 256 + merges.len(),
            TokenizerData::SentencePiece { pieces, .. } => pieces.len(),
        }
    }

    /// The bytes of every token, in id order (`Err` if a merge refers to a later token).
    pub fn token_strings(&self) -> Result<Vec<Vec<u8>>, WriteError> {
        match self {
            TokenizerData::Char { chars } => Ok(chars.iter().map(|c| c.to_string().into_bytes()).collect()),
            TokenizerData::ByteBpe { merges } => {
                let mut toks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
                for (i, &(a, b)) in merges.iter().enumerate() {
                    let (a, b) = (a as usize, b as usize);
                    if a >= toks.len() || b >= toks.len() {
                        return Err(WriteError::Tokenizer(format!("merge {i} refers to a later token")));
                    }
                    let t = [toks[a].as_slice(), toks[b].as_slice()].concat();
                    toks.push(t);
                }
                Ok(toks)
            }
            TokenizerData::SentencePiece { pieces, .. } => Ok(pieces.iter().map(|p| p.bytes.clone()).collect()),
        }
    }
}

/// The sentencepiece tables (`merges`) and piece index (`merges_by_pair`) of `FORMAT.md`.
fn sentencepiece_tables(
    pieces: &[Piece],
    bos: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    space_prefix: bool,
) -> Result<(Vec<u8>, Vec<u8>), WriteError> {
    let v = pieces.len();
    let check = |id: Option<u32>, what: &str| match id {
        Some(i) if i as usize >= v => Err(WriteError::Tokenizer(format!("{what} token {i} is outside the vocabulary"))),
        _ => Ok(id.unwrap_or(u32::MAX)),
    };
    let bos_id = check(bos, "BOS")?;
    let unk_id = check(unk, "unknown")?;
    if add_bos && bos.is_none() {
        return Err(WriteError::Tokenizer("encoding starts with BOS but there is no BOS token".into()));
    }
    let flags = u32::from(space_prefix) | (u32::from(add_bos) << 1);
    let mut byte_ids = [u32::MAX; 256];
    for (i, p) in pieces.iter().enumerate() {
        if p.score.is_nan() {
            return Err(WriteError::Tokenizer(format!("piece {i} has a NaN score")));
        }
        match p.kind {
            PieceKind::Byte => {
                let [b] = p.bytes[..] else {
                    return Err(WriteError::Tokenizer(format!("byte token {i} is not one byte")));
                };
                if byte_ids[b as usize] == u32::MAX {
                    byte_ids[b as usize] = i as u32;
                }
            }
            PieceKind::Normal if p.bytes.is_empty() => {
                return Err(WriteError::Tokenizer(format!("piece {i} is empty")));
            }
            _ => {}
        }
    }
    let mut tables = u32s([bos_id, unk_id, flags]);
    tables.extend(u32s(byte_ids));
    tables.extend(pieces.iter().flat_map(|p| p.score.to_le_bytes()));
    tables.extend(pieces.iter().map(|p| match p.kind {
        PieceKind::Normal => crate::sentencepiece::TYPE_NORMAL,
        PieceKind::Byte => crate::sentencepiece::TYPE_BYTE,
        PieceKind::Control => crate::sentencepiece::TYPE_CONTROL,
    }));
    // Normal pieces sorted by their bytes; of pieces with the same bytes the lowest id is kept
    // (encoding can only produce one of them).
    let mut index: Vec<u32> = (0..v as u32).filter(|&i| pieces[i as usize].kind == PieceKind::Normal).collect();
    index.sort_by(|&a, &b| pieces[a as usize].bytes.cmp(&pieces[b as usize].bytes).then(a.cmp(&b)));
    index.dedup_by(|b, a| pieces[*a as usize].bytes == pieces[*b as usize].bytes);
    Ok((tables, u32s(index)))
}

/// Metadata to store in a file (see [`Metadata`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaData {
    /// Model name.
    pub name: String,
    /// Corpus it was trained on.
    pub corpus: String,
    /// Optimizer steps.
    pub train_steps: u64,
    /// Training tokens seen.
    pub tokens_seen: u64,
    /// Validation loss of the f32 export.
    pub val_loss_f32: Option<f32>,
    /// Validation loss of the f16 export.
    pub val_loss_f16: Option<f32>,
    /// Validation loss of the int8 export.
    pub val_loss_i8: Option<f32>,
    /// Version of the writing program.
    pub trainer_version: String,
}

impl MetaData {
    /// Copies borrowed metadata read from a file.
    pub fn from_file(m: &Metadata<'_>) -> Self {
        MetaData {
            name: m.name.to_owned(),
            corpus: m.corpus.to_owned(),
            train_steps: m.train_steps,
            tokens_seen: m.tokens_seen,
            val_loss_f32: m.val_loss_f32,
            val_loss_f16: m.val_loss_f16,
            val_loss_i8: m.val_loss_i8,
            trainer_version: m.trainer_version.to_owned(),
        }
    }
}

/// Why a file could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// The configuration is invalid.
    Config(Error),
    /// A tensor the configuration needs was not provided.
    MissingTensor(String),
    /// A tensor has the wrong number of elements.
    TensorSize {
        /// Tensor name.
        name: String,
        /// Elements expected.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// A tensor contains NaN or infinity.
    NonFinite(String),
    /// The tokenizer does not fit the configuration.
    Tokenizer(String),
    /// A group's scale does not fit the scale type (f16 scales hold up to 65504).
    ScaleRange(String),
    /// Quantized data was given for a tensor that is not stored as int8.
    NotInt8(String),
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::Config(e) => write!(f, "{e}"),
            WriteError::MissingTensor(n) => write!(f, "missing tensor {n}"),
            WriteError::TensorSize { name, expected, found } => {
                write!(f, "tensor {name} has {found} elements, expected {expected}")
            }
            WriteError::NonFinite(n) => write!(f, "tensor {n} contains NaN or infinity"),
            WriteError::Tokenizer(m) => write!(f, "tokenizer: {m}"),
            WriteError::ScaleRange(n) => write!(f, "tensor {n} has weights too large for f16 group scales (|w| above 65504 times 127 for int8, 7 for int4)"),
            WriteError::NotInt8(n) => write!(f, "tensor {n} is given as int8 but is not stored as int8"),
        }
    }
}

impl core::error::Error for WriteError {}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Config(e)
    }
}

/// Names and shapes (`[rows, cols]`, or `[n]` for vectors) of every tensor of `cfg`, in file order.
pub fn tensor_layout(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    for_each_tensor(cfg, |id| {
        let s = tensor_shape(cfg, id);
        let shape = if s.vector { vec![s.cols] } else { vec![s.rows, s.cols] };
        v.push((id.to_string(), shape));
    });
    v
}

fn u32s(xs: impl IntoIterator<Item = u32>) -> Vec<u8> {
    xs.into_iter().flat_map(u32::to_le_bytes).collect()
}

/// Quantizes a `[rows, cols]` matrix: `rows * groups` f32 scales, then `rows * cols` i8 values.
pub fn quantize_matrix(w: &[f32], rows: usize, cols: usize, group_size: usize) -> (Vec<f32>, Vec<i8>) {
    let groups = groups_per_row(cols, group_size);
    let mut scales = vec![0f32; rows * groups];
    let mut q = vec![0i8; rows * cols];
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let qrow = &mut q[r * cols..(r + 1) * cols];
        for (g, (qg, xg)) in qrow.chunks_mut(group_size).zip(row.chunks(group_size)).enumerate() {
            scales[r * groups + g] = quantize_group(qg, xg);
        }
    }
    (scales, q)
}

/// Quantizes one group symmetrically to `±levels` with its scale stored as `ty`: the scale is
/// `max|x| / levels` rounded to `ty`, and `q = round(x / scale)` (half away from zero), clamped
/// to `±levels`. A group of zeros, or one whose scale rounds to 0, has scale 0 and `q = 0`.
/// `None` when the scale overflows `ty`. f32-scale int8 keeps the original formula,
/// [`quantize_group`], which multiplies by `127 / max|x|` instead of dividing by the scale.
pub fn quantize_group_as(q: &mut [i8], x: &[f32], levels: u8, ty: ScaleDType) -> Option<f32> {
    if levels == 127 && ty == ScaleDType::F32 {
        return Some(quantize_group(q, x));
    }
    let amax = x.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    let l = levels as f32;
    let scale = match ty {
        ScaleDType::F32 => amax / l,
        ScaleDType::F16 => f16::from_f32(amax / l).to_f32(),
    };
    if !scale.is_finite() {
        return None;
    }
    for (o, &v) in q.iter_mut().zip(x) {
        *o = if scale == 0.0 { 0 } else { libm::roundf(v / scale).clamp(-l, l) as i8 };
    }
    Some(scale)
}

/// Quantizes a `[rows, cols]` matrix to `±levels` (127: int8, 7: int4) in groups along each row,
/// scales stored as `ty`: `rows * groups` scales (as f32, each exactly representable in `ty`)
/// and `rows * cols` values. `None` when a scale overflows `ty`.
pub fn quantize_matrix_as(
    w: &[f32],
    rows: usize,
    cols: usize,
    group_size: usize,
    levels: u8,
    ty: ScaleDType,
) -> Option<(Vec<f32>, Vec<i8>)> {
    let groups = groups_per_row(cols, group_size);
    let mut scales = vec![0f32; rows * groups];
    let mut q = vec![0i8; rows * cols];
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let qrow = &mut q[r * cols..(r + 1) * cols];
        for (g, (qg, xg)) in qrow.chunks_mut(group_size).zip(row.chunks(group_size)).enumerate() {
            scales[r * groups + g] = quantize_group_as(qg, xg, levels, ty)?;
        }
    }
    Some((scales, q))
}

/// Packs int4 values (−8..=7) row by row: each row `ceil(cols / 2)` bytes, column `2j` in the low
/// nibble of byte `j` and column `2j + 1` in its high nibble, each stored as `q + 8`; the high
/// nibble after an odd row's last column is 0.
pub fn pack_i4(q: &[i8], rows: usize, cols: usize) -> Vec<u8> {
    let rb = i4_row_bytes(cols);
    let mut out = vec![0u8; rows * rb];
    if cols == 0 {
        return out;
    }
    for (orow, qrow) in out.chunks_exact_mut(rb).zip(q.chunks_exact(cols)) {
        for (c, &v) in qrow.iter().enumerate() {
            let u = (v + 8) as u8 & 15;
            orow[c / 2] |= if c % 2 == 0 { u } else { u << 4 };
        }
    }
    out
}

/// Builds a complete `.tgpt` file. Weights come from `get(name)` as f32 and are stored in
/// `cfg.dtype` (int8 and int4 with [`DEFAULT_SCALES`]); norm vectors stay f32.
pub fn encode_model(
    cfg: &Config,
    tok: &TokenizerData,
    meta: &MetaData,
    get: &dyn Fn(&str) -> Option<Vec<f32>>,
) -> Result<Vec<u8>, WriteError> {
    encode_model_with_specials(cfg, tok, &[], meta, get)
}

/// [`encode_model`] for a vocabulary followed by special tokens: `specials` are their names (for a
/// chat model [`crate::chat::CHAT_SPECIALS`]), with ids `tok.vocab_size()..` in the order given.
/// `cfg.vocab_size` counts them. Names must be distinct and non-empty.
pub fn encode_model_with_specials(
    cfg: &Config,
    tok: &TokenizerData,
    specials: &[&str],
    meta: &MetaData,
    get: &dyn Fn(&str) -> Option<Vec<f32>>,
) -> Result<Vec<u8>, WriteError> {
    encode_model_scaled(cfg, DEFAULT_SCALES, tok, specials, meta, get)
}

/// [`encode_model_with_specials`] with the group scales of int8 and int4 matrices stored as
/// `scales` (ignored for float weights). f32 scales give files that readers from before int4
/// also read.
pub fn encode_model_scaled(
    cfg: &Config,
    scales: ScaleDType,
    tok: &TokenizerData,
    specials: &[&str],
    meta: &MetaData,
    get: &dyn Fn(&str) -> Option<Vec<f32>>,
) -> Result<Vec<u8>, WriteError> {
    encode_model_tensors(cfg, scales, tok, specials, meta, &|name| get(name).map(TensorData::F32))
}

/// [`encode_model_scaled`] with tensors that may come already quantized ([`TensorData::I8`],
/// stored as given, for importing int8 weights without requantizing them; their scales are
/// written as `scales`, so f16 scales keep f32 ones only to f16 precision).
pub fn encode_model_tensors(
    cfg: &Config,
    scales: ScaleDType,
    tok: &TokenizerData,
    specials: &[&str],
    meta: &MetaData,
    get: &dyn Fn(&str) -> Option<TensorData>,
) -> Result<Vec<u8>, WriteError> {
    cfg.validate()?;
    let scales = if cfg.dtype.quantized() { scales } else { ScaleDType::F32 };
    if tok.vocab_size() + specials.len() != cfg.vocab_size as usize {
        return Err(WriteError::Tokenizer(format!(
            "tokenizer has {} tokens and {} special tokens but vocab_size is {}",
            tok.vocab_size(),
            specials.len(),
            cfg.vocab_size
        )));
    }
    for (i, s) in specials.iter().enumerate() {
        if s.is_empty() {
            return Err(WriteError::Tokenizer("a special token has an empty name".into()));
        }
        if specials[..i].contains(s) {
            return Err(WriteError::Tokenizer(format!("special token {s} is listed twice")));
        }
    }
    let mut strings = tok.token_strings()?;
    strings.extend(specials.iter().map(|s| s.as_bytes().to_vec()));
    let token_bytes: Vec<u8> = strings.concat();
    let mut offsets = vec![0u32];
    for s in &strings {
        offsets.push(offsets.last().copied().unwrap_or(0) + s.len() as u32);
    }
    let (kind, merges, by_pair) = match tok {
        TokenizerData::Char { chars } => {
            let mut sorted = chars.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != chars.len() {
                return Err(WriteError::Tokenizer("duplicate character in vocabulary".into()));
            }
            (TokenizerKind::Char, Vec::new(), Vec::new())
        }
        TokenizerData::ByteBpe { merges } => {
            let mut order: Vec<u32> = (0..merges.len() as u32).collect();
            order.sort_by_key(|&r| merges[r as usize]);
            if order.windows(2).any(|w| merges[w[0] as usize] == merges[w[1] as usize]) {
                return Err(WriteError::Tokenizer("duplicate merge".into()));
            }
            (TokenizerKind::ByteBpe, u32s(merges.iter().flat_map(|&(a, b)| [a, b])), u32s(order))
        }
        TokenizerData::SentencePiece { pieces, bos, unk, add_bos, space_prefix, .. } => {
            let (tables, index) = sentencepiece_tables(pieces, *bos, *unk, *add_bos, *space_prefix)?;
            (TokenizerKind::SentencePiece, tables, index)
        }
    };
    let eot = match tok {
        TokenizerData::SentencePiece { eot, .. } => *eot,
        _ => None,
    };
    if eot.is_some_and(|e| e >= cfg.vocab_size) {
        return Err(WriteError::Tokenizer("end-of-text token is outside the vocabulary".into()));
    }
    let offsets = u32s(offsets);
    let header = Header {
        config: *cfg,
        tokenizer: TokenizerHeader {
            kind,
            n_special: specials.len() as u32,
            eot,
            token_bytes: &token_bytes,
            token_offsets: &offsets,
            merges: &merges,
            merges_by_pair: &by_pair,
        },
        meta: Metadata {
            name: &meta.name,
            corpus: &meta.corpus,
            train_steps: meta.train_steps,
            tokens_seen: meta.tokens_seen,
            val_loss_f32: meta.val_loss_f32,
            val_loss_f16: meta.val_loss_f16,
            val_loss_i8: meta.val_loss_i8,
            trainer_version: &meta.trainer_version,
        },
    };
    let mut header_bytes = postcard::to_allocvec(&header)
        .map_err(|e| WriteError::Tokenizer(format!("header does not encode: {e}")))?;
    if scales != ScaleDType::F32 {
        let quant = postcard::to_allocvec(&QuantHeader { scales })
            .map_err(|e| WriteError::Tokenizer(format!("header does not encode: {e}")))?;
        header_bytes.extend_from_slice(&quant);
    }
    let data_offset = align_up(PREAMBLE_LEN + header_bytes.len(), TENSOR_ALIGN).expect("small");
    let mut out = Vec::with_capacity(data_offset + 1024);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data_offset as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&header_bytes);
    out.resize(data_offset, 0);

    let gs = cfg.group_size as usize;
    let mut err = None;
    for_each_tensor(cfg, |id| {
        if err.is_some() {
            return;
        }
        let name = id.to_string();
        let s = tensor_shape(cfg, id);
        let w = match get(&name) {
            None => {
                err = Some(WriteError::MissingTensor(name));
                return;
            }
            Some(TensorData::I8 { scales: sv, values }) => {
                let groups = groups_per_row(s.cols, gs);
                if s.vector || cfg.dtype != DType::I8 {
                    err = Some(WriteError::NotInt8(name));
                } else if values.len() != s.numel() || sv.len() != s.rows * groups {
                    err = Some(WriteError::TensorSize { name, expected: s.numel(), found: values.len() });
                } else if sv.iter().any(|v| !v.is_finite()) {
                    err = Some(WriteError::NonFinite(name));
                } else if scales == ScaleDType::F16 && sv.iter().any(|v| v.abs() > f16::MAX.to_f32()) {
                    err = Some(WriteError::ScaleRange(name));
                } else {
                    match scales {
                        ScaleDType::F32 => sv.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
                        ScaleDType::F16 => sv.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
                    }
                    out.resize(align_up(out.len(), 4).expect("small"), 0);
                    out.extend(values.iter().map(|&v| v as u8));
                    let padded = align_up(out.len(), TENSOR_ALIGN).expect("small");
                    out.resize(padded, 0);
                }
                return;
            }
            Some(TensorData::F32(w)) => w,
        };
        if w.len() != s.numel() {
            err = Some(WriteError::TensorSize { name, expected: s.numel(), found: w.len() });
            return;
        }
        if w.iter().any(|v| !v.is_finite()) {
            err = Some(WriteError::NonFinite(name));
            return;
        }
        match (s.vector, cfg.dtype) {
            (true, _) | (false, DType::F32) => w.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            (false, DType::F16) => w.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            (false, DType::I8 | DType::I4) => {
                let levels = cfg.dtype.levels().unwrap_or(127);
                let Some((sv, q)) = quantize_matrix_as(&w, s.rows, s.cols, gs, levels, scales) else {
                    err = Some(WriteError::ScaleRange(name));
                    return;
                };
                match scales {
                    ScaleDType::F32 => sv.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
                    ScaleDType::F16 => sv.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
                }
                out.resize(align_up(out.len(), 4).expect("small"), 0);
                if cfg.dtype == DType::I4 {
                    out.extend(pack_i4(&q, s.rows, s.cols));
                } else {
                    out.extend(q.iter().map(|&v| v as u8));
                }
            }
        }
        let padded = align_up(out.len(), TENSOR_ALIGN).expect("small");
        out.resize(padded, 0);
    });
    if let Some(e) = err {
        return Err(e);
    }
    let crc = format::CRC32.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), data_offset + format::Layout::new(cfg, scales)?.data_len + TRAILER_LEN);
    Ok(out)
}

#[cfg(feature = "std")]
/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// A reader never sees a half-written file, and an existing file survives a failed write.
///
/// A symbolic link at `path` is followed (its target is replaced, the link stays). Something
/// other than a regular file there (a directory, a device such as `/dev/null`, a FIFO) is an
/// error, not replaced. [`check_writable`] makes the same checks before any work is done.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let resolved = check_writable(path)?;
    let path = resolved.as_path();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(feature = "std")]
/// Where [`write_atomic`] would write `path`: the path itself, or a symbolic link's target.
/// Fails when the directory does not exist or something other than a regular file is there.
pub fn check_writable(path: &Path) -> io::Result<std::path::PathBuf> {
    let mut target = path.to_path_buf();
    // Follow links (a bounded number, so a loop is an error, not a hang).
    for _ in 0..40 {
        match fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&target)?;
                target = match target.parent() {
                    Some(d) if link.is_relative() => d.join(link),
                    _ => link,
                };
            }
            Ok(m) if m.is_file() => return Ok(target),
            Ok(_) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} exists and is not a regular file", target.display())));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = match target.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                if !dir.is_dir() {
                    return Err(io::Error::new(io::ErrorKind::NotFound, format!("directory {} does not exist", dir.display())));
                }
                return Ok(target);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: too many levels of symbolic links", path.display())))
}

/// Sixteen bytes at a 16-byte aligned address (`u128` is only 8-byte aligned on 32-bit ARM).
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(16))]
struct Block16([u8; 16]);

/// File bytes held at a 16-byte aligned address, as [`crate::Model::from_bytes`] needs.
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    blocks: Vec<Block16>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into aligned storage.
    pub fn new(bytes: &[u8]) -> Self {
        let mut blocks = vec![Block16([0; 16]); bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<Block16, u8>(&mut blocks)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes { blocks, len: bytes.len() }
    }
}

impl Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice::<Block16, u8>(&self.blocks)[..self.len]
    }
}

#[cfg(feature = "std")]
/// Reads a whole file into aligned memory.
pub fn read_aligned(path: &Path) -> io::Result<AlignedBytes> {
    Ok(AlignedBytes::new(&fs::read(path)?))
}
