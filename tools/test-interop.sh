#!/usr/bin/env bash
# `tinygpt convert` end to end against independent oracles, and its refusals.
#
#   tools/test-interop.sh            set up, then run the checks
#   tools/test-interop.sh --setup    only install what the checks need (idempotent)
#
# Needs ../shared/third_party/llama2.c (llama2.c's run.c, runq.c, model.py, export.py, tokenizer.bin,
# tokenizer.model; a copy of a public project, for tests only) or TINYGPT_LLAMA2C, and gcc. Installs
# into .venv, when missing: torch's own dependencies (llama2.c's model.py imports torch, which needs
# them; tools/setup-libtorch.sh installs torch without them), numpy, gguf 0.19 (llama.cpp's GGUF
# writer) and sentencepiece 0.2.3.
#
# Checks: `cargo test -p tinygpt --test convert` (llama2.c legacy, untied and version-2 Q8_0 files and
# GGUF F32/F16/Q8_0 files against run.c / runq.c: the same greedy ids and the same text; the tokenizer
# against the sentencepiece package), then the command's refusals (one line, non-zero exit).
# Prints one line per check and `N passed, N failed`; exits 1 if any check failed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
py="$root/.venv/bin/python"
l2c="${TINYGPT_LLAMA2C:-$root/../shared/third_party/llama2.c}"

setup() {
    [ -x "$py" ] || tools/setup-libtorch.sh || return 1
    if ! "$py" -c "import torch, numpy, gguf, sentencepiece" 2>/dev/null; then
        echo "test-interop: installing torch's dependencies, numpy, gguf and sentencepiece into .venv"
        "$py" -m pip install -q "torch==2.13.0" "setuptools>=77.0.3" numpy "gguf==0.19.*" "sentencepiece==0.2.3" || return 1
    fi
}

if [ "${1:-}" = "--setup" ]; then
    setup
    exit $?
fi
passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

setup && ok "python oracles installed (torch, numpy, gguf, sentencepiece)" || bad "python set-up"
[ -f "$l2c/run.c" ] && ok "llama2.c sources at $l2c" || { bad "no llama2.c sources at $l2c (set TINYGPT_LLAMA2C)"; finish; }

if cargo test -q -p tinygpt --test convert -- --test-threads 2; then
    ok "convert oracles: run.c, runq.c, gguf, sentencepiece"
else
    bad "convert oracles (cargo test -p tinygpt --test convert)"
fi

cargo build -q -p tinygpt || { bad "cargo build -p tinygpt"; finish; }
bin=target/debug/tinygpt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# refuse NAME EXPECTED-SUBSTRING ARGS...: one line on stderr naming the problem, exit 1, no output file.
refuse() {
    local name=$1 want=$2
    shift 2
    local err
    err=$("$bin" convert "$@" 2>&1 >/dev/null)
    local rc=$?
    if [ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && [[ "$err" == *"$want"* ]] && [ ! -e "$tmp/out.tgpt" ]; then
        ok "refuses $name: $err"
    else
        bad "refusal of $name (exit $rc): $err"
    fi
}

cargo run -q -p tinygpt --example fuzz-seeds -- "$tmp/seeds" --gguf "$tmp/gguf" --llama2c "$tmp/l2c" >/dev/null || bad "fuzz-seeds"
# A llama2.c pair from the seeds: u32 length, tokenizer.bin, checkpoint.
split() {
    "$py" - "$1" "$2" "$3" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<I", b[:4])[0]
open(sys.argv[2], "wb").write(b[4:4 + n])
open(sys.argv[3], "wb").write(b[4 + n:])
PY
}
split "$tmp/l2c/llama2c-legacy-tied.bin" "$tmp/tok.bin" "$tmp/legacy.bin"
split "$tmp/l2c/llama2c-v2-q8_0-tied.bin" "$tmp/tok.bin" "$tmp/v2.bin"

if "$bin" convert "$tmp/legacy.bin" --tokenizer "$tmp/tok.bin" -o "$tmp/ok.tgpt" 2>/dev/null && "$bin" inspect "$tmp/ok.tgpt" | grep -q sentencepiece; then
    ok "a llama2.c legacy file converts and inspect names its sentencepiece tokenizer"
else
    bad "legacy conversion"
fi
for d in f32 f16 int8 int4; do
    if "$bin" convert "$tmp/gguf/llama-q8_0-untied.gguf" --dtype "$d" -o "$tmp/q-$d.tgpt" 2>/dev/null \
        && "$bin" generate -m "$tmp/q-$d.tgpt" -p "a b" -n 4 >/dev/null; then
        ok "a Q8_0 GGUF file converts to $d and generates"
    else
        bad "Q8_0 GGUF to $d"
    fi
done

refuse "a checkpoint without its tokenizer" "give its tokenizer.bin with --tokenizer" "$tmp/legacy.bin" -o "$tmp/out.tgpt"
refuse "a file that is neither GGUF nor llama2.c" "not a GGUF file or a llama2.c checkpoint" "$l2c/run.c" --tokenizer "$tmp/tok.bin" -o "$tmp/out.tgpt"
refuse "a tokenizer.bin of the wrong size" "tokenizer.bin" "$tmp/legacy.bin" --tokenizer "$l2c/tokenizer.bin" -o "$tmp/out.tgpt"
refuse "a .tgpt input" "already a .tgpt model" "$tmp/ok.tgpt" -o "$tmp/out.tgpt"
refuse "--tokenizer with GGUF" "carries its own tokenizer" "$tmp/gguf/llama-f32-tied.gguf" --tokenizer "$tmp/tok.bin" -o "$tmp/out.tgpt"
head -c 1000 "$tmp/legacy.bin" > "$tmp/short.bin"
refuse "a truncated checkpoint" "it is 1000" "$tmp/short.bin" --tokenizer "$tmp/tok.bin" -o "$tmp/out.tgpt"
head -c 5000 "$tmp/gguf/llama-f32-tied.gguf" > "$tmp/short.gguf"
refuse "a truncated GGUF file" "runs past the end" "$tmp/short.gguf" -o "$tmp/out.tgpt"
# Another architecture, tensor type and version, made by editing the seeds' bytes.
"$py" - "$tmp" <<'PY'
import sys
d = sys.argv[1]
b = bytearray(open(f"{d}/gguf/llama-f32-tied.gguf", "rb").read())
i = b.index(b"llama", b.index(b"general.architecture"))
open(f"{d}/arch.gguf", "wb").write(b[:i] + b"gpt2x" + b[i + 5:])
v = bytearray(b); v[4:8] = (1).to_bytes(4, "little")
open(f"{d}/v1.gguf", "wb").write(v)
t = bytearray(b)
j = t.index(b"blk.0.attn_q.weight") + len(b"blk.0.attn_q.weight") + 4 + 16
t[j:j + 4] = (12).to_bytes(4, "little")
open(f"{d}/q4k.gguf", "wb").write(t)
c = bytearray(open(f"{d}/v2.bin", "rb").read()); c[4:8] = (3).to_bytes(4, "little")
open(f"{d}/v3.bin", "wb").write(c)
PY
refuse "another GGUF architecture" "GGUF architecture gpt2x" "$tmp/arch.gguf" -o "$tmp/out.tgpt"
refuse "GGUF version 1" "GGUF version 1" "$tmp/v1.gguf" -o "$tmp/out.tgpt"
refuse "a Q4_K tensor" "type Q4_K (type 12)" "$tmp/q4k.gguf" -o "$tmp/out.tgpt"
refuse "llama2.c version 3" "version 3" "$tmp/v3.bin" --tokenizer "$tmp/tok.bin" -o "$tmp/out.tgpt"
refuse "an output directory that does not exist" "does not exist" "$tmp/legacy.bin" --tokenizer "$tmp/tok.bin" -o "$tmp/nodir/out.tgpt"
finish
