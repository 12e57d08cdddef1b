//! Writing `.tgpt` files with the runtime's writer, and running them with the runtime itself
//! (validation loss per dtype, samples, parity checks).

use anyhow::{anyhow, Context, Result};
use tinygpt_runtime::writer::{self, AlignedBytes, MetaData};
use tinygpt_runtime::{eval_loss, generate, DType, KvDType, Model, Sampler, SamplerConfig, Session};

use crate::data::TextTokenizer;
use crate::model::Gpt;

/// Parses `f32`, `f16` or `int8`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "int8" | "i8" => Ok(DType::I8),
        other => Err(anyhow!("unknown dtype {other:?}: expected f32, f16 or int8")),
    }
}

/// Encodes `model` as a complete `.tgpt` file in `dtype` (int8: groups of `group_size`), with the
/// tokenizer's special tokens (a chat model's `<|im_start|>` ...).
pub fn encode(model: &Gpt, tok: &TextTokenizer, meta: &MetaData, dtype: DType, group_size: u32) -> Result<AlignedBytes> {
    let cfg = model.dims.runtime_config(dtype, group_size);
    let weights: std::collections::HashMap<String, Vec<f32>> = writer::tensor_layout(&cfg)
        .into_iter()
        .filter_map(|(name, _)| model.tensor_f32(&name).map(|w| (name, w)))
        .collect();
    let get = |name: &str| weights.get(name).cloned();
    let specials: Vec<&str> = tok.specials().iter().map(String::as_str).collect();
    let bytes = writer::encode_model_with_specials(&cfg, &tok.to_runtime(), &specials, meta, &get).map_err(|e| anyhow!("cannot encode the model: {e}"))?;
    Ok(AlignedBytes::new(&bytes))
}

/// Loads file bytes with the runtime.
pub fn load(bytes: &[u8]) -> Result<Model<'_>> {
    Model::from_bytes(bytes).map_err(|e| anyhow!("the runtime rejects the file: {e}"))
}

/// Mean cross-entropy (nats/token) the runtime measures with `eval_loss` over `tokens`
/// (windows of `block_size`), with an f32 KV cache.
pub fn runtime_val_loss(bytes: &[u8], tokens: &[u32]) -> Result<f64> {
    let model = load(bytes)?;
    let ctx = model.config().block_size as usize;
    let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
    let mut s = Session::new(&model, &mut buf, ctx, KvDType::F32).map_err(|e| anyhow!("{e}"))?;
    let (sum, n) = eval_loss(&mut s, tokens).map_err(|e| anyhow!("runtime evaluation failed: {e}"))?;
    anyhow::ensure!(n > 0, "nothing to evaluate");
    Ok(sum / n as f64)
}

/// Runtime logits after each token of `tokens` (fed from position 0).
pub fn runtime_logits(bytes: &[u8], tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
    let model = load(bytes)?;
    let ctx = model.config().block_size as usize;
    let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
    let mut s = Session::new(&model, &mut buf, ctx, KvDType::F32).map_err(|e| anyhow!("{e}"))?;
    tokens
        .iter()
        .map(|&t| s.step(t).map(|l| l.to_vec()).map_err(|e| anyhow!("{e}")))
        .collect()
}

/// Generates with the runtime's `generate` (the CLI's and the firmware's loop): returns the
/// prompt's text followed by the generated text.
pub fn runtime_generate(
    bytes: &[u8],
    prompt: &[u32],
    n_new: usize,
    temperature: f32,
    top_k: u32,
    seed: u64,
) -> Result<String> {
    let model = load(bytes)?;
    let ctx = model.config().block_size as usize;
    let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
    let mut s = Session::new(&model, &mut buf, ctx, KvDType::F32).map_err(|e| anyhow!("{e}"))?;
    let mut sampler = Sampler::new(SamplerConfig { temperature, top_k, top_p: 1.0 }, seed);
    let mut text = String::new();
    generate(&mut s, &mut sampler, prompt, n_new, |piece| text.push_str(piece)).map_err(|e| anyhow!("{e}"))?;
    Ok(text)
}

/// Validation losses of one export.
#[derive(Debug, Clone, Copy, Default)]
pub struct DTypeLosses {
    pub f32: Option<f64>,
    pub f16: Option<f64>,
    pub i8: Option<f64>,
}

/// Measures the runtime's validation loss for each dtype (in parallel threads).
pub fn losses_per_dtype(
    model: &Gpt,
    tok: &TextTokenizer,
    meta: &MetaData,
    group_size: u32,
    tokens: &[u32],
    dtypes: &[DType],
) -> Result<DTypeLosses> {
    let files: Vec<(DType, AlignedBytes)> =
        dtypes.iter().map(|&d| encode(model, tok, meta, d, group_size).map(|b| (d, b))).collect::<Result<_>>()?;
    let results: Vec<(DType, Result<f64>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = files
            .iter()
            .map(|(d, b)| (*d, sc.spawn(move || runtime_val_loss(b, tokens))))
            .collect();
        handles
            .into_iter()
            .map(|(d, h)| (d, h.join().unwrap_or_else(|_| Err(anyhow!("evaluation thread panicked")))))
            .collect()
    });
    let mut out = DTypeLosses::default();
    for (d, r) in results {
        let v = r.with_context(|| format!("{} evaluation", d.name()))?;
        match d {
            DType::F32 => out.f32 = Some(v),
            DType::F16 => out.f16 = Some(v),
            DType::I8 => out.i8 = Some(v),
        }
    }
    Ok(out)
}
