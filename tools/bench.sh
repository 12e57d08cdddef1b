#!/usr/bin/env bash
# Benchmark: single-thread speed of `tinygpt bench` on synthetic models (random weights, the real
# file format) of about 1M parameters and of llama2.c's 260K shape (dim 64, 5 layers, 8 heads,
# 4 KV heads, hidden 172, vocab 512, block 512), in f32, int8 and int4, for both architectures.
# Each cell is the median over REPS rounds; a round runs every model once with `tinygpt bench -r 3`
# (one warm-up, then the median of 3 timed runs) of 128 prompt tokens (pp128) and 128 generated
# tokens (tg128, forward pass + sampling), from an empty context, KV cache f32. int8 and int4
# models store f16 group scales (the writer's default). Interleaving the
# models keeps their ratios fair on a machine whose speed drifts.
# "t/s" columns use wall-clock time; "cpu" columns use the thread's CPU time, which leaves out time
# spent waiting for a core on a busy machine (both in tokens/s).
#
# With BENCH_INSTRUCTIONS=1 it also counts the instructions per token of pp128 and tg128 under
# valgrind's callgrind (Debian package valgrind): a figure that does not depend on how busy the
# machine is, for comparing changes and dtypes ("pp kIr/t", "tg kIr/t", thousands per token).
#
# Usage: tools/bench.sh [REPS]          (rounds, default 7)
# Environment: BENCH_KV=f32|f16|i8 (KV cache type, default f32), BENCH_SHAPES="260k 1m",
#              BENCH_DTYPES="f32 int8 int4", BENCH_INSTRUCTIONS=1.
set -euo pipefail

cd "$(dirname "$0")/.."
reps="${1:-7}"
kv="${BENCH_KV:-f32}"
shapes="${BENCH_SHAPES:-260k 1m}"
dtypes="${BENCH_DTYPES:-f32 int8 int4}"

cargo build --release -p tinygpt --bin tinygpt --example make-model >&2
target_dir="${CARGO_TARGET_DIR:-target}"
tinygpt="$target_dir/release/tinygpt"
make_model="$target_dir/release/examples/make-model"

instr="${BENCH_INSTRUCTIONS:-0}"
[ "$instr" = 1 ] && tools/need-debs valgrind

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Instructions per token inside one function of `tinygpt bench` (2 runs: warm-up + 1).
count_instructions() { # model, function, -p N, -n N
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" --toggle-collect="*$2*" \
    "$tinygpt" bench -m "$1" -p "$3" -n "$4" -r 1 --kv "$kv" >/dev/null 2>"$work/cg.log"
  local ir
  ir="$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/cg.log")"
  local n=$(( $3 > $4 ? $3 : $4 ))
  echo $(( ir / (2 * n) / 1000 ))
}

header=(shape arch dtype params "pp t/s" "tg t/s" "tg ms/t" "pp cpu" "tg cpu")
fmt='%-6s %-6s %-5s %10s %9s %9s %9s %9s %9s'
if [ "$instr" = 1 ]; then header+=("pp kIr/t" "tg kIr/t"); fmt+=' %9s %9s'; fi

# Models first, then rounds: every round runs every model once (`-r 3`, its median), so a slow
# spell on a shared machine hits all models alike; each cell is the median over the rounds.
models=()
for shape in $shapes; do
  for arch in llama gpt2; do
    for dtype in $dtypes; do
      m="$work/$shape-$arch-$dtype.tgpt"
      "$make_model" --shape "$shape" --arch "$arch" --dtype "$dtype" -o "$m"
      models+=("$m")
    done
  done
done
for ((round = 0; round < reps; round++)); do
  for m in "${models[@]}"; do
    out="$("$tinygpt" bench -m "$m" -p 128 -n 128 -r 3 --kv "$kv")"
    sed -n 's/.*  \([0-9,]*\) params.*/\1/p' <<<"$out" >"$m.params"
    awk '$1 == "pp128" { print $3 }' <<<"$out" >>"$m.pp"
    awk '$1 == "tg128" { print $3 }' <<<"$out" >>"$m.tg"
    awk '$1 == "pp128" { print $7 }' <<<"$out" >>"$m.ppcpu"
    awk '$1 == "tg128" { print $7 }' <<<"$out" >>"$m.tgcpu"
  done
done
median() { sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# shellcheck disable=SC2059
printf "$fmt\n" "${header[@]}"
for m in "${models[@]}"; do
  IFS=- read -r shape arch dtype <<<"$(basename "$m" .tgpt)"
  tg="$(median "$m.tg")"
  row=("$shape" "$arch" "$dtype" "$(cat "$m.params")" "$(median "$m.pp")" "$tg"
       "$(awk -v r="$tg" 'BEGIN { printf "%.4f", 1000 / r }')" "$(median "$m.ppcpu")" "$(median "$m.tgcpu")")
  if [ "$instr" = 1 ]; then
    row+=("$(count_instructions "$m" prompt_run 128 1)" "$(count_instructions "$m" gen_run 1 128)")
  fi
  # shellcheck disable=SC2059
  printf "$fmt\n" "${row[@]}"
done
echo "single thread; median of $reps rounds (each the median of 3 runs); KV cache $kv; $(uname -m); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
