//! Importing models from other runtimes' files into `.tgpt`: llama2.c checkpoints (`llama2c.rs`,
//! with its `tokenizer.bin`) and GGUF files of the llama architecture (`gguf.rs`).
//!
//! Every reader takes the input's bytes and returns an [`Imported`] model or one error line that
//! names what was found; nothing in an input makes a reader panic or allocate more than the input
//! can describe (`runtime/fuzz` runs both readers on arbitrary bytes).

pub mod gguf;
pub mod llama2c;
pub mod sample;

use alloc::collections::BTreeMap as HashMap;

use crate::prelude::*;

use anyhow::{bail, Result};
use tinygpt_runtime::format::{for_each_tensor, tensor_shape};
use tinygpt_runtime::format::ScaleDType;
use tinygpt_runtime::writer::{encode_model_tensors, MetaData, TensorData, TokenizerData};
use tinygpt_runtime::{Config, DType};

/// A weight as the input stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// Plain values.
    F32(Vec<f32>),
    /// Q8_0: symmetric int8 in groups of `group` consecutive values of the flattened tensor, one
    /// scale per group (`value = q · scale`).
    Q8 {
        /// The int8 values.
        values: Vec<i8>,
        /// One scale per group.
        scales: Vec<f32>,
        /// Group length.
        group: usize,
    },
}

impl Weights {
    /// The values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Weights::F32(v) => v.clone(),
            Weights::Q8 { values, scales, group } => {
                values.iter().enumerate().map(|(i, &q)| q as f32 * scales[i / group]).collect()
            }
        }
    }
    fn is_q8(&self) -> bool {
        matches!(self, Weights::Q8 { .. })
    }
}

/// A model read from another format: the configuration (its `dtype` and `group_size` are the
/// input's own), the tokenizer, and every tensor under its `.tgpt` name.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Architecture numbers.
    pub config: Config,
    /// The tokenizer.
    pub tokenizer: TokenizerData,
    /// Tensors by `.tgpt` name (`tok_embeddings`, `layers.0.wq`, ...).
    pub tensors: HashMap<String, Weights>,
    /// What the input was, for the model's metadata and the summary line.
    pub source: String,
}

/// Recognizes the input by its first bytes and reads it. `tokenizer` is llama2.c's
/// `tokenizer.bin` (llama2.c checkpoints carry none; GGUF files carry theirs).
pub fn read(bytes: &[u8], tokenizer: Option<&[u8]>) -> Result<Imported> {
    if bytes.starts_with(b"GGUF") {
        if tokenizer.is_some() {
            bail!("--tokenizer is for llama2.c checkpoints: a GGUF file carries its own tokenizer");
        }
        return gguf::read(bytes);
    }
    if bytes.starts_with(&tinygpt_runtime::MAGIC) {
        bail!("the input is already a .tgpt model");
    }
    let Some(tok) = tokenizer else {
        // Say what the file is before asking for the tokenizer.
        llama2c::read_checkpoint(bytes)?;
        bail!("a llama2.c checkpoint has no tokenizer: give its tokenizer.bin with --tokenizer");
    };
    llama2c::read(bytes, tok)
}

/// The dtype a conversion writes when none is asked for: int8 when the input has Q8_0 weights,
/// else f32.
pub fn default_dtype(m: &Imported) -> DType {
    if m.tensors.values().any(Weights::is_q8) {
        DType::I8
    } else {
        m.config.dtype
    }
}

/// Builds the `.tgpt` file. With `dtype` int8, Q8_0 weights whose groups are the rows' own groups
/// (the group size divides the row length and equals `group_size`) are stored exactly as they
/// are; every other weight is quantized by the writer from its f32 values.
pub fn encode(m: &Imported, dtype: DType, group_size: u32) -> Result<Vec<u8>> {
    let mut cfg = m.config;
    cfg.dtype = dtype;
    cfg.group_size = group_size;
    let mut cols = HashMap::new();
    for_each_tensor(&cfg, |id| {
        let s = tensor_shape(&cfg, id);
        cols.insert(id.to_string(), (s.cols, s.vector));
    });
    let get = |name: &str| -> Option<TensorData> {
        let w = m.tensors.get(name)?;
        let &(c, vector) = cols.get(name)?;
        match w {
            Weights::Q8 { values, scales, group }
                if dtype == DType::I8 && !vector && *group == group_size as usize && c % group == 0 =>
            {
                Some(TensorData::I8 { scales: scales.clone(), values: values.clone() })
            }
            _ => Some(TensorData::F32(w.to_f32())),
        }
    };
    let meta = MetaData {
        name: m.source.clone(),
        corpus: String::new(),
        trainer_version: format!("tinygpt convert {}", env!("CARGO_PKG_VERSION")),
        ..MetaData::default()
    };
    // int8: f32 group scales, so Q8_0 weights keep their scales exactly (llama2.c's are f32);
    // int4 (always requantized): f16 scales, the writer's default.
    let scales = if dtype == DType::I4 { ScaleDType::F16 } else { ScaleDType::F32 };
    Ok(encode_model_tensors(&cfg, scales, &m.tokenizer, &[], &meta, &get)?)
}

/// Little-endian reader over untrusted bytes: every read is bounds-checked and names what was cut.
pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            bail!("the file ends inside {what} (offset {}, {n} bytes needed, {} left)", self.at, self.remaining());
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    pub(crate) fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(self.u32(what)? as i32)
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    pub(crate) fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_bits(self.u32(what)?))
    }
    /// `n` f32 values.
    pub(crate) fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>> {
        let b = self.take(n.saturating_mul(4), what)?;
        Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }
    /// `n` i8 values.
    pub(crate) fn i8s(&mut self, n: usize, what: &str) -> Result<Vec<i8>> {
        Ok(self.take(n, what)?.iter().map(|&b| b as i8).collect())
    }
}
