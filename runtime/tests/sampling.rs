//! The sampler draws from the distribution it promises: softmax(logits / T) restricted to the
//! top-k tokens, then to the top-p nucleus, renormalised. Expected probabilities are computed
//! here in f64, independently of the sampler; 200,000 seeded draws per setting are compared with
//! them by a chi-square test, and tokens outside the kept set must never appear.

use tinygpt_runtime::{ProbIndex, Sampler, SamplerConfig};

/// The distribution a setting should give, in f64: (token, probability) for the kept tokens.
fn expected(logits: &[f32], t: f64, k: usize, p: f64) -> Vec<(usize, f64)> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let k = if k == 0 { logits.len() } else { k.min(logits.len()) };
    order.truncate(k);
    let max = logits[order[0]] as f64;
    let w: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - max) / t).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut keep = k;
    if p < 1.0 {
        let mut cum = 0.0;
        for (i, wi) in w.iter().enumerate() {
            cum += wi / total;
            if cum >= p {
                keep = i + 1;
                // The cut must not sit so close to `p` that f32 rounding could move it.
                assert!((cum - p).abs() > 1e-4 && (cum - wi / total - p).abs() > 1e-4, "test logits put the nucleus edge at {cum}");
                break;
            }
        }
    }
    let kept: f64 = w[..keep].iter().sum();
    order[..keep].iter().zip(&w).map(|(&i, wi)| (i, wi / kept)).collect()
}

/// Upper critical value of chi-square with `df` degrees of freedom at about p = 1e-6
/// (Wilson-Hilferty approximation, z = 4.75).
fn chi2_critical(df: usize) -> f64 {
    let d = df as f64;
    let c = 2.0 / (9.0 * d);
    d * (1.0 - c + 4.75 * c.sqrt()).powi(3)
}

const DRAWS: usize = 200_000;

/// How often each token is drawn in [`DRAWS`] samples.
fn draw(logits: &[f32], cfg: SamplerConfig, seed: u64) -> Vec<usize> {
    let mut counts = vec![0usize; logits.len()];
    let mut sampler = Sampler::new(cfg, seed);
    let mut scratch = vec![ProbIndex::default(); logits.len()];
    for _ in 0..DRAWS {
        counts[sampler.sample(logits, &mut scratch) as usize] += 1;
    }
    counts
}

/// Pearson's chi-square of `counts` against the expected distribution `want`.
fn chi2(counts: &[usize], want: &[(usize, f64)]) -> f64 {
    want.iter()
        .map(|&(i, p)| {
            let e = p * DRAWS as f64;
            (counts[i] as f64 - e).powi(2) / e
        })
        .sum()
}

fn check(logits: &[f32], cfg: SamplerConfig, seed: u64) {
    let want = expected(logits, cfg.temperature as f64, cfg.top_k as usize, cfg.top_p as f64);
    let counts = draw(logits, cfg, seed);
    let kept: Vec<usize> = want.iter().map(|&(i, _)| i).collect();
    for (i, &c) in counts.iter().enumerate() {
        assert!(c == 0 || kept.contains(&i), "{cfg:?}: token {i} drawn {c} times but lies outside the kept set {kept:?}");
    }
    if want.len() == 1 {
        assert_eq!(counts[want[0].0], DRAWS, "{cfg:?}: one token kept, so every draw must be it");
        return;
    }
    let (x2, crit) = (chi2(&counts, &want), chi2_critical(want.len() - 1));
    assert!(
        x2 < crit,
        "{cfg:?}: draws do not follow the expected distribution: chi-square {x2:.1} >= {crit:.1} ({} degrees of freedom); counts {counts:?}, expected {want:?}",
        want.len() - 1
    );
}

/// Logits with distinct values (no ties) spread over a few nats.
const LOGITS: [f32; 12] = [1.3, -0.4, 2.1, 0.2, -1.7, 0.9, 1.8, -2.5, 0.55, -0.05, 1.05, -3.0];

#[test]
fn temperature_one_is_the_softmax() {
    check(&LOGITS, SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0 }, 1);
}

#[test]
fn temperature_scales_the_logits() {
    check(&LOGITS, SamplerConfig { temperature: 0.5, top_k: 0, top_p: 1.0 }, 2);
    check(&LOGITS, SamplerConfig { temperature: 2.5, top_k: 0, top_p: 1.0 }, 3);
}

#[test]
fn top_k_renormalises_over_the_k_best() {
    check(&LOGITS, SamplerConfig { temperature: 1.0, top_k: 5, top_p: 1.0 }, 4);
    check(&LOGITS, SamplerConfig { temperature: 0.8, top_k: 40, top_p: 1.0 }, 5);
}

#[test]
fn top_p_renormalises_over_the_nucleus() {
    check(&LOGITS, SamplerConfig { temperature: 1.0, top_k: 0, top_p: 0.7 }, 6);
    check(&LOGITS, SamplerConfig { temperature: 1.3, top_k: 8, top_p: 0.9 }, 7);
    check(&LOGITS, SamplerConfig { temperature: 1.0, top_k: 0, top_p: 0.1 }, 8);
}

/// The check can fail: draws at another temperature, or with top-k or top-p ignored, are rejected.
#[test]
fn the_check_rejects_wrong_distributions() {
    let base = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0 };
    let want = expected(&LOGITS, 1.0, 0, 1.0);
    let hotter = draw(&LOGITS, SamplerConfig { temperature: 1.15, ..base }, 9);
    assert!(chi2(&hotter, &want) > chi2_critical(want.len() - 1), "temperature 1.15 passed for 1.0");
    let want_k = expected(&LOGITS, 1.0, 8, 1.0);
    let all = draw(&LOGITS, base, 10);
    assert!(chi2(&all, &want_k) > chi2_critical(want_k.len() - 1), "top-k 0 passed for top-k 8");
    let want_p = expected(&LOGITS, 1.0, 0, 0.9);
    assert!(chi2(&all, &want_p) > chi2_critical(want_p.len() - 1), "top-p 1 passed for top-p 0.9");
}
