#!/usr/bin/env bash
# Cross-target check: the aarch64 and 32-bit ARM builds of `tinygpt`, run under qemu-user, must print
# byte-identical output (and exit with the same status) as the native x86_64 build, for the same
# model, prompt, seed and settings; and the CLI's end-to-end tests pass against the static x86_64
# binary (the no_std build). Models: synthetic ones of both architectures in every dtype
# (character and BPE vocabularies), plus any trained model in models/*.tgpt.
#
# Usage: tools/test-cross.sh        (builds with tools/build-static.sh first; BUILD_PROFILE is passed on)
# Prints one line per check and a final "N passed, N failed"; exits non-zero on any mismatch.
set -euo pipefail

cd "$(dirname "$0")/.."
root="$(pwd)"

# qemu-user (Debian qemu-user-static), installed only when missing.
tools/need-debs qemu-user-static
if [ "$(uname -m)" != x86_64 ]; then
  echo "error: this check runs on an x86_64 host (native build: x86_64-unknown-linux-musl)" >&2
  exit 2
fi

tools/build-static.sh >&2
cargo build --release -p tinygpt --example make-model >&2

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
profile="${BUILD_PROFILE:-release}"
native=("$target_dir/x86_64-unknown-linux-musl/$profile/tinygpt")
aarch64=(qemu-aarch64-static "$target_dir/aarch64-unknown-linux-musl/$profile/tinygpt")
armv7=(qemu-arm-static "$target_dir/armv7-unknown-linux-gnueabihf/$profile/tinygpt")
make_model="$target_dir/release/examples/make-model"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- models ---------------------------------------------------------------------------------------
models=()
for arch in llama gpt2; do
  for dtype in f32 f16 int8; do
    "$make_model" --shape tiny --arch "$arch" --dtype "$dtype" --seed 11 -o "$work/tiny-$arch-$dtype.tgpt"
    models+=("$work/tiny-$arch-$dtype.tgpt")
  done
  "$make_model" --shape 260k --arch "$arch" --dtype int8 -o "$work/260k-$arch-int8.tgpt"
  models+=("$work/260k-$arch-int8.tgpt")
done
"$make_model" --shape tiny --arch llama --dtype f32 --bpe-merges 200 --group-size 24 -o "$work/tiny-llama-bpe.tgpt"
models+=("$work/tiny-llama-bpe.tgpt")
shopt -s nullglob
for m in models/*.tgpt; do models+=("$root/$m"); done
shopt -u nullglob

printf 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n' > "$work/eval.txt"

# --- checks ---------------------------------------------------------------------------------------
passed=0
failed=0
run_case() { # expect (ok: exit 0 and some stdout; err: non-zero exit and a message), name, tinygpt arguments
  local expect="$1" name="$2"; shift 2
  local ok=1 ref_rc rc
  set +e
  "${native[@]}" "$@" >"$work/native.out" 2>"$work/native.err"; ref_rc=$?
  if [ "$expect" = ok ] && { [ "$ref_rc" -ne 0 ] || [ ! -s "$work/native.out" ]; }; then
    ok=0; echo "FAIL $name: the native build failed or printed nothing (exit $ref_rc)"; head -n 3 "$work/native.err"
  elif [ "$expect" = err ] && { [ "$ref_rc" -eq 0 ] || [ ! -s "$work/native.err" ]; }; then
    ok=0; echo "FAIL $name: the native build should fail with a message (exit $ref_rc)"
  fi
  for t in aarch64 armv7; do
    local -n runner="$t"
    "${runner[@]}" "$@" >"$work/$t.out" 2>"$work/$t.err"; rc=$?
    if [ "$rc" -ne "$ref_rc" ] || ! cmp -s "$work/native.out" "$work/$t.out" || ! cmp -s "$work/native.err" "$work/$t.err"; then
      ok=0
      echo "FAIL $name: $t differs from native (exit $rc vs $ref_rc)"
      cmp "$work/native.out" "$work/$t.out" | head -n 1 || true
      cmp "$work/native.err" "$work/$t.err" | head -n 1 || true
    fi
  done
  set -e
  if [ "$ok" -eq 1 ]; then
    passed=$((passed + 1))
    echo "ok   $name ($(wc -c <"$work/native.out") bytes out, $(wc -c <"$work/native.err") bytes err, exit $ref_rc)"
  else
    failed=$((failed + 1))
  fi
}

for m in "${models[@]}"; do
  b="$(basename "$m" .tgpt)"
  run_case ok "$b generate seed 7" generate -m "$m" -p "ROMEO:" -n 120 -s 7
  run_case ok "$b generate greedy" generate -m "$m" -p "ROMEO:" -n 120 --temp 0
  run_case ok "$b generate top-p kv-int8" generate -m "$m" -n 120 -s 3 --temp 1.1 --top-k 0 --top-p 0.9 --kv i8
  run_case ok "$b generate ctx-shift kv-f16" generate -m "$m" -n 150 -s 5 -c 32 --kv f16
  run_case ok "$b eval" eval -m "$m" -f "$work/eval.txt" -c 32
done
# Control: the comparison must see a difference when there is one (different seeds).
"${native[@]}" generate -m "$work/tiny-llama-f32.tgpt" -n 60 -s 7 >"$work/native.out"
"${aarch64[@]}" generate -m "$work/tiny-llama-f32.tgpt" -n 60 -s 8 >"$work/aarch64.out"
if cmp -s "$work/native.out" "$work/aarch64.out"; then
  failed=$((failed + 1)); echo "FAIL control: seeds 7 and 8 gave the same text, the comparison proves nothing"
else
  passed=$((passed + 1)); echo "ok   control: different seeds give different text"
fi
run_case err "unknown character" generate -m "$work/tiny-llama-f32.tgpt" -p "naïve"
run_case ok "inspect" inspect "$work/tiny-gpt2-int8.tgpt"

# The command's own end-to-end tests (every subcommand, its errors and exit codes) against the
# static binary, which is the no_std build (`--features tiny`); `cargo test` runs them against
# the std build.
if TINYGPT_EXE="${native[0]}" cargo test -q -p tinygpt --test cli --test chat --test convert -- --test-threads 2 >"$work/e2e.log" 2>&1; then
  passed=$((passed + 1)); echo "ok   the CLI's end-to-end tests against the static no_std binary ($(grep -o '[0-9]* passed' "$work/e2e.log" | awk '{s += $1} END {print s}') tests)"
else
  failed=$((failed + 1)); echo "FAIL the CLI's end-to-end tests against the static no_std binary:"; grep -E -A2 "FAILED|panicked|error" "$work/e2e.log" | head -n 30
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
