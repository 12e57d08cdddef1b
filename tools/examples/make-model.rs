//! Writes a synthetic `.tgpt` model (random weights) for tests, cross-target checks and benchmarks.
//!
//! cargo run -p tinygpt --example make-model -- --shape 260k --arch llama --dtype int8 -o m.tgpt

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tinygpt::synth::{parse_arch, parse_dtype, Spec, Vocab};

#[derive(Parser)]
#[command(about = "Write a synthetic .tgpt model with random weights")]
struct Args {
    /// Shape preset: tiny (about 30K params, chars), 1m (about 1M params, chars), 260k (llama2.c's 260K shape, BPE 512)
    #[arg(long, default_value = "tiny")]
    shape: String,
    /// gpt2 or llama
    #[arg(long, default_value = "llama")]
    arch: String,
    /// f32, f16, int8 or int4
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Byte-level BPE with this many merges instead of the preset's vocabulary
    #[arg(long)]
    bpe_merges: Option<u32>,
    /// int8/int4 group size (overrides the preset)
    #[arg(long)]
    group_size: Option<u32>,
    /// Seed of the random weights (overrides the preset)
    #[arg(long)]
    seed: Option<u64>,
    /// Append the four chat tokens (a chat model's vocabulary)
    #[arg(long)]
    chat: bool,
    /// Output file
    #[arg(short = 'o', long)]
    output: PathBuf,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let (arch, dtype) = (parse_arch(&a.arch)?, parse_dtype(&a.dtype)?);
    let mut spec = match a.shape.as_str() {
        "tiny" => Spec::tiny(arch, dtype),
        "1m" => Spec::shape_1m(arch, dtype),
        "260k" => Spec::shape_260k(arch, dtype),
        other => anyhow::bail!("unknown shape '{other}' (expected tiny, 1m or 260k)"),
    };
    if let Some(m) = a.bpe_merges {
        spec.vocab = Vocab::Bpe(m);
    }
    if let Some(g) = a.group_size {
        spec.group_size = g;
    }
    if let Some(s) = a.seed {
        spec.seed = s;
    }
    spec.chat = a.chat;
    let bytes = spec.build()?;
    tinygpt_runtime::writer::write_atomic(&a.output, &bytes)
        .with_context(|| format!("cannot write '{}'", a.output.display()))?;
    Ok(())
}
