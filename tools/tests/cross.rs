//! The ARM builds under qemu-user print the same text as the native build.
//!
//! Builds three release targets and runs many generations under emulation (a few minutes), so it
//! is opt-in: `cargo test -p tinygpt --test cross -- --ignored`. It runs `tools/test-cross.sh`
//! with its own target directory (the outer cargo keeps its own locked).

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "slow: three release builds and qemu-user runs; run with --ignored"]
fn arm_builds_under_qemu_match_native() {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR"));
    // .../<target>/<profile>/tinygpt -> .../<target>/cross
    let exe = Path::new(env!("CARGO_BIN_EXE_tinygpt"));
    let target = exe.parent().and_then(Path::parent).expect("target directory").join("cross");
    let out = Command::new("bash")
        .arg(tools.join("test-cross.sh"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("bash runs tools/test-cross.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        out.status.success() && last.ends_with(" 0 failed"),
        "test-cross.sh failed ({:?}): {stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: u32 = last.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed >= 40, "expected at least 40 checks: {last}");
}
