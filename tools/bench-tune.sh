#!/usr/bin/env bash
# Benchmark of `tinygpt-train tune`: the Gaussian process against random search at the same number
# of trials, BENCH_SEEDS sampler seeds each (default 3), on a small fixed budget per trial (CPU,
# one libtorch thread).
#
#   tools/bench-tune.sh [OUT_DIR]
#
# The task (default, a fraction of a second per trial): the generated alphabet task, a 1-layer
# 16-wide gpt2 model, 15 steps per trial. BENCH_TASK=shakespeare: the first 200 KB of Tiny
# Shakespeare (../shared/data/tinyshakespeare.txt), a 2-layer 64-wide llama, 150 steps (about 15 s
# a trial on a busy 2-core machine). Four hyper-parameters: learning rate (six decades), warm-up,
# weight decay, beta2. Per run it prints the best validation loss, the first trial (counted from
# 1) that reached BENCH_THRESHOLD and how many trials did; then the median of each over the seeds. Pruning is off so
# that both samplers train every trial in full.
#
# Environment: BENCH_TRIALS (default 20), BENCH_SEEDS (default 3), BENCH_THRESHOLD (default 0.05 for
# the alphabet, 2.45 for Shakespeare), BENCH_TASK (alphabet or shakespeare).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench-tune}
trials=${BENCH_TRIALS:-20}
seeds=${BENCH_SEEDS:-3}
task=${BENCH_TASK:-alphabet}
mkdir -p "$out"
export LIBTORCH=${LIBTORCH:-$PWD/.venv/libtorch}
cargo build -q -p tinygpt-train
bin=${CARGO_TARGET_DIR:-target}/debug/tinygpt-train

case $task in
alphabet)
    threshold=${BENCH_THRESHOLD:-0.05}
    warmup=20
    model=$(printf '%s\n' 'alphabet_task = true' 'arch = "gpt2"' 'n_layer = 1' 'n_head = 2' 'n_embd = 16' \
        'block_size = 16' 'batch_size = 8' 'max_iters = 15' 'eval_interval = 5' 'eval_batch = 16')
    ;;
shakespeare)
    corpus=../shared/data/tinyshakespeare.txt
    [[ -f $corpus ]] || { echo "bench-tune: no $corpus" >&2; exit 1; }
    head -c 200000 "$corpus" > "$out/corpus.txt"
    threshold=${BENCH_THRESHOLD:-2.45}
    warmup=100
    model=$(printf '%s\n' "corpus = \"$out/corpus.txt\"" 'arch = "llama"' 'n_layer = 2' 'n_head = 4' 'n_embd = 64' \
        'block_size = 64' 'batch_size = 16' 'max_iters = 150' 'eval_interval = 50' 'eval_batch = 64')
    ;;
*)
    echo "bench-tune: BENCH_TASK must be alphabet or shakespeare" >&2
    exit 1
    ;;
esac
printf '%s\n' 'name = "bench-tune"' "$model" 'learning_rate = 1e-3' 'min_lr = 1e-5' 'log_interval = 50' \
    'sample_tokens = 0' 'seed = 1' 'threads = 1' > "$out/base.toml"
printf '%s\n' '[params]' 'learning_rate = { log_uniform = [1e-5, 10.0] }' "warmup_iters = { int = [0, $warmup] }" \
    'weight_decay = { log_uniform = [1e-3, 1.0] }' 'beta2 = { uniform = [0.8, 0.999] }' > "$out/space.toml"

summary=()
for sampler in gp random; do
    bests=()
    reach=()
    hits=()
    for seed in $(seq 1 "$seeds"); do
        dir=$out/$sampler-$seed
        rm -rf "$dir"
        t0=$(date +%s)
        "$bin" tune --config "$out/base.toml" --space "$out/space.toml" --trials "$trials" --sampler "$sampler" \
            --prune none --seed "$seed" --device cpu --out "$dir" > "$dir.log"
        t1=$(date +%s)
        # The table: trial, state, value, ...; the best value and the first trial at or below the threshold.
        read -r best first hit < <("$bin" tune --show "$dir/study.sqlite" | awk -v th="$threshold" '
            $2 == "complete" { v = $3 + 0; n = $1 + 0; if (best == "" || v < best) best = v; if (v <= th) { hit++; if (first == "") first = n + 1 } }
            END { if (first == "") first = "never"; print best, first, hit + 0 }')
        echo "$sampler seed $seed: best val loss $best; first trial at or below $threshold: $first; trials at or below: $hit ($((t1 - t0)) s)"
        bests+=("$best")
        reach+=("$first")
        hits+=("$hit")
    done
    med_best=$(printf '%s\n' "${bests[@]}" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    med_reach=$(printf '%s\n' "${reach[@]}" | sed 's/never/999999/' | sort -g | awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print (m >= 999999) ? "never" : m}')
    med_hits=$(printf '%s\n' "${hits[@]}" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    summary+=("$sampler: median best val loss $med_best; median first trial at or below $threshold: $med_reach; median trials at or below: $med_hits (of $trials)")
done
printf '%s\n' "${summary[@]}"
