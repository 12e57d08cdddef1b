//! `tinygpt inspect`: architecture, tokenizer (and whether it is a chat model), sizes, memory per
//! context length, metadata.

use core::fmt::Write as _;

use anyhow::{Context, Result};
use tinygpt::prelude::*;
use tinygpt_runtime::format::{for_each_tensor, i4_row_bytes, scale_region_bytes, tensor_shape, FORMAT_VERSION};
use tinygpt_runtime::chat::{IM_END, IM_SEP, IM_START, PAD};
use tinygpt_runtime::{Arch, ChatTokens, DType, KvDType, TokenizerKind};

use crate::cli::InspectArgs;
use crate::modelfile::ModelFile;
use crate::out::{human_bytes, thousands};
use crate::sys::{self, Write as _};

pub fn run(a: &InspectArgs) -> Result<()> {
    let file = ModelFile::open(&a.model)?;
    let model = file.model()?;
    let cfg = *model.config();
    let meta = model.metadata();
    let tok = model.tokenizer();
    let mut s = String::new();
    let kv = |s: &mut String, k: &str, v: &dyn core::fmt::Display| {
        let _ = writeln!(s, "{k:<16}{v}");
    };

    kv(&mut s, "file", &format!("{} ({} bytes)", file.path(), thousands(file.len() as u64)));
    kv(&mut s, "format", &format!(".tgpt version {FORMAT_VERSION}"));
    kv(&mut s, "arch", &cfg.arch.name());
    let scale_type = model.scale_dtype().name();
    let dtype = match cfg.dtype {
        DType::I8 => format!("int8, symmetric, group size {}, {scale_type} scales", cfg.group_size),
        DType::I4 => format!("int4 (−7..=7, two a byte), symmetric, group size {}, {scale_type} scales", cfg.group_size),
        d => d.name().to_owned(),
    };
    kv(&mut s, "dtype", &dtype);
    kv(&mut s, "n_layer", &cfg.n_layer);
    kv(&mut s, "n_head", &cfg.n_head);
    kv(&mut s, "n_kv_head", &cfg.n_kv_head);
    kv(&mut s, "n_embd", &cfg.n_embd);
    kv(&mut s, "head_dim", &cfg.head_dim());
    kv(&mut s, "n_hidden", &cfg.n_hidden);
    kv(&mut s, "block_size", &cfg.block_size);
    kv(&mut s, "vocab_size", &cfg.vocab_size);
    kv(&mut s, "norm_eps", &cfg.norm_eps);
    if cfg.arch == Arch::Llama {
        kv(&mut s, "rope_theta", &cfg.rope_theta);
    }
    kv(&mut s, "tie_embeddings", &cfg.tie_embeddings);
    if !cfg.dtype.quantized() {
        kv(&mut s, "group_size", &format!("{} (unused: weights are not quantized)", cfg.group_size));
    }
    let tk = match tok.kind() {
        TokenizerKind::Char => format!("characters, {} tokens", tok.vocab_size()),
        TokenizerKind::ByteBpe => {
            format!(
                "byte-level BPE, {} tokens (256 bytes + {} merges)",
                tok.vocab_size(),
                tok.vocab_size().saturating_sub(256)
            )
        }
        TokenizerKind::SentencePiece => match tok.bos() {
            Some(b) => format!("sentencepiece, {} tokens (BOS {b})", tok.vocab_size()),
            None => format!("sentencepiece, {} tokens", tok.vocab_size()),
        },
    };
    kv(&mut s, "tokenizer", &tk);
    if let Some(e) = tok.eot() {
        kv(&mut s, "end of text", &format!("token {e}"));
    }
    let chat = match ChatTokens::find(&tok) {
        Some(c) => format!(
            "yes ({IM_START} id {}, {IM_SEP} id {}, {IM_END} id {}, {PAD} id {})",
            c.im_start, c.im_sep, c.im_end, c.pad
        ),
        None => "no (base model)".to_owned(),
    };
    kv(&mut s, "chat", &chat);
    kv(&mut s, "parameters", &thousands(model.param_count()));

    // Bytes by storage type, from the tensor shapes.
    let (mut matrix, mut scales, mut vectors) = (0u64, 0u64, 0u64);
    for_each_tensor(&cfg, |id| {
        let sh = tensor_shape(&cfg, id);
        let n = sh.numel() as u64;
        if sh.vector {
            vectors += 4 * n;
        } else {
            match cfg.dtype {
                DType::F32 => matrix += 4 * n,
                DType::F16 => matrix += 2 * n,
                DType::I8 | DType::I4 => {
                    matrix += if cfg.dtype == DType::I8 { n } else { (sh.rows * i4_row_bytes(sh.cols)) as u64 };
                    let sb = scale_region_bytes(sh.rows, sh.cols, cfg.group_size as usize, model.scale_dtype());
                    scales += sb.unwrap_or(0) as u64;
                }
            }
        }
    });
    let _ = writeln!(s, "\nweights by type");
    let row = |s: &mut String, what: &str, b: u64| {
        let _ = writeln!(s, "  {what:<24}{:>14} bytes  ({})", thousands(b), human_bytes(b));
    };
    row(&mut s, &format!("{} matrices", cfg.dtype.name()), matrix);
    if cfg.dtype.quantized() {
        row(&mut s, &format!("{scale_type} {} group scales", cfg.dtype.name()), scales);
    }
    row(&mut s, "f32 norm vectors", vectors);
    let rest = (file.len() as u64).saturating_sub(matrix + scales + vectors);
    row(&mut s, "header, padding, crc", rest);

    let _ = writeln!(s, "\nRAM for a session (activations + KV cache), bytes");
    let _ = writeln!(s, "  {:>8}  {:>14}  {:>14}  {:>14}", "context", "kv f32", "kv f16", "kv int8");
    for ctx in context_rows(cfg.block_size as usize) {
        let cell = |k| thousands(model.session_bytes(ctx, k) as u64);
        let _ = writeln!(
            s,
            "  {ctx:>8}  {:>14}  {:>14}  {:>14}",
            cell(KvDType::F32),
            cell(KvDType::F16),
            cell(KvDType::I8)
        );
    }

    let _ = writeln!(s, "\nmetadata");
    let opt = |v: Option<f32>| v.map_or("-".to_owned(), |x| format!("{x:.4}"));
    kv(&mut s, "  name", &printable(meta.name));
    kv(&mut s, "  corpus", &printable(meta.corpus));
    kv(&mut s, "  train_steps", &thousands(meta.train_steps));
    kv(&mut s, "  tokens_seen", &thousands(meta.tokens_seen));
    kv(
        &mut s,
        "  val_loss",
        &format!(
            "f32 {}  f16 {}  int8 {}  (nats/token)",
            opt(meta.val_loss_f32),
            opt(meta.val_loss_f16),
            opt(meta.val_loss_i8)
        ),
    );
    kv(&mut s, "  written by", &printable(meta.trainer_version));

    sys::stdout().write_all(s.as_bytes()).context("cannot write to stdout")?;
    Ok(())
}

/// Context lengths for the RAM table: powers of two from 64 up to `block_size`, and `block_size`.
fn context_rows(block: usize) -> Vec<usize> {
    let mut v: Vec<usize> =
        core::iter::successors(Some(64usize), |&c| c.checked_mul(2)).take_while(|&c| c < block).collect();
    if v.len() > 8 {
        v.drain(..v.len() - 8);
    }
    v.push(block);
    v
}

/// Metadata strings come from the file: show control characters escaped, so a hostile file cannot
/// drive the terminal.
pub fn printable(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_rows_end_at_block_size() {
        assert_eq!(context_rows(32), vec![32]);
        assert_eq!(context_rows(64), vec![64]);
        assert_eq!(context_rows(256), vec![64, 128, 256]);
        assert_eq!(context_rows(300), vec![64, 128, 256, 300]);
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }
}
