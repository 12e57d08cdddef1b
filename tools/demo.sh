#!/usr/bin/env bash
# The main job, from a fresh Debian machine with Rust (rustup) installed:
#
#   tools/demo.sh [--prompt TEXT] [--tokens N] [--seed N]
#
# 1. builds the static `tinygpt` CLI (x86_64-unknown-linux-musl) and prints Shakespeare from the
#    shipped board model, models/shakespeare-board-int4-fast.tgpt;
# 2. builds the STM32F405 firmware with the same model and runs it in QEMU (netduinoplus2),
#    which prints Shakespeare over its emulated serial port: the same text, since both run the
#    same runtime with the same prompt, seed and sampler;
# 3. asks the shipped chat model, models/shakespeare-chat.tgpt, three questions on the CLI.
# Installs what it needs when missing (idempotent): the rustup targets and Debian's
# qemu-system-arm. Training is not part of the demo (see the README's training section).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
prompt="ROMEO:"
tokens=300
seed=7
while [ $# -gt 0 ]; do
    case "$1" in
        --prompt) prompt="$2"; shift 2 ;;
        --tokens) tokens="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
model=models/shakespeare-board-int4-fast.tgpt
[ -f "$model" ] || { echo "demo: $model is missing" >&2; exit 1; }

echo "==> building the static CLI" >&2
tools/build-static.sh x86_64-unknown-linux-musl >&2
target_dir="${CARGO_TARGET_DIR:-target}"
cli="$target_dir/x86_64-unknown-linux-musl/release/tinygpt"

echo "==> tinygpt generate -m $model -p '$prompt' -n $tokens -s $seed --kv i8" >&2
"$cli" generate -m "$model" -p "$prompt" -n "$tokens" -s "$seed" --kv i8
echo
echo
echo "==> the board: STM32F405 firmware in QEMU, same model, prompt and seed" >&2
tools/board-qemu --model "$model" --prompt "$prompt" --seed "$seed" --tokens "$tokens"

chat=models/shakespeare-chat.tgpt
if [ -f "$chat" ]; then
    echo
    echo "==> tinygpt chat -m $chat --temp 0 -p QUESTION (the chat model says what it does not know)" >&2
    for q in "Spell pillow backwards." "What letter comes after K?" "What will the weather be tomorrow?"; do
        printf '%s\n  ' "$q"
        "$cli" chat -m "$chat" --temp 0 -p "$q"
    done
fi
