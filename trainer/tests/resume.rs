//! Stopping a run and resuming it gives exactly the losses of an uninterrupted run (CPU, fixed seed).

mod common;

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let dir = common::tempdir();
    let corpus = common::write(dir.path(), "corpus.txt", common::corpus(30_000).as_bytes());
    // Dropout on, so the per-step random state matters too.
    let sets = ["max_iters=16", "eval_interval=4", "dropout=0.1", "grad_accum=2"];
    let full_cfg = common::small_config(&corpus, "llama", &sets);
    let full = common::run(&full_cfg, &dir.path().join("full"), false);
    assert_eq!(full.steps, 16);
    assert_eq!(full.train_losses.len(), 16);

    let split_dir = dir.path().join("split");
    let first_cfg = common::small_config(&corpus, "llama", &[&sets[..], &["stop_at=6"]].concat());
    let first = common::run(&first_cfg, &split_dir, false);
    assert_eq!(first.steps, 6);
    assert_eq!(first.reason, "paused");
    let second = common::run(&full_cfg, &split_dir, true);
    assert_eq!(second.steps, 16);

    let joined: Vec<(u64, f64)> = first.train_losses.iter().chain(&second.train_losses).copied().collect();
    assert_eq!(joined, full.train_losses, "train losses differ after resuming");
    let val_joined: Vec<(u64, f64)> = first.val_losses.iter().chain(&second.val_losses).copied().collect();
    assert_eq!(val_joined, full.val_losses, "validation losses differ after resuming");

    // The log on disk has each step once.
    let log = std::fs::read_to_string(split_dir.join("log.jsonl")).unwrap();
    let train_rows = log.lines().filter(|l| l.contains("\"split\":\"train\"")).count();
    assert_eq!(train_rows, 16);
    assert!(split_dir.join("loss.svg").exists());
}
