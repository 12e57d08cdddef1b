//! GGUF files (llama.cpp's format, versions 2 and 3) of the llama architecture with F32, F16 and
//! Q8_0 tensors and a sentencepiece (`llama`) tokenizer in the metadata.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count; the
//! metadata as (string key, u32 type, value); the tensor infos as (string name, u32 n_dims, u64
//! dims, u32 type, u64 offset); the data section at the next multiple of `general.alignment`
//! (default 32), each tensor at its offset inside it. Strings are a u64 length and UTF-8 bytes.
//! Dimension 0 is the fastest-varying: a matrix `[rows, cols]` has dims `[cols, rows]`. Q8_0
//! stores blocks of 32 values along each row: an f16 scale, then 32 i8.
//!
//! llama's rotary embedding in GGUF rotates adjacent pairs, as the runtime does, so the query and
//! key matrices are used as they are.

use alloc::collections::BTreeMap as HashMap;

use crate::prelude::*;

use anyhow::{anyhow, bail, ensure, Context, Result};
use half::f16;
use tinygpt_runtime::writer::{Piece, PieceKind, TokenizerData};
use tinygpt_runtime::{Arch, Config, DType};

use super::llama2c::byte_piece;
use super::{Cursor, Imported, Weights};

/// Q8_0's block length.
pub const Q8_0_BLOCK: usize = 32;

/// A metadata value.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// Any integer type, widened.
    Int(i128),
    /// f32 or f64.
    Float(f64),
    /// bool.
    Bool(bool),
    /// string.
    Str(String),
    /// array.
    Array(Vec<Value>),
}

/// A value as messages name it: `42`, `0.5`, `true`, `"text"`, `an array of 3`. (Written out
/// rather than derived: the derived `Debug` is several KB of the static binary.)
impl core::fmt::Debug for Value {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
            Value::Array(v) => write!(f, "an array of {}", v.len()),
        }
    }
}

/// ggml's tensor type names by number (for messages).
fn ggml_type_name(t: u32) -> String {
    const NAMES: [&str; 42] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
        "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16",
        "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4",
        "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0",
    ];
    match NAMES.get(t as usize) {
        Some(n) => format!("{n} (type {t})"),
        None => format!("type {t}"),
    }
}

fn string(c: &mut Cursor<'_>, what: &str) -> Result<String> {
    let n = c.u64(what)?;
    let n = usize::try_from(n).ok().filter(|&n| n <= c.remaining()).ok_or_else(|| anyhow!("{what}: a string of {n} bytes runs past the end of the file"))?;
    let b = c.take(n, what)?;
    String::from_utf8(b.to_vec()).map_err(|_| anyhow!("{what} is not UTF-8"))
}

fn value(c: &mut Cursor<'_>, ty: u32, what: &str, depth: usize) -> Result<Value> {
    Ok(match ty {
        0 => Value::Int(c.u8(what)? as i128),
        1 => Value::Int(c.u8(what)? as i8 as i128),
        2 => Value::Int(u16::from_le_bytes(c.take(2, what)?.try_into().expect("2")) as i128),
        3 => Value::Int(i16::from_le_bytes(c.take(2, what)?.try_into().expect("2")) as i128),
        4 => Value::Int(c.u32(what)? as i128),
        5 => Value::Int(c.i32(what)? as i128),
        6 => Value::Float(c.f32(what)? as f64),
        7 => match c.u8(what)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => bail!("{what}: bool value {b}"),
        },
        8 => Value::Str(string(c, what)?),
        9 => {
            ensure!(depth == 0, "{what}: an array of arrays");
            let ety = c.u32(what)?;
            let n = c.u64(what)?;
            // Every element takes at least one byte, so the count is bounded by the file.
            let n = usize::try_from(n).ok().filter(|&n| n <= c.remaining()).ok_or_else(|| anyhow!("{what}: an array of {n} elements runs past the end of the file"))?;
            let mut v = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                v.push(value(c, ety, what, depth + 1)?);
            }
            Value::Array(v)
        }
        10 => Value::Int(c.u64(what)? as i128),
        11 => Value::Int(c.u64(what)? as i64 as i128),
        12 => Value::Float(f64::from_bits(c.u64(what)?)),
        t => bail!("{what}: unknown metadata type {t}"),
    })
}

/// One tensor's description.
#[derive(Debug, Clone)]
struct TensorInfo {
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

/// A parsed GGUF file: metadata and tensor infos, with the data section.
pub struct Gguf<'a> {
    /// Format version.
    pub version: u32,
    /// Metadata by key.
    pub meta: HashMap<String, Value>,
    tensors: HashMap<String, TensorInfo>,
    data: &'a [u8],
}

impl<'a> Gguf<'a> {
    /// Parses the header, metadata and tensor infos.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut c = Cursor::new(bytes);
        ensure!(c.take(4, "the magic")? == b"GGUF", "not a GGUF file");
        let version = c.u32("the version")?;
        ensure!(version == 2 || version == 3, "GGUF version {version}: this reads versions 2 and 3");
        let n_tensors = c.u64("the tensor count")?;
        let n_kv = c.u64("the metadata count")?;
        // Each entry takes at least 8 bytes.
        ensure!(n_kv <= (c.remaining() / 8) as u64, "GGUF metadata count {n_kv} does not fit in the file");
        ensure!(n_tensors <= (c.remaining() / 8) as u64, "GGUF tensor count {n_tensors} does not fit in the file");
        let mut meta = HashMap::new();
        for i in 0..n_kv {
            let key = string(&mut c, &format!("metadata key {i}"))?;
            let ty = c.u32(&key)?;
            let v = value(&mut c, ty, &key, 0)?;
            meta.insert(key, v);
        }
        let mut tensors = HashMap::new();
        for i in 0..n_tensors {
            let name = string(&mut c, &format!("tensor name {i}"))?;
            let nd = c.u32(&name)?;
            ensure!((1..=4).contains(&nd), "GGUF tensor {name} has {nd} dimensions");
            let mut dims = Vec::new();
            for _ in 0..nd {
                dims.push(c.u64(&name)?);
            }
            let ty = c.u32(&name)?;
            let offset = c.u64(&name)?;
            if tensors.insert(name.clone(), TensorInfo { dims, ty, offset }).is_some() {
                bail!("GGUF tensor {name} is listed twice");
            }
        }
        let align = match meta.get("general.alignment") {
            None => 32,
            Some(Value::Int(a)) if *a > 0 && *a <= 1 << 16 && (*a & (*a - 1)) == 0 => *a as usize,
            Some(v) => bail!("GGUF general.alignment is {v:?}, not a power of two"),
        };
        let start = c.at.div_ceil(align) * align;
        ensure!(start <= bytes.len(), "GGUF data section starts past the end of the file");
        Ok(Gguf { version, meta, tensors, data: &bytes[start..] })
    }

    fn int(&self, key: &str) -> Result<Option<i128>> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i)),
            Some(v) => bail!("GGUF metadata {key} is {v:?}, not an integer"),
        }
    }
    fn dim(&self, key: &str) -> Result<u32> {
        let v = self.int(key)?.with_context(|| format!("GGUF metadata {key} is missing"))?;
        u32::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| anyhow!("GGUF metadata {key} is {v}"))
    }
    fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(Value::Float(f)) => Ok(Some(*f)),
            Some(v) => bail!("GGUF metadata {key} is {v:?}, not a number"),
        }
    }
    fn str(&self, key: &str) -> Result<Option<&str>> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => bail!("GGUF metadata {key} is {v:?}, not a string"),
        }
    }
    fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.meta.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => bail!("GGUF metadata {key} is {v:?}, not a bool"),
        }
    }
    fn array(&self, key: &str) -> Result<&[Value]> {
        match self.meta.get(key) {
            None => bail!("GGUF metadata {key} is missing"),
            Some(Value::Array(a)) => Ok(a),
            Some(v) => bail!("GGUF metadata {key} is {}, not an array", kind_name(v)),
        }
    }

    /// Reads tensor `name` of shape `[rows, cols]` (`rows == 0`: a vector of `cols`).
    fn tensor(&self, name: &str, rows: usize, cols: usize) -> Result<Weights> {
        let t = self.tensors.get(name).with_context(|| format!("GGUF tensor {name} is missing"))?;
        let want: Vec<u64> = if rows == 0 { vec![cols as u64] } else { vec![cols as u64, rows as u64] };
        let mut dims = t.dims.clone();
        while dims.len() > want.len() && dims.last() == Some(&1) {
            dims.pop();
        }
        ensure!(dims == want, "GGUF tensor {name} has dims {:?}, the model needs {want:?}", t.dims);
        let n = rows.max(1) * cols;
        let bytes = match t.ty {
            0 => n * 4,
            1 => n * 2,
            8 => {
                ensure!(cols % Q8_0_BLOCK == 0, "GGUF tensor {name}: Q8_0 rows of {cols} values");
                n / Q8_0_BLOCK * 34
            }
            ty => bail!("GGUF tensor {name} has type {}: this reads F32, F16 and Q8_0", ggml_type_name(ty)),
        };
        let at = usize::try_from(t.offset).ok().filter(|&o| o <= self.data.len() && self.data.len() - o >= bytes);
        let at = at.ok_or_else(|| anyhow!("GGUF tensor {name} (offset {}, {bytes} bytes) runs past the end of the file", t.offset))?;
        let b = &self.data[at..at + bytes];
        Ok(match t.ty {
            0 => Weights::F32(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect()),
            1 => Weights::F32(b.chunks_exact(2).map(|c| f16::from_le_bytes(c.try_into().expect("2")).to_f32()).collect()),
            _ => {
                let mut values = Vec::with_capacity(n);
                let mut scales = Vec::with_capacity(n / Q8_0_BLOCK);
                for blk in b.chunks_exact(34) {
                    let s = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                    ensure!(s.is_finite(), "GGUF tensor {name} has a scale {s}");
                    scales.push(s);
                    values.extend(blk[2..].iter().map(|&q| q as i8));
                }
                Weights::Q8 { values, scales, group: Q8_0_BLOCK }
            }
        })
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Bool(_) => "a bool",
        Value::Str(_) => "a string",
        Value::Array(_) => "an array",
    }
}

/// Reads a llama GGUF file.
pub fn read(bytes: &[u8]) -> Result<Imported> {
    let g = Gguf::parse(bytes)?;
    let arch = g.str("general.architecture")?.unwrap_or("(none)");
    ensure!(arch == "llama", "GGUF architecture {arch}: this reads llama");
    let key = |k: &str| format!("llama.{k}");
    let n_embd = g.dim(&key("embedding_length"))?;
    let n_head = g.dim(&key("attention.head_count"))?;
    let n_kv_head = if g.meta.contains_key(&key("attention.head_count_kv")) { g.dim(&key("attention.head_count_kv"))? } else { n_head };
    if let Some(rot) = g.int(&key("rope.dimension_count"))? {
        ensure!(
            n_head > 0 && n_embd % n_head == 0 && rot == (n_embd / n_head) as i128,
            "GGUF llama.rope.dimension_count {rot}: this reads RoPE over the whole head ({} values)",
            n_embd / n_head.max(1)
        );
    }
    if let Some(t) = g.str(&key("rope.scaling.type"))? {
        ensure!(t == "none", "GGUF llama.rope.scaling.type {t}: this reads models without RoPE scaling");
    }
    let tokens = g.array("tokenizer.ggml.tokens")?;
    let model = g.str("tokenizer.ggml.model")?.unwrap_or("(none)");
    ensure!(model == "llama", "GGUF tokenizer {model}: this reads the sentencepiece tokenizer of llama (\"llama\")");
    let vocab = tokens.len();
    if let Some(v) = g.int(&key("vocab_size"))? {
        ensure!(v == vocab as i128, "GGUF llama.vocab_size {v} but tokenizer.ggml.tokens has {vocab} tokens");
    }
    let eps = g.float(&key("attention.layer_norm_rms_epsilon"))?.context("GGUF metadata llama.attention.layer_norm_rms_epsilon is missing")?;
    let theta = g.float(&key("rope.freq_base"))?.unwrap_or(10000.0);
    let tie = !g.tensors.contains_key("output.weight");
    let cfg = Config {
        arch: Arch::Llama,
        n_layer: g.dim(&key("block_count"))?,
        n_head,
        n_kv_head,
        n_embd,
        n_hidden: g.dim(&key("feed_forward_length"))?,
        block_size: g.dim(&key("context_length"))?,
        vocab_size: u32::try_from(vocab).unwrap_or(u32::MAX),
        norm_eps: eps as f32,
        rope_theta: theta as f32,
        tie_embeddings: tie,
        dtype: DType::F32,
        group_size: Q8_0_BLOCK as u32,
    };
    cfg.validate().map_err(|e| anyhow!("GGUF llama model: {e}"))?;
    let tokenizer = read_tokenizer(&g, tokens)?;

    let (d, h, kv) = (n_embd as usize, cfg.n_hidden as usize, cfg.kv_dim());
    let mut tensors = HashMap::new();
    let mut put = |ours: String, theirs: String, rows: usize, cols: usize| -> Result<()> {
        tensors.insert(ours, g.tensor(&theirs, rows, cols)?);
        Ok(())
    };
    put("tok_embeddings".into(), "token_embd.weight".into(), vocab, d)?;
    for l in 0..cfg.n_layer {
        let b = |n: &str| format!("blk.{l}.{n}.weight");
        let o = |n: &str| format!("layers.{l}.{n}");
        put(o("attn_norm"), b("attn_norm"), 0, d)?;
        put(o("wq"), b("attn_q"), d, d)?;
        put(o("wk"), b("attn_k"), kv, d)?;
        put(o("wv"), b("attn_v"), kv, d)?;
        put(o("wo"), b("attn_output"), d, d)?;
        put(o("ffn_norm"), b("ffn_norm"), 0, d)?;
        put(o("w1"), b("ffn_gate"), h, d)?;
        put(o("w2"), b("ffn_down"), d, h)?;
        put(o("w3"), b("ffn_up"), h, d)?;
    }
    put("norm".into(), "output_norm.weight".into(), 0, d)?;
    if !tie {
        put("output".into(), "output.weight".into(), vocab, d)?;
    }
    let name = g.str("general.name")?.unwrap_or("");
    let source = if name.is_empty() { format!("GGUF v{} llama", g.version) } else { format!("{name} (GGUF v{} llama)", g.version) };
    Ok(Imported { config: cfg, tokenizer, tensors, source })
}

fn read_tokenizer(g: &Gguf<'_>, tokens: &[Value]) -> Result<TokenizerData> {
    let vocab = tokens.len();
    let scores = g.array("tokenizer.ggml.scores")?;
    let types = g.array("tokenizer.ggml.token_type")?;
    ensure!(
        scores.len() == vocab && types.len() == vocab,
        "GGUF tokenizer: {vocab} tokens, {} scores, {} token types",
        scores.len(),
        types.len()
    );
    let id = |k: &str| -> Result<Option<u32>> {
        match g.int(k)? {
            None => Ok(None),
            Some(i) if (0..vocab as i128).contains(&i) => Ok(Some(i as u32)),
            Some(i) => bail!("GGUF {k} {i} is outside the {vocab} tokens"),
        }
    };
    let mut pieces = Vec::with_capacity(vocab);
    for i in 0..vocab {
        let Value::Str(t) = &tokens[i] else { bail!("GGUF tokenizer: token {i} is not a string") };
        let score = match &scores[i] {
            Value::Float(f) if !f.is_nan() => *f as f32,
            v => bail!("GGUF tokenizer: token {i} has score {v:?}"),
        };
        let ty = match &types[i] {
            Value::Int(t) => *t,
            v => bail!("GGUF tokenizer: token {i} has type {v:?}"),
        };
        let (bytes, kind) = match ty {
            1 | 4 => (t.replace('\u{2581}', " ").into_bytes(), PieceKind::Normal),
            2 | 3 | 5 => (t.as_bytes().to_vec(), PieceKind::Control),
            6 => {
                let b = byte_piece(t.as_bytes()).with_context(|| format!("GGUF tokenizer: byte token {i} is {t:?}, not <0xXX>"))?;
                (vec![b], PieceKind::Byte)
            }
            t => bail!("GGUF tokenizer: token {i} has type {t}"),
        };
        ensure!(!(kind == PieceKind::Normal && bytes.is_empty()), "GGUF tokenizer: token {i} is empty");
        pieces.push(Piece { bytes, score, kind });
    }
    let bos = id("tokenizer.ggml.bos_token_id")?;
    let add_bos = g.bool("tokenizer.ggml.add_bos_token", true)? && bos.is_some();
    Ok(TokenizerData::SentencePiece {
        pieces,
        bos,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        add_bos,
        space_prefix: g.bool("tokenizer.ggml.add_space_prefix", true)?,
        eot: id("tokenizer.ggml.eos_token_id")?,
    })
}
