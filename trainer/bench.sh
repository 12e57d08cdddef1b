#!/usr/bin/env bash
# Benchmark: the nanoGPT Tiny Shakespeare CPU recipe (trainer/configs/nanogpt-cpu.toml, 2000 iterations,
# 2 libtorch threads). Prints the median ms per iteration, tokens/s and the final
# validation loss (mean over the whole validation split).
#
#   trainer/bench.sh [extra train arguments, e.g. --set max_iters=500]
#
# Then, side by side on the same machine, the same recipe in plain PyTorch (trainer/reference/nanogpt_cpu.py,
# same libtorch version, same number of threads, same iteration count) and the ratio of the two.
# PyTorch's Python module needs the whole torch wheel with its dependencies, which the CPU-only .venv
# leaves out, so the reference runs from its own venv, .venv-reference (created on first use:
# torch==2.13.0 from PyPI, about 4.7 GB). BENCH_REFERENCE=0 skips the reference run.
#
# Needs libtorch (tools/setup-libtorch.sh runs first) and ../shared/data/tinyshakespeare.txt.
# The default (dev) profile is used: every dependency is built with opt-level 2 and the time goes to
# libtorch's kernels, so a release build (fat LTO, slow to link) measures the same.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools/setup-libtorch.sh
cargo build -p tinygpt-train
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
out="$(mktemp -d "${TMPDIR:-/tmp}/tinygpt-bench.XXXXXX")"
trap 'rm -rf "$out"' EXIT
"$target_dir/debug/tinygpt-train" train --config trainer/configs/nanogpt-cpu.toml --out "$out/run" \
    --device cpu --set sample_tokens=0 "$@" | tee "$out/stdout.txt"
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

if [ "${BENCH_REFERENCE:-1}" != 0 ]; then
    iters="$(python3 -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print(max(r["step"] for r in rows))' "$out/run/log.jsonl")"
    corpus="$(sed -n 's/^corpus *= *"\(.*\)"/\1/p' trainer/configs/nanogpt-cpu.toml)"
    ref="$root/.venv-reference"
    if ! "$ref/bin/python" -c 'import torch, numpy; assert torch.__version__.startswith("2.13.0")' 2>/dev/null; then
        echo "bench: installing torch==2.13.0 with its dependencies into $ref for the PyTorch reference" >&2
        [ -x "$ref/bin/python" ] || python3 -m venv "$ref"
        "$ref/bin/python" -m pip install --disable-pip-version-check -q torch==2.13.0 numpy
    fi
    "$ref/bin/python" trainer/reference/nanogpt_cpu.py --corpus "$corpus" --iters "$iters" --threads 2 \
        --json "$out/reference.json"
    python3 - "$out/run/log.jsonl" "$out/reference.json" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
ours = statistics.median(r["ms_per_iter"] for r in rows if r["split"] == "train")
ref = json.load(open(sys.argv[2]))
print(f"side by side: tinygpt-train {ours:.2f} ms/iteration, PyTorch {ref['ms_per_iter']:.2f} ms/iteration; "
      f"ratio (PyTorch / tinygpt-train) {ref['ms_per_iter'] / ours:.2f}x; "
      f"final val loss {[r['loss'] for r in rows if r['split'] == 'val'][-1]:.4f} vs {ref['val_loss']:.4f}")
PY
fi
