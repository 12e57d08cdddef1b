//! Writes a `.tgpt` model with random weights, for exercising the firmware on shapes the
//! trained models do not cover.
//!
//! ```text
//! make-model --out FILE [--arch gpt2|llama] [--layers N] [--heads N] [--kv-heads N] [--embd N]
//!            [--hidden N] [--block N] [--dtype i8|f16|f32] [--group N] [--seed N] [--name TEXT]
//!            [--untied] [--chat]
//! ```
//!
//! Defaults: gpt2, 2 layers, 4 heads (KV heads = heads), 64 wide, hidden 4x wide, block 64,
//! int8 in groups of 32, classifier tied to the token embeddings (`--untied`: separate).
//!
//! The vocabulary is Tiny Shakespeare's 65 characters; `--chat` appends the four chat tokens
//! (`tinygpt_runtime::chat::CHAT_SPECIALS`), making a chat model. Weights are uniform in ±1.5/√fan_in
//! (a seeded xorshift generator, so a command line always gives the same file); norm weights
//! are 1. That spreads the logits over a few nats, so the sampled text depends on the seed.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tinygpt_runtime::chat::CHAT_SPECIALS;
use tinygpt_runtime::writer::{encode_model_with_specials, tensor_layout, write_atomic, MetaData, TokenizerData};
use tinygpt_runtime::{Arch, Config, DType};

const CHARS: &str = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn main() {
    if let Err(e) = run() {
        eprintln!("make-model: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut arch = Arch::Gpt2;
    let (mut layers, mut heads, mut kv_heads, mut embd, mut hidden, mut block) = (2u32, 4u32, 0u32, 64u32, 0u32, 64u32);
    let (mut dtype, mut group, mut seed) = (DType::I8, 32u32, 1u64);
    let mut name = String::from("random");
    let mut tie = true;
    let mut chat = false;
    let mut out: Option<PathBuf> = None;

    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        let num = |v: String| -> Result<u64> { v.parse().with_context(|| format!("{flag} {v}: not a number")) };
        match flag.as_str() {
            "--out" => out = Some(value()?.into()),
            "--arch" => {
                arch = match value()?.as_str() {
                    "gpt2" => Arch::Gpt2,
                    "llama" => Arch::Llama,
                    v => bail!("--arch {v}: expected gpt2 or llama"),
                }
            }
            "--dtype" => {
                dtype = match value()?.as_str() {
                    "i8" | "int8" => DType::I8,
                    "f16" => DType::F16,
                    "f32" => DType::F32,
                    v => bail!("--dtype {v}: expected i8, f16 or f32"),
                }
            }
            "--layers" => layers = num(value()?)? as u32,
            "--heads" => heads = num(value()?)? as u32,
            "--kv-heads" => kv_heads = num(value()?)? as u32,
            "--embd" => embd = num(value()?)? as u32,
            "--hidden" => hidden = num(value()?)? as u32,
            "--block" => block = num(value()?)? as u32,
            "--group" => group = num(value()?)? as u32,
            "--seed" => seed = num(value()?)?,
            "--name" => name = value()?,
            "--untied" => tie = false,
            "--chat" => chat = true,
            "-h" | "--help" => {
                println!("usage: make-model --out FILE [--arch gpt2|llama] [--layers N] [--heads N] [--kv-heads N] [--embd N] [--hidden N] [--block N] [--dtype i8|f16|f32] [--group N] [--seed N] [--name TEXT] [--untied] [--chat]");
                return Ok(());
            }
            f => bail!("unknown argument {f}"),
        }
    }
    let out = out.context("--out FILE is required")?;
    if kv_heads == 0 {
        kv_heads = heads;
    }
    if hidden == 0 {
        hidden = 4 * embd;
    }
    let specials: &[&str] = if chat { &CHAT_SPECIALS } else { &[] };
    let cfg = Config {
        arch,
        n_layer: layers,
        n_head: heads,
        n_kv_head: kv_heads,
        n_embd: embd,
        n_hidden: hidden,
        block_size: block,
        vocab_size: (CHARS.chars().count() + specials.len()) as u32,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_embeddings: tie,
        dtype,
        group_size: group,
    };
    let shapes: std::collections::HashMap<String, Vec<usize>> = tensor_layout(&cfg).into_iter().collect();
    let get = |tensor: &str| -> Option<Vec<f32>> {
        let shape = shapes.get(tensor)?;
        let n: usize = shape.iter().product();
        if shape.len() == 1 {
            return Some(vec![1.0; n]);
        }
        // A per-tensor stream: the seed mixed with a hash of the name.
        let mut state = tensor.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
        }) | 1;
        let bound = 1.5 / (shape[shape.len() - 1] as f32).sqrt();
        Some(
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let u = (state >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
                    (2.0 * u - 1.0) * bound
                })
                .collect(),
        )
    };
    let meta = MetaData {
        name,
        corpus: "none (random weights)".into(),
        trainer_version: concat!("make-model ", env!("CARGO_PKG_VERSION")).into(),
        ..MetaData::default()
    };
    let tok = TokenizerData::Char { chars: CHARS.chars().collect() };
    let bytes = encode_model_with_specials(&cfg, &tok, specials, &meta, &get).map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
