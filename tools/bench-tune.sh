#!/usr/bin/env bash
# Benchmark of `tinygpt-train tune`: the Gaussian process against random search at the same number
# of trials, BENCH_SEEDS sampler seeds each (default 3), on a small fixed budget per trial (CPU,
# one libtorch thread).
#
#   tools/bench-tune.sh [OUT_DIR]
#
# The task: the first 200 KB of Tiny Shakespeare (../shared/data/tinyshakespeare.txt; the generated
# alphabet task where the file is missing), a 2-layer llama, 150 steps per trial, four
# hyper-parameters (learning rate, warm-up, weight decay, beta2). Per run it prints the best
# validation loss and the trial that first reached BENCH_THRESHOLD; then the median of each over
# the seeds. Pruning is off so that the two samplers get the same training per trial.
#
# Environment: BENCH_TRIALS (default 16), BENCH_SEEDS (default 3), BENCH_THRESHOLD (default 2.45;
# 0.05 for the alphabet task), BENCH_ITERS (default 150).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench-tune}
trials=${BENCH_TRIALS:-16}
seeds=${BENCH_SEEDS:-3}
iters=${BENCH_ITERS:-150}
mkdir -p "$out"
export LIBTORCH=${LIBTORCH:-$PWD/.venv/libtorch}
cargo build -q -p tinygpt-train
bin=${CARGO_TARGET_DIR:-target}/debug/tinygpt-train

corpus=../shared/data/tinyshakespeare.txt
if [[ -f $corpus ]]; then
    head -c 200000 "$corpus" > "$out/corpus.txt"
    data="corpus = \"$out/corpus.txt\""
    threshold=${BENCH_THRESHOLD:-2.45}
else
    echo "no $corpus: the alphabet task instead" >&2
    data="alphabet_task = true"
    threshold=${BENCH_THRESHOLD:-0.05}
fi
cat > "$out/base.toml" <<EOF
name = "bench-tune"
$data
arch = "llama"
n_layer = 2
n_head = 4
n_embd = 64
block_size = 64
batch_size = 16
max_iters = $iters
learning_rate = 1e-3
min_lr = 1e-5
eval_interval = 50
eval_batch = 64
log_interval = 50
sample_tokens = 0
seed = 1
threads = 1
EOF
cat > "$out/space.toml" <<EOF
[params]
learning_rate = { log_uniform = [1e-4, 1e-1] }
warmup_iters = { int = [0, 100] }
weight_decay = { log_uniform = [1e-3, 1.0] }
beta2 = { uniform = [0.8, 0.999] }
EOF

summary=()
for sampler in gp random; do
    bests=()
    reach=()
    for seed in $(seq 1 "$seeds"); do
        dir=$out/$sampler-$seed
        rm -rf "$dir"
        t0=$(date +%s)
        "$bin" tune --config "$out/base.toml" --space "$out/space.toml" --trials "$trials" --sampler "$sampler" \
            --prune none --seed "$seed" --device cpu --out "$dir" > "$dir.log"
        t1=$(date +%s)
        # The table: trial, state, value, ... ; best value and the first trial at or below the threshold.
        read -r best first < <("$bin" tune --show "$dir/study.sqlite" | awk -v th="$threshold" '
            $2 == "complete" { v = $3 + 0; n = $1 + 0; if (best == "" || v < best) best = v; if (first == "" && v <= th) first = n + 1 }
            END { if (first == "") first = "never"; print best, first }')
        echo "$sampler seed $seed: best val loss $best; trials to reach $threshold: $first ($((t1 - t0)) s)"
        bests+=("$best")
        reach+=("$first")
    done
    med_best=$(printf '%s\n' "${bests[@]}" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    med_reach=$(printf '%s\n' "${reach[@]}" | sed 's/never/999999/' | sort -g | awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print (m >= 999999) ? "never" : m}')
    summary+=("$sampler: median best val loss $med_best; median trials to reach $threshold: $med_reach (of $trials)")
done
printf '%s\n' "${summary[@]}"
