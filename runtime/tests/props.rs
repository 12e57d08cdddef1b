//! Property tests: sampler invariants, tokenizer round trips and an independent BPE oracle,
//! streaming UTF-8 decoding.

mod common;

use common::*;
use proptest::prelude::*;
use tinygpt_runtime::writer::{encode_model, AlignedBytes, MetaData, TokenizerData};
use tinygpt_runtime::{Arch, DType, Decoder, Error, Model, ProbIndex, Sampler, SamplerConfig};

fn model_with(tok: &TokenizerData) -> AlignedBytes {
    let mut cfg = config(Arch::Llama, DType::F32);
    (cfg.n_layer, cfg.n_embd, cfg.n_hidden, cfg.n_head, cfg.n_kv_head) = (1, 8, 8, 2, 1);
    cfg.vocab_size = tok.vocab_size() as u32;
    let w = random_weights(&cfg, 1);
    let bytes = encode_model(&cfg, tok, &MetaData::default(), &|n| w.get(n).cloned()).unwrap();
    AlignedBytes::new(&bytes)
}

fn logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-20.0f32..20.0, 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn top_k_never_picks_outside_the_k_best(logits in logits_strategy(), k in 1u32..10, seed in any::<u64>(),
                                            temp in 0.05f32..3.0) {
        let mut s = Sampler::new(SamplerConfig { temperature: temp, top_k: k, top_p: 1.0 }, seed);
        let mut scratch = vec![ProbIndex::default(); logits.len()];
        let mut sorted = logits.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[(k as usize).min(logits.len()) - 1];
        for _ in 0..20 {
            let t = s.sample(&logits, &mut scratch) as usize;
            prop_assert!(t < logits.len());
            prop_assert!(logits[t] >= kth, "picked {} below k-th best {}", logits[t], kth);
        }
    }

    #[test]
    fn top_p_picks_from_the_nucleus(logits in logits_strategy(), p in 0.05f32..0.99, seed in any::<u64>()) {
        let mut s = Sampler::new(SamplerConfig { temperature: 1.0, top_k: 0, top_p: p }, seed);
        let mut scratch = vec![ProbIndex::default(); logits.len()];
        // Independent nucleus: probabilities in f64, sorted, smallest prefix reaching p (+ slack for f32).
        let m = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let mut probs: Vec<(f64, usize)> = logits.iter().enumerate().map(|(i, &l)| ((l as f64 - m).exp(), i)).collect();
        let z: f64 = probs.iter().map(|x| x.0).sum();
        probs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let (mut cum, mut allowed) = (0.0, Vec::new());
        for &(q, i) in &probs {
            allowed.push(i);
            cum += q / z;
            if cum >= p as f64 + 1e-4 { break; }
        }
        for _ in 0..20 {
            let t = s.sample(&logits, &mut scratch) as usize;
            prop_assert!(allowed.contains(&t), "token {t} outside the nucleus {allowed:?}");
        }
    }

    #[test]
    fn same_seed_same_tokens(logits in logits_strategy(), seed in any::<u64>(), k in 0u32..20, p in 0.1f32..1.0) {
        let cfg = SamplerConfig { temperature: 0.9, top_k: k, top_p: p };
        let (mut a, mut b) = (Sampler::new(cfg, seed), Sampler::new(cfg, seed));
        let mut scratch = vec![ProbIndex::default(); logits.len()];
        let xa: Vec<u32> = (0..30).map(|_| a.sample(&logits, &mut scratch)).collect();
        let xb: Vec<u32> = (0..30).map(|_| b.sample(&logits, &mut scratch)).collect();
        prop_assert_eq!(xa, xb);
    }

    #[test]
    fn greedy_is_argmax(logits in logits_strategy(), seed in any::<u64>()) {
        let mut s = Sampler::new(SamplerConfig { temperature: 0.0, top_k: 40, top_p: 0.9 }, seed);
        let mut scratch = vec![ProbIndex::default(); logits.len()];
        let t = s.sample(&logits, &mut scratch) as usize;
        let best = logits.iter().cloned().fold(f32::MIN, f32::max);
        prop_assert_eq!(logits[t], best);
        prop_assert_eq!(t, logits.iter().position(|&v| v == best).unwrap());
    }

    #[test]
    fn char_round_trip_and_unknown_chars(text in "[a-zA-Z !?\\néλ€]{0,60}", bad in "[☃✓中]") {
        let tok = char_tokenizer(110);
        let bytes = model_with(&tok);
        let m = Model::from_bytes(&bytes).unwrap();
        let t = m.tokenizer();
        let mut ids = vec![0u32; 100];
        let n = t.encode(&text, &mut ids).unwrap();
        prop_assert_eq!(n, text.chars().count());
        let mut out = vec![0u8; 400];
        let len = t.decode_into(&ids[..n], &mut out);
        prop_assert_eq!(std::str::from_utf8(&out[..len]).unwrap(), text.as_str());
        let with_bad = format!("{text}{bad}");
        let c = bad.chars().next().unwrap();
        prop_assert_eq!(t.encode(&with_bad, &mut ids), Err(Error::UnknownChar(c)));
    }

    #[test]
    fn bpe_matches_reference_and_round_trips(picks in prop::collection::vec((any::<u16>(), any::<u16>()), 1..60),
                                             text in "[ a-c\\nλ€]{0,80}") {
        let merges = make_merges(&picks);
        let tok = TokenizerData::ByteBpe { merges: merges.clone() };
        let bytes = model_with(&tok);
        let m = Model::from_bytes(&bytes).unwrap();
        let t = m.tokenizer();
        let mut ids = vec![0u32; 200];
        let n = t.encode(&text, &mut ids).unwrap();
        let want = reference_bpe(&merges, text.as_bytes());
        prop_assert_eq!(&ids[..n], want.as_slice());
        let mut out = vec![0u8; 400];
        let len = t.decode_into(&ids[..n], &mut out);
        prop_assert_eq!(std::str::from_utf8(&out[..len]).unwrap(), text.as_str());
    }

    /// Streaming decode of arbitrary bytes, one token at a time, equals lossy UTF-8 decoding.
    #[test]
    fn streaming_decode_equals_lossy(data in prop::collection::vec(any::<u8>(), 0..40)) {
        let tok = TokenizerData::ByteBpe { merges: vec![] };
        let bytes = model_with(&tok);
        let m = Model::from_bytes(&bytes).unwrap();
        let t = m.tokenizer();
        let mut d = Decoder::new();
        let mut s = String::new();
        for &b in &data {
            d.push(&t, b as u32, &mut |x: &str| s.push_str(x));
        }
        d.finish(&mut |x: &str| s.push_str(x));
        prop_assert_eq!(s, String::from_utf8_lossy(&data).into_owned());
    }
}

/// Builds a valid merge list from random picks over the tokens that exist so far.
fn make_merges(picks: &[(u16, u16)]) -> Vec<(u32, u32)> {
    let alphabet: Vec<u32> = "abc λ€\n".bytes().map(u32::from).collect();
    let mut merges: Vec<(u32, u32)> = Vec::new();
    for &(a, b) in picks {
        let pool = alphabet.len() + merges.len();
        let pick = |x: u16| {
            let i = x as usize % pool;
            if i < alphabet.len() { alphabet[i] } else { 256 + (i - alphabet.len()) as u32 }
        };
        let pair = (pick(a), pick(b));
        if !merges.contains(&pair) {
            merges.push(pair);
        }
    }
    merges
}

/// Textbook BPE, written independently: split before spaces, then repeatedly merge the
/// lowest-rank adjacent pair (leftmost first).
fn reference_bpe(merges: &[(u32, u32)], text: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for (i, &b) in text.iter().enumerate() {
        if i == 0 || b == b' ' {
            chunks.push(Vec::new());
        }
        chunks.last_mut().unwrap().push(b);
    }
    for c in chunks {
        let mut toks: Vec<u32> = c.iter().map(|&b| b as u32).collect();
        loop {
            let best = (0..toks.len().saturating_sub(1))
                .filter_map(|i| merges.iter().position(|&m| m == (toks[i], toks[i + 1])).map(|r| (r, i)))
                .min();
            match best {
                Some((r, i)) => {
                    toks.splice(i..i + 2, [256 + r as u32]);
                }
                None => break,
            }
        }
        out.extend(toks);
    }
    out
}

#[test]
fn encode_reports_a_full_buffer() {
    let tok = char_tokenizer(90);
    let bytes = model_with(&tok);
    let m = Model::from_bytes(&bytes).unwrap();
    let mut ids = [0u32; 3];
    assert_eq!(m.tokenizer().encode("abcd", &mut ids), Err(Error::TooManyTokens { capacity: 3 }));
}
