//! Shared test helpers: random models made by the writer, and an independent reference forward pass.
#![allow(dead_code)]

use std::collections::HashMap;

use tinygpt_runtime::format::{for_each_tensor, tensor_shape};
use tinygpt_runtime::format::ScaleDType;
use tinygpt_runtime::writer::{encode_model, encode_model_scaled, AlignedBytes, MetaData, TokenizerData};
use tinygpt_runtime::{Arch, Config, DType};

/// A tiny deterministic generator for test weights (independent of the runtime's RNG).
pub struct TestRng(u64);
impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let x = self.0;
        (x ^ (x >> 33)).wrapping_mul(0xff51afd7ed558ccd) ^ (x >> 29)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

pub fn config(arch: Arch, dtype: DType) -> Config {
    Config {
        arch,
        n_layer: 2,
        n_head: 4,
        n_kv_head: if arch == Arch::Llama { 2 } else { 4 },
        n_embd: 48,
        n_hidden: 100,
        block_size: 64,
        vocab_size: 70,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_embeddings: arch == Arch::Gpt2,
        dtype,
        group_size: 32,
    }
}

pub fn char_tokenizer(n: usize) -> TokenizerData {
    // Printable ASCII first, then some multi-byte characters.
    let mut chars: Vec<char> = (' '..='~').collect();
    chars.extend("\néàüßñøåçΩλπ€→♥".chars());
    chars.truncate(n);
    assert_eq!(chars.len(), n, "test vocabulary too small");
    TokenizerData::Char { chars }
}

/// Random weights for every tensor of `cfg`, scaled so activations stay O(1) and logits vary.
pub fn random_weights(cfg: &Config, seed: u64) -> HashMap<String, Vec<f32>> {
    let mut rng = TestRng::new(seed);
    let mut w = HashMap::new();
    for_each_tensor(cfg, |id| {
        let s = tensor_shape(cfg, id);
        let v: Vec<f32> = if s.vector {
            (0..s.numel()).map(|_| 1.0 + 0.2 * rng.uniform()).collect()
        } else {
            let a = 1.7 / (s.cols as f32).sqrt();
            (0..s.numel()).map(|_| a * rng.uniform()).collect()
        };
        w.insert(id.to_string(), v);
    });
    w
}

pub fn build(cfg: &Config, tok: &TokenizerData, w: &HashMap<String, Vec<f32>>) -> AlignedBytes {
    let meta = MetaData { name: "test".into(), corpus: "random".into(), trainer_version: "test".into(), ..Default::default() };
    let bytes = encode_model(cfg, tok, &meta, &|n| w.get(n).cloned()).expect("encode");
    AlignedBytes::new(&bytes)
}

/// [`build`] with the group scales stored as `scales`.
pub fn build_scaled(cfg: &Config, scales: ScaleDType, tok: &TokenizerData, w: &HashMap<String, Vec<f32>>) -> AlignedBytes {
    let meta = MetaData { name: "test".into(), corpus: "random".into(), trainer_version: "test".into(), ..Default::default() };
    let bytes = encode_model_scaled(cfg, scales, tok, &[], &meta, &|n| w.get(n).cloned()).expect("encode");
    AlignedBytes::new(&bytes)
}

/// How the reference treats weights and matvec inputs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RefMode {
    /// Exact f32 weights, f64 math.
    Exact,
    /// Weights rounded to f16, f64 math.
    F16,
    /// Weights quantized per group to int8 with f16 scales (the writer's default), every matvec
    /// input quantized to int8 in groups of the same size (f32 scales).
    Int8 { group: usize },
    /// As `Int8` with f32 weight scales.
    Int8F32 { group: usize },
    /// Weights quantized per group to int4 (−7..=7) with f16 scales, inputs as for `Int8`.
    Int4 { group: usize },
    /// As `Int4` with f32 weight scales.
    Int4F32 { group: usize },
}

impl RefMode {
    /// (levels, group size, f16 scales) of the quantized modes.
    fn quant(self) -> Option<(f32, usize, bool)> {
        match self {
            RefMode::Exact | RefMode::F16 => None,
            RefMode::Int8 { group } => Some((127.0, group, true)),
            RefMode::Int8F32 { group } => Some((127.0, group, false)),
            RefMode::Int4 { group } => Some((7.0, group, true)),
            RefMode::Int4F32 { group } => Some((7.0, group, false)),
        }
    }
}

fn quant_group(x: &[f64]) -> Vec<f64> {
    // Independent re-statement of the symmetric int8 scheme of activations (and of f32-scale
    // int8 weights): s = max|x|/127, q = round(x · 127/max|x|).
    let amax = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        return vec![0.0; x.len()];
    }
    let s = (amax as f32 / 127.0) as f64;
    let inv = 127.0f32 / amax as f32;
    x.iter().map(|&v| ((v as f32 * inv).round().clamp(-127.0, 127.0) as f64) * s).collect()
}

fn quant_weight_group(x: &[f64], levels: f32, f16_scales: bool) -> Vec<f64> {
    // The weights' scheme, re-stated from FORMAT.md: s = max|x|/L rounded to the scale type,
    // q = round(x / s) half away from zero, clamped to ±L; s = 0 gives zeros.
    if levels == 127.0 && !f16_scales {
        return quant_group(x);
    }
    let amax = x.iter().fold(0.0f32, |m, &v| m.max(v.abs() as f32));
    let mut s = amax / levels;
    if f16_scales {
        s = half::f16::from_f32(s).to_f32();
    }
    if s == 0.0 {
        return vec![0.0; x.len()];
    }
    x.iter().map(|&v| (v as f32 / s).round().clamp(-levels, levels) as f64 * s as f64).collect()
}

fn quant_rows(w: &[f32], cols: usize, g: usize, levels: f32, f16_scales: bool) -> Vec<f64> {
    let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    w64.chunks(cols)
        .flat_map(|row| row.chunks(g).flat_map(|x| quant_weight_group(x, levels, f16_scales)).collect::<Vec<_>>())
        .collect()
}

/// A plain reference forward pass: f64, no KV cache, the whole prefix recomputed at every position.
/// Returns the logits at every position of `tokens`.
pub struct Reference {
    cfg: Config,
    w: HashMap<String, Vec<f64>>,
    mode: RefMode,
}

impl Reference {
    pub fn new(cfg: &Config, weights: &HashMap<String, Vec<f32>>, mode: RefMode) -> Self {
        let mut w = HashMap::new();
        for_each_tensor(cfg, |id| {
            let name = id.to_string();
            let s = tensor_shape(cfg, id);
            let raw = &weights[&name];
            let v: Vec<f64> = match mode {
                _ if s.vector => raw.iter().map(|&v| v as f64).collect(),
                RefMode::Exact => raw.iter().map(|&v| v as f64).collect(),
                RefMode::F16 => raw.iter().map(|&v| half::f16::from_f32(v).to_f64()).collect(),
                _ => {
                    let (levels, group, f16) = mode.quant().unwrap();
                    quant_rows(raw, s.cols, group, levels, f16)
                }
            };
            w.insert(name, v);
        });
        Reference { cfg: *cfg, w, mode }
    }

    fn mv(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let x = match self.mode.quant() {
            Some((_, group, _)) => {
                let x32: Vec<f64> = x.iter().map(|&v| v as f32 as f64).collect();
                x32.chunks(group).flat_map(quant_group).collect::<Vec<_>>()
            }
            None => x.to_vec(),
        };
        let w = &self.w[name];
        w.chunks(x.len()).map(|row| row.iter().zip(&x).map(|(a, b)| a * b).sum()).collect()
    }

    fn norm(&self, x: &[f64], w: &[f64]) -> Vec<f64> {
        let n = x.len() as f64;
        let eps = self.cfg.norm_eps as f64;
        match self.cfg.arch {
            Arch::Gpt2 => {
                let mean = x.iter().sum::<f64>() / n;
                let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                x.iter().zip(w).map(|(v, g)| (v - mean) / (var + eps).sqrt() * g).collect()
            }
            Arch::Llama => {
                let ms = x.iter().map(|v| v * v).sum::<f64>() / n;
                x.iter().zip(w).map(|(v, g)| v / (ms + eps).sqrt() * g).collect()
            }
        }
    }

    fn rope(&self, v: &mut [f64], pos: usize) {
        let hd = self.cfg.head_dim();
        for head in v.chunks_mut(hd) {
            for i in 0..hd / 2 {
                let freq = 1.0 / (self.cfg.rope_theta as f64).powf(2.0 * i as f64 / hd as f64);
                let (s, c) = (pos as f64 * freq).sin_cos();
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * c - b * s;
                head[2 * i + 1] = a * s + b * c;
            }
        }
    }

    /// Logits after each token of `tokens` (positions 0..len).
    pub fn logits(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        self.logits_windowed(tokens, usize::MAX)
    }

    /// [`Reference::logits`] where the token at position `p` attends only to the `window` newest
    /// tokens, itself included (positions `p + 1 - window ..= p`), every position keeping its
    /// absolute RoPE angle: sliding-window attention.
    pub fn logits_windowed(&self, tokens: &[u32], window: usize) -> Vec<Vec<f64>> {
        let c = &self.cfg;
        let (e, hd, nh, nkv) = (c.n_embd as usize, c.head_dim(), c.n_head as usize, c.n_kv_head as usize);
        let t_len = tokens.len();
        // Embeddings for all positions.
        let emb = &self.w["tok_embeddings"];
        let mut xs: Vec<Vec<f64>> = tokens
            .iter()
            .enumerate()
            .map(|(p, &t)| {
                let mut x = emb[t as usize * e..(t as usize + 1) * e].to_vec();
                if c.arch == Arch::Gpt2 {
                    let pe = &self.w["pos_embeddings"][p * e..(p + 1) * e];
                    x.iter_mut().zip(pe).for_each(|(a, b)| *a += b);
                }
                x
            })
            .collect();
        for l in 0..c.n_layer {
            let name = |t: &str| format!("layers.{l}.{t}");
            let hs: Vec<Vec<f64>> = xs.iter().map(|x| self.norm(x, &self.w[&name("attn_norm")])).collect();
            let mut qs: Vec<Vec<f64>> = hs.iter().map(|h| self.mv(&name("wq"), h)).collect();
            let mut ks: Vec<Vec<f64>> = hs.iter().map(|h| self.mv(&name("wk"), h)).collect();
            let vs: Vec<Vec<f64>> = hs.iter().map(|h| self.mv(&name("wv"), h)).collect();
            if c.arch == Arch::Llama {
                for p in 0..t_len {
                    self.rope(&mut qs[p], p);
                    self.rope(&mut ks[p], p);
                }
            }
            for p in 0..t_len {
                let mut out = vec![0.0; e];
                for h in 0..nh {
                    let kvh = h / (nh / nkv);
                    let q = &qs[p][h * hd..(h + 1) * hd];
                    let first = (p + 1).saturating_sub(window);
                    let scores: Vec<f64> = (first..=p)
                        .map(|t| q.iter().zip(&ks[t][kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>()
                            / (hd as f64).sqrt())
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let ex: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f64 = ex.iter().sum();
                    for (t, a) in (first..=p).zip(&ex) {
                        for i in 0..hd {
                            out[h * hd + i] += a / z * vs[t][kvh * hd + i];
                        }
                    }
                }
                let o = self.mv(&name("wo"), &out);
                xs[p].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                let h = self.norm(&xs[p], &self.w[&name("ffn_norm")]);
                let mut a = self.mv(&name("w1"), &h);
                match c.arch {
                    Arch::Gpt2 => a.iter_mut().for_each(|v| *v = 0.5 * *v * (1.0 + libm::erf(*v / 2f64.sqrt()))),
                    Arch::Llama => {
                        let b = self.mv(&name("w3"), &h);
                        a.iter_mut().zip(&b).for_each(|(v, g)| *v = *v / (1.0 + (-*v).exp()) * g);
                    }
                }
                let d = self.mv(&name("w2"), &a);
                xs[p].iter_mut().zip(&d).for_each(|(a, b)| *a += b);
            }
        }
        let cls = if c.tie_embeddings { "tok_embeddings" } else { "output" };
        xs.iter().map(|x| self.mv(cls, &self.norm(x, &self.w["norm"]))).collect()
    }
}

/// Largest |a - b| over all positions, and the largest |b| (for relative tolerances).
pub fn max_diff(a: &[Vec<f32>], b: &[Vec<f64>]) -> (f64, f64) {
    let mut d = 0.0f64;
    let mut m = 0.0f64;
    for (ra, rb) in a.iter().zip(b) {
        for (&x, &y) in ra.iter().zip(rb) {
            d = d.max((x as f64 - y).abs());
            m = m.max(y.abs());
        }
    }
    (d, m)
}
