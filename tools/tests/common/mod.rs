//! Helpers shared by the end-to-end tests of the `tinygpt` binary: running it, reading what it
//! printed, asserting clean successes and one-line failures, and writing synthetic models.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;
use tinygpt::synth::Spec;

/// The binary under test: `TINYGPT_EXE` if set (`tools/test-cross.sh` runs these tests against
/// the static `no_std` build that way), else the one cargo built for the tests.
pub fn exe() -> String {
    std::env::var("TINYGPT_EXE").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tinygpt").to_owned())
}

/// Runs the binary with `args`, stdin empty.
pub fn tinygpt(args: &[&str]) -> Output {
    tinygpt_fed(args, b"")
}

/// Runs the binary with `input` on its stdin (a pipe, closed after `input`).
pub fn tinygpt_fed(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(exe())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tinygpt binary runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    // Written from a thread, so that a full stdout pipe cannot block the writer.
    let writer = std::thread::spawn(move || {
        // The command may exit before reading everything (an error); that is not a test failure.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for tinygpt");
    writer.join().expect("stdin writer");
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a successful run with nothing on stderr; returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}, stderr: {}", o.status.code(), stderr(o));
    assert_eq!(stderr(o), "", "stderr must stay empty");
    stdout(o)
}

/// Asserts a clean failure: the exit code, nothing on stdout, exactly one `error: ` line on
/// stderr, no panic message or backtrace. Returns the line.
pub fn clean_error(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(o.stdout.is_empty(), "stdout must be empty on error: {:?}", stdout(o));
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    assert!(err.starts_with("error: ") && err.ends_with('\n'), "{err:?}");
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "thread 'main'"] {
        assert!(!err.contains(bad), "{err:?}");
    }
    err
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Synthetic models in a temporary directory (each test file adds the kinds it needs).
pub struct Models {
    pub dir: TempDir,
}

impl Models {
    pub fn new() -> Self {
        Models { dir: tempfile::tempdir().expect("temp dir") }
    }
    /// Writes the model `spec` describes as `name`.
    pub fn write(&self, name: &str, spec: &Spec) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, spec.build().expect("synthetic model builds")).expect("write model");
        p
    }
}
