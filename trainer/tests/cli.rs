//! The command line: the alphabet task end to end, and clear one-line errors for bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tinygpt-train"))
}

fn configs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with exactly one line on stderr that contains every `needle`, and no panic.
fn assert_clean_error(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected failure; stderr: {e}");
    assert!(!e.contains("panicked"), "panic: {e}");
    assert_eq!(e.trim_end().lines().count(), 1, "expected one line on stderr, got: {e}");
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
}

#[test]
fn alphabet_task_end_to_end() {
    let dir = common::tempdir();
    let run = dir.path().join("run");
    let o = bin()
        .args(["train", "--config"])
        .arg(configs().join("alphabet.toml"))
        .arg("--out")
        .arg(&run)
        .args(["--device", "cpu", "--set", "sample_tokens=0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("tinygpt-train") && stdout.lines().next().unwrap().contains("libtorch"), "{stdout}");
    for f in ["best.pt", "last.pt", "log.jsonl", "loss.svg"] {
        assert!(run.join(f).exists(), "{f} missing");
    }

    let file = dir.path().join("alphabet.tgpt");
    let o = bin().args(["export", "--checkpoint"]).arg(&run).args(["--dtype", "int8", "--out"]).arg(&file).output().unwrap();
    assert!(o.status.success(), "export failed: {}", stderr(&o));

    let bytes = tinygpt_runtime::writer::read_aligned(&file).unwrap();
    let model = tinygpt_runtime::Model::from_bytes(&bytes).unwrap();
    let meta = model.metadata();
    let (f32l, i8l) = (meta.val_loss_f32.unwrap(), meta.val_loss_i8.unwrap());
    assert!(f32l < 0.05, "alphabet val loss {f32l} is not near zero");
    assert!(i8l < 0.05, "alphabet int8 val loss {i8l}");
    assert_eq!(meta.train_steps, 300);

    // Greedy continuation with the runtime's generate loop.
    let mut prompt = [0u32; 4];
    let n = model.tokenizer().encode("abcd", &mut prompt).unwrap();
    let text = tinygpt_train::export::runtime_generate(&bytes, &prompt[..n], 30, 0.0, 0, 1).unwrap();
    assert!(text.starts_with("abcdefghijklmnopqrstuvwxyz\nabc"), "greedy continuation: {text:?}");

    let o = bin().args(["sample", "--checkpoint"]).arg(&run).args(["-p", "abcd", "-n", "8", "--temp", "0"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim_end(), "abcdefghijkl");

    // And the `tinygpt` command itself on the export (built by cargo if it is not yet).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let o = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "-q", "-p", "tinygpt", "--bin", "tinygpt", "--", "generate", "-m"])
        .arg(&file)
        .args(["-p", "abcd", "-n", "30", "--temp", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "tinygpt generate failed: {}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("abcdefghijklmnopqrstuvwxyz\nabc"), "tinygpt generate --temp 0: {text:?}");
}

#[test]
fn unknown_config_keys_are_named() {
    let o = bin().args(["train", "--config"]).arg(configs().join("alphabet.toml")).args(["--set", "n_layers=3", "--device", "cpu"]).output().unwrap();
    assert_clean_error(&o, &["n_layers"]);

    let dir = common::tempdir();
    let text = std::fs::read_to_string(configs().join("alphabet.toml")).unwrap() + "\nlearnin_rate = 1.0\n";
    let cfg = common::write(dir.path(), "bad.toml", text.as_bytes());
    let o = bin().args(["train", "--config"]).arg(&cfg).args(["--device", "cpu"]).output().unwrap();
    assert_clean_error(&o, &["learnin_rate"]);

    let o = bin().args(["train", "--config"]).arg(configs().join("alphabet.toml")).args(["--set", "n_head=3", "--device", "cpu"]).output().unwrap();
    assert_clean_error(&o, &["n_head"]);

    let o = bin().args(["train", "--config"]).arg(dir.path().join("missing.toml")).output().unwrap();
    assert_clean_error(&o, &["missing.toml"]);

    // TOML syntax errors: one line with the place.
    let bad = common::write(dir.path(), "syntax.toml", b"name = \"x\nn_layer = 2\n");
    let o = bin().args(["train", "--config"]).arg(&bad).output().unwrap();
    assert_clean_error(&o, &["syntax.toml", "line 1, column"]);
}

/// Values a run cannot use are refused before training, each naming its key.
#[test]
fn out_of_range_values_are_named() {
    for (set, needle) in [
        ("learning_rate=inf", "learning_rate"),
        ("weight_decay=nan", "weight_decay"),
        ("grad_clip=-1", "grad_clip"),
        ("norm_eps=0", "norm_eps"),
        ("sample_temperature=-1", "sample_temperature"),
        ("threads=100000", "threads"),
        ("n_layer=2000", "n_layer"),
        ("n_embd=65536", "parameters"),
    ] {
        let o = bin().args(["train", "--config"]).arg(configs().join("alphabet.toml")).args(["--set", set, "--device", "cpu"]).output().unwrap();
        assert_clean_error(&o, &[needle]);
    }
    let o = bin()
        .args(["train", "--config"])
        .arg(configs().join("alphabet.toml"))
        .args(["--set", "arch=llama", "--set", "rope_theta=0", "--device", "cpu"])
        .output()
        .unwrap();
    assert_clean_error(&o, &["rope_theta"]);
}

#[test]
fn bad_corpora_are_clear_errors() {
    let dir = common::tempdir();
    let empty = common::write(dir.path(), "empty.txt", b"");
    let binary = common::write(dir.path(), "binary.txt", &[b'a', b'b', 0xff, 0xfe, b'c']);
    let tiny = common::write(dir.path(), "tiny.txt", b"hello");
    let missing = dir.path().join("nope.txt");
    let cases: [(&Path, &[&str]); 4] = [
        (&empty, &["empty"]),
        (&binary, &["not UTF-8", "offset 2"]),
        (&missing, &["nope.txt"]),
        (&tiny, &["block_size"]),
    ];
    for (path, needles) in cases {
        let o = bin()
            .args(["train", "--config"])
            .arg(configs().join("nanogpt-cpu.toml"))
            .arg("--corpus")
            .arg(path)
            .arg("--out")
            .arg(dir.path().join("run"))
            .args(["--device", "cpu"])
            .output()
            .unwrap();
        assert_clean_error(&o, needles);
    }
}

#[test]
fn export_without_checkpoint_is_a_clear_error() {
    let dir = common::tempdir();
    let o = bin().args(["export", "--checkpoint"]).arg(dir.path()).args(["--out"]).arg(dir.path().join("x.tgpt")).output().unwrap();
    assert_clean_error(&o, &["no checkpoint"]);
    let o = bin().args(["export", "--checkpoint"]).arg(dir.path()).args(["--dtype", "f64", "--out", "x.tgpt"]).output().unwrap();
    assert_clean_error(&o, &["f64"]);
}

/// The executable exports its answer to MKL's vendor question (`src/mkl.rs`) in its dynamic symbol
/// table; without that, libtorch's MKL would call its own and keep its generic kernels on non-Intel
/// CPUs. (`nm` comes with binutils, which linking Rust programs needs anyway.)
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn mkl_vendor_answer_is_exported() {
    let o = Command::new("nm").args(["-D", "--defined-only"]).arg(env!("CARGO_BIN_EXE_tinygpt-train")).output().unwrap();
    assert!(o.status.success(), "nm failed: {}", stderr(&o));
    let symbols = String::from_utf8_lossy(&o.stdout);
    assert!(
        symbols.lines().any(|l| l.ends_with(" T mkl_serv_intel_cpu_true")),
        "mkl_serv_intel_cpu_true is not in the executable's dynamic symbol table"
    );
}

/// `--corpus` supplies the corpus of a configuration that names none (and a path that needs
/// quoting in TOML works).
#[test]
fn corpus_flag_completes_a_config_without_corpus() {
    let dir = common::tempdir();
    let corpus = common::write(dir.path(), "odd \"name\" \\ here.txt", common::corpus(20_000).as_bytes());
    // The alphabet configuration without its generated task: a configuration that names no corpus.
    let text = std::fs::read_to_string(configs().join("alphabet.toml")).unwrap().replace("alphabet_task = true", "");
    let cfg = common::write(dir.path(), "nocorpus.toml", text.as_bytes());
    let run = dir.path().join("run");
    let short = ["--device", "cpu", "--set", "max_iters=3", "--set", "eval_interval=3", "--set", "sample_tokens=0"];
    let o = bin().args(["train", "--config"]).arg(&cfg).arg("--out").arg(&run).args(short).output().unwrap();
    assert_clean_error(&o, &["no corpus"]);
    let o = bin().args(["train", "--config"]).arg(&cfg).arg("--corpus").arg(&corpus).arg("--out").arg(&run).args(short).output().unwrap();
    assert!(o.status.success(), "train with --corpus failed: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("odd \"name\" \\ here.txt"), "the run does not name the corpus: {stdout}");
    assert!(run.join("best.pt").exists());

    // What --resume may not change, and a resume with nothing left to train.
    for (set, needles) in [
        ("arch=llama", &["arch", "cannot change"][..]),
        ("n_embd=64", &["n_embd", "cannot change"]),
        ("tokenizer=bpe", &["tokenizer", "cannot change"]),
        ("max_iters=3", &["step 3", "max_iters"]),
    ] {
        let o = bin().args(["train", "--resume", "--out"]).arg(&run).args(["--device", "cpu", "--set", set]).output().unwrap();
        assert_clean_error(&o, needles);
    }

    // Export and sample: bad values and places to write are one-line errors, and nothing
    // already there is replaced by anything but a model.
    let file = dir.path().join("m.tgpt");
    let nodir = dir.path().join("no/such/dir.tgpt");
    let cases: Vec<(Vec<&std::ffi::OsStr>, &[&str])> = vec![
        (vec!["sample".as_ref(), "--checkpoint".as_ref(), run.as_os_str(), "--temp".as_ref(), "nan".as_ref()], &["--temp", "finite"]),
        (vec!["sample".as_ref(), "--checkpoint".as_ref(), run.as_os_str(), "-n".as_ref(), "-1".as_ref()], &["-1", "0 or more"]),
        (vec!["export".as_ref(), "--checkpoint".as_ref(), run.as_os_str(), "--out".as_ref(), file.as_os_str(), "--eval-tokens".as_ref(), "1".as_ref()], &["--eval-tokens"]),
        (vec!["export".as_ref(), "--checkpoint".as_ref(), run.as_os_str(), "--out".as_ref(), nodir.as_os_str()], &["does not exist"]),
    ];
    for (args, needles) in cases {
        let o = bin().args(&args).output().unwrap();
        assert_clean_error(&o, needles);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let fifo = dir.path().join("fifo.tgpt");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let o = bin().args(["export", "--no-eval", "--checkpoint"]).arg(&run).arg("--out").arg(&fifo).output().unwrap();
        assert_clean_error(&o, &["not a regular file"]);
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        // A symbolic link is followed: its target gets the model, the link stays.
        let link = dir.path().join("link.tgpt");
        std::os::unix::fs::symlink("target.tgpt", &link).unwrap();
        let o = bin().args(["export", "--no-eval", "--checkpoint"]).arg(&run).arg("--out").arg(&link).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(dir.path().join("target.tgpt").is_file());
    }
    // A damaged checkpoint: one line, not libtorch's C++ stack.
    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("best.pt"), b"junk").unwrap();
    let o = bin().args(["export", "--checkpoint"]).arg(&junk).arg("--out").arg(&file).output().unwrap();
    assert_clean_error(&o, &["best.pt", "damaged"]);
}

/// Ctrl-C (SIGINT) saves a checkpoint, exits with 130, and `--resume` goes on from it.
#[cfg(unix)]
#[test]
fn interrupt_saves_a_checkpoint_and_resume_continues() {
    use std::io::Read;
    use std::time::{Duration, Instant};

    let dir = common::tempdir();
    let run = dir.path().join("run");
    // Long enough that the signal arrives mid-run: 100,000 steps of the alphabet model.
    let mut child = bin()
        .args(["train", "--config"])
        .arg(configs().join("alphabet.toml"))
        .arg("--out")
        .arg(&run)
        .args(["--device", "cpu", "--set", "max_iters=100000", "--set", "eval_interval=100000", "--set", "log_interval=1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has started (a row in the log), so the handler is installed.
    let log = run.join("log.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |s| s.lines().count() < 3) {
        assert!(start.elapsed() < Duration::from_secs(120), "training did not start");
        assert!(child.try_wait().unwrap().is_none(), "the trainer exited before the signal");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(130), "exit status after SIGINT; stderr: {err}");
    assert!(err.contains("interrupted: checkpoint saved at step"), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    // The summary line: "interrupted: N steps; ...".
    let steps: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("interrupted: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {out}"));
    assert!(steps >= 2 && steps < 100_000, "stopped at step {steps}");
    assert!(run.join("last.pt").exists() && run.join("loss.svg").exists());

    let target = steps + 5;
    let o = bin()
        .args(["train", "--resume", "--out"])
        .arg(&run)
        .args(["--device", "cpu", "--set", &format!("max_iters={target}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("resuming at step {steps}")), "{stdout}");
    assert!(stdout.contains(&format!("finished: {target} steps")), "{stdout}");
    let rows = std::fs::read_to_string(&log).unwrap();
    let last_train = rows.lines().filter(|l| l.contains("\"split\":\"train\"")).last().unwrap().to_owned();
    assert!(last_train.contains(&format!("\"step\":{target},")), "last log row: {last_train}");
}

/// `--device cuda` where CUDA cannot be used is a one-line error that says why; `auto` then
/// trains on the CPU and says so first.
#[test]
fn cuda_without_a_usable_gpu_is_a_clear_error() {
    let _ = tinygpt_train::cuda::load();
    if tch::Cuda::is_available() {
        println!("a CUDA device is available: nothing to check here");
        return;
    }
    let o = bin().args(["train", "--config"]).arg(configs().join("alphabet.toml")).args(["--device", "cuda"]).output().unwrap();
    assert_clean_error(&o, &["--device cuda"]);
    let e = stderr(&o);
    assert!(e.contains("does not load") || e.contains("sees no GPU"), "{e}");

    let dir = common::tempdir();
    let o = bin()
        .args(["train", "--config"])
        .arg(configs().join("alphabet.toml"))
        .arg("--out")
        .arg(dir.path().join("run"))
        .args(["--device", "auto", "--set", "max_iters=2", "--set", "sample_tokens=0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let first = String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_owned();
    assert!(first.contains("device cpu"), "{first}");
}
