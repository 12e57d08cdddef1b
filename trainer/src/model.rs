//! The two architectures in tch, with exactly the runtime's semantics (see `runtime/src/model.rs`):
//! tensor names, LayerNorm without bias, exact GELU, RMSNorm, RoPE on interleaved pairs, grouped KV
//! heads, tied embeddings. No biases anywhere.

use anyhow::{bail, Result};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};
use tinygpt_runtime::{Arch, Config, DType};

use crate::config::TrainConfig;

/// Architecture numbers of a model in the trainer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelDims {
    pub arch: Arch,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_kv_head: i64,
    pub n_embd: i64,
    pub n_hidden: i64,
    pub block_size: i64,
    pub vocab_size: i64,
    pub norm_eps: f64,
    pub rope_theta: f64,
    pub tie_embeddings: bool,
    pub dropout: f64,
}

impl ModelDims {
    /// From a training configuration and the tokenizer's vocabulary size.
    pub fn new(cfg: &TrainConfig, vocab_size: usize) -> Self {
        ModelDims {
            arch: if cfg.arch == "llama" { Arch::Llama } else { Arch::Gpt2 },
            n_layer: cfg.n_layer as i64,
            n_head: cfg.n_head as i64,
            n_kv_head: cfg.kv_heads() as i64,
            n_embd: cfg.n_embd as i64,
            n_hidden: cfg.hidden() as i64,
            block_size: cfg.block_size as i64,
            vocab_size: vocab_size as i64,
            norm_eps: cfg.norm_eps,
            rope_theta: cfg.rope_theta,
            tie_embeddings: cfg.tie_embeddings,
            dropout: cfg.dropout,
        }
    }

    /// Head width.
    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }

    /// The runtime's description of this model, stored as `dtype` with int8 groups of `group_size`.
    pub fn runtime_config(&self, dtype: DType, group_size: u32) -> Config {
        Config {
            arch: self.arch,
            n_layer: self.n_layer as u32,
            n_head: self.n_head as u32,
            n_kv_head: self.n_kv_head as u32,
            n_embd: self.n_embd as u32,
            n_hidden: self.n_hidden as u32,
            block_size: self.block_size as u32,
            vocab_size: self.vocab_size as u32,
            norm_eps: self.norm_eps as f32,
            rope_theta: self.rope_theta as f32,
            tie_embeddings: self.tie_embeddings,
            dtype,
            group_size,
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    ffn_norm: Tensor,
    w1: Tensor,
    w2: Tensor,
    w3: Option<Tensor>,
}

/// Fake quantization of every weight matrix (quantization-aware training): the forward pass uses
/// each matrix as the exporter would store it — symmetric groups of `group` along each row,
/// `±levels` (127: int8, 7: int4), the group's scale `max|x| / levels` rounded to f16 (the
/// writer's default scales), values rounded half away from zero — and gradients pass straight
/// through to the f32 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeQuant {
    pub levels: i64,
    pub group: i64,
}

impl FakeQuant {
    /// int8 (`levels` 127) or int4 (`levels` 7) in groups of `group`; `None` for another dtype.
    pub fn for_dtype(dtype: DType, group: i64) -> Option<Self> {
        match dtype {
            DType::I8 => Some(FakeQuant { levels: 127, group }),
            DType::I4 => Some(FakeQuant { levels: 7, group }),
            _ => None,
        }
    }
}

/// `w: [rows, cols]` quantized and dequantized as the runtime's writer does
/// (`writer::quantize_matrix_as` with f16 scales): the values the exported file holds, as f32.
/// The last group of a row may be shorter than `group`.
pub fn fake_quantize(w: &Tensor, fq: FakeQuant) -> Tensor {
    let (rows, cols) = w.size2().expect("a weight matrix");
    let g = fq.group.min(cols).max(1);
    let pad = (g - cols % g) % g;
    let wp = if pad > 0 { w.constant_pad_nd([0, pad]) } else { w.shallow_clone() };
    let groups = (cols + pad) / g;
    let x = wp.view([rows, groups, g]);
    let l = fq.levels as f64;
    // The scale as the writer computes it: max|x| / levels in f32, rounded to f16.
    // (A tensor divisor of the same shape: ATen multiplies by the reciprocal of a scalar divisor,
    // which can differ from the division in the last bit.)
    let amax = x.abs().amax([-1i64].as_slice(), true);
    let scale = (&amax / amax.full_like(l)).to_kind(Kind::Half).to_kind(Kind::Float);
    let safe = scale.where_self(&scale.ne(0.0), &scale.ones_like());
    // Round half away from zero (libm's roundf): trunc, plus one where the remainder is ≥ 0.5.
    let r = &x / &safe;
    let t = r.trunc();
    let up = (&r - &t).abs().ge(0.5).to_kind(Kind::Float) * r.sign();
    // (+ 0: a value that rounds to zero is +0, as the writer's integer 0 is, never −0.)
    let q = (t + up).clamp(-l, l) + 0.0;
    let deq = (q * &scale).view([rows, cols + pad]);
    if pad > 0 {
        deq.narrow(1, 0, cols).contiguous()
    } else {
        deq
    }
}

/// A GPT in tch. Parameters live in `vs` under the runtime's tensor names.
pub struct Gpt {
    pub dims: ModelDims,
    pub vs: nn::VarStore,
    tok_embeddings: Tensor,
    pos_embeddings: Option<Tensor>,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Option<Tensor>,
    /// RoPE cos and sin `[block_size, head_dim/2]` (llama only).
    rope: Option<(Tensor, Tensor)>,
    /// Matmuls and attention in bf16 (weights and residual stream stay f32).
    bf16: bool,
    /// Quantization-aware training: the weights' fake quantization, when on.
    fake_quant: std::cell::Cell<Option<FakeQuant>>,
}

impl Gpt {
    /// A freshly initialised model (nanoGPT: normal(0, 0.02); `wo` and `w2` use 0.02/sqrt(2*n_layer)).
    /// Call `tch::manual_seed` first for a reproducible initialisation.
    pub fn new(dims: ModelDims, device: Device, bf16: bool) -> Result<Self> {
        if dims.n_embd % dims.n_head != 0 || dims.n_head % dims.n_kv_head != 0 {
            bail!("inconsistent head counts");
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let std = 0.02;
        let resid_std = 0.02 / ((2 * dims.n_layer) as f64).sqrt();
        let normal = |s: f64| Init::Randn { mean: 0.0, stdev: s };
        let (e, h, hd) = (dims.n_embd, dims.n_hidden, dims.head_dim());
        let tok_embeddings = root.var("tok_embeddings", &[dims.vocab_size, e], normal(std));
        let pos_embeddings = (dims.arch == Arch::Gpt2).then(|| root.var("pos_embeddings", &[dims.block_size, e], normal(std)));
        let mut layers = Vec::new();
        for l in 0..dims.n_layer {
            let p = &root / "layers" / l;
            layers.push(Layer {
                attn_norm: p.var("attn_norm", &[e], Init::Const(1.0)),
                wq: p.var("wq", &[dims.n_head * hd, e], normal(std)),
                wk: p.var("wk", &[dims.n_kv_head * hd, e], normal(std)),
                wv: p.var("wv", &[dims.n_kv_head * hd, e], normal(std)),
                wo: p.var("wo", &[e, dims.n_head * hd], normal(resid_std)),
                ffn_norm: p.var("ffn_norm", &[e], Init::Const(1.0)),
                w1: p.var("w1", &[h, e], normal(std)),
                w2: p.var("w2", &[e, h], normal(resid_std)),
                w3: (dims.arch == Arch::Llama).then(|| p.var("w3", &[h, e], normal(std))),
            });
        }
        let norm = root.var("norm", &[e], Init::Const(1.0));
        let output = (!dims.tie_embeddings).then(|| root.var("output", &[dims.vocab_size, e], normal(std)));
        let rope = (dims.arch == Arch::Llama).then(|| rope_tables(dims.block_size, hd, dims.rope_theta as f32, device));
        Ok(Gpt { dims, vs, tok_embeddings, pos_embeddings, layers, norm, output, rope, bf16, fake_quant: std::cell::Cell::new(None) })
    }

    /// Number of parameters (tied embeddings counted once).
    pub fn param_count(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// Parameters by name, in a fixed (sorted) order.
    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Turns fake quantization of the weights on (`Some`) or off for the following forward passes.
    pub fn set_fake_quant(&self, fq: Option<FakeQuant>) {
        self.fake_quant.set(fq);
    }

    /// The fake quantization in use.
    pub fn fake_quant(&self) -> Option<FakeQuant> {
        self.fake_quant.get()
    }

    /// Weight matrix `w` as the forward pass uses it: as stored when fake quantization is on
    /// (straight-through: the gradient reaches `w` unchanged), else `w` itself.
    fn weight(&self, w: &Tensor) -> Tensor {
        match self.fake_quant.get() {
            Some(fq) => w + (fake_quantize(w, fq) - w).detach(),
            None => w.shallow_clone(),
        }
    }

    fn linear(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let w = &self.weight(w);
        if self.bf16 {
            x.to_kind(Kind::BFloat16).linear(&w.to_kind(Kind::BFloat16), None::<Tensor>).to_kind(Kind::Float)
        } else {
            x.linear(w, None::<Tensor>)
        }
    }

    fn normalize(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let e = self.dims.n_embd;
        match self.dims.arch {
            Arch::Gpt2 => x.layer_norm([e], Some(w), None::<&Tensor>, self.dims.norm_eps, true),
            Arch::Llama => x.rms_norm([e], Some(w), self.dims.norm_eps),
        }
    }

    /// Rotates interleaved pairs `(x[2i], x[2i+1])` of `x: [b, heads, t, hd]` by `pos * freq_i`.
    fn apply_rope(&self, x: &Tensor, t: i64) -> Tensor {
        let (cos, sin) = self.rope.as_ref().expect("llama has rope tables");
        let (cos, sin) = (cos.narrow(0, 0, t), sin.narrow(0, 0, t));
        let s = x.size();
        let hd = s[3];
        let xr = x.reshape([s[0], s[1], t, hd / 2, 2]);
        let x0 = xr.select(4, 0);
        let x1 = xr.select(4, 1);
        let o0 = &x0 * &cos - &x1 * &sin;
        let o1 = &x0 * &sin + &x1 * &cos;
        Tensor::stack(&[o0, o1], 4).reshape([s[0], s[1], t, hd])
    }

    /// Logits `[b, t, vocab]` for token ids `idx: [b, t]` (t ≤ block_size).
    // `x = x + ...` on purpose: `x += ...` would add in place into a tensor autograd saved.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        let d = &self.dims;
        let (b, t) = idx.size2().expect("idx is [batch, time]");
        let (e, nh, nkv, hd) = (d.n_embd, d.n_head, d.n_kv_head, d.head_dim());
        let p_drop = if train { d.dropout } else { 0.0 };
        let mut x = Tensor::embedding(&self.weight(&self.tok_embeddings), idx, -1, false, false);
        if let Some(pos) = &self.pos_embeddings {
            x = x + self.weight(pos).narrow(0, 0, t);
        }
        x = x.dropout(p_drop, train);
        for layer in &self.layers {
            let h = self.normalize(&x, &layer.attn_norm);
            let q = self.linear(&h, &layer.wq).view([b, t, nh, hd]).transpose(1, 2);
            let k = self.linear(&h, &layer.wk).view([b, t, nkv, hd]).transpose(1, 2);
            let v = self.linear(&h, &layer.wv).view([b, t, nkv, hd]).transpose(1, 2);
            let (q, k) = if d.arch == Arch::Llama { (self.apply_rope(&q, t), self.apply_rope(&k, t)) } else { (q, k) };
            let (k, v) = if nkv != nh {
                let rep = nh / nkv;
                (k.repeat_interleave_self_int(rep, 1, None), v.repeat_interleave_self_int(rep, 1, None))
            } else {
                (k, v)
            };
            let (q, k, v) = if self.bf16 {
                (q.to_kind(Kind::BFloat16), k.to_kind(Kind::BFloat16), v.to_kind(Kind::BFloat16))
            } else {
                (q, k, v)
            };
            let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, p_drop, true, None, false)
                .to_kind(Kind::Float)
                .transpose(1, 2)
                .contiguous()
                .view([b, t, e]);
            x = x + self.linear(&y, &layer.wo).dropout(p_drop, train);
            let h = self.normalize(&x, &layer.ffn_norm);
            let m = match &layer.w3 {
                None => self.linear(&h, &layer.w1).gelu("none"),
                Some(w3) => self.linear(&h, &layer.w1).silu() * self.linear(&h, w3),
            };
            x = x + self.linear(&m, &layer.w2).dropout(p_drop, train);
        }
        let x = self.normalize(&x, &self.norm);
        let classifier = self.output.as_ref().unwrap_or(&self.tok_embeddings);
        self.linear(&x, classifier)
    }

    /// Mean cross-entropy of predicting `targets: [b, t]` from `idx: [b, t]`.
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, train: bool) -> Tensor {
        let logits = self.forward(idx, train);
        logits.view([-1, self.dims.vocab_size]).cross_entropy_for_logits(&targets.view([-1]))
    }

    /// The cross-entropy of each predicted token weighted by its row's weight (`row_weights`,
    /// `[batch]`), summed and divided by the number of predicted tokens (targets other than
    /// -100). With every weight 1 this is [`Gpt::loss`]; a negative weight pushes its row's
    /// tokens down (the policy-gradient loss of `rl --method reinforce`).
    pub fn weighted_loss(&self, idx: &Tensor, targets: &Tensor, row_weights: &Tensor, train: bool) -> Tensor {
        let logits = self.forward(idx, train);
        let (b, t) = targets.size2().expect("targets are [batch, time]");
        let mask = targets.ne(-100i64);
        let safe = targets.where_scalarother(&mask, 0i64);
        let logp = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float).gather(-1, &safe.unsqueeze(-1), false).squeeze_dim(-1);
        let maskf = mask.to_kind(Kind::Float);
        let w = row_weights.to_device(logits.device()).to_kind(Kind::Float).view([b, 1]).expand([b, t], false);
        let n = maskf.sum(Kind::Float).clamp_min(1.0);
        -(logp * maskf * w).sum(Kind::Float) / n
    }

    /// The f32 values of parameter `name` (for the runtime writer).
    pub fn tensor_f32(&self, name: &str) -> Option<Vec<f32>> {
        let vars = self.vs.variables();
        let t = vars.get(name)?;
        let flat = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
        Vec::<f32>::try_from(&flat).ok()
    }
}

/// cos/sin of `pos * freq_i` with `freq_i = 1 / theta^(2i/hd)`, computed in f32 as the runtime does.
fn rope_tables(block: i64, hd: i64, theta: f32, device: Device) -> (Tensor, Tensor) {
    let half = (hd / 2) as usize;
    let mut cos = Vec::with_capacity(block as usize * half);
    let mut sin = Vec::with_capacity(block as usize * half);
    for pos in 0..block {
        for i in 0..half {
            let freq = 1.0 / theta.powf((2 * i) as f32 / hd as f32);
            let a = pos as f32 * freq;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let shape = [block, hd / 2];
    (Tensor::from_slice(&cos).view(shape).to_device(device), Tensor::from_slice(&sin).view(shape).to_device(device))
}

/// Greedy generation following the runtime's rule for a full context: when `ctx` tokens are in
/// the context, keep the newest `ctx / 2` and continue from position 0.
pub fn greedy(model: &Gpt, prompt: &[u32], n_new: usize, ctx: usize) -> Vec<u32> {
    tch::no_grad(|| {
        let device = model.vs.device();
        let mut window: Vec<u32> = Vec::new();
        let mut out = Vec::new();
        let push = |window: &mut Vec<u32>, t: u32| {
            if window.len() == ctx {
                window.drain(..ctx - ctx / 2);
            }
            window.push(t);
        };
        for &t in prompt {
            push(&mut window, t);
        }
        for i in 0..n_new {
            let ids: Vec<i64> = window.iter().map(|&t| t as i64).collect();
            let idx = Tensor::from_slice(&ids).view([1, -1]).to_device(device);
            let logits = model.forward(&idx, false).select(1, ids.len() as i64 - 1).view([-1]);
            let next = logits.argmax(0, false).int64_value(&[]) as u32;
            out.push(next);
            if i + 1 < n_new {
                push(&mut window, next);
            }
        }
        out
    })
}
