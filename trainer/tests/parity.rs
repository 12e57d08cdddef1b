//! The trainer's model against the runtime running its export: logits over a full context,
//! greedy generation past the context limit, validation loss per dtype.

mod common;

use tinygpt_runtime::writer::MetaData;
use tinygpt_runtime::DType;
use tinygpt_train::model::greedy;
use tinygpt_train::{export, train};

/// Largest |a - b| over all logits.
fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

fn check_arch(arch: &str, sets: &[&str]) {
    let dir = common::tempdir();
    let corpus = common::write(dir.path(), "corpus.txt", common::corpus(60_000).as_bytes());
    let cfg = common::small_config(&corpus, arch, sets);
    let out = dir.path().join("run");
    let summary = common::run(&cfg, &out, false);
    let vocab = common::best(&out).state.vocab;
    let uniform = (tinygpt_train::data::TextTokenizer::new(vocab).vocab_size() as f64).ln();
    let best = summary.best_val.unwrap();
    println!("{arch}: val loss {best:.3} after {} steps (uniform: {uniform:.3})", summary.steps);
    assert!(best < uniform - 1.0, "{arch}: the model did not learn: {best} vs uniform {uniform}");

    let ck = common::best(&out);
    let (model, tok) = train::model_from_checkpoint(&ck, tch::Device::Cpu, false).unwrap();
    let data = train::prepare_data(&ck.state.config, Some(ck.state.vocab.clone())).unwrap();
    let bytes = export::encode(&model, &tok, &MetaData::default(), DType::F32, 64).unwrap();

    // Logits over a full context.
    let ctx = cfg.block_size as usize;
    let window = &data.val[..ctx];
    let rt = export::runtime_logits(&bytes, window).unwrap();
    let ids: Vec<i64> = window.iter().map(|&t| t as i64).collect();
    let tl = tch::no_grad(|| model.forward(&tch::Tensor::from_slice(&ids).view([1, -1]), false));
    let tl: Vec<Vec<f32>> = (0..ctx as i64).map(|i| Vec::<f32>::try_from(&tl.get(0).get(i)).unwrap()).collect();
    let d = max_diff(&rt, &tl);
    println!("{arch}: max |runtime - tch| logit difference over {ctx} positions: {d:.2e}");
    assert!(d <= 1e-4, "{arch}: logits differ by {d}");

    // Greedy generation: 200 tokens, several times past the context limit.
    let prompt = &data.val[..5];
    let tch_tokens = greedy(&model, prompt, 200, ctx);
    let mut expected = tok.decode(prompt);
    expected.push_str(&tok.decode(&tch_tokens));
    let rt_text = export::runtime_generate(&bytes, prompt, 200, 0.0, 0, 1).unwrap();
    assert_eq!(rt_text, expected, "{arch}: greedy texts differ");

    // Validation loss: tch and the runtime agree; f16 and int8 cost little.
    let val = &data.val[..data.val.len().min(4000)];
    let tch_loss = train::eval_loss(&model, val, ctx, 16);
    let l = export::losses_per_dtype(&model, &tok, &MetaData::default(), 32, val, &[DType::F32, DType::F16, DType::I8])
        .unwrap();
    let (f32l, f16l, i8l) = (l.f32.unwrap(), l.f16.unwrap(), l.i8.unwrap());
    println!("{arch}: val loss tch {tch_loss:.5}, runtime f32 {f32l:.5}, f16 {f16l:.5} (+{:.5}), int8 {i8l:.5} (+{:.5})", f16l - f32l, i8l - f32l);
    assert!((tch_loss - f32l).abs() < 1e-4, "{arch}: tch {tch_loss} vs runtime {f32l}");
    assert!((f16l - f32l).abs() <= 0.005, "{arch}: f16 loss increase {} above 0.005", f16l - f32l);
    assert!(i8l - f32l <= 0.03, "{arch}: int8 loss increase {} above 0.03", i8l - f32l);
}

#[test]
fn gpt2_matches_runtime() {
    check_arch("gpt2", &["dropout=0.1", "max_iters=150", "eval_interval=50"]);
}

#[test]
fn llama_with_grouped_kv_and_untied_output_matches_runtime() {
    check_arch("llama", &["n_kv_head=2", "tie_embeddings=false", "n_hidden=80", "tokenizer=bpe", "bpe_vocab_size=320", "max_iters=150", "eval_interval=50"]);
}
