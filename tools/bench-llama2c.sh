#!/usr/bin/env bash
# Side-by-side speed of tinygpt and llama2.c on the same weights, one thread.
#
# Usage: tools/bench-llama2c.sh LLAMA2C_DIR [REPS]       (REPS default 7)
#
# LLAMA2C_DIR is a checkout of llama2.c (github.com/karpathy/llama2.c) holding run.c and runq.c;
# it is not part of this repository. The script compiles both three ways: `gcc -Ofast -march=native`
# (llama2.c's fastest single-thread build: its Makefile's `runfast` plus this CPU's vector
# instructions; -Ofast lets gcc vectorize the float sums of run.c), `-O3 -march=native`, and plain
# `-O3` (as llama2.c's Makefile builds `run`). It makes random llama models of llama2.c's 260K
# shape and of about 1M parameters with the make-model example (f32 and int8, int8 group 64),
# converts the f32 ones with the to-llama2c example (run.c legacy file, runq.c Q8_0 version-2
# file, tokenizer.bin), then:
#
# 1. checks the conversion: llama2.c's run -t 0 (greedy, from its BOS token 1) must print the same
#    token ids as the runtime's greedy continuation of token 1, and `tinygpt generate --temp 0`
#    prompted with token 1 must print the text of those ids;
# 2. times both, interleaved, REPS times per cell, and prints medians and tinygpt/llama2.c ratios.
#
# What is timed, per token:
# - llama2.c: `run model.bin -z ids.bin -n N $L2C_SAMPLER -s SEED`. Its own "achieved tok/s" is
#   wall-clock time over the N-1 tokens after the first forward pass: forward + sampling + printing
#   one piece, at positions 1..N-1 (millisecond timer). The tokenizer prints token ids, so the
#   script checks that every run generated all N tokens: llama2.c stops when it samples token 1
#   (its BOS), so SEED is the first seed, from 1, with which that binary generates N tokens (the
#   table marks a cell where none in 1..100 does).
#   "cpu" is process CPU time (perf's task-clock): (T(-n N) - T(-n 1)) over N-1 tokens, medians,
#   which removes start-up and the time spent waiting for a core on a busy machine.
# - The f32 ceiling: the read-bandwidth example reads a buffer as large as the f32 weights one
#   token reads, once per repetition, and the table shows how close each speed is to
#   (read rate) / (bytes per token).
# - tinygpt: `tinygpt bench -p 1 -n N -r 1`: its tg row, N tokens from an empty context (forward +
#   sampling with temperature 0.8, top-k 40), wall-clock and thread CPU time.
# So both count N-1 or N generated tokens over the same positions from an empty context, with a
# sampler step each; llama2.c also prints each token, tinygpt does not.
#
# Environment: BENCH_N (tokens, default 256), BENCH_SHAPES (default "260k 1m"),
# L2C_SAMPLER (default "-t 1.0 -p 0.9", llama2.c's defaults; "-t 0" is greedy, cheaper),
# BENCH_CALLGRIND=1 adds instructions per token counted by valgrind's callgrind (same differences
# of -n N and -n 1 runs; valgrind cannot run AVX-512 code, so llama2.c is counted as built with
# plain -O3 and with -O3 -march=x86-64-v3, i.e. AVX2 + FMA like tinygpt's kernels).
set -euo pipefail

if [[ $# -lt 1 || ! -f "$1/run.c" || ! -f "$1/runq.c" ]]; then
  echo "usage: $0 LLAMA2C_DIR [REPS]   (LLAMA2C_DIR must hold llama2.c's run.c and runq.c)" >&2
  exit 2
fi
l2c_src="$(cd "$1" && pwd)"
reps="${2:-7}"
n="${BENCH_N:-256}"
shapes="${BENCH_SHAPES:-260k 1m}"
sampler="${L2C_SAMPLER:--t 1.0 -p 0.9}"
callgrind="${BENCH_CALLGRIND:-0}"

cd "$(dirname "$0")/.."
cargo build --release -p tinygpt --bin tinygpt --example make-model --example to-llama2c --example read-bandwidth >&2
target_dir="${CARGO_TARGET_DIR:-target}"
tinygpt="$target_dir/release/tinygpt"
make_model="$target_dir/release/examples/make-model"
convert="$target_dir/release/examples/to-llama2c"
readbw="$target_dir/release/examples/read-bandwidth"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- llama2.c builds --------------------------------------------------------------------------
builds="fast native O3"
declare -A cflags=([fast]="-Ofast -march=native" [native]="-O3 -march=native" [O3]="-O3" [v3]="-O3 -march=x86-64-v3")
[[ "$callgrind" == 1 ]] && all_builds="$builds v3" || all_builds="$builds"
for b in $all_builds; do
  for prog in run runq; do
    # shellcheck disable=SC2086
    gcc ${cflags[$b]} -o "$work/$prog-$b" "$l2c_src/$prog.c" -lm 2>"$work/gcc.log" \
      || { cat "$work/gcc.log" >&2; exit 1; }
  done
done
echo "gcc: $(gcc --version | head -1); llama2.c builds: fast = ${cflags[fast]}, native = ${cflags[native]}, O3 = ${cflags[O3]}" >&2

# --- models ----------------------------------------------------------------------------------
for shape in $shapes; do
  for dtype in f32 int8; do
    "$make_model" --shape "$shape" --arch llama --dtype "$dtype" -o "$work/$shape-$dtype.tgpt"
  done
  "$convert" -i "$work/$shape-f32.tgpt" --run "$work/$shape-f32.bin" --runq "$work/$shape-int8.bin" \
    --group-size 64 --tokenizer "$work/$shape-tok.bin" --id-tokenizer "$work/$shape-ids.bin"
done

# llama2.c's program and checkpoint for a dtype.
l2c_prog() { [[ "$1" == f32 ]] && echo run || echo runq; }

count_ids() { grep -o '\[' "$1" | wc -l | tr -d ' '; }

# --- 1. correctness ---------------------------------------------------------------------------
echo
echo "Conversion check: greedy (temperature 0) from llama2.c's BOS (token 1), $n tokens"
for shape in $shapes; do
  m="$work/$shape-f32.tgpt"
  "$convert" -i "$m" --greedy "$n" >"$work/greedy-tinygpt.txt"
  for b in $builds; do
    "$work/run-$b" "$work/$shape-f32.bin" -z "$work/$shape-ids.bin" -n "$n" -t 0 >"$work/greedy-l2c.txt" 2>/dev/null
    got="$(count_ids "$work/greedy-l2c.txt")"
    if cmp -s "$work/greedy-l2c.txt" "$work/greedy-tinygpt.txt"; then
      echo "  $shape f32, run ($b): same $got token ids as the tinygpt runtime"
    else
      same="$(cmp "$work/greedy-l2c.txt" "$work/greedy-tinygpt.txt" 2>/dev/null | sed -n 's/.* byte \([0-9]*\),.*/\1/p')"
      echo "  $shape f32, run ($b): DIFFERENT ids (first difference at byte ${same:-?} of the '[id]' text)"
      echo "    llama2.c: $(head -c 200 "$work/greedy-l2c.txt")"
      echo "    tinygpt:  $(head -c 200 "$work/greedy-tinygpt.txt")"
    fi
  done
  # The CLI: prompt with token 1's text, greedy; compare with the text of llama2.c's ids.
  "$work/run-native" "$work/$shape-f32.bin" -z "$work/$shape-ids.bin" -n "$n" -t 0 >"$work/greedy-l2c.txt" 2>/dev/null
  prompt="$("$convert" -i "$m" --decode '[1]'; printf x)"
  prompt="${prompt%x}"
  "$convert" -i "$m" --decode "[1]$(tr -d '\n' <"$work/greedy-l2c.txt")" >"$work/text-l2c.txt"
  "$tinygpt" generate -m "$m" -p "$prompt" --temp 0 -n "$n" >"$work/text-tinygpt.txt"
  if cmp -s "$work/text-l2c.txt" "$work/text-tinygpt.txt"; then
    echo "  $shape f32, tinygpt generate --temp 0: same text as llama2.c's ids ($(wc -c <"$work/text-tinygpt.txt") bytes)"
  else
    echo "  $shape f32, tinygpt generate --temp 0: DIFFERENT text from llama2.c's ids"
  fi
  # int8 is not expected to agree exactly (per-row groups against runq's flat groups).
  "$convert" -i "$work/$shape-int8.tgpt" --greedy "$n" >"$work/greedy-tinygpt.txt"
  "$work/runq-native" "$work/$shape-int8.bin" -z "$work/$shape-ids.bin" -n "$n" -t 0 >"$work/greedy-l2c.txt" 2>/dev/null
  agree=0
  read -ra a <<<"$(tr '[]' '  ' <"$work/greedy-l2c.txt")"
  read -ra b <<<"$(tr '[]' '  ' <"$work/greedy-tinygpt.txt")"
  while [[ $agree -lt ${#a[@]} && $agree -lt ${#b[@]} && "${a[$agree]}" == "${b[$agree]}" ]]; do agree=$((agree + 1)); done
  echo "  $shape int8 (informative): runq and tinygpt int8 greedy ids agree for the first $agree of ${#a[@]}"
done

# --- 2. speed ---------------------------------------------------------------------------------
have_perf=0
if perf stat -e task-clock -x, -o "$work/perf.txt" true 2>/dev/null && grep -q task-clock "$work/perf.txt"; then
  have_perf=1
fi

# CPU milliseconds of a command (perf task-clock); its stdout and stderr go to $work/out, $work/err.
cpu_ms() {
  perf stat -e task-clock -x, -o "$work/perf.txt" "$@" >"$work/out" 2>"$work/err"
  awk -F, '$3 == "task-clock" { print $1 }' "$work/perf.txt"
}

# Seed with which llama2.c generates all n tokens (it stops early when it samples token 1).
declare -A seed
for shape in $shapes; do
  for dtype in f32 int8; do
    for b in $all_builds; do
      prog="$(l2c_prog "$dtype")"
      seed[$shape-$dtype-$b]=1
      for ((s = 1; s <= 100; s++)); do
        # shellcheck disable=SC2086
        "$work/$prog-$b" "$work/$shape-$dtype.bin" -z "$work/$shape-ids.bin" -n "$n" $sampler -s "$s" >"$work/out" 2>/dev/null
        if [[ "$(count_ids "$work/out")" == "$n" ]]; then
          seed[$shape-$dtype-$b]=$s
          break
        fi
        # Greedy sampling ignores the seed.
        [[ " $sampler " == *" -t 0 "* ]] && break
      done
    done
  done
done

# Bytes of f32 weights one token reads: every matrix, less the token embeddings (one row is read)
# when the classifier is a separate matrix.
declare -A wbytes
for shape in $shapes; do
  info="$("$tinygpt" inspect "$work/$shape-f32.tgpt")"
  wbytes[$shape]="$(awk '$1 == "f32" && $2 == "matrices" { gsub(",", "", $3); m = $3 }
    $1 == "n_embd" { e = $2 } $1 == "vocab_size" { v = $2 } $1 == "tie_embeddings" { t = $2 }
    END { print (t == "true") ? m : m - 4 * v * e }' <<<"$info")"
done

declare -A l2c_wall l2c_t1 l2c_tn tg_wall tg_cpu short read_bw
for ((r = 1; r <= reps; r++)); do
  echo "timing: repetition $r of $reps" >&2
  for shape in $shapes; do
    read_bw[$shape]+="$("$readbw" --bytes "${wbytes[$shape]}" --reps 100 | awk '{ print $4 }') "
    for dtype in f32 int8; do
      prog="$(l2c_prog "$dtype")"
      for b in fast native tinygpt O3; do
        if [[ "$b" == tinygpt ]]; then
          out="$("$tinygpt" bench -m "$work/$shape-$dtype.tgpt" -p 1 -n "$n" -r 1)"
          tg_wall[$shape-$dtype]+="$(awk -v t="tg$n" '$1 == t { print $3 }' <<<"$out") "
          tg_cpu[$shape-$dtype]+="$(awk -v t="tg$n" '$1 == t { print $7 }' <<<"$out") "
          continue
        fi
        k="$shape-$dtype-$b"
        # shellcheck disable=SC2086
        cmd=("$work/$prog-$b" "$work/$shape-$dtype.bin" -z "$work/$shape-ids.bin" $sampler -s "${seed[$k]}")
        if [[ $have_perf == 1 ]]; then
          l2c_tn[$k]+="$(cpu_ms "${cmd[@]}" -n "$n") "
        else
          "${cmd[@]}" -n "$n" >"$work/out" 2>"$work/err"
        fi
        l2c_wall[$k]+="$(sed -n 's/^achieved tok\/s: //p' "$work/err") "
        [[ "$(count_ids "$work/out")" == "$n" ]] || short[$k]=1
        if [[ $have_perf == 1 ]]; then
          l2c_t1[$k]+="$(cpu_ms "${cmd[@]}" -n 1) "
        fi
      done
    done
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

echo
echo "Speed: tokens/s, median of $reps interleaved runs, one thread, $n tokens from an empty context"
echo "(llama2.c: $sampler, its own wall-clock tok/s; cpu = process CPU time; tinygpt: bench -p 1 -n $n)"
printf '%-6s %-5s %-11s %5s | %10s %10s %6s | %10s %10s %6s\n' \
  shape dtype "l2c" seed "l2c wall" "tg wall" ratio "l2c cpu" "tg cpu" ratio
for shape in $shapes; do
  for dtype in f32 int8; do
    tw="$(median <<<"${tg_wall[$shape-$dtype]}")"
    tc="$(median <<<"${tg_cpu[$shape-$dtype]}")"
    for b in $builds; do
      k="$shape-$dtype-$b"
      lw="$(median <<<"${l2c_wall[$k]}")"
      lc=nan
      if [[ $have_perf == 1 ]]; then
        t1="$(median <<<"${l2c_t1[$k]}")"
        tn="$(median <<<"${l2c_tn[$k]}")"
        lc="$(awk -v a="$t1" -v b="$tn" -v n="$n" 'BEGIN { d = b - a; if (d > 0) printf "%.1f", (n - 1) * 1000 / d; else print "nan" }')"
      fi
      printf '%-6s %-5s %-11s %5s | %10.1f %10.1f %6s | %10s %10s %6s%s\n' "$shape" "$dtype" \
        "$(l2c_prog "$dtype")-$b" "${seed[$k]}" "$lw" "$tw" "$(ratio "$tw" "$lw")" "$lc" "$tc" "$(ratio "$tc" "$lc")" \
        "${short[$k]:+  (some runs stopped early)}"
    done
  done
done
echo "ratio = tinygpt / llama2.c (above 1: tinygpt is faster); $(uname -m); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"

# The ceiling for f32: one thread reading the weights once per token as fast as this machine reads
# a buffer of that size (read-bandwidth example, median pass, median over repetitions), with
# nothing else to do. Attention, the KV cache and sampling come on top.
echo
echo "f32 ceiling: weight bytes read per token / one thread's read rate for a buffer of that size"
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b + 0 == 0) print "n/a"; else printf "%.0f%%", 100 * a / b }'; }
printf '%-6s %12s %10s %12s | %10s %12s\n' shape "bytes/token" "GB/s" "bound tok/s" "tg f32" "2x run-fast"
for shape in $shapes; do
  bw="$(median <<<"${read_bw[$shape]}")"
  bound="$(awk -v b="$bw" -v w="${wbytes[$shape]}" 'BEGIN { printf "%.0f", b / w }')"
  tw="$(median <<<"${tg_wall[$shape-f32]}")"
  fast="$(median <<<"${l2c_wall[$shape-f32-fast]}")"
  printf '%-6s %12s %10.1f %12s | %10s %12s\n' "$shape" "${wbytes[$shape]}" "$(awk -v b="$bw" 'BEGIN { print b / 1e9 }')" \
    "$bound" "$(pct "$tw" "$bound")" "$(pct "$(awk -v f="$fast" 'BEGIN { print 2 * f }')" "$bound")"
done
echo "(tg f32: tinygpt's f32 wall-clock tokens/s as a share of the bound; 2x run-fast: what twice"
echo " llama2.c's -Ofast -march=native wall-clock speed would need, as a share of the bound)"

# --- instructions per token (optional) -------------------------------------------------------
if [[ "$callgrind" == 1 ]]; then
  ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | sed -n 's/.*Collected : //p'; }
  echo
  echo "Instructions per token (callgrind; llama2.c: (Ir(-n $n) - Ir(-n 1)) / $((n - 1));"
  echo "tinygpt: (Ir(bench -n $n -r 1) - Ir(bench -n 1 -r 1)) / $((2 * (n - 1))), two generation runs each)"
  printf '%-6s %-5s %12s %12s %12s %8s %8s\n' shape dtype "tinygpt" "l2c O3" "l2c AVX2" "O3/tg" "AVX2/tg"
  for shape in $shapes; do
    for dtype in f32 int8; do
      m="$work/$shape-$dtype.tgpt"
      t="$(awk -v a="$(ir "$tinygpt" bench -m "$m" -p 1 -n 1 -r 1)" -v b="$(ir "$tinygpt" bench -m "$m" -p 1 -n "$n" -r 1)" \
        -v k="$((2 * (n - 1)))" 'BEGIN { printf "%.0f", (b - a) / k }')"
      row=()
      for b in O3 v3; do
        s="${seed[$shape-$dtype-$b]}"
        # shellcheck disable=SC2086
        cmd=("$work/$(l2c_prog "$dtype")-$b" "$work/$shape-$dtype.bin" -z "$work/$shape-ids.bin" $sampler -s "$s")
        row+=("$(awk -v a="$(ir "${cmd[@]}" -n 1)" -v b="$(ir "${cmd[@]}" -n "$n")" -v k="$((n - 1))" \
          'BEGIN { printf "%.0f", (b - a) / k }')")
      done
      printf '%-6s %-5s %12s %12s %12s %8s %8s\n' "$shape" "$dtype" "$t" "${row[0]}" "${row[1]}" \
        "$(ratio "${row[0]}" "$t")" "$(ratio "${row[1]}" "$t")"
    done
  done
  echo "(O3/tg above 1: llama2.c executes more instructions per token than tinygpt)"
fi
