#!/usr/bin/env bash
# Benchmark: the nanoGPT Tiny Shakespeare CPU recipe (trainer/configs/nanogpt-cpu.toml, 2000 iterations,
# 2 libtorch threads). Prints the median ms per iteration, tokens/s and the final
# validation loss (mean over the whole validation split).
#
#   trainer/bench.sh [extra train arguments, e.g. --set max_iters=500]
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
