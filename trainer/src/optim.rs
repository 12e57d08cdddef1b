//! AdamW with decoupled weight decay on matrices only, and global gradient-norm clipping.
//!
//! Written on tensors (rather than libtorch's C++ optimizer) so that its state can be saved in
//! checkpoints and a resumed run continues exactly.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use tch::Tensor;

use crate::model::Gpt;

/// AdamW state for every parameter (sorted by name).
pub struct AdamW {
    names: Vec<String>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    decay: Vec<bool>,
    step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// Zero state for `model`'s parameters. Weight decay applies to tensors of rank ≥ 2 (matrices and
    /// embeddings), not to norm weights, as nanoGPT does.
    pub fn new(model: &Gpt, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        let params = model.named_params();
        AdamW {
            names: params.iter().map(|(n, _)| n.clone()).collect(),
            m: params.iter().map(|(_, p)| p.zeros_like()).collect(),
            v: params.iter().map(|(_, p)| p.zeros_like()).collect(),
            decay: params.iter().map(|(_, p)| p.dim() >= 2).collect(),
            step: 0,
            beta1,
            beta2,
            eps,
            weight_decay,
        }
    }

    /// `(name, first moment, second moment)` for checkpoints.
    pub fn named_state(&self) -> impl Iterator<Item = (&str, &Tensor, &Tensor)> {
        self.names.iter().zip(self.m.iter().zip(self.v.iter())).map(|(n, (m, v))| (n.as_str(), m, v))
    }

    /// Restores the moments saved by a checkpoint taken after `step` optimizer steps.
    pub fn load(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, name) in self.names.iter().enumerate() {
            for (prefix, dst) in [("adam_m", &self.m[i]), ("adam_v", &self.v[i])] {
                let src = tensors.get(&format!("{prefix}.{name}")).with_context(|| format!("checkpoint lacks {prefix}.{name}"))?;
                if src.size() != dst.size() {
                    bail!("checkpoint {prefix}.{name} has shape {:?}, expected {:?}", src.size(), dst.size());
                }
                tch::no_grad(|| dst.shallow_clone().copy_(&src.to_device(dst.device())));
            }
        }
        self.step = step;
        Ok(())
    }

    /// Clips the global gradient norm to `clip` (0: off), takes one AdamW step with learning rate
    /// `lr`, and zeroes the gradients. Returns the gradient norm before clipping.
    pub fn clip_and_step(&mut self, params: &[Tensor], lr: f64, clip: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
            let defined: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
            let norms: Vec<Tensor> = defined.iter().map(|g| g.norm().square()).collect();
            let total = if norms.is_empty() { 0.0 } else { Tensor::stack(&norms, 0).sum(None).sqrt().double_value(&[]) };
            if clip > 0.0 && total > clip {
                let scale = clip / (total + 1e-6);
                for g in &defined {
                    let _ = g.shallow_clone().g_mul_scalar_(scale);
                }
            }
            self.step += 1;
            let bc1 = 1.0 - self.beta1.powi(self.step as i32);
            let bc2 = 1.0 - self.beta2.powi(self.step as i32);
            for (i, (p, g)) in params.iter().zip(&grads).enumerate() {
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                let _ = self.m[i].shallow_clone().lerp_(g, 1.0 - self.beta1);
                let _ = self.v[i].shallow_clone().lerp_(&(g * g), 1.0 - self.beta2);
                if self.decay[i] && self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let denom = self.v[i].sqrt() / bc2.sqrt() + self.eps;
                let update = (&self.m[i] / denom) * (lr / bc1);
                let _ = p.g_sub_(&update);
                let _ = p.grad().zero_();
            }
            total
        })
    }
}
