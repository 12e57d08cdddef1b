//! llama2.c's files, as its `export.py` and `tokenizer.py` write them.
//!
//! Checkpoints (all little-endian):
//! - legacy (version 0, `run.c`'s input): seven i32 `dim, hidden_dim, n_layers, n_heads,
//!   n_kv_heads, vocab_size, seq_len` (`vocab_size` negative when the classifier is not the token
//!   embedding), then f32 tensors: token embeddings, every layer's attention norm, wq, wk, wv, wo,
//!   ffn norm, w1, w2, w3 (each for all layers in turn), the final norm, the RoPE tables cos and
//!   sin `[seq_len, head_size / 2]` (unused: the runtime computes them), then the classifier when
//!   it is not shared;
//! - versions 1 and 2: a 256-byte header (u32 magic `0x616b3432` "ak42", i32 version, the seven
//!   i32, u8 shared classifier; version 2 adds i32 group size), then the f32 norms (all attention
//!   norms, all ffn norms, the final norm), then the matrices token embeddings, wq, wk, wv, wo, w1,
//!   w2, w3 (all layers of each) and the classifier when it is not shared: f32 in version 1; Q8_0
//!   in version 2, each matrix's int8 values followed by one f32 scale per `group_size`
//!   consecutive values of the flattened matrix.
//!
//! llama2.c fixes RMSNorm's epsilon at 1e-5 and RoPE's theta at 10000.
//!
//! `tokenizer.bin`: i32 longest piece length, then per token: f32 score, i32 length, the piece's
//! bytes (sentencepiece's `▁` already written as a space). Token 0 is `<unk>`, 1 BOS, 2 EOS, and
//! pieces spelled `<0xXX>` are byte tokens. llama2.c starts every text with BOS and ends
//! generation when BOS is sampled, and so does the converted model (its end-of-text token is BOS).

use alloc::collections::BTreeMap as HashMap;

use crate::prelude::*;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tinygpt_runtime::writer::{Piece, PieceKind, TokenizerData};
use tinygpt_runtime::{Arch, Config, DType};

use super::{Cursor, Imported, Weights};

/// The "ak42" magic of versioned checkpoints.
pub const MAGIC: u32 = 0x616b_3432;
/// Header length of versioned checkpoints.
pub const HEADER_LEN: usize = 256;
/// llama2.c's BOS token: texts start with it, and generation ends when it is sampled.
pub const BOS: u32 = 1;
/// llama2.c's end-of-sequence token.
pub const EOS: u32 = 2;
/// llama2.c's unknown token.
pub const UNK: u32 = 0;

/// A checkpoint's tensors and numbers, before the tokenizer is attached.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Architecture numbers (dtype f32 for float files, int8 with the file's group size for Q8_0).
    pub config: Config,
    /// Tensors by `.tgpt` name.
    pub tensors: HashMap<String, Weights>,
    /// `legacy float`, `version 1 float` or `version 2 Q8_0 (group N)`.
    pub kind: String,
}

struct Params {
    dim: usize,
    hidden: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: usize,
    vocab: usize,
    seq_len: usize,
    shared: bool,
}

impl Params {
    fn read(c: &mut Cursor<'_>, legacy: bool) -> Result<Self> {
        let mut v = [0i32; 7];
        for (i, x) in v.iter_mut().enumerate() {
            *x = c.i32(["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"][i])?;
        }
        let shared = if legacy { v[5] > 0 } else { false };
        if legacy {
            v[5] = v[5].checked_abs().unwrap_or(0);
        }
        let [dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len] = v;
        if v.iter().any(|&x| x <= 0) {
            bail!(
                "not a llama2.c checkpoint: dim {dim}, hidden_dim {hidden}, n_layers {n_layers}, n_heads {n_heads}, \
                 n_kv_heads {n_kv_heads}, vocab_size {vocab}, seq_len {seq_len} (every one must be positive)"
            );
        }
        let u = |x: i32| x as usize;
        Ok(Params {
            dim: u(dim),
            hidden: u(hidden),
            n_layers: u(n_layers),
            n_heads: u(n_heads),
            n_kv_heads: u(n_kv_heads),
            vocab: u(vocab),
            seq_len: u(seq_len),
            shared,
        })
    }

    fn config(&self, dtype: DType, group_size: u32) -> Result<Config> {
        let cfg = Config {
            arch: Arch::Llama,
            n_layer: self.n_layers as u32,
            n_head: self.n_heads as u32,
            n_kv_head: self.n_kv_heads as u32,
            n_embd: self.dim as u32,
            n_hidden: self.hidden as u32,
            block_size: self.seq_len as u32,
            vocab_size: self.vocab as u32,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            tie_embeddings: self.shared,
            dtype,
            group_size,
        };
        cfg.validate().map_err(|e| {
            anyhow!(
                "llama2.c checkpoint with dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, vocab_size {}, seq_len {}: {e}",
                self.dim, self.hidden, self.n_layers, self.n_heads, self.n_kv_heads, self.vocab, self.seq_len
            )
        })?;
        Ok(cfg)
    }

    /// The matrices in file order (name, element count), all layers of each kind in turn.
    fn matrices(&self) -> Vec<(String, usize)> {
        let (d, h, kv) = (self.dim, self.hidden, self.dim / self.n_heads * self.n_kv_heads);
        let mut v = vec![("tok_embeddings".to_owned(), self.vocab * d)];
        for (name, n) in [("wq", d * d), ("wk", kv * d), ("wv", kv * d), ("wo", d * d), ("w1", h * d), ("w2", d * h), ("w3", h * d)] {
            v.extend((0..self.n_layers).map(|l| (format!("layers.{l}.{name}"), n)));
        }
        if !self.shared {
            v.push(("output".to_owned(), self.vocab * d));
        }
        v
    }
}

/// Reads a checkpoint of any of the three versions.
pub fn read_checkpoint(bytes: &[u8]) -> Result<Checkpoint> {
    let mut c = Cursor::new(bytes);
    if bytes.len() >= 4 && u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) == MAGIC {
        c.u32("the magic")?;
        let version = c.i32("the version")?;
        ensure!(
            version == 1 || version == 2,
            "llama2.c checkpoint version {version}: this reads the legacy float file, version 1 (float) and version 2 (Q8_0)"
        );
        let mut p = Params::read(&mut c, false)?;
        p.shared = match c.u8("the shared-classifier flag")? {
            0 => false,
            1 => true,
            f => bail!("llama2.c checkpoint: shared-classifier flag {f} (0 or 1)"),
        };
        let group = if version == 2 { c.i32("the group size")? } else { 64 };
        ensure!(group > 0, "llama2.c version-2 checkpoint: group size {group}");
        let cfg = p.config(if version == 2 { DType::I8 } else { DType::F32 }, group as u32)?;
        let group = group as usize;
        let mats = p.matrices();
        // The whole size first, so that a short or long file is named before anything is read.
        let n_norm = ((2 * p.n_layers + 1) * p.dim) as u64;
        let n_mat: u64 = mats.iter().map(|m| m.1 as u64).sum();
        let expected = if version == 1 {
            HEADER_LEN as u64 + 4 * (n_norm + n_mat)
        } else {
            if let Some((name, n)) = mats.iter().find(|m| m.1 % group != 0) {
                bail!("llama2.c version-2 checkpoint: {name} has {n} values, not a multiple of the group size {group}");
            }
            HEADER_LEN as u64 + 4 * n_norm + n_mat + 4 * (n_mat / group as u64)
        };
        ensure!(
            bytes.len() as u64 == expected,
            "llama2.c version-{version} checkpoint of this shape is {expected} bytes, the file has {}",
            bytes.len()
        );
        c.at = HEADER_LEN;
        let mut tensors = HashMap::new();
        for name in ["attn_norm", "ffn_norm"] {
            for l in 0..p.n_layers {
                let n = format!("layers.{l}.{name}");
                tensors.insert(n.clone(), Weights::F32(c.f32s(p.dim, &n)?));
            }
        }
        tensors.insert("norm".to_owned(), Weights::F32(c.f32s(p.dim, "norm")?));
        for (name, n) in mats {
            let w = if version == 1 {
                Weights::F32(c.f32s(n, &name)?)
            } else {
                let values = c.i8s(n, &name)?;
                let scales = c.f32s(n / group, &name)?;
                if let Some(s) = scales.iter().find(|s| !s.is_finite()) {
                    bail!("llama2.c checkpoint: {name} has a scale {s}");
                }
                Weights::Q8 { values, scales, group }
            };
            tensors.insert(name, w);
        }
        let kind = if version == 1 { "version 1 float".to_owned() } else { format!("version 2 Q8_0 (group {group})") };
        return Ok(Checkpoint { config: cfg, tensors, kind });
    }

    let p = Params::read(&mut c, true).map_err(|e| {
        anyhow!("the input is not a GGUF file or a llama2.c checkpoint ({})", e.to_string().trim_start_matches("not a llama2.c checkpoint: "))
    })?;
    // A legacy file has no magic: a header whose numbers make no model is some other file.
    let cfg = p.config(DType::F32, 64).map_err(|e| {
        anyhow!("the input is not a GGUF file or a llama2.c checkpoint (read as a legacy {})", e.to_string().trim_start_matches("llama2.c "))
    })?;
    let (d, l) = (p.dim, p.n_layers);
    let mats = p.matrices();
    // In u64: the RoPE tables are outside the model's own (validated) sizes.
    let rope = 2 * p.seq_len as u64 * (d / p.n_heads / 2) as u64;
    let n_mat: u64 = mats.iter().map(|m| m.1 as u64).sum();
    let expected = 28 + 4 * (n_mat + ((2 * l + 1) * d) as u64 + rope);
    ensure!(
        bytes.len() as u64 == expected,
        "the input is not a GGUF file or a llama2.c checkpoint (as a legacy llama2.c checkpoint with dim {d}, \
         n_layers {l}, vocab_size {}, seq_len {} it would be {expected} bytes; it is {})",
        p.vocab,
        p.seq_len,
        bytes.len()
    );
    let mut tensors = HashMap::new();
    let mut mat = mats.into_iter();
    let mut next_mat = |c: &mut Cursor<'_>, tensors: &mut HashMap<String, Weights>| -> Result<()> {
        let (name, n) = mat.next().context("matrix list")?;
        tensors.insert(name.clone(), Weights::F32(c.f32s(n, &name)?));
        Ok(())
    };
    next_mat(&mut c, &mut tensors)?; // tok_embeddings
    let vec = |c: &mut Cursor<'_>, tensors: &mut HashMap<String, Weights>, name: &str| -> Result<()> {
        for i in 0..l {
            let n = format!("layers.{i}.{name}");
            tensors.insert(n.clone(), Weights::F32(c.f32s(d, &n)?));
        }
        Ok(())
    };
    vec(&mut c, &mut tensors, "attn_norm")?;
    for _ in 0..4 * l {
        next_mat(&mut c, &mut tensors)?; // wq, wk, wv, wo
    }
    vec(&mut c, &mut tensors, "ffn_norm")?;
    for _ in 0..3 * l {
        next_mat(&mut c, &mut tensors)?; // w1, w2, w3
    }
    tensors.insert("norm".to_owned(), Weights::F32(c.f32s(d, "norm")?));
    c.take(4 * rope as usize, "the RoPE tables")?;
    if !p.shared {
        next_mat(&mut c, &mut tensors)?;
    }
    Ok(Checkpoint { config: cfg, tensors, kind: "legacy float".to_owned() })
}

/// Reads `tokenizer.bin` for a vocabulary of `vocab_size` tokens.
pub fn read_tokenizer(bytes: &[u8], vocab_size: usize) -> Result<TokenizerData> {
    let mut c = Cursor::new(bytes);
    let max_len = c.i32("tokenizer.bin's header")?;
    ensure!(max_len > 0, "not a llama2.c tokenizer.bin: longest piece length {max_len}");
    let mut pieces = Vec::with_capacity(vocab_size.min(bytes.len() / 8));
    for i in 0..vocab_size {
        let what = format!("tokenizer.bin's token {i} (the checkpoint has {vocab_size} tokens)");
        let score = c.f32(&what)?;
        let len = c.i32(&what)?;
        ensure!(len >= 0, "tokenizer.bin: token {i} has length {len}");
        let bytes = c.take(len as usize, &what)?.to_vec();
        ensure!(!score.is_nan(), "tokenizer.bin: token {i} has a NaN score");
        let kind = if i as u32 == UNK || i as u32 == BOS || i as u32 == EOS {
            PieceKind::Control
        } else if byte_piece(&bytes).is_some() {
            PieceKind::Byte
        } else if bytes.is_empty() {
            bail!("tokenizer.bin: token {i} is empty");
        } else {
            PieceKind::Normal
        };
        let bytes = match byte_piece(&bytes) {
            Some(b) if kind == PieceKind::Byte => vec![b],
            _ => bytes,
        };
        pieces.push(Piece { bytes, score, kind });
    }
    ensure!(
        c.remaining() == 0,
        "tokenizer.bin has more than the checkpoint's {vocab_size} tokens ({} bytes left after them)",
        c.remaining()
    );
    ensure!(vocab_size > EOS as usize, "a llama2.c vocabulary needs <unk>, BOS and EOS (ids 0, 1, 2)");
    Ok(TokenizerData::SentencePiece {
        pieces,
        bos: Some(BOS),
        unk: Some(UNK),
        add_bos: true,
        space_prefix: true,
        eot: Some(BOS),
    })
}

/// The byte of a piece spelled `<0xXX>` (two hex digits).
pub fn byte_piece(p: &[u8]) -> Option<u8> {
    let s = core::str::from_utf8(p).ok()?;
    let hex = s.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Reads a checkpoint and its tokenizer.
pub fn read(checkpoint: &[u8], tokenizer: &[u8]) -> Result<Imported> {
    let ck = read_checkpoint(checkpoint)?;
    let tok = read_tokenizer(tokenizer, ck.config.vocab_size as usize)?;
    Ok(Imported { config: ck.config, tokenizer: tok, tensors: ck.tensors, source: format!("llama2.c {} checkpoint", ck.kind) })
}
