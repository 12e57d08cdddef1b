#!/usr/bin/env bash
# Benchmark of `tinygpt serve` on the shipped model: aggregate tokens/s at 1, 2 and 4 parallel
# streams and the time to the first token, with the CLI's single-stream speed beside them.
#
#   tools/bench-serve.sh [MODEL] [TOKENS] [ROUNDS]   (default models/shakespeare-board.tgpt 128 8)
#
# Builds the release binary; needs only python3 (the standard library).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q --release -p tinygpt --features serve --bin tinygpt
TINYGPT=target/release/tinygpt exec python3 tools/serve-tests/bench.py "${1:-models/shakespeare-board.tgpt}" "${2:-128}" "${3:-8}"
