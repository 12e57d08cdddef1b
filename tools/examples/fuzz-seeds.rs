//! Writes the seed corpus of the `.tgpt` loader's fuzz target: small valid models of every kind the
//! reader accepts (both architectures; f32, f16 and int8 weights; character and byte-level BPE
//! tokenizers; base and chat vocabularies; tied and untied classifiers; group sizes that do and do
//! not divide the rows).
//!
//! cargo run -p tinygpt --example fuzz-seeds -- runtime/fuzz/corpus/loader \
//!     --gguf runtime/fuzz/corpus/gguf --llama2c runtime/fuzz/corpus/llama2c
//!
//! The loader's seeds also include sentencepiece models converted from the GGUF and llama2.c
//! seeds. `--gguf`: small GGUF files (F32, F16 and Q8_0 matrices; tied and untied classifiers;
//! grouped and plain KV heads). `--llama2c`: the `llama2c` target's inputs, a u32 length, a
//! `tokenizer.bin` of that length, then a checkpoint (legacy, version 1, version 2 Q8_0; tied and
//! untied).

use std::path::PathBuf;

use anyhow::{Context, Result};
use tinygpt::convert::{self, sample};
use tinygpt::synth::{Spec, Vocab};
use tinygpt_runtime::{Arch, DType};

fn main() -> Result<()> {
    let usage = "usage: fuzz-seeds DIR [--gguf DIR] [--llama2c DIR]";
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let dir = args.first().context(usage)?.clone();
    let opt = |name: &str| args.iter().position(|a| a.as_os_str() == name).and_then(|i| args.get(i + 1)).cloned();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (gguf_dir, l2c_dir) = (opt("--gguf"), opt("--llama2c"));
    for d in [&gguf_dir, &l2c_dir].into_iter().flatten() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut m = 0;
    for (i, (n_kv, shared)) in [(1, true), (2, false)].into_iter().enumerate() {
        let shape = sample::Shape { dim: 32, hidden: 64, n_layers: 1, n_heads: 2, n_kv_heads: n_kv, vocab: 32, seq_len: 8, shared };
        let tie = if shared { "tied" } else { "untied" };
        for (ty, tname) in [(0, "f32"), (1, "f16"), (8, "q8_0")] {
            let g = sample::gguf(&shape, ty, i as u64);
            if let Some(d) = &gguf_dir {
                std::fs::write(d.join(format!("llama-{tname}-{tie}.gguf")), &g)?;
            }
            let imported = convert::read(&g, None)?;
            let bytes = convert::encode(&imported, convert::default_dtype(&imported), 32)?;
            std::fs::write(dir.join(format!("sentencepiece-gguf-{tname}-{tie}.tgpt")), &bytes)?;
            m += 1;
        }
        let tok = sample::tokenizer_bin(shape.vocab);
        for (version, vname) in [(0, "legacy"), (1, "v1"), (2, "v2-q8_0")] {
            let ck = sample::llama2c(&shape, version, 32, i as u64);
            if let Some(d) = &l2c_dir {
                let mut input = (tok.len() as u32).to_le_bytes().to_vec();
                input.extend(&tok);
                input.extend(&ck);
                std::fs::write(d.join(format!("llama2c-{vname}-{tie}.bin")), &input)?;
            }
            let imported = convert::read(&ck, Some(&tok))?;
            let bytes = convert::encode(&imported, convert::default_dtype(&imported), 32)?;
            std::fs::write(dir.join(format!("sentencepiece-llama2c-{vname}-{tie}.tgpt")), &bytes)?;
            m += 1;
        }
    }
    println!("wrote {m} converted sentencepiece models to {}", dir.display());
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
