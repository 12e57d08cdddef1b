//! Re-encodes a model's weights in another storage type: every matrix is read back as f32 (an
//! int8 or int4 matrix dequantized, `q · scale`) and written again in `--dtype`, with group scales
//! stored as `--scales`. The architecture, tokenizer and metadata are kept. Used to measure what
//! int4 and f16 group scales cost in validation loss on a trained model whose f32 weights are not
//! kept (`runtime/FORMAT.md`, "Group scales").
//!
//! cargo run --release -p tinygpt --example requantize -- -i models/shakespeare-board.tgpt \
//!     --dtype int4 --scales f16 -o board-int4.tgpt

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use tinygpt::synth::parse_dtype;
use tinygpt_runtime::format::{self, for_each_tensor, tensor_bytes, tensor_shape, ScaleDType};
use tinygpt_runtime::weights::{F16Matrix, F32Matrix, I4Matrix, I8Matrix, Matrix};
use tinygpt_runtime::writer::{encode_model_scaled, read_aligned, write_atomic, MetaData, TokenizerData};
use tinygpt_runtime::{DType, Model, TokenizerKind};

#[derive(Parser)]
#[command(about = "Re-encode a .tgpt model's weights in another storage type")]
struct Args {
    /// Input model
    #[arg(short = 'i', long)]
    input: PathBuf,
    /// Storage type of the output's matrices: f32, f16, int8 or int4
    #[arg(long)]
    dtype: String,
    /// Storage type of int8/int4 group scales: f16 or f32
    #[arg(long, default_value = "f16")]
    scales: String,
    /// Group size of the output (default: the input's)
    #[arg(long)]
    group_size: Option<u32>,
    /// Output file
    #[arg(short = 'o', long)]
    output: PathBuf,
}

/// Every row of a matrix in storage type `M`, as f32.
fn rows<'a, M: Matrix<'a>>(bytes: &'a [u8], rows: usize, cols: usize, gs: usize, scales: ScaleDType) -> Vec<f32> {
    let m = M::from_bytes(bytes, rows, cols, gs, scales);
    let mut out = vec![0f32; rows * cols];
    for (r, o) in out.chunks_exact_mut(cols.max(1)).enumerate() {
        m.row(r, o);
    }
    out
}

/// The smallest normal f16, 2^-14.
fn half_min_positive() -> f32 {
    f32::from_bits((127 - 14) << 23)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let dtype = parse_dtype(&a.dtype)?;
    let scales = match a.scales.as_str() {
        "f16" => ScaleDType::F16,
        "f32" => ScaleDType::F32,
        s => bail!("unknown scale type '{s}' (expected f16 or f32)"),
    };
    let bytes = read_aligned(&a.input).with_context(|| format!("cannot read '{}'", a.input.display()))?;
    let p = format::parse(&bytes).map_err(|e| anyhow!("'{}': {e}", a.input.display()))?;
    let cfg = p.header.config;
    let gs = cfg.group_size as usize;
    let mut weights = HashMap::new();
    for_each_tensor(&cfg, |id| {
        let s = tensor_shape(&cfg, id);
        let off = p.layout.offset(id);
        let len = tensor_bytes(s, cfg.dtype, gs, p.scales).unwrap_or(0);
        let t = &p.data[off..off + len];
        let v = if s.vector {
            t.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        } else {
            match cfg.dtype {
                DType::F32 => rows::<F32Matrix>(t, s.rows, s.cols, gs, p.scales),
                DType::F16 => rows::<F16Matrix>(t, s.rows, s.cols, gs, p.scales),
                DType::I8 => rows::<I8Matrix>(t, s.rows, s.cols, gs, p.scales),
                DType::I4 => rows::<I4Matrix>(t, s.rows, s.cols, gs, p.scales),
            }
        };
        weights.insert(id.to_string(), v);
    });
    let th = p.header.tokenizer;
    let model = Model::from_bytes(&bytes).map_err(|e| anyhow!("'{}': {e}", a.input.display()))?;
    let tok = model.tokenizer();
    let first_special = tok.vocab_size() - tok.n_special();
    let tokenizer = match th.kind {
        TokenizerKind::Char => {
            let mut chars = Vec::new();
            for id in 0..first_special as u32 {
                let s = std::str::from_utf8(tok.token_bytes(id)).context("the vocabulary is not UTF-8")?;
                chars.extend(s.chars());
            }
            TokenizerData::Char { chars }
        }
        TokenizerKind::ByteBpe => {
            let w: Vec<u32> = th.merges.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            TokenizerData::ByteBpe { merges: w.chunks_exact(2).map(|p| (p[0], p[1])).collect() }
        }
        TokenizerKind::SentencePiece => bail!("sentencepiece models are re-encoded by `tinygpt convert` from their source file, not here"),
    };
    let specials: Vec<String> = (first_special..tok.vocab_size())
        .map(|id| String::from_utf8_lossy(tok.token_bytes(id as u32)).into_owned())
        .collect();
    let specials: Vec<&str> = specials.iter().map(String::as_str).collect();
    if th.eot.is_some() {
        bail!("models with an end-of-text token are not supported (the writer does not store one)");
    }
    let mut out_cfg = cfg;
    out_cfg.dtype = dtype;
    if let Some(g) = a.group_size {
        out_cfg.group_size = g;
    }
    // How many groups get an f16 scale below f16's normal range (fewer significant bits).
    if let Some(levels) = dtype.levels() {
        let (mut n, mut sub) = (0usize, 0usize);
        let g = out_cfg.group_size as usize;
        for_each_tensor(&out_cfg, |id| {
            let s = tensor_shape(&out_cfg, id);
            if s.vector {
                return;
            }
            for row in weights[&id.to_string()].chunks(s.cols) {
                for grp in row.chunks(g) {
                    let scale = grp.iter().fold(0.0f32, |m, &v| m.max(v.abs())) / levels as f32;
                    n += 1;
                    sub += (scale > 0.0 && scale < half_min_positive()) as usize;
                }
            }
        });
        println!("{sub} of {n} groups have a scale below f16's normal range (2^-14)");
    }
    let meta = MetaData::from_file(&p.header.meta);
    let out = encode_model_scaled(&out_cfg, scales, &tokenizer, &specials, &meta, &|n| weights.get(n).cloned())
        .map_err(|e| anyhow!("cannot encode the model: {e}"))?;
    write_atomic(&a.output, &out).with_context(|| format!("cannot write '{}'", a.output.display()))?;
    println!("{} ({} bytes): {} weights, {} scales, group size {}", a.output.display(), out.len(), dtype.name(), scales.name(), out_cfg.group_size);
    Ok(())
}
