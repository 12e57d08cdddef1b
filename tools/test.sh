#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust (rustup) installed:
#
#   tools/test.sh
#
# Installs what it needs when missing (idempotent): libtorch from PyPI into .venv
# (tools/setup-libtorch.sh), the rustup targets, Debian's qemu-system-arm, qemu-user-static and
# gcc-arm-linux-gnueabihf. Then it runs, in order:
#   1. `cargo test --workspace` (every test binary, even after a failure): runtime (reference cross-checks, property tests, corrupt input),
#      the CLI, and the trainer (tch vs runtime parity, exact resume, alphabet end to end);
#   2. the runtime's no_std builds for thumbv7em-none-eabihf and thumbv6m-none-eabi;
#   3. tools/test-arm.sh: the runtime's tests again on 32-bit ARM in Thumb-2 mode under qemu-arm,
#      where the Cortex-M4's DSP int8 kernel runs against the portable one;
#   4. tools/test-cross.sh: static aarch64 and 32-bit ARM builds under qemu-user print the same
#      text as the native build, and the CLI's end-to-end tests pass against the static (no_std)
#      x86_64 binary, which must be at most 600 KiB;
#   5. tools/test-board.sh: the STM32F405 firmware in QEMU prints the host's text, within budget;
#   6. tools/test-interop.sh: `tinygpt convert` on llama2.c and GGUF files gives run.c's and runq.c's
#      greedy ids and text, the tokenizer matches sentencepiece, and bad inputs are refused;
#   7. tools/test-serve.sh: `tinygpt serve` against the official openai client, a headless
#      Chromium and a bounded load test (installing Chromium and a venv when missing).
# The set-up also installs the Python oracles step 1's convert tests use (tools/test-interop.sh --setup).
# Exits non-zero if any step fails. Runs on 2 cores in well under CI's 90 minutes.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR=never
status=0
step() { echo; echo "==> $*"; }

step "set-up: libtorch (.venv) and rustup targets"
tools/setup-libtorch.sh || { echo "error: libtorch set-up failed" >&2; exit 1; }
installed=$(rustup target list --installed)
for t in thumbv7em-none-eabihf thumbv6m-none-eabi; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t" || { echo "error: rustup target add $t failed" >&2; exit 1; }
done

tools/test-interop.sh --setup || { echo "error: the Python oracles' set-up failed" >&2; exit 1; }

step "cargo test --workspace"
cargo test --workspace --no-fail-fast -- --test-threads 2 || status=1

step "no_std builds of the runtime"
for t in thumbv7em-none-eabihf thumbv6m-none-eabi; do
    if cargo build -q -p tinygpt-runtime --release --target "$t"; then
        echo "ok   tinygpt-runtime builds for $t (no_std, no allocator)"
    else
        echo "FAIL tinygpt-runtime does not build for $t"; status=1
    fi
done

step "runtime tests on 32-bit ARM (Thumb-2, DSP kernels) under qemu-arm"
tools/test-arm.sh -- --test-threads 2 || status=1

step "cross builds under qemu-user"
tools/test-cross.sh || status=1

step "the board under QEMU"
tools/test-board.sh || status=1

step "convert: llama2.c and GGUF models against run.c, runq.c and sentencepiece"
tools/test-interop.sh || status=1

step "serve: the openai client, headless Chromium and a load test against tinygpt serve"
tools/test-serve.sh || status=1

echo
if [ "$status" -eq 0 ]; then echo "all test steps passed"; else echo "some test steps FAILED"; fi
exit "$status"
