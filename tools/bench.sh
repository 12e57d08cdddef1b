#!/usr/bin/env bash
# Benchmark: single-thread speed of `tinygpt bench` on synthetic models (random weights, the real
# file format) of about 1M parameters and of llama2.c's 260K shape (dim 64, 5 layers, 8 heads,
# 4 KV heads, hidden 172, vocab 512, block 512), in f32 and int8, for both architectures.
# Each cell is the median of REPS timed runs (after one warm-up run) of 128 prompt tokens (pp128)
# and 128 generated tokens (tg128, forward pass + sampling), from an empty context, KV cache f32.
# "t/s" columns use wall-clock time; "cpu" columns use the thread's CPU time, which leaves out time
# spent waiting for a core on a busy machine (both in tokens/s).
#
# Usage: tools/bench.sh [REPS]          (default 7)
# Environment: BENCH_KV=f32|f16|i8 (KV cache type, default f32), BENCH_SHAPES="260k 1m".
set -euo pipefail

cd "$(dirname "$0")/.."
reps="${1:-7}"
kv="${BENCH_KV:-f32}"
shapes="${BENCH_SHAPES:-260k 1m}"

cargo build --release -p tinygpt --bin tinygpt --example make-model >&2
target_dir="${CARGO_TARGET_DIR:-target}"
tinygpt="$target_dir/release/tinygpt"
make_model="$target_dir/release/examples/make-model"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

printf '%-6s %-6s %-5s %10s %9s %9s %9s %9s %9s\n' shape arch dtype params "pp t/s" "tg t/s" "tg ms/t" "pp cpu" "tg cpu"
for shape in $shapes; do
  for arch in llama gpt2; do
    for dtype in f32 int8; do
      m="$work/$shape-$arch-$dtype.tgpt"
      "$make_model" --shape "$shape" --arch "$arch" --dtype "$dtype" -o "$m"
      out="$("$tinygpt" bench -m "$m" -p 128 -n 128 -r "$reps" --kv "$kv")"
      params="$(sed -n 's/.*  \([0-9,]*\) params.*/\1/p' <<<"$out")"
      pp="$(awk '$1 == "pp128" { print $3 }' <<<"$out")"
      tg="$(awk '$1 == "tg128" { print $3 }' <<<"$out")"
      tgms="$(awk '$1 == "tg128" { print $4 }' <<<"$out")"
      ppcpu="$(awk '$1 == "pp128" { print $7 }' <<<"$out")"
      tgcpu="$(awk '$1 == "tg128" { print $7 }' <<<"$out")"
      printf '%-6s %-6s %-5s %10s %9s %9s %9s %9s %9s\n' "$shape" "$arch" "$dtype" "$params" "$pp" "$tg" "$tgms" "$ppcpu" "$tgcpu"
    done
  done
done
echo "single thread; median of $reps runs; KV cache $kv; $(uname -m); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
