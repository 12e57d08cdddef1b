//! RL by re-sampling on a tiny alphabet model: held-out accuracy rises, the log is reproducible,
//! the best round's checkpoint exports, and bad input is one clear line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::Device;
use tinygpt_train::config::TrainConfig;
use tinygpt_train::rl::{self, RlConfig, SftPolicy};
use tinygpt_train::sft::{self, SftConfig};
use tinygpt_train::tasks::{self, Family, Task};
use tinygpt_train::train::{self, RunOptions};

/// Two letters spelled backwards ("kq" -> "qk"): 676 items, 40 held out, 200 trained on. The
/// held-out pairs are never trained on; only the rule connects them.
fn letter_tasks() -> (Vec<Task>, Vec<Task>) {
    let mut pairs: Vec<String> = ('a'..='z').flat_map(|a| ('a'..='z').map(move |b| format!("{a}{b}"))).collect();
    tasks::Rng::new(5).shuffle(&mut pairs);
    let task = |p: &String| {
        let rev: String = p.chars().rev().collect();
        Task { family: Family::Backwards, item: format!("backwards:{p}"), wording: "bare".into(), question: p.clone(), answer: rev.clone(), target: rev }
    };
    (pairs[40..240].iter().map(task).collect(), pairs[..40].iter().map(task).collect())
}

fn sft_cfg(sets: &[&str]) -> SftConfig {
    let base = ["learning_rate=3e-3", "min_lr=3e-4", "warmup_iters=5", "eval_interval=1000", "batch_size=16", "threads=1"];
    let sets: Vec<String> = base.iter().chain(sets).map(|s| s.to_string()).collect();
    SftConfig::default().with_overrides(&sets).unwrap()
}

/// A base trained on the alphabet, then a short fine-tuning so that the chat format is known but
/// the answers are mostly wrong (held-out pass@1 about 8 %).
fn start(dir: &Path) -> PathBuf {
    let cfg = TrainConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/alphabet.toml"), &["max_iters=150".into(), "sample_tokens=0".into()]).unwrap();
    let base = dir.join("base");
    common::run(&cfg, &base, false);
    let (train, val) = letter_tasks();
    let conv: Vec<_> = train.iter().map(rl::conversation).collect();
    let vconv: Vec<_> = val.iter().map(rl::conversation).collect();
    let out = dir.join("sft");
    let _turn = common::training_turn();
    train::set_threads(1);
    sft::finetune(&base, &conv, &vconv, &sft_cfg(&["max_iters=150", "seed=3"]), &RunOptions { out: out.clone(), resume: false, device: Device::Cpu, verbose: false }).unwrap();
    train::checkpoint_in(&out).unwrap()
}

fn rl_run(start: &Path, out: &Path, seed: u64, rounds: usize) -> rl::RlSummary {
    let (train, val) = letter_tasks();
    let policy = SftPolicy { cfg: sft_cfg(&["max_iters=40"]), device: Device::Cpu, verbose: false };
    let cfg = RlConfig { samples: 8, rounds, temperature: 1.0, seed, patience: 2, idk: false, min_right: 1, threads: 2 };
    let _turn = common::training_turn();
    train::set_threads(1);
    rl::run(&policy, start, &train, &val, &cfg, out, |_| {}).unwrap()
}

#[test]
fn rl_raises_held_out_accuracy_and_is_reproducible() {
    let t0 = std::time::Instant::now();
    let dir = common::tempdir();
    let start = start(dir.path());
    let a = rl_run(&start, &dir.path().join("rl-a"), 7, 3);
    let first = &a.rounds[0];
    let best = &a.rounds[a.best_round];
    eprintln!("{}", a.rounds.iter().map(|r| rl::progress_line(r, 8)).collect::<Vec<_>>().join("\n"));
    assert!(a.best_round > 0, "no round improved on the start: {:?}", a.rounds);
    assert!(best.val_pass1.value > first.val_pass1.value);
    // 40 held-out pairs: at least 8 more answered right (measured: 3 -> 28 in three rounds).
    assert!(best.val_pass1.k >= first.val_pass1.k + 8, "held-out pass@1 {} -> {}", first.val_pass1.k, best.val_pass1.k);
    // The training questions are answered right more often round after round.
    assert!(a.rounds[1..].windows(2).all(|w| w[1].train_sample_accuracy > w[0].train_sample_accuracy), "{:?}", a.rounds);
    // The log has one line per round, the best round's checkpoint is best.pt and exports.
    let log = std::fs::read_to_string(dir.path().join("rl-a/rl.jsonl")).unwrap();
    assert_eq!(log.lines().count(), a.rounds.len());
    let best_pt = dir.path().join("rl-a/best.pt");
    let round_best = train::checkpoint_in(&dir.path().join(format!("rl-a/round-{}", a.best_round))).unwrap();
    assert_eq!(std::fs::read(&best_pt).unwrap(), std::fs::read(&round_best).unwrap());
    let o = Command::new(env!("CARGO_BIN_EXE_tinygpt-train"))
        .args(["export", "--no-eval", "--checkpoint"])
        .arg(&best_pt)
        .arg("--out")
        .arg(dir.path().join("rl.tgpt"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Same seed, same log (timings aside).
    let b = rl_run(&start, &dir.path().join("rl-b"), 7, a.rounds.len() - 1);
    let strip = |s: &rl::RlSummary| s.rounds.iter().map(|r| r.without_timing()).collect::<Vec<_>>();
    assert_eq!(strip(&a), strip(&b));
    eprintln!("test time {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn a_round_trains_on_each_distinct_right_sample_and_idk_where_never_right() {
    let (train, _) = letter_tasks();
    let t = &train[..3];
    let (a0, a1, a2) = (t[0].answer.clone(), t[1].answer.clone(), t[2].answer.clone());
    let samples = vec![
        vec![a0.clone(), format!(" {} ", a0.to_uppercase()), a0.clone(), "zz".into()],
        vec!["zz".into(), "yy".into(), "xx".into(), "ww".into()],
        vec![a2.clone(), "q".into(), "q".into(), "q".into()],
    ];
    let (ex, right, idk) = rl::round_examples(t, &samples, true, 1);
    let got: Vec<(&str, &str)> = ex.iter().map(|e| (e.question.as_str(), e.target.as_str())).collect();
    let up = a0.to_uppercase();
    assert_eq!(got, [(t[0].question.as_str(), a0.as_str()), (t[0].question.as_str(), up.as_str()), (t[1].question.as_str(), tasks::IDK), (t[2].question.as_str(), a2.as_str())]);
    assert_eq!((right, idk), (3, 1));
    let (ex, right, idk) = rl::round_examples(t, &samples, false, 1);
    assert_eq!((ex.len(), right, idk), (3, 3, 0));
    assert!(ex.iter().all(|e| e.target != a1));
    // With a threshold of 2 right samples, the question right once counts as never right.
    let (ex, right, idk) = rl::round_examples(t, &samples, true, 2);
    let got: Vec<(&str, &str)> = ex.iter().map(|e| (e.question.as_str(), e.target.as_str())).collect();
    assert_eq!(got, [(t[0].question.as_str(), a0.as_str()), (t[0].question.as_str(), up.as_str()), (t[1].question.as_str(), tasks::IDK), (t[2].question.as_str(), tasks::IDK)]);
    assert_eq!((right, idk), (2, 2));
    // 4 of 4 right samples: only a question right every time would keep its answers (none here).
    let (ex, right, idk) = rl::round_examples(t, &samples, false, 4);
    assert_eq!((ex.len(), right, idk), (0, 0, 0));
}

#[test]
fn rl_command_refuses_bad_input_in_one_line() {
    let dir = common::tempdir();
    let d = dir.path();
    let set = tasks::generate(&tasks::TaskConfig { train: 20, val: 10, ..Default::default() }).unwrap();
    let (tr, va) = (d.join("train.jsonl"), d.join("val.jsonl"));
    tasks::write_tasks(&tr, &set.train).unwrap();
    tasks::write_tasks(&va, &set.val).unwrap();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shakespeare-board.tgpt");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--checkpoint".into(), s(&d.join("nothing")), "--tasks".into(), s(&tr), "--val".into(), s(&va), "--samples".into(), "2".into()], "nothing"),
        (vec!["--checkpoint".into(), s(&base), "--tasks".into(), s(&tr), "--val".into(), s(&va), "--samples".into(), "2".into()], "checkpoint"),
        (vec!["--checkpoint".into(), s(d), "--tasks".into(), s(&d.join("no.jsonl")), "--val".into(), s(&va), "--samples".into(), "2".into()], "no.jsonl"),
        (vec!["--checkpoint".into(), s(d), "--tasks".into(), s(&tr), "--val".into(), s(&va), "--samples".into(), "0".into()], "--samples"),
        (vec!["--checkpoint".into(), s(d), "--tasks".into(), s(&tr), "--val".into(), s(&va), "--samples".into(), "2".into(), "--set".into(), "bogus=1".into()], "bogus"),
        (vec!["--checkpoint".into(), s(d), "--tasks".into(), s(&tr), "--val".into(), s(&va), "--samples".into(), "2".into(), "--min-right".into(), "3".into()], "--min-right must be between 1 and --samples (2), not 3"),
    ];
    for (args, needle) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_tinygpt-train")).arg("rl").args(&args).arg("--out").arg(d.join("out")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// A policy fine-tuned with fake quantization samples the weight type it fakes (what
/// `export --dtype` will ship), byte for byte the exporter's file; without it, f32.
#[test]
fn the_policy_samples_in_the_weight_type_its_fine_tuning_fakes() {
    use tinygpt_runtime::{writer::MetaData, DType, Model};
    use tinygpt_train::{export, rl::Policy};
    let dir = common::tempdir();
    let corpus = common::write(dir.path(), "corpus.txt", common::corpus(20_000).as_bytes());
    let out = dir.path().join("base");
    common::run(&common::small_config(&corpus, "llama", &["max_iters=2"]), &out, false);
    let ck_path = train::checkpoint_in(&out).unwrap();
    let (model, tok) = train::model_from_checkpoint(&train::load_checkpoint(&ck_path).unwrap(), Device::Cpu, false).unwrap();
    for (sets, dtype, group) in [(&[][..], DType::F32, 64), (&["qat=int4", "qat_group_size=32"][..], DType::I4, 32), (&["qat=int8"][..], DType::I8, 64)] {
        let policy = SftPolicy { cfg: sft_cfg(sets), device: Device::Cpu, verbose: false };
        let bytes = policy.export(&ck_path).unwrap();
        let m = Model::from_bytes(&bytes).unwrap();
        assert_eq!((m.config().dtype, m.config().group_size), (dtype, group), "{sets:?}");
        let want = export::encode(&model, &tok, &MetaData::default(), dtype, group).unwrap();
        assert!(*bytes == *want, "{sets:?}: the policy's file differs from the exporter's");
    }
}
