//! Converts a llama-architecture f32 `.tgpt` model into llama2.c's files, to run the same weights
//! with llama2.c's `run.c` (f32) and `runq.c` (int8) for speed and correctness comparisons
//! (`tools/bench-llama2c.sh`).
//!
//! cargo run -p tinygpt --example to-llama2c -- -i m.tgpt --run m.bin --runq mq.bin --tokenizer tok.bin
//!
//! Outputs, each optional:
//! - `--run`: the legacy `run.c` checkpoint: seven i32 (dim, hidden_dim, n_layers, n_heads,
//!   n_kv_heads, vocab_size, seq_len; vocab_size negative when the classifier is not the token
//!   embedding), then f32 tensors in llama2.c order: token embeddings, every layer's attention norm,
//!   wq, wk, wv, wo, ffn norm, w1, w2, w3 (each group for all layers in turn), the final norm, the
//!   RoPE tables cos and sin `[seq_len, head_size / 2]` (newer run.c skips them, older ones read
//!   them), then the classifier when it is not shared.
//! - `--runq`: `runq.c`'s version-2 file: a 256-byte header (u32 magic "ak42", i32 version 2, the
//!   same seven i32 with a positive vocab_size, u8 shared classifier, i32 group size, zero padding),
//!   the f32 norms (all attention norms, all ffn norms, the final norm), then every matrix as Q8_0:
//!   its int8 values, then one f32 scale per group of `group_size` consecutive values of the
//!   flattened matrix (`s = max|w| / 127`, `q = round(w / s)`, ties to even as `torch.round`).
//!   Order: token embeddings, wq, wk, wv, wo, w1, w2, w3 (all layers of each), then the classifier
//!   when it is not shared.
//! - `--tokenizer`: a `tokenizer.bin` (i32 max piece length, then per token: f32 score, i32 length,
//!   the piece's bytes) whose pieces are the model's own token bytes; BPE merges score by rank.
//! - `--id-tokenizer`: the same format with piece `[i]` for token `i`, so that llama2.c prints the
//!   token ids it generates (to count them and compare them exactly).
//!
//! `--greedy N` prints the runtime's greedy continuation (argmax of the f32 logits) after token 1,
//! the token llama2.c feeds first: the ids `run -t 0` generates, in the `[i]` form of the id
//! tokenizer. Like llama2.c it stops before a generated token 1. `--decode "[i][j]..."` prints the
//! text of those tokens as `tinygpt generate` prints it (to compare llama2.c's ids with its output).
//!
//! llama2.c hardcodes RMSNorm epsilon 1e-5 and RoPE theta 10000, so other values are refused.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};
use clap::Parser;
use tinygpt_runtime::format::{self, tensor_shape, LayerTensor, TensorId};
use tinygpt_runtime::sampler::argmax;
use tinygpt_runtime::writer::read_aligned;
use tinygpt_runtime::{Arch, Config, DType, Decoder, KvDType, Model, Session, TokenizerKind};

/// llama2.c's "ak42" magic of versioned files.
const RUNQ_MAGIC: u32 = 0x616b_3432;
/// Header size of version-2 files.
const RUNQ_HEADER_LEN: usize = 256;
/// The token llama2.c feeds at position 0, and whose generation ends its output.
const LLAMA2C_BOS: u32 = 1;

#[derive(Parser)]
#[command(about = "Convert a llama f32 .tgpt model into llama2.c's run.c / runq.c / tokenizer.bin files")]
struct Args {
    /// Input model (.tgpt, llama architecture, f32 weights)
    #[arg(short = 'i', long)]
    input: PathBuf,
    /// Write the legacy run.c checkpoint (f32) here
    #[arg(long)]
    run: Option<PathBuf>,
    /// Write the runq.c version-2 checkpoint (int8 Q8_0) here
    #[arg(long)]
    runq: Option<PathBuf>,
    /// Q8_0 group size of --runq; must divide every matrix's element count and the model width
    #[arg(long, default_value_t = 64)]
    group_size: usize,
    /// Write a tokenizer.bin with the model's token pieces here
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Write a tokenizer.bin whose pieces are "[id]" here
    #[arg(long)]
    id_tokenizer: Option<PathBuf>,
    /// Print the runtime's greedy continuation of N tokens after token 1, as "[id]" pieces
    #[arg(long, value_name = "N")]
    greedy: Option<usize>,
    /// Print the text of these token ids ("[i][j]...", as the id tokenizer prints them)
    #[arg(long, value_name = "IDS")]
    decode: Option<String>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let bytes = read_aligned(&a.input).with_context(|| format!("cannot read '{}'", a.input.display()))?;
    let model = Model::from_bytes(&bytes).map_err(|e| anyhow!("'{}' is not a usable model: {e}", a.input.display()))?;
    let data = format::parse(&bytes).map_err(|e| anyhow!("{e}"))?.data;
    let cfg = *model.config();
    let src = Source { cfg, data, layout: *model.layout() };

    if a.run.is_some() || a.runq.is_some() {
        check_llama2c_config(&cfg)?;
    }
    if let Some(p) = &a.run {
        write_file(p, &run_checkpoint(&src)?)?;
    }
    if let Some(p) = &a.runq {
        write_file(p, &runq_checkpoint(&src, a.group_size)?)?;
    }
    if a.tokenizer.is_some() || a.id_tokenizer.is_some() {
        let tok = model.tokenizer();
        let n = cfg.vocab_size;
        if let Some(p) = &a.tokenizer {
            let scores: Vec<f32> = (0..n).map(|i| piece_score(tok.kind(), i)).collect();
            let pieces: Vec<Vec<u8>> = (0..n).map(|i| tok.token_bytes(i).to_vec()).collect();
            write_file(p, &tokenizer_bin(&pieces, &scores))?;
        }
        if let Some(p) = &a.id_tokenizer {
            let pieces: Vec<Vec<u8>> = (0..n).map(|i| id_piece(i).into_bytes()).collect();
            write_file(p, &tokenizer_bin(&pieces, &vec![0.0; n as usize]))?;
        }
    }
    if let Some(n) = a.greedy {
        let ids = greedy_after_bos(&model, n)?;
        let line: String = ids.iter().map(|&i| id_piece(i)).collect();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").context("cannot write to stdout")?;
    }
    if let Some(ids) = &a.decode {
        let tok = model.tokenizer();
        let mut text = String::new();
        let mut dec = Decoder::new();
        for id in parse_id_pieces(ids)? {
            ensure!(id < cfg.vocab_size, "token {id} is outside the vocabulary");
            dec.push(&tok, id, &mut |s: &str| text.push_str(s));
        }
        dec.finish(&mut |s: &str| text.push_str(s));
        std::io::stdout().lock().write_all(text.as_bytes()).context("cannot write to stdout")?;
    }
    Ok(())
}

/// The f32 tensors of a model, read from its data section.
struct Source<'a> {
    cfg: Config,
    data: &'a [u8],
    layout: format::Layout,
}

impl Source<'_> {
    /// Tensor `id` as f32 values, row-major `[rows, cols]`.
    fn tensor(&self, id: TensorId) -> Result<Vec<f32>> {
        let shape = tensor_shape(&self.cfg, id);
        let off = self.layout.offset(id);
        let len = shape.numel() * 4;
        let raw = self.data.get(off..off + len).ok_or_else(|| anyhow!("tensor {id} lies outside the data section"))?;
        Ok(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    fn layer(&self, l: u32, t: LayerTensor) -> Result<Vec<f32>> {
        self.tensor(TensorId::Layer(l, t))
    }

    /// The classifier, when it is not the token embedding table.
    fn classifier(&self) -> Result<Option<Vec<f32>>> {
        if self.cfg.tie_embeddings {
            Ok(None)
        } else {
            self.tensor(TensorId::Output).map(Some)
        }
    }

    /// The seven i32 of llama2.c's `Config`.
    fn config_ints(&self, signed_vocab: bool) -> [i32; 7] {
        let c = &self.cfg;
        let vocab = c.vocab_size as i32;
        let vocab = if signed_vocab && !c.tie_embeddings { -vocab } else { vocab };
        [
            c.n_embd as i32,
            c.n_hidden as i32,
            c.n_layer as i32,
            c.n_head as i32,
            c.n_kv_head as i32,
            vocab,
            c.block_size as i32,
        ]
    }
}

/// llama2.c runs llama blocks with RMSNorm epsilon 1e-5 and RoPE theta 10000, both hardcoded.
fn check_llama2c_config(cfg: &Config) -> Result<()> {
    ensure!(cfg.arch == Arch::Llama, "llama2.c runs llama models; this one is {}", cfg.arch.name());
    ensure!(cfg.dtype == DType::F32, "the input must have f32 weights (this one has {})", cfg.dtype.name());
    ensure!(cfg.norm_eps == 1e-5, "llama2.c's RMSNorm epsilon is 1e-5; this model's is {}", cfg.norm_eps);
    ensure!(cfg.rope_theta == 10000.0, "llama2.c's RoPE theta is 10000; this model's is {}", cfg.rope_theta);
    ensure!(cfg.n_layer * cfg.n_embd <= i32::MAX as u32 && cfg.vocab_size <= i32::MAX as u32, "model too large");
    Ok(())
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The legacy (version 0) checkpoint `run.c` memory-maps.
fn run_checkpoint(src: &Source<'_>) -> Result<Vec<u8>> {
    let cfg = &src.cfg;
    let mut out = Vec::new();
    for v in src.config_ints(true) {
        put_i32(&mut out, v);
    }
    put_f32s(&mut out, &src.tensor(TensorId::TokEmbeddings)?);
    use LayerTensor::*;
    for t in [AttnNorm, Wq, Wk, Wv, Wo, FfnNorm, W1, W2, W3] {
        for l in 0..cfg.n_layer {
            put_f32s(&mut out, &src.layer(l, t)?);
        }
    }
    put_f32s(&mut out, &src.tensor(TensorId::Norm)?);
    let (cos, sin) = rope_tables(cfg);
    put_f32s(&mut out, &cos);
    put_f32s(&mut out, &sin);
    if let Some(w) = src.classifier()? {
        put_f32s(&mut out, &w);
    }
    Ok(out)
}

/// RoPE tables `[seq_len, head_size / 2]`: cos and sin of `pos * theta^(-2i / head_size)`.
fn rope_tables(cfg: &Config) -> (Vec<f32>, Vec<f32>) {
    let hd = cfg.head_dim();
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for pos in 0..cfg.block_size as usize {
        for i in 0..hd / 2 {
            let freq = 1.0 / f64::from(cfg.rope_theta).powf((2 * i) as f64 / hd as f64);
            let angle = pos as f64 * freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// The version-2 (Q8_0) checkpoint `runq.c` memory-maps.
fn runq_checkpoint(src: &Source<'_>, group_size: usize) -> Result<Vec<u8>> {
    let cfg = &src.cfg;
    ensure!(group_size >= 1, "the group size must be at least 1");
    ensure!(
        cfg.n_embd as usize % group_size == 0,
        "runq.c needs the model width ({}) to be a multiple of the group size ({group_size})",
        cfg.n_embd
    );
    if cfg.n_hidden as usize % group_size != 0 {
        eprintln!(
            "warning: hidden_dim {} is not a multiple of the group size {group_size}: runq.c quantizes \
             and multiplies only the first {} entries of each hidden vector, so its w2 matvec does less \
             work than the model needs and its logits are wrong",
            cfg.n_hidden,
            cfg.n_hidden as usize / group_size * group_size
        );
    }
    let mut out = Vec::new();
    out.extend_from_slice(&RUNQ_MAGIC.to_le_bytes());
    put_i32(&mut out, 2);
    for v in src.config_ints(false) {
        put_i32(&mut out, v);
    }
    out.push(u8::from(cfg.tie_embeddings));
    put_i32(&mut out, group_size as i32);
    out.resize(RUNQ_HEADER_LEN, 0);

    use LayerTensor::*;
    for t in [AttnNorm, FfnNorm] {
        for l in 0..cfg.n_layer {
            put_f32s(&mut out, &src.layer(l, t)?);
        }
    }
    put_f32s(&mut out, &src.tensor(TensorId::Norm)?);

    let mut put_q80 = |name: String, w: &[f32]| -> Result<()> {
        ensure!(
            w.len() % group_size == 0,
            "{name} has {} values, not a multiple of the group size {group_size} (runq.c maps whole groups)",
            w.len()
        );
        let (q, s) = quantize_q80(w, group_size);
        out.extend(q.iter().map(|&v| v as u8));
        put_f32s(&mut out, &s);
        Ok(())
    };
    put_q80("tok_embeddings".into(), &src.tensor(TensorId::TokEmbeddings)?)?;
    for t in [Wq, Wk, Wv, Wo, W1, W2, W3] {
        for l in 0..cfg.n_layer {
            put_q80(TensorId::Layer(l, t).to_string(), &src.layer(l, t)?)?;
        }
    }
    if let Some(w) = src.classifier()? {
        put_q80("output".into(), &w)?;
    }
    Ok(out)
}

/// Symmetric int8 over groups of consecutive values: `s = max|w| / 127`, `q = round(w / s)` with
/// ties to even (as `torch.round`); an all-zero group gets `s = 0`, `q = 0`.
fn quantize_q80(w: &[f32], group_size: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(w.len());
    let mut s = Vec::with_capacity(w.len() / group_size);
    for g in w.chunks(group_size) {
        let max = g.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = max / 127.0;
        s.push(scale);
        for &x in g {
            q.push(if scale == 0.0 { 0 } else { (x / scale).round_ties_even().clamp(-127.0, 127.0) as i8 });
        }
    }
    (q, s)
}

/// llama2.c's encoder merges the adjacent pair whose concatenation has the best score: merge `i`
/// of a byte-level BPE scores `-i`, so merges apply in rank order; the bytes score far below.
fn piece_score(kind: TokenizerKind, id: u32) -> f32 {
    match kind {
        TokenizerKind::ByteBpe if id >= 256 => -((id - 256) as f32),
        TokenizerKind::ByteBpe => -1e9,
        _ => 0.0,
    }
}

fn id_piece(id: u32) -> String {
    format!("[{id}]")
}

/// Parses "[i][j]..." (surrounding whitespace allowed).
fn parse_id_pieces(s: &str) -> Result<Vec<u32>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    let inner = inner.ok_or_else(|| anyhow!("expected token ids as \"[i][j]...\""))?;
    inner.split("][").map(|t| t.parse::<u32>().with_context(|| format!("bad token id '{t}'"))).collect()
}

/// `tokenizer.bin`: i32 max piece length, then per token f32 score, i32 length, bytes.
fn tokenizer_bin(pieces: &[Vec<u8>], scores: &[f32]) -> Vec<u8> {
    let max_len = pieces.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    put_i32(&mut out, max_len as i32);
    for (p, s) in pieces.iter().zip(scores) {
        out.extend_from_slice(&s.to_le_bytes());
        put_i32(&mut out, p.len() as i32);
        out.extend_from_slice(p);
    }
    out
}

/// Greedy continuation after token 1 at position 0, stopping before a generated token 1 or after
/// `n` tokens (the model's context at most), as `run -t 0 -n N` does.
fn greedy_after_bos(model: &Model<'_>, n: usize) -> Result<Vec<u32>> {
    let cfg = model.config();
    ensure!(cfg.vocab_size > LLAMA2C_BOS, "the vocabulary has no token {LLAMA2C_BOS}");
    let ctx = cfg.block_size as usize;
    let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
    let mut session = Session::new(model, &mut buf, ctx, KvDType::F32).map_err(|e| anyhow!("{e}"))?;
    let mut ids = Vec::new();
    let mut tok = LLAMA2C_BOS;
    for _ in 0..n.min(ctx) {
        let next = argmax(session.step(tok).map_err(|e| anyhow!("{e}"))?);
        if next == LLAMA2C_BOS {
            break;
        }
        ids.push(next);
        tok = next;
    }
    Ok(ids)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write '{}'", path.display()))
}
