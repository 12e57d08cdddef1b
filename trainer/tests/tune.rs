//! `tinygpt-train tune`: the GP finds the good region of a tiny space, a killed study resumes,
//! two processes share a study, constraints agree with the runtime's numbers, bad input is one
//! line and a non-zero exit. Tiny alphabet models on the CPU.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tinygpt_runtime::board::STM32F405;
use tinygpt_runtime::writer::MetaData;
use tinygpt_runtime::{DType, KvDType};
use tinygpt_train::config::TrainConfig;
use tinygpt_train::data::TextTokenizer;
use tinygpt_train::model::{Gpt, ModelDims};
use tinygpt_train::tune::space::{Sizer, Space};
use tinygpt_train::tune::study::{State, Study};
use tinygpt_train::tune::{self, SamplerKind, TuneOptions};

const BIN: &str = env!("CARGO_BIN_EXE_tinygpt-train");

/// A tiny alphabet configuration: 2 layers, 32 wide, one thread.
fn base_toml(max_iters: u64, eval_interval: u64) -> String {
    format!(
        "name = \"tune-test\"\nalphabet_task = true\narch = \"gpt2\"\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\n\
         batch_size = 8\nmax_iters = {max_iters}\nlearning_rate = 1e-3\nwarmup_iters = 0\nbeta2 = 0.99\n\
         eval_interval = {eval_interval}\neval_batch = 16\nlog_interval = 100\nsample_tokens = 0\nseed = 3\nthreads = 1\n"
    )
}

const LR_SPACE: &str = "[params]\nlearning_rate = { log_uniform = [1e-5, 1e-1] }\n";

fn opts(dir: &Path, trials: usize, sampler: SamplerKind, seed: u64) -> TuneOptions {
    TuneOptions {
        config: dir.join("base.toml"),
        space: dir.join("space.toml"),
        trials,
        study: None,
        sampler,
        prune: false,
        prune_after: 0,
        seed,
        device: tch::Device::Cpu,
        out: dir.join("out"),
        startup: Some(3),
    }
}

fn lr_of(t: &tinygpt_train::tune::study::Trial) -> f64 {
    t.params["learning_rate"].as_f64().unwrap()
}

/// Learning rates over six decades: 30 steps from scratch barely move the loss from ln 27 below
/// 1e-3, and diverge to worse than that above 0.3; the loss is below 0.5 only from about 0.03 to
/// 0.2, a sixth of the range in the logarithm.
const WIDE_LR_SPACE: &str = "[params]\nlearning_rate = { log_uniform = [1e-5, 10.0] }\n";

#[test]
fn gp_finds_the_good_region_of_the_learning_rate() {
    let dir = common::tempdir();
    common::write(dir.path(), "base.toml", base_toml(30, 15).as_bytes());
    common::write(dir.path(), "space.toml", WIDE_LR_SPACE.as_bytes());
    let _turn = common::training_turn();
    let mut lines = Vec::new();
    let s = tune::tune(&opts(dir.path(), 10, SamplerKind::Gp, 1), &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(s.ran.len(), 10, "{lines:#?}");
    assert_eq!(lines.len(), 10);
    let study = Study::open_existing(&dir.path().join("out/study.sqlite")).unwrap();
    let trials = study.trials().unwrap();
    let gp: Vec<_> = trials.iter().filter(|t| t.sampler == "gp").collect();
    assert_eq!(gp.len(), 7, "{lines:#?}");
    // After 3 random trials the GP spends its trials in the good region (random search, with
    // the same seed and so the same first 3 trials, puts 1 of its next 7 there).
    let good = gp.iter().filter(|t| t.value.is_some_and(|v| v < 0.5)).count();
    assert!(good >= 3, "only {good} of 7 GP trials below 0.5:\n{}", lines.join("\n"));
    let (best_n, best_v) = s.best.unwrap();
    let best_lr = lr_of(&trials[best_n as usize]);
    assert!(best_v < 0.1 && (0.02..0.2).contains(&best_lr), "best {best_v} at {best_lr}:\n{}", lines.join("\n"));

    // Random search at the same budget and seed ends higher.
    let rdir = common::tempdir();
    common::write(rdir.path(), "base.toml", base_toml(30, 15).as_bytes());
    common::write(rdir.path(), "space.toml", WIDE_LR_SPACE.as_bytes());
    let r = tune::tune(&opts(rdir.path(), 10, SamplerKind::Random, 1), &mut |_| {}).unwrap();
    assert!(r.best.unwrap().1 > best_v, "random {:?} vs gp {best_v}", r.best);

    // The outputs: a config `train` takes, with the best trial's learning rate; the plots.
    let best = TrainConfig::load(&dir.path().join("out/best.toml"), &[]).unwrap();
    assert_eq!(best.learning_rate, best_lr);
    assert_eq!(best.n_embd, 16);
    for f in ["history.svg", "params.svg"] {
        let svg = std::fs::read_to_string(dir.path().join("out").join(f)).unwrap();
        assert_eq!(svg.matches("<circle").count(), 10, "{f}");
    }
    let table = tune::show(&dir.path().join("out/study.sqlite")).unwrap();
    assert_eq!(table.lines().count(), 12, "{table}");
    assert!(table.contains("10 trials: 10 complete"), "{table}");
}

/// Ten random learning rates over four decades, 40 steps with evaluations every 10, under the
/// median rule from step `prune_after` on: the study's trials.
fn pruned_study(prune_after: u64) -> Vec<tinygpt_train::tune::study::Trial> {
    let dir = common::tempdir();
    common::write(dir.path(), "base.toml", base_toml(40, 10).as_bytes());
    common::write(dir.path(), "space.toml", LR_SPACE.as_bytes());
    let _turn = common::training_turn();
    let mut o = opts(dir.path(), 10, SamplerKind::Random, 5);
    o.prune = true;
    o.prune_after = prune_after;
    tune::tune(&o, &mut |_| {}).unwrap();
    Study::open_existing(&dir.path().join("out/study.sqlite")).unwrap().trials().unwrap()
}

fn pruned_steps(trials: &[tinygpt_train::tune::study::Trial]) -> Vec<Vec<u64>> {
    trials.iter().filter(|t| t.state == State::Pruned).map(|t| t.intermediate.iter().map(|x| x.0).collect()).collect()
}

#[test]
fn median_rule_prunes_only_trials_worse_than_the_median() {
    let trials = pruned_study(0);
    let pruned: Vec<_> = trials.iter().filter(|t| t.state == State::Pruned).collect();
    assert!(!pruned.is_empty(), "random learning rates over four decades: some trial is hopeless");
    for t in &pruned {
        // Stopped before the end, worse than the median of the complete trials at that step.
        let (step, v) = *t.intermediate.last().unwrap();
        assert!(step < 40);
        assert_eq!(t.value, Some(v));
        let mut others: Vec<f64> = trials
            .iter()
            .filter(|o| o.state == State::Complete && o.number < t.number)
            .filter_map(|o| o.intermediate.iter().find(|x| x.0 == step).map(|x| x.1))
            .collect();
        others.sort_by(f64::total_cmp);
        assert!(others.len() >= tune::PRUNE_STARTUP);
        assert!(v > others[(others.len() - 1) / 2], "trial {} pruned at {v} against {others:?}", t.number);
    }
}

#[test]
fn median_rule_waits_for_prune_after() {
    // Without it, some of these trials are pruned at the first evaluation (step 10) ...
    let early = pruned_steps(&pruned_study(0));
    assert!(early.iter().any(|s| s == &[10]), "no trial pruned at step 10: {early:?}");
    // ... with --prune-after 20, none is pruned before step 20, and hopeless ones still are.
    let later = pruned_steps(&pruned_study(20));
    assert!(!later.is_empty(), "hopeless learning rates are still hopeless at step 20");
    for steps in &later {
        assert!(*steps.last().unwrap() >= 20, "pruned before step 20: {steps:?}");
        assert!(steps.contains(&10), "evaluated at step 10 and went on: {steps:?}");
    }
}

fn tune_cmd(dir: &Path, trials: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["tune", "--config"]).arg(dir.join("base.toml")).arg("--space").arg(dir.join("space.toml"));
    c.args(["--trials", &trials.to_string(), "--device", "cpu", "--prune", "none", "--out"]).arg(dir.join("out"));
    c.args(extra);
    c
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn study_trials(dir: &Path) -> Vec<tinygpt_train::tune::study::Trial> {
    Study::open_existing(&dir.join("out/study.sqlite")).and_then(|s| s.trials()).unwrap_or_default()
}

#[test]
fn a_killed_study_resumes_without_repeating_finished_trials() {
    let dir = common::tempdir();
    common::write(dir.path(), "base.toml", base_toml(300, 20).as_bytes());
    common::write(dir.path(), "space.toml", LR_SPACE.as_bytes());
    let mut child = tune_cmd(dir.path(), 3, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Kill it while trial 1 runs (trial 0 done, trial 1 has reported an evaluation).
    wait_for("trial 1 to be under way", Duration::from_secs(120), || {
        let t = study_trials(dir.path());
        t.len() == 2 && t[0].state == State::Complete && !t[1].intermediate.is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = study_trials(dir.path());
    assert_eq!(before[1].state, State::Running);

    let out = tune_cmd(dir.path(), 3, &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("trial 0/"), "trial 0 ran again:\n{stdout}");
    assert!(stdout.contains("trial 1/3 (restarted): complete"), "{stdout}");
    assert!(stdout.contains("trial 2/3: complete"), "{stdout}");
    let after = study_trials(dir.path());
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|t| t.state == State::Complete));
    assert_eq!((after[0].attempts, after[1].attempts, after[2].attempts), (1, 2, 1));
    assert_eq!(after[0].started, before[0].started);
    assert_eq!(after[0].value, before[0].value);
    assert_eq!(after[1].params, before[1].params, "the restarted trial keeps its parameters");
    assert_eq!(after[1].intermediate.len(), 300 / 20, "the restart's evaluations only");
    // Once complete, a re-run has nothing to do.
    let out = tune_cmd(dir.path(), 3, &[]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(trials_run_by(&stdout).is_empty(), "{stdout}");
    assert!(stdout.contains("best: trial"), "{stdout}");
}

#[test]
fn ctrl_c_marks_the_trial_interrupted_and_the_next_run_restarts_it() {
    let dir = common::tempdir();
    common::write(dir.path(), "base.toml", base_toml(100_000, 20).as_bytes());
    common::write(dir.path(), "space.toml", LR_SPACE.as_bytes());
    let child = tune_cmd(dir.path(), 2, &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for("trial 0 to report", Duration::from_secs(120), || study_trials(dir.path()).first().is_some_and(|t| !t.intermediate.is_empty()));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("trial 0/2: interrupted"), "{stdout}");
    let t = study_trials(dir.path());
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].state, State::Interrupted);
    // The next run takes it again first (its parameters kept); a short base would be a different
    // study, so this run is stopped the same way once it has restarted the trial.
    let child = tune_cmd(dir.path(), 2, &[]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("trial 0 to restart", Duration::from_secs(120), || {
        study_trials(dir.path()).first().is_some_and(|x| x.attempts == 2 && x.state == State::Running && !x.intermediate.is_empty())
    });
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stdout).contains("trial 0/2 (restarted): interrupted"));
    let after = study_trials(dir.path());
    assert_eq!(after.len(), 1, "no new trial was started");
    assert_eq!(after[0].params, t[0].params);
}

fn trials_run_by(stdout: &str) -> Vec<i64> {
    stdout.lines().filter_map(|l| l.strip_prefix("trial ")?.split('/').next()?.parse().ok()).collect()
}

#[test]
fn two_processes_on_one_study_never_run_the_same_trial() {
    let dir = common::tempdir();
    common::write(dir.path(), "base.toml", base_toml(120, 40).as_bytes());
    common::write(dir.path(), "space.toml", LR_SPACE.as_bytes());
    let study = dir.path().join("shared.sqlite");
    let spawn = || {
        tune_cmd(dir.path(), 8, &["--study", study.to_str().unwrap(), "--startup", "3"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b): (Output, Output) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (ra, rb) = (trials_run_by(&String::from_utf8_lossy(&a.stdout)), trials_run_by(&String::from_utf8_lossy(&b.stdout)));
    assert!(!ra.is_empty() && !rb.is_empty(), "both processes take trials: {ra:?} {rb:?}");
    let mut all: Vec<i64> = ra.iter().chain(&rb).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>(), "each trial run once: {ra:?} {rb:?}");
    let trials = Study::open_existing(&study).unwrap().trials().unwrap();
    assert_eq!(trials.len(), 8);
    assert!(trials.iter().all(|t| t.state == State::Complete && t.attempts == 1));
    let pids: std::collections::BTreeSet<i64> = trials.iter().map(|t| t.pid).collect();
    assert_eq!(pids.len(), 2);
}

/// The int8 file `export` writes for `cfg` (random weights) and its session at block_size.
fn exported_sizes(cfg: &TrainConfig, tok: &TextTokenizer) -> (usize, usize) {
    let model = Gpt::new(ModelDims::new(cfg, tok.vocab_size()), tch::Device::Cpu, false).unwrap();
    let meta = MetaData {
        name: cfg.name.clone(),
        corpus: "alphabet task (generated)".into(),
        train_steps: 123_456,
        tokens_seen: 987_654_321,
        val_loss_f32: Some(1.5),
        val_loss_f16: Some(1.5),
        val_loss_i8: Some(1.6),
        trainer_version: tinygpt_train::train::TRAINER_VERSION.into(),
    };
    let bytes = tinygpt_train::export::encode(&model, tok, &meta, DType::I8, 64).unwrap();
    let m = tinygpt_train::export::load(&bytes).unwrap();
    (bytes.len(), m.session_bytes(cfg.block_size as usize, KvDType::I8))
}

#[test]
fn constraints_agree_with_the_runtime_numbers() {
    let dir = common::tempdir();
    let board = "alphabet_task = true\narch = \"llama\"\nn_layer = 5\nn_head = 8\nn_kv_head = 2\nn_embd = 128\nn_hidden = 320\n\
                 block_size = 128\nbatch_size = 2\nmax_iters = 2\neval_interval = 2\neval_batch = 1\nlearning_rate = 1e-3\nsample_tokens = 0\nthreads = 1\n";
    common::write(dir.path(), "base.toml", board.as_bytes());
    let space_text = "[params]\nn_layer = { int = [1, 16] }\n[constraints]\nfits = \"stm32f405\"\n";
    common::write(dir.path(), "space.toml", space_text.as_bytes());
    let base = TrainConfig::from_str_with(board, &[]).unwrap();
    let space = Space::parse(space_text, &base).unwrap();
    let tok = tinygpt_train::train::prepare_data(&base, None).unwrap().tok;
    let mut sizer = Sizer::new(space.constraints.clone());
    let _turn = common::training_turn();
    let mut fitting = Vec::new();
    for layers in 1..=9 {
        let cfg = base.with_overrides(&[format!("n_layer={layers}")]).unwrap();
        let (file, session) = exported_sizes(&cfg, &tok);
        let s = sizer.sizes(&cfg).unwrap();
        assert_eq!(s.session_bytes, session, "{layers} layers");
        // The sizer's file has the longest metadata: never shorter, a few bytes longer at most.
        assert!(s.file_bytes >= file && s.file_bytes <= file + 64, "{layers} layers: {} vs {file}", s.file_bytes);
        let runtime_says = STM32F405.check(file, session).is_ok();
        assert_eq!(sizer.check(&cfg).unwrap().is_ok(), runtime_says, "{layers} layers: file {file}, session {session}");
        if runtime_says {
            fitting.push(layers);
        }
    }
    // The board model fits, with room for one more layer at most.
    assert!(fitting.contains(&5) && !fitting.contains(&7), "{fitting:?}");
    let limit = *fitting.last().unwrap();
    // A search over 1..=16 layers only ever trains models that fit.
    let mut o = opts(dir.path(), 4, SamplerKind::Random, 2);
    o.startup = None;
    tune::tune(&o, &mut |_| {}).unwrap();
    let trials = study_trials(dir.path());
    assert_eq!(trials.len(), 4);
    for t in &trials {
        let n = t.params["n_layer"].as_i64().unwrap();
        assert!(n <= limit as i64, "trial {} has {n} layers; {limit} fit", t.number);
    }
}

/// Runs `tune` expecting a one-line error that contains `want`.
fn fails_with(cmd: &mut Command, want: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains(want), "{stderr:?} lacks {want:?}");
    assert!(stderr.starts_with("tinygpt-train: error: "), "{stderr}");
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    let dir = common::tempdir();
    let d = dir.path();
    common::write(d, "base.toml", base_toml(4, 2).as_bytes());
    let cases: [(&str, &str); 6] = [
        ("[params]\nlearning_rat = { log_uniform = [1e-4, 1e-2] }\n", "unknown training key `learning_rat`"),
        ("[params]\nlearning_rate = { uniform = [0.01, 0.01] }\n", "is empty"),
        ("[params]\nn_layer = { int = [4, 2] }\n", "is inverted"),
        ("[params]\nlearning_rate = { uniform = [1e-3, 1e-2] }\n[constraints]\nfits = \"stm32f405\"\ndtype = \"f32\"\n", ""),
        ("[params]\nblock_size = { choice = [8192, 16384] }\n[constraints]\nfits = \"stm32f405\"\n", "meets the constraints"),
        ("foo = 1\n[params]\nlearning_rate = { log_uniform = [1e-4, 1e-2] }\n", "unknown key `foo` in the space"),
    ];
    for (i, (space, want)) in cases.iter().enumerate() {
        common::write(d, "space.toml", space.as_bytes());
        if want.is_empty() {
            // A tiny f32 model fits the board: this one is accepted (the check is not a refusal of everything).
            let out = tune_cmd(d, 1, &[]).output().unwrap();
            assert!(out.status.success(), "case {i}: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::remove_dir_all(d.join("out")).unwrap();
            continue;
        }
        fails_with(&mut tune_cmd(d, 1, &[]), want);
        assert!(!d.join("out/study.sqlite").exists(), "case {i}: a refused space leaves no study");
    }
    // Resuming with a different space, or a different base config.
    common::write(d, "space.toml", LR_SPACE.as_bytes());
    let out = tune_cmd(d, 1, &[]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    common::write(d, "space.toml", "[params]\nlearning_rate = { log_uniform = [1e-4, 1e-1] }\n".as_bytes());
    fails_with(&mut tune_cmd(d, 2, &[]), "different space");
    common::write(d, "space.toml", LR_SPACE.as_bytes());
    common::write(d, "base.toml", base_toml(6, 2).as_bytes());
    fails_with(&mut tune_cmd(d, 2, &[]), "different base config");
    // Flags.
    common::write(d, "base.toml", base_toml(4, 2).as_bytes());
    fails_with(&mut tune_cmd(d, 2, &["--sampler", "tpe"]), "--sampler");
    fails_with(&mut tune_cmd(d, 0, &[]), "--trials must be at least 1");
    fails_with(Command::new(BIN).args(["tune", "--show"]).arg(d.join("nothing.sqlite")), "no study at");
    let show = Command::new(BIN).args(["tune", "--show"]).arg(d.join("out/study.sqlite")).output().unwrap();
    assert!(show.status.success());
    assert!(String::from_utf8_lossy(&show.stdout).contains("1 trials: 1 complete"));
}
