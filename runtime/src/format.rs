//! The `.tgpt` file format: preamble, postcard header, aligned tensor data, CRC-32 trailer.
//!
//! The byte layout is specified in `runtime/FORMAT.md`. This module parses and validates it without
//! allocating; every length, offset and product of dimensions is checked.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The eight bytes every `.tgpt` file starts with.
pub const MAGIC: [u8; 8] = *b"TINYGPT\0";
/// The format version this runtime reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed preamble before the header.
pub const PREAMBLE_LEN: usize = 24;
/// Size of the CRC-32 trailer.
pub const TRAILER_LEN: usize = 4;
/// Alignment of the data section and of every tensor inside it, relative to the start of the file.
pub const TENSOR_ALIGN: usize = 32;

/// Largest accepted value of a single dimension; keeps every size product far from overflow.
pub const MAX_DIM: u32 = 1 << 20;
/// Largest accepted number of layers.
pub const MAX_LAYERS: u32 = 1024;

#[cfg(not(target_os = "none"))]
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
/// On a microcontroller, bit by bit: the 1 KiB table would take flash from the model, and the
/// checksum runs once at start-up.
#[cfg(target_os = "none")]
pub(crate) const CRC32: crc::Crc<u32, crc::NoTable> = crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);

/// The CRC-32 (ISO-HDLC, the zlib/PNG polynomial) a file's trailer holds over the bytes before it.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

/// Which transformer block the model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// nanoGPT: LayerNorm (no bias), exact GELU, learned positions.
    Gpt2,
    /// llama2.c: RMSNorm, RoPE on interleaved pairs, SwiGLU, grouped KV heads.
    Llama,
}

/// Storage type of the weight matrices in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// Symmetric int8 with one scale per group of `group_size` along each row.
    I8,
    /// Symmetric int4 (values −7..=7, two a byte) with one scale per group of `group_size`
    /// along each row.
    I4,
}

/// Storage type of the group scales of quantized (int8, int4) matrices.
///
/// Stored in [`QuantHeader`] after the header; a file without it (every file written before int4
/// existed) has f32 scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScaleDType {
    /// 32-bit float.
    F32,
    /// IEEE half precision (what the writer stores by default).
    F16,
}

impl ScaleDType {
    /// Bytes of one scale.
    pub fn size(self) -> usize {
        match self {
            ScaleDType::F32 => 4,
            ScaleDType::F16 => 2,
        }
    }
    /// Lower-case name: `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            ScaleDType::F32 => "f32",
            ScaleDType::F16 => "f16",
        }
    }
}

/// What follows the [`Header`] in files whose matrices are quantized with non-f32 scales
/// (postcard, inside the header length H). Absent: f32 scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantHeader {
    /// Storage type of the group scales.
    pub scales: ScaleDType,
}

/// Element type of a session's key/value cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvDType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// int8 with one f32 scale per head vector.
    I8,
}

impl DType {
    /// Lower-case name: `f32`, `f16`, `int8`, `int4`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "int8",
            DType::I4 => "int4",
        }
    }
    /// Whether matrices of this type are quantized in groups with scales (int8, int4).
    pub fn quantized(self) -> bool {
        matches!(self, DType::I8 | DType::I4)
    }
    /// Largest quantized magnitude: 127 for int8, 7 for int4 (`None` for float types).
    pub fn levels(self) -> Option<u8> {
        match self {
            DType::I8 => Some(127),
            DType::I4 => Some(7),
            DType::F32 | DType::F16 => None,
        }
    }
}

impl KvDType {
    /// Lower-case name: `f32`, `f16`, `int8`.
    pub fn name(self) -> &'static str {
        match self {
            KvDType::F32 => "f32",
            KvDType::F16 => "f16",
            KvDType::I8 => "int8",
        }
    }
}

impl Arch {
    /// Lower-case name: `gpt2` or `llama`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gpt2 => "gpt2",
            Arch::Llama => "llama",
        }
    }
}

/// Every number the forward pass needs (nanoGPT names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Block type.
    pub arch: Arch,
    /// Number of transformer blocks.
    pub n_layer: u32,
    /// Number of query heads.
    pub n_head: u32,
    /// Number of key/value heads (`n_head` for gpt2; a divisor of `n_head` for llama).
    pub n_kv_head: u32,
    /// Width of the residual stream.
    pub n_embd: u32,
    /// Width of the MLP hidden layer.
    pub n_hidden: u32,
    /// Maximum context length (gpt2: number of learned positions).
    pub block_size: u32,
    /// Number of tokens.
    pub vocab_size: u32,
    /// LayerNorm / RMSNorm epsilon.
    pub norm_eps: f32,
    /// RoPE base (llama only).
    pub rope_theta: f32,
    /// Whether the classifier shares the token embedding matrix.
    pub tie_embeddings: bool,
    /// Storage type of weight matrices.
    pub dtype: DType,
    /// int8/int4 group size along each row (ignored for float dtypes, but must be ≥ 1).
    pub group_size: u32,
}

impl Config {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        (self.n_embd / self.n_head) as usize
    }
    /// Width of the key and value vectors of one position (all KV heads).
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_kv_head as usize
    }

    /// Checks that the numbers describe a model this runtime can run.
    pub fn validate(&self) -> Result<(), Error> {
        let dims = [
            self.n_layer,
            self.n_head,
            self.n_kv_head,
            self.n_embd,
            self.n_hidden,
            self.block_size,
            self.vocab_size,
            self.group_size,
        ];
        if dims.contains(&0) {
            return Err(Error::InvalidConfig("a dimension is zero"));
        }
        if dims.iter().any(|&d| d > MAX_DIM) || self.n_layer > MAX_LAYERS {
            return Err(Error::InvalidConfig("a dimension is too large"));
        }
        if self.n_embd % self.n_head != 0 {
            return Err(Error::InvalidConfig("n_embd is not a multiple of n_head"));
        }
        if self.n_head % self.n_kv_head != 0 {
            return Err(Error::InvalidConfig("n_head is not a multiple of n_kv_head"));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(Error::InvalidConfig("norm_eps must be a positive number"));
        }
        match self.arch {
            Arch::Gpt2 => {
                if self.n_kv_head != self.n_head {
                    return Err(Error::InvalidConfig("gpt2 needs n_kv_head == n_head"));
                }
            }
            Arch::Llama => {
                if self.head_dim() % 2 != 0 {
                    return Err(Error::InvalidConfig("llama needs an even head size for RoPE"));
                }
                if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
                    return Err(Error::InvalidConfig("rope_theta must be a number above 1"));
                }
            }
        }
        // Every tensor size in bytes must fit comfortably in a usize (also on 32-bit targets);
        // f32 scales are the largest.
        Layout::new(self, ScaleDType::F32).map(|_| ())
    }
}

/// Which tokenizer the model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenizerKind {
    /// One token per Unicode scalar value.
    Char,
    /// Byte-level BPE: ids 0..256 are bytes, id 256+i is merge i.
    ByteBpe,
    /// Sentencepiece-style (llama2.c, llama): pieces with scores, merged highest score first, byte
    /// fallback tokens `<0xXX>`, a leading space before the text, a BOS token first.
    SentencePiece,
}

/// Tokenizer tables as stored in the header, borrowed from the file.
///
/// Integers inside the byte strings are little-endian `u32`; see `FORMAT.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerHeader<'a> {
    /// Character vocabulary or byte-level BPE.
    pub kind: TokenizerKind,
    /// Number of special tokens at the end of the vocabulary (never produced by `encode`).
    pub n_special: u32,
    /// End-of-text token, if any; generation stops when it is sampled.
    pub eot: Option<u32>,
    /// Concatenated bytes of every token, in id order.
    #[serde(borrow)]
    pub token_bytes: &'a [u8],
    /// `vocab_size + 1` offsets into `token_bytes`.
    #[serde(borrow)]
    pub token_offsets: &'a [u8],
    /// BPE merges in rank order: pairs `(left, right)`. Sentencepiece: the piece tables (BOS,
    /// unknown token, flags, byte fallback ids, scores, piece types; see `FORMAT.md`).
    #[serde(borrow)]
    pub merges: &'a [u8],
    /// Merge ranks sorted by their `(left, right)` pair, for binary search. Sentencepiece: the ids of
    /// the normal pieces sorted by their bytes.
    #[serde(borrow)]
    pub merges_by_pair: &'a [u8],
}

/// Descriptive metadata. Nothing here affects the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metadata<'a> {
    /// Model name.
    pub name: &'a str,
    /// Corpus it was trained on.
    pub corpus: &'a str,
    /// Optimizer steps taken.
    pub train_steps: u64,
    /// Training tokens seen.
    pub tokens_seen: u64,
    /// Validation loss (nats/token) of the f32 export, measured by this runtime.
    pub val_loss_f32: Option<f32>,
    /// Validation loss of the f16 export.
    pub val_loss_f16: Option<f32>,
    /// Validation loss of the int8 export.
    pub val_loss_i8: Option<f32>,
    /// Version of the program that wrote the file.
    pub trainer_version: &'a str,
}

/// The postcard-encoded header.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Header<'a> {
    /// Architecture numbers.
    pub config: Config,
    /// Tokenizer tables.
    #[serde(borrow)]
    pub tokenizer: TokenizerHeader<'a>,
    /// Metadata.
    #[serde(borrow)]
    pub meta: Metadata<'a>,
}

/// Which tensor of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerTensor {
    /// Pre-attention norm weight `[n_embd]`.
    AttnNorm,
    /// Query projection `[n_head*hd, n_embd]`.
    Wq,
    /// Key projection `[n_kv_head*hd, n_embd]`.
    Wk,
    /// Value projection `[n_kv_head*hd, n_embd]`.
    Wv,
    /// Attention output projection `[n_embd, n_head*hd]`.
    Wo,
    /// Pre-MLP norm weight `[n_embd]`.
    FfnNorm,
    /// MLP up (gate for llama) `[n_hidden, n_embd]`.
    W1,
    /// MLP down `[n_embd, n_hidden]`.
    W2,
    /// SwiGLU up `[n_hidden, n_embd]` (llama only).
    W3,
}

impl LayerTensor {
    /// The tensors of a layer of `arch`, in file order.
    pub fn all(arch: Arch) -> &'static [LayerTensor] {
        use LayerTensor::*;
        match arch {
            Arch::Gpt2 => &[AttnNorm, Wq, Wk, Wv, Wo, FfnNorm, W1, W2],
            Arch::Llama => &[AttnNorm, Wq, Wk, Wv, Wo, FfnNorm, W1, W2, W3],
        }
    }
    /// Short name used in tensor names (`layers.{l}.{name}`).
    pub fn name(self) -> &'static str {
        use LayerTensor::*;
        match self {
            AttnNorm => "attn_norm",
            Wq => "wq",
            Wk => "wk",
            Wv => "wv",
            Wo => "wo",
            FfnNorm => "ffn_norm",
            W1 => "w1",
            W2 => "w2",
            W3 => "w3",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// A tensor of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorId {
    /// `tok_embeddings [vocab_size, n_embd]`.
    TokEmbeddings,
    /// `pos_embeddings [block_size, n_embd]` (gpt2 only).
    PosEmbeddings,
    /// `layers.{l}.{t}`.
    Layer(u32, LayerTensor),
    /// Final norm weight `norm [n_embd]`.
    Norm,
    /// Classifier `output [vocab_size, n_embd]` (only when embeddings are not tied).
    Output,
}

impl core::fmt::Display for TensorId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TensorId::TokEmbeddings => f.write_str("tok_embeddings"),
            TensorId::PosEmbeddings => f.write_str("pos_embeddings"),
            TensorId::Layer(l, t) => write!(f, "layers.{l}.{}", t.name()),
            TensorId::Norm => f.write_str("norm"),
            TensorId::Output => f.write_str("output"),
        }
    }
}

/// Shape of a tensor: `[rows, cols]`; vectors have `rows == 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Output dimension (1 for vectors).
    pub rows: usize,
    /// Input dimension.
    pub cols: usize,
    /// Whether the tensor is a 1-D vector (always stored as f32).
    pub vector: bool,
}

impl Shape {
    fn matrix(rows: u32, cols: u32) -> Self {
        Shape { rows: rows as usize, cols: cols as usize, vector: false }
    }
    fn vector(n: u32) -> Self {
        Shape { rows: 1, cols: n as usize, vector: true }
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.rows * self.cols
    }
}

/// Shape of `id` under `cfg`.
pub fn tensor_shape(cfg: &Config, id: TensorId) -> Shape {
    let hd = cfg.n_embd / cfg.n_head;
    match id {
        TensorId::TokEmbeddings | TensorId::Output => Shape::matrix(cfg.vocab_size, cfg.n_embd),
        TensorId::PosEmbeddings => Shape::matrix(cfg.block_size, cfg.n_embd),
        TensorId::Norm => Shape::vector(cfg.n_embd),
        TensorId::Layer(_, t) => match t {
            LayerTensor::AttnNorm | LayerTensor::FfnNorm => Shape::vector(cfg.n_embd),
            LayerTensor::Wq => Shape::matrix(cfg.n_head * hd, cfg.n_embd),
            LayerTensor::Wk | LayerTensor::Wv => Shape::matrix(cfg.n_kv_head * hd, cfg.n_embd),
            LayerTensor::Wo => Shape::matrix(cfg.n_embd, cfg.n_head * hd),
            LayerTensor::W1 | LayerTensor::W3 => Shape::matrix(cfg.n_hidden, cfg.n_embd),
            LayerTensor::W2 => Shape::matrix(cfg.n_embd, cfg.n_hidden),
        },
    }
}

/// Calls `f` for every tensor of `cfg` in file order.
pub fn for_each_tensor(cfg: &Config, mut f: impl FnMut(TensorId)) {
    f(TensorId::TokEmbeddings);
    if cfg.arch == Arch::Gpt2 {
        f(TensorId::PosEmbeddings);
    }
    for l in 0..cfg.n_layer {
        for &t in LayerTensor::all(cfg.arch) {
            f(TensorId::Layer(l, t));
        }
    }
    f(TensorId::Norm);
    if !cfg.tie_embeddings {
        f(TensorId::Output);
    }
}

/// Number of groups in a row of `cols` elements (the last group may be shorter).
pub fn groups_per_row(cols: usize, group_size: usize) -> usize {
    cols.div_ceil(group_size)
}

/// Bytes of one row of an int4 matrix: two values a byte, an odd row's last high nibble unused.
pub fn i4_row_bytes(cols: usize) -> usize {
    cols.div_ceil(2)
}

/// Bytes of the scales of a quantized `[rows, cols]` matrix, zero-padded to a multiple of 4 so
/// that the values after them start 4-byte aligned.
pub fn scale_region_bytes(rows: usize, cols: usize, group_size: usize, scales: ScaleDType) -> Option<usize> {
    let n = rows.checked_mul(groups_per_row(cols, group_size))?.checked_mul(scales.size())?;
    align_up(n, 4)
}

/// Bytes a tensor of `shape` takes in the data section (before alignment padding).
///
/// Vectors are f32. Quantized matrices store `rows * groups` scales of type `scales` (padded to a
/// multiple of 4 bytes), then the values: `rows * cols` i8, or `rows * ceil(cols / 2)` bytes of
/// int4 pairs.
pub fn tensor_bytes(shape: Shape, dtype: DType, group_size: usize, scales: ScaleDType) -> Option<usize> {
    let n = shape.rows.checked_mul(shape.cols)?;
    if shape.vector {
        return n.checked_mul(4);
    }
    match dtype {
        DType::F32 => n.checked_mul(4),
        DType::F16 => n.checked_mul(2),
        DType::I8 => scale_region_bytes(shape.rows, shape.cols, group_size, scales)?.checked_add(n),
        DType::I4 => {
            let values = shape.rows.checked_mul(i4_row_bytes(shape.cols))?;
            scale_region_bytes(shape.rows, shape.cols, group_size, scales)?.checked_add(values)
        }
    }
}

pub(crate) fn align_up(n: usize, a: usize) -> Option<usize> {
    Some(n.checked_add(a - 1)? / a * a)
}

/// Offsets of every tensor inside the data section, computed from the config alone.
///
/// All layers have the same size, so a layer's tensor is `layer0[t] + l * layer_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    tok_embeddings: usize,
    pos_embeddings: usize,
    layer0: [usize; 9],
    layer_stride: usize,
    norm: usize,
    output: usize,
    /// Total bytes of the data section (a multiple of [`TENSOR_ALIGN`]).
    pub data_len: usize,
}

impl Layout {
    /// Computes the layout for group scales of type `scales`; `Err` if any size overflows.
    pub fn new(cfg: &Config, scales: ScaleDType) -> Result<Self, Error> {
        let overflow = Error::InvalidConfig("model size overflows");
        let gs = cfg.group_size as usize;
        let size = |id: TensorId| -> Result<usize, Error> {
            let b = tensor_bytes(tensor_shape(cfg, id), cfg.dtype, gs, scales).ok_or(overflow)?;
            align_up(b, TENSOR_ALIGN).ok_or(overflow)
        };
        let mut off = 0usize;
        let mut take = |n: usize| -> Result<usize, Error> {
            let at = off;
            off = off.checked_add(n).ok_or(overflow)?;
            Ok(at)
        };
        let tok_embeddings = take(size(TensorId::TokEmbeddings)?)?;
        let pos_embeddings = if cfg.arch == Arch::Gpt2 { take(size(TensorId::PosEmbeddings)?)? } else { 0 };
        let mut layer0 = [0usize; 9];
        let mut layer_stride = 0usize;
        for &t in LayerTensor::all(cfg.arch) {
            layer0[t.index()] = layer_stride;
            layer_stride = layer_stride.checked_add(size(TensorId::Layer(0, t))?).ok_or(overflow)?;
        }
        let layers_start = take(layer_stride.checked_mul(cfg.n_layer as usize).ok_or(overflow)?)?;
        for o in layer0.iter_mut() {
            *o += layers_start;
        }
        let norm = take(size(TensorId::Norm)?)?;
        let output = if cfg.tie_embeddings { tok_embeddings } else { take(size(TensorId::Output)?)? };
        // Keep every later computation (offset + size) far from overflow on 32-bit targets.
        if off > isize::MAX as usize / 2 {
            return Err(overflow);
        }
        Ok(Layout { tok_embeddings, pos_embeddings, layer0, layer_stride, norm, output, data_len: off })
    }

    /// Offset of `id` inside the data section.
    pub fn offset(&self, id: TensorId) -> usize {
        match id {
            TensorId::TokEmbeddings => self.tok_embeddings,
            TensorId::PosEmbeddings => self.pos_embeddings,
            TensorId::Layer(l, t) => self.layer0[t.index()] + l as usize * self.layer_stride,
            TensorId::Norm => self.norm,
            TensorId::Output => self.output,
        }
    }
}

/// A parsed and validated file: header plus the data section, both borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    /// The header.
    pub header: Header<'a>,
    /// Storage type of the group scales (from the [`QuantHeader`]; f32 without one).
    pub scales: ScaleDType,
    /// The tensor data section (starts at a [`TENSOR_ALIGN`]-aligned file offset).
    pub data: &'a [u8],
    /// Tensor offsets.
    pub layout: Layout,
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Parses and validates a whole file: magic, version, checksum, header, tokenizer tables, sizes.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, Error> {
    parse_as::<crate::model::AnyShape>(bytes)
}

/// [`parse`] for models of shape `A` (see [`crate::Model::from_bytes_as`]).
pub(crate) fn parse_as<A: crate::model::Shape>(bytes: &[u8]) -> Result<Parsed<'_>, Error> {
    if bytes.len() < PREAMBLE_LEN + TRAILER_LEN {
        return Err(Error::TooShort { len: bytes.len() });
    }
    if bytes[..8] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = read_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }
    let body_len = bytes.len() - TRAILER_LEN;
    let stored = read_u32(bytes, body_len);
    let computed = CRC32.checksum(&bytes[..body_len]);
    if stored != computed {
        return Err(Error::Checksum { stored, computed });
    }
    let header_len = read_u32(bytes, 12) as usize;
    let data_offset = read_u32(bytes, 16) as usize;
    if read_u32(bytes, 20) != 0 {
        return Err(Error::Header("reserved preamble field is not zero"));
    }
    let header_end = PREAMBLE_LEN
        .checked_add(header_len)
        .ok_or(Error::Header("header length overflows"))?;
    if header_end > data_offset || data_offset > body_len {
        return Err(Error::Header("header or data offset points outside the file"));
    }
    if data_offset % TENSOR_ALIGN != 0 {
        return Err(Error::Header("data offset is not aligned"));
    }
    let (header, rest): (Header<'_>, &[u8]) =
        postcard::take_from_bytes(&bytes[PREAMBLE_LEN..header_end])
            .map_err(|_| Error::Header("header does not decode"))?;
    let scales = if rest.is_empty() {
        ScaleDType::F32
    } else {
        let (quant, rest): (QuantHeader, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|_| Error::Header("quantization header does not decode"))?;
        if !rest.is_empty() {
            return Err(Error::Header("trailing bytes after the header"));
        }
        quant.scales
    };
    header.config.validate()?;
    crate::tokenizer::validate::<A>(&header.tokenizer, header.config.vocab_size)?;
    let layout = Layout::new(&header.config, scales)?;
    let data = &bytes[data_offset..body_len];
    if data.len() != layout.data_len {
        return Err(Error::TensorData { expected: layout.data_len, found: data.len() });
    }
    Ok(Parsed { header, scales, data, layout })
}
