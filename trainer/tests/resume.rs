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

    // The log on disk has each step once, and the same rows as the uninterrupted run's log
    // (timings aside), to the bit: kept rows are not rewritten on resume.
    let rows = |run: &str| -> Vec<(u64, String, u64, Option<u64>)> {
        let text = std::fs::read_to_string(dir.path().join(run).join("log.jsonl")).unwrap();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["step"].as_u64().unwrap(),
                    v["split"].as_str().unwrap().to_owned(),
                    v["loss"].as_f64().unwrap().to_bits(),
                    v["lr"].as_f64().map(f64::to_bits),
                )
            })
            .collect()
    };
    let split_rows = rows("split");
    assert_eq!(split_rows.iter().filter(|r| r.1 == "train").count(), 16);
    assert_eq!(split_rows, rows("full"), "the resumed run's log differs from the uninterrupted run's");
    assert!(split_dir.join("loss.svg").exists());
}
