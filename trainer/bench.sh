#!/usr/bin/env bash
# Benchmark: the nanoGPT Tiny Shakespeare CPU recipe (trainer/configs/nanogpt-cpu.toml, 2000 iterations),
# tinygpt-train against the same recipe in plain PyTorch on the same machine.
#
#   trainer/bench.sh [extra train arguments, e.g. --set seed=2]
#
# 1. tinygpt-train trains the full recipe: median ms per iteration, tokens/s and the final validation
#    loss (mean over the whole validation split).
# 2. PyTorch trains the same recipe (trainer/reference/nanogpt_cpu.py: same libtorch version, seed,
#    thread count and iteration count): its validation loss on the same split, and nanoGPT's own
#    estimate of it (20 random batches, ten draws).
# 3. Speed, interleaved: BENCH_ROUNDS rounds (default 5), each a 200-iteration run of tinygpt-train
#    then one of PyTorch. A shared machine's speed drifts over minutes, so only runs this close in
#    time are compared: the result is the median over rounds of PyTorch's ms/iteration over
#    tinygpt-train's (above 1: tinygpt-train is faster).
#    tinygpt-train lets MKL run its AVX2 kernels on non-Intel CPUs (trainer/src/mkl.rs); PyTorch as
#    installed does not. So each round also runs PyTorch with the same choice, preloading
#    trainer/reference/mkl_vendor.c (built with gcc): the second ratio compares the two programs on
#    the same matrix kernels. On an Intel CPU the two PyTorch runs are the same.
#
# Environment: BENCH_THREADS (libtorch threads for both, default 2), BENCH_ROUNDS (default 5),
# BENCH_REFERENCE=0 (only step 1).
# PyTorch's Python module needs the whole torch wheel with its dependencies, which the CPU-only .venv
# leaves out, so the reference runs from its own venv, .venv-reference (created on first use:
# torch==2.13.0 from PyPI, about 4.7 GB).
#
# Needs libtorch (tools/setup-libtorch.sh runs first) and ../shared/data/tinyshakespeare.txt.
# The default (dev) profile is used: every dependency is built with opt-level 2 and the time goes to
# libtorch's kernels, so a release build (fat LTO, slow to link) measures the same.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads="${BENCH_THREADS:-2}"
rounds="${BENCH_ROUNDS:-5}"
tools/setup-libtorch.sh
cargo build -p tinygpt-train
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
train=("$target_dir/debug/tinygpt-train" train --config trainer/configs/nanogpt-cpu.toml --device cpu
       --set sample_tokens=0 --set "threads=$threads")
out="$(mktemp -d "${TMPDIR:-/tmp}/tinygpt-bench.XXXXXX")"
trap 'rm -rf "$out"' EXIT

# Median ms/iteration of a run's training log.
ms_of() { python3 -c 'import json,sys,statistics; print(statistics.median(r["ms_per_iter"] for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"))' "$1"; }

# --- 1. tinygpt-train, full recipe -----------------------------------------------------------------
"${train[@]}" --out "$out/run" "$@" | tee "$out/stdout.txt"
python3 - "$out/run/log.jsonl" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if r["split"] == "train"]
val = [r for r in rows if r["split"] == "val"]
ms = statistics.median(r["ms_per_iter"] for r in train)
tps = statistics.median(r["tokens_per_s"] for r in train)
print(f"benchmark: {train[-1]['step']} iterations; median {ms:.2f} ms/iteration (per {len(train)} logging windows), "
      f"median {tps:.0f} tokens/s; final val loss {val[-1]['loss']:.4f}; best {min(r['loss'] for r in val):.4f}")
PY
[ "${BENCH_REFERENCE:-1}" = 0 ] && exit 0

# --- 2. PyTorch, full recipe -----------------------------------------------------------------------
iters="$(python3 -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print(max(r["step"] for r in rows))' "$out/run/log.jsonl")"
# The run's seed: the config's, or a `--set seed=N` among the arguments.
seed="$(sed -n 's/^seed *= *\([0-9]*\).*/\1/p' trainer/configs/nanogpt-cpu.toml)"
for a in "$@"; do [[ "$a" =~ ^seed=([0-9]+)$ ]] && seed="${BASH_REMATCH[1]}"; done
corpus="$(sed -n 's/^corpus *= *"\(.*\)"/\1/p' trainer/configs/nanogpt-cpu.toml)"
ref="$root/.venv-reference"
if ! "$ref/bin/python" -c 'import torch, numpy; assert torch.__version__.startswith("2.13.0")' 2>/dev/null; then
    echo "bench: installing torch==2.13.0 with its dependencies into $ref for the PyTorch reference" >&2
    [ -x "$ref/bin/python" ] || python3 -m venv "$ref"
    "$ref/bin/python" -m pip install --disable-pip-version-check -q torch==2.13.0 numpy
fi
reference=("$ref/bin/python" trainer/reference/nanogpt_cpu.py --corpus "$corpus" --threads "$threads")
"${reference[@]}" --iters "$iters" --seed "$seed" --json "$out/reference.json"

# --- 3. speed, interleaved rounds ------------------------------------------------------------------
tools/need-debs gcc
gcc -shared -fPIC -O2 -o "$out/mkl_vendor.so" trainer/reference/mkl_vendor.c
ref_ms() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ms_per_iter"])' "$1"; }
echo "speed: $rounds interleaved rounds of 200 iterations" >&2
for ((r = 1; r <= rounds; r++)); do
    "${train[@]}" --out "$out/speed-$r" --set max_iters=200 --set eval_interval=1000000 "$@" >/dev/null
    "${reference[@]}" --iters 200 --eval-interval 1000000 --json "$out/speed-$r.json" >/dev/null
    LD_PRELOAD="$out/mkl_vendor.so" "${reference[@]}" --iters 200 --eval-interval 1000000 --json "$out/speed-$r-same.json" >/dev/null
    ours="$(ms_of "$out/speed-$r/log.jsonl")"
    theirs="$(ref_ms "$out/speed-$r.json")"
    same="$(ref_ms "$out/speed-$r-same.json")"
    printf '  round %d: tinygpt-train %.2f ms/iteration, PyTorch %.2f, PyTorch with the same MKL kernels %.2f\n' \
        "$r" "$ours" "$theirs" "$same" >&2
    echo "$ours $theirs $same" >>"$out/pairs.txt"
done
python3 - "$out/run/log.jsonl" "$out/reference.json" "$out/pairs.txt" <<'PY'
import json, sys, statistics
rounds = [tuple(map(float, l.split())) for l in open(sys.argv[3]) if l.strip()]
rows = [json.loads(l) for l in open(sys.argv[1])]
ref = json.load(open(sys.argv[2]))
ours_val = [r["loss"] for r in rows if r["split"] == "val"][-1]
med = lambda xs: statistics.median(list(xs))
print(f"speed ({len(rounds)} interleaved rounds of 200 iterations), median ms/iteration: tinygpt-train "
      f"{med(o for o, _, _ in rounds):.2f}, PyTorch {med(t for _, t, _ in rounds):.2f}, PyTorch with the same MKL "
      f"kernels {med(s for _, _, s in rounds):.2f}")
for name, k in (("PyTorch", 1), ("PyTorch with the same MKL kernels", 2)):
    print(f"  median ratio {name} / tinygpt-train {med(r[k] / r[0] for r in rounds):.2f}x "
          f"(rounds: {', '.join(f'{r[k] / r[0]:.2f}' for r in rounds)})")
print(f"validation loss after {ref['iterations']} iterations, whole split: tinygpt-train {ours_val:.4f}, "
      f"PyTorch {ref['val_loss']:.4f} (nanoGPT's estimator on PyTorch's model: median "
      f"{statistics.median(ref['nanogpt_estimates']):.4f} of {len(ref['nanogpt_estimates'])} draws)")
PY
