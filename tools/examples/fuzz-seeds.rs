//! Writes the seed corpus of the `.tgpt` loader's fuzz target: small valid models of every kind the
//! reader accepts (both architectures; f32, f16 and int8 weights; character and byte-level BPE
//! tokenizers; base and chat vocabularies; tied and untied classifiers; group sizes that do and do
//! not divide the rows).
//!
//! cargo run -p tinygpt --example fuzz-seeds -- runtime/fuzz/corpus/loader

use std::path::PathBuf;

use anyhow::{Context, Result};
use tinygpt::synth::{Spec, Vocab};
use tinygpt_runtime::{Arch, DType};

fn main() -> Result<()> {
    let dir: PathBuf = std::env::args_os().nth(1).map(PathBuf::from).context("usage: fuzz-seeds DIR")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut n = 0;
    for arch in [Arch::Gpt2, Arch::Llama] {
        for dtype in [DType::F32, DType::F16, DType::I8, DType::I4] {
            for (vocab, vname) in [(Vocab::Chars("\n abcdefgh".into()), "chars"), (Vocab::Bpe(6), "bpe")] {
                for chat in [false, true] {
                    for (tie, group) in [(true, 8), (false, 5)] {
                        // As small as the format allows, so that mutations stay cheap to run.
                        let spec = Spec {
                            arch,
                            n_layer: 1,
                            n_head: 2,
                            n_kv_head: if arch == Arch::Llama { 1 } else { 2 },
                            n_embd: 8,
                            n_hidden: 12,
                            block_size: 8,
                            vocab: vocab.clone(),
                            dtype,
                            group_size: group,
                            tie_embeddings: tie,
                            seed: n,
                            chat,
                        };
                        let bytes = spec.build()?;
                        let name = format!(
                            "{}-{}-{vname}-{}-{}.tgpt",
                            arch.name(),
                            dtype.name(),
                            if chat { "chat" } else { "base" },
                            if tie { "tied" } else { "untied" }
                        );
                        std::fs::write(dir.join(&name), &bytes).with_context(|| format!("cannot write {name}"))?;
                        n += 1;
                    }
                }
            }
        }
    }
    println!("wrote {n} seed models to {}", dir.display());
    Ok(())
}
