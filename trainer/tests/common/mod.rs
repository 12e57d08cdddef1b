//! Shared helpers for the trainer's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tinygpt_train::config::TrainConfig;
use tinygpt_train::train::{self, Checkpoint, RunOptions, RunSummary};

/// Tiny Shakespeare where the repository's shared data folder has it, unless
/// `TINYGPT_TEST_CORPUS=generated` asks for the generated corpus (to check the tests without it).
pub fn shakespeare() -> Option<String> {
    if std::env::var("TINYGPT_TEST_CORPUS").is_ok_and(|v| v == "generated") {
        return None;
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/tinyshakespeare.txt");
    std::fs::read_to_string(p).ok()
}

/// All of Tiny Shakespeare (1,115,394 bytes), or as much generated text.
pub const WHOLE: usize = 1_115_394;

/// A text corpus for tests: the first `bytes` of Tiny Shakespeare, else `bytes` of generated
/// pseudo-English with some non-ASCII characters (the test output says which).
pub fn corpus(bytes: usize) -> String {
    assert!(bytes <= 16 << 20, "corpus({bytes}): test corpora are generated up to 16 MiB");
    let shakespeare = shakespeare();
    eprintln!("test corpus: {}", if shakespeare.is_some() { "Tiny Shakespeare" } else { "generated" });
    if let Some(s) = shakespeare {
        let mut cut = bytes.min(s.len());
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        return s[..cut].to_string();
    }
    let words = ["the", "king", "and", "queen", "shall", "speak", "thou", "art", "my", "lord", "naïve", "café", "—", "O!"];
    let mut x = 12345u64;
    let mut out = String::new();
    while out.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(words[(x % words.len() as u64) as usize]);
        out.push(if x % 11 == 0 { '\n' } else { ' ' });
    }
    out
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// A small training configuration for `corpus`, with overrides.
pub fn small_config(corpus: &Path, arch: &str, sets: &[&str]) -> TrainConfig {
    let base = format!(
        r#"
        name = "test"
        corpus = {corpus:?}
        arch = "{arch}"
        n_layer = 2
        n_head = 4
        n_embd = 32
        block_size = 32
        batch_size = 8
        max_iters = 40
        learning_rate = 3e-3
        min_lr = 3e-4
        warmup_iters = 5
        beta2 = 0.99
        eval_interval = 20
        sample_tokens = 0
        seed = 7
        threads = 1
        "#,
        corpus = corpus.display().to_string()
    );
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    TrainConfig::from_str_with(&base, &sets).expect("valid test config")
}

/// Training runs of one test binary take turns: the tests run in parallel threads, and a run
/// draws its initialisation, batches and dropout from libtorch's global generator, so two runs at
/// once would interleave their draws and neither would be reproducible.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This test's turn to train (see [`TRAINING`]), held until the guard is dropped.
pub fn training_turn() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Trains `cfg` into `out` on the CPU (one run at a time, see [`TRAINING`]).
pub fn run(cfg: &TrainConfig, out: &Path, resume: bool) -> RunSummary {
    let _turn = training_turn();
    train::set_threads(cfg.threads);
    train::train(cfg, &RunOptions { out: out.to_path_buf(), resume, device: tch::Device::Cpu, verbose: false })
        .expect("training runs")
}

/// The best checkpoint of a run.
pub fn best(out: &Path) -> Checkpoint {
    train::load_checkpoint(&train::checkpoint_in(out).unwrap()).unwrap()
}
