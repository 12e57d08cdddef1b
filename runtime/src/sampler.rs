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

/// Moves the `k` best candidates (by [`better`], a total order, so the result does not depend on
/// the algorithm) to `cand[..k]`, best first.
///
/// A heap of the `k` best so far, worst at the root, takes each other candidate that beats its
/// root; then heapsort orders it. `O(n log k)` comparisons, no recursion, and a few hundred bytes
/// of code (the library's pattern-defeating quicksort and median-of-medians selection take about
/// 12 KB on a Cortex-M4, where flash is what limits the model).
fn top_k(cand: &mut [ProbIndex], k: usize) {
    let k = k.min(cand.len());
    if k == 0 {
        return;
    }
    // `worse(a, b)`: a ranks after b. The heap keeps every parent worse than its children.
    let worse = |a: &ProbIndex, b: &ProbIndex| better(a, b).is_gt();
    fn sift_down(h: &mut [ProbIndex], mut i: usize, worse: impl Fn(&ProbIndex, &ProbIndex) -> bool) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < h.len() && worse(&h[l], &h[m]) {
                m = l;
            }
            if r < h.len() && worse(&h[r], &h[m]) {
                m = r;
            }
            if m == i {
                return;
            }
            h.swap(i, m);
            i = m;
        }
    }
    let (heap, rest) = cand.split_at_mut(k);
    for i in (0..k / 2).rev() {
        sift_down(heap, i, worse);
    }
    for c in rest.iter_mut() {
        if worse(&heap[0], c) {
            core::mem::swap(&mut heap[0], c);
            sift_down(heap, 0, worse);
        }
    }
    // The worst goes last, then the worst of the rest before it, ...: best first.
    for end in (1..k).rev() {
        heap.swap(0, end);
        sift_down(&mut heap[..end], 0, worse);
    }
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
        top_k(cand, k);
        let cand = &mut cand[..k];
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

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;
    use super::*;
    use proptest::prelude::*;

    /// The order the sampler promises: the `k` best by [`better`], best first (what sorting the
    /// whole slice gives).
    fn reference(cand: &[ProbIndex], k: usize) -> Vec<ProbIndex> {
        let mut v = cand.to_vec();
        v.sort_by(better);
        v.truncate(k);
        v
    }

    fn logit() -> impl Strategy<Value = f32> {
        // Few distinct values, so that ties (broken by token id) are common; and the extremes.
        prop_oneof![
            (-4i32..4).prop_map(|v| v as f32 * 0.5),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            Just(f32::NAN),
            Just(-0.0f32),
            any::<f32>(),
        ]
    }

    proptest! {
        #[test]
        fn top_k_is_the_k_best_in_order(logits in proptest::collection::vec(logit(), 0..200), k in 0usize..220) {
            let mut cand: Vec<ProbIndex> =
                logits.iter().enumerate().map(|(i, &p)| ProbIndex { p, index: i as u32 }).collect();
            let want = reference(&cand, k.min(cand.len()));
            top_k(&mut cand, k);
            let got = &cand[..want.len()];
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(g.index, w.index);
                prop_assert_eq!(g.p.to_bits(), w.p.to_bits());
            }
        }
    }
}
