//! Choosing the next token from logits: greedy, temperature, top-k, top-p. No heap: the caller
//! (usually the [`crate::Session`]) lends a scratch slice of `vocab_size` entries.

use crate::ops::math::expf;
use crate::rng::Rng;

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0` (or below) is greedy.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` keeps all.
    pub top_k: u32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; `1.0` keeps all.
    pub top_p: f32,
}

impl Default for SamplerConfig {
    /// Temperature 0.8, top-k 40, top-p off.
    fn default() -> Self {
        SamplerConfig { temperature: 0.8, top_k: 40, top_p: 1.0 }
    }
}

/// A candidate token and its logit, then probability.
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct ProbIndex {
    /// Logit, then probability once normalised.
    pub p: f32,
    /// Token id.
    pub index: u32,
}

/// A seeded sampler: the same settings, seed and logits give the same tokens on every target.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
}

/// Orders candidates best first: higher logit, then lower token id (a total, deterministic order).
fn better(a: &ProbIndex, b: &ProbIndex) -> core::cmp::Ordering {
    b.p.total_cmp(&a.p).then(a.index.cmp(&b.index))
}

/// Index of the largest logit (the first one on ties; NaN counts as largest).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, v) in logits.iter().enumerate() {
        if v.total_cmp(&logits[best]).is_gt() {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    /// A sampler with these settings and seed.
    pub fn new(cfg: SamplerConfig, seed: u64) -> Self {
        Sampler { cfg, rng: Rng::new(seed) }
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks a token from `logits`, using `scratch` (at least `logits.len()` entries) as work space.
    pub fn sample(&mut self, logits: &[f32], scratch: &mut [ProbIndex]) -> u32 {
        let n = logits.len().min(scratch.len());
        let t = self.cfg.temperature;
        if n == 0 {
            return 0;
        }
        // Written so that a NaN temperature is greedy too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(t > 0.0) || self.cfg.top_k == 1 {
            return argmax(&logits[..n]);
        }
        let cand = &mut scratch[..n];
        for (i, (c, &l)) in cand.iter_mut().zip(logits).enumerate() {
            *c = ProbIndex { p: l, index: i as u32 };
        }
        let k = if self.cfg.top_k == 0 { n } else { (self.cfg.top_k as usize).min(n) };
        if k < n {
            cand.select_nth_unstable_by(k - 1, better);
        }
        let cand = &mut cand[..k];
        cand.sort_unstable_by(better);
        let max = cand[0].p;
        if !max.is_finite() {
            return cand[0].index;
        }
        let mut sum = 0.0f32;
        for c in cand.iter_mut() {
            c.p = expf((c.p - max) / t);
            sum += c.p;
        }
        // Nucleus: keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut keep = k;
        let top_p = self.cfg.top_p;
        if top_p > 0.0 && top_p < 1.0 {
            let mut cum = 0.0f32;
            for (i, c) in cand.iter().enumerate() {
                cum += c.p;
                if cum >= top_p * sum {
                    keep = i + 1;
                    break;
                }
            }
            sum = cand[..keep].iter().map(|c| c.p).sum();
        }
        let r = self.rng.next_f32() * sum;
        let mut cum = 0.0f32;
        for c in &cand[..keep] {
            cum += c.p;
            if r < cum {
                return c.index;
            }
        }
        cand[keep - 1].index
    }
}
