#!/usr/bin/env bash
# Board checks: the STM32F405 firmware in QEMU (tools/board-qemu) against the host CLI.
#
#   tools/test-board.sh
#
# For several models (random tiny gpt2, llama and f16 llama, also past their context; a random
# model of the shape trainer/configs/board.toml trains, which fills most of the flash; a llama2.c
# model of stories260K's shape converted to int8 and int4; and every model in models/) it
#   - builds the firmware for the model and runs it in QEMU (netduinoplus2, -icount shift=0);
#   - checks the budgets: flash used ≤ 1 MiB and static RAM + measured stack high-water
#     ≤ 128 KiB, as printed by the firmware, and the flash and static RAM figures against the
#     ELF's own program headers (firmware/scripts/elf.py);
#   - runs `tinygpt generate` on the host with the same model, prompt, seed, token count,
#     sampler and int8 KV cache, and checks that its stdout appears verbatim in the serial
#     output (the serial console sends each LF as CR LF, and every other byte as it is).
# Chat models (a synthetic one from `tinygpt`'s make-model example, one of the board's shape that
# fills most of the flash, and every chat model in models/) run in chat mode (--chat): questions
# typed over the serial line with backspaces, CR, LF and CR LF endings, an over-long line, a
# character the vocabulary lacks and a question too long for the context; each answer must equal
# `tinygpt chat -p QUESTION ... --kv i8` byte for byte (firmware/scripts/chat-check.py), the
# refusals must appear, /quit and Ctrl-D end the run, and the budgets are checked as above.
# Then prompts typed over the serial line (--input), and the failure paths: a prompt the
# vocabulary cannot encode, a session too large for the RAM, a firmware panic, a run past its
# time limit, a bad command line; and that instruction counts repeat exactly and that a
# different seed changes the board's text.
#
# Prints one line per check and a final `N passed, N failed`; exits 1 if any check failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
board="$root/tools/board-qemu"
elfpy="$root/firmware/scripts/elf.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() {
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 ]]
    exit $?
}

# --- host side ----------------------------------------------------------------------
# python3 reads the ELF and compares bytes; Debian's package when missing (as root).
if ! command -v python3 >/dev/null 2>&1; then
    echo "installing python3 from Debian" >&2
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3; } >&2 ||
        { bad "python3 is missing and could not be installed"; finish; }
fi
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
             python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') || target_dir=
[[ -n $target_dir ]] || target_dir="$root/target"
echo "building the host CLI and the random-model makers" >&2
if ! (cd "$root" && cargo build --release -q -p tinygpt --bin tinygpt --example make-model) >&2; then
    bad "host CLI builds"
    finish
fi
tinygpt="$target_dir/release/tinygpt"
synth="$target_dir/release/examples/make-model"
chatpy="$root/firmware/scripts/chat-check.py"
host_triple=$(rustc -vV | sed -n 's/^host: //p')
# firmware/.cargo/config.toml makes thumbv7em the default there; name the host target.
if ! (cd "$root/firmware/host-tools" && cargo build --release -q --target "$host_triple") >&2; then
    bad "firmware host tools build"
    finish
fi
ht_dir=$(cd "$root/firmware/host-tools" && cargo metadata --format-version 1 --no-deps |
         python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
board_model="$ht_dir/$host_triple/release/make-model"

models=()
# Tiny models: gpt2 with tied embeddings; llama with grouped KV heads, an MLP width (88) that is
# not a multiple of the int8 group (32) and a separate classifier; the same llama in f16.
if "$board_model" --out "$work/tiny-gpt2.tgpt" --layers 2 --heads 4 --embd 32 --block 64 --group 32 \
       --seed 1 >&2 &&
   "$board_model" --out "$work/tiny-llama.tgpt" --arch llama --layers 2 --heads 4 --kv-heads 2 --embd 32 \
       --hidden 88 --block 64 --group 32 --untied --seed 5 >&2 &&
   "$board_model" --out "$work/tiny-llama-f16.tgpt" --arch llama --layers 2 --heads 4 --kv-heads 2 --embd 32 \
       --hidden 88 --block 64 --dtype f16 --untied --seed 5 >&2 &&
   "$board_model" --out "$work/board-llama.tgpt" --name board-random --arch llama --layers 5 --embd 128 \
       --heads 8 --kv-heads 2 --hidden 320 --block 128 --group 64 --seed 3 >&2 &&
   "$board_model" --out "$work/too-much-ram.tgpt" --layers 4 --embd 128 --heads 4 --block 128 >&2 &&
   "$board_model" --out "$work/too-much-flash.tgpt" --arch llama --layers 7 --embd 128 --heads 8 --kv-heads 2 \
       --hidden 320 --block 128 --group 64 --seed 3 >&2; then
    ok "random models written"
    models+=("$work/tiny-gpt2.tgpt" "$work/tiny-llama.tgpt" "$work/tiny-llama-f16.tgpt" "$work/board-llama.tgpt")
else
    bad "random models written"
fi
chat_models=()
for m in "$root"/models/*.tgpt; do
    [[ -f $m ]] || continue
    if "$tinygpt" inspect "$m" 2>/dev/null | grep -q '^chat *yes'; then chat_models+=("$m"); else models+=("$m"); fi
done

# value_of LABEL FILE: the first number after "LABEL" on its line of the serial output.
value_of() {
    sed -n "s/^$1 *\([0-9][0-9]*\).*/\1/p" "$2" | head -n 1
}

# check_budgets NAME SERIAL ELF: the budgets as the firmware printed them, and against the ELF.
check_budgets() {
    local name=$1 serial=$2 elf=$3
    # Budgets as the firmware measured them.
    local flash ram statics stack
    flash=$(value_of "flash:" "$serial")
    ram=$(value_of "ram:" "$serial")
    statics=$(sed -n 's/^ram: .*(static \([0-9]*\),.*/\1/p' "$serial")
    stack=$(sed -n 's/^ram: .*stack high-water \([0-9]*\).*/\1/p' "$serial")
    if [[ -n $flash && -n $ram && -n $statics && -n $stack && $stack -gt 0 ]] &&
       [[ $flash -le 1048576 && $ram -le 131072 && $ram -eq $((statics + stack)) ]]; then
        ok "$name: budgets flash $flash ≤ 1048576, static $statics + stack $stack = $ram ≤ 131072"
    else
        bad "$name: budgets (flash '$flash', ram '$ram', static '$statics', stack '$stack')"
    fi
    # The same figures from the ELF's section headers.
    local elf_flash elf_ram
    elf_flash=$(python3 "$elfpy" budgets "$elf" | sed -n 's/^flash //p')
    elf_ram=$(python3 "$elfpy" budgets "$elf" | sed -n 's/^ram //p')
    if [[ -n $elf_flash && $elf_flash == "$flash" && $elf_ram == "$statics" ]]; then
        ok "$name: ELF program headers agree (flash $elf_flash, static RAM $elf_ram)"
    else
        bad "$name: ELF says flash '$elf_flash' static '$elf_ram', firmware says '$flash' '$statics'"
    fi
}

# run_pair MODEL PROMPT SEED TOKENS TEMP TOPK [CTX]: board vs host, budgets, ELF.
run_pair() {
    local model=$1 prompt=$2 seed=$3 tokens=$4 temp=$5 topk=$6 ctx=${7:-}
    local name ctx_board=() ctx_host=()
    name="$(basename "$model") seed $seed"
    if [[ -n $ctx ]]; then
        name="$name context $ctx"
        ctx_board=(--ctx "$ctx")
        ctx_host=(-c "$ctx")
    fi
    local serial="$work/serial.txt" host="$work/host.txt" elf="$work/fw.elf"
    "$board" --model "$model" --prompt "$prompt" --seed "$seed" --tokens "$tokens" --temperature "$temp" \
        --top-k "$topk" "${ctx_board[@]}" --timeout 300 --elf "$elf" >"$serial" 2>"$work/board.err"
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        bad "$name: board-qemu exit $rc"
        tail -n 5 "$work/board.err" "$serial" | sed 's/^/    /'
        return
    fi
    ok "$name: firmware ran in QEMU and exited 0"

    check_budgets "$name" "$serial" "$elf"
    # Cost per token is reported.
    # -a: a model's text may hold any byte (a sentencepiece model's byte tokens).
    if grep -aEq "^cost: [0-9]+ instructions in all, [1-9][0-9]* instructions/token" "$serial"; then
        ok "$name: $(grep -ao '[0-9]* instructions/token' "$serial" | head -n 1)"
    else
        bad "$name: no instructions/token line"
    fi

    # Board equals host.
    if ! "$tinygpt" generate -m "$model" -p "$prompt" -n "$tokens" -s "$seed" --temp "$temp" --top-k "$topk" \
         "${ctx_host[@]}" --kv i8 >"$host" 2>"$work/host.err"; then
        bad "$name: host CLI failed: $(head -n 1 "$work/host.err")"
        return
    fi
    if python3 - "$serial" "$host" <<'EOF'
import sys
serial = open(sys.argv[1], "rb").read()
host = open(sys.argv[2], "rb").read()
# The board prints the text between two "---" lines, every "\n" sent as "\r\n" (any other byte,
# a "\r" the model wrote included, as it is); the host's whole stdout must be there.
crlf = lambda b: b.replace(b"\n", b"\r\n")
sys.exit(0 if host and crlf(b"---\n" + host + b"\n---\n") in serial else 1)
EOF
    then
        ok "$name: board text equals host stdout ($(wc -c <"$host") bytes)"
    else
        bad "$name: board text differs from host stdout"
        echo "    host:  $(head -c 120 "$host" | tr '\n' '|')"
        echo "    board: $(sed -n '/^---/,/^---/p' "$serial" | tr -d '\r' | head -c 120 | tr '\n' '|')"
    fi
}

for m in "${models[@]}"; do
    run_pair "$m" "ROMEO:" 7 40 0.8 40
done
# Past the context (block 64), on both sides: the llama session's KV cache rolls, the gpt2 one
# keeps the newest half and goes on.
if [[ -f $work/tiny-llama.tgpt ]]; then
    run_pair "$work/tiny-llama.tgpt" "ROMEO:" 11 150 0.8 40
    run_pair "$work/tiny-gpt2.tgpt" "ROMEO:" 11 150 0.8 40
fi

# A llama2.c model of stories260K's shape (dim 64, 5 layers, 8/4 heads, hidden 172, a 512-token
# sentencepiece tokenizer; random weights), written by llama2.c's own export.py and tokenizer.py
# (tools/tests/interop/make_260k.py) and converted by `tinygpt convert` to int8 and int4: the
# board runs it at context 128 (its 512 would need 290 KB of RAM for the int8 KV cache), past the
# context, with the host's text.
l2c="${TINYGPT_LLAMA2C:-$root/../shared/third_party/llama2.c}"
if [[ -f $l2c/export.py ]] && "$root/tools/test-interop.sh" --setup >&2 &&
   "$root/.venv/bin/python" "$root/tools/tests/interop/make_260k.py" "$l2c" "$root/../shared/data/tinyshakespeare.txt" \
       "$work/s260" >&2 &&
   "$tinygpt" convert "$work/s260/stories260k-shape.bin" --tokenizer "$work/s260/tok512.bin" --dtype int8 \
       --out "$work/stories260k-shape-int8.tgpt" 2>/dev/null &&
   "$tinygpt" convert "$work/s260/stories260k-shape.bin" --tokenizer "$work/s260/tok512.bin" --dtype int4 \
       --out "$work/stories260k-shape-int4.tgpt" 2>/dev/null; then
    ok "a llama2.c model of stories260K's shape written by llama2.c's export.py and converted to int8 and int4"
    run_pair "$work/stories260k-shape-int8.tgpt" "ROMEO:" 7 200 0.8 40 128
    run_pair "$work/stories260k-shape-int4.tgpt" "ROMEO:" 7 200 0.8 40 128
else
    bad "a llama2.c model of stories260K's shape (llama2.c sources at $l2c, python set-up, convert)"
fi

# --- properties of the measurement and of the oracle ----------------------------------
tiny="$work/tiny-gpt2.tgpt"
if [[ -f $tiny ]]; then
    # icount makes the instruction count exact: two runs of one image agree to the instruction.
    "$board" --model "$tiny" --prompt "ROMEO:" --seed 7 --tokens 40 --temperature 0.8 --top-k 40 \
        >"$work/a.txt" 2>/dev/null
    "$board" --model "$tiny" --prompt "ROMEO:" --seed 7 --tokens 40 --temperature 0.8 --top-k 40 \
        >"$work/b.txt" 2>/dev/null
    a=$(grep '^cost:' "$work/a.txt"); b=$(grep '^cost:' "$work/b.txt")
    if [[ -n $a && $a == "$b" ]]; then ok "instruction counts repeat exactly ($a)"; else bad "instruction counts differ: '$a' vs '$b'"; fi

    # The comparison can fail: another seed gives other text on the board.
    "$tinygpt" generate -m "$tiny" -p "ROMEO:" -n 40 -s 7 --temp 0.8 --top-k 40 --kv i8 >"$work/host7.txt" 2>/dev/null
    "$board" --model "$tiny" --prompt "ROMEO:" --seed 8 --tokens 40 --temperature 0.8 --top-k 40 \
        >"$work/seed8.txt" 2>/dev/null
    rc=$?
    # The board run must have worked and printed a text block, so that the difference is real.
    if [[ $rc -eq 0 && -s $work/host7.txt ]] && tr -d '\r' <"$work/seed8.txt" | grep -q '^---$' \
        && ! tr -d '\r' <"$work/seed8.txt" | grep -qF -- "$(tail -c 30 "$work/host7.txt")"; then
        ok "seed 8 on the board does not reproduce the host's seed-7 text"
    else
        bad "seed 8: the board run failed (exit $rc), printed no text, or printed the host's seed-7 text"
    fi

    # Prompts typed over the serial line: the first gives the host's text, a character outside
    # the vocabulary is refused with a message and the firmware asks again, Ctrl-D ends it.
    "$board" --model "$tiny" --seed 7 --tokens 40 --temperature 0.8 --top-k 40 \
        --input $'ROMEO:\nBad~line' --timeout 120 >"$work/typed.txt" 2>/dev/null
    rc=$?
    if [[ $rc -eq 0 ]] && python3 - "$work/typed.txt" "$work/host7.txt" <<'EOF'
import sys
serial = open(sys.argv[1], "rb").read().replace(b"\r", b"")
host = open(sys.argv[2], "rb").read()
ok = (host and b"> ROMEO:\n---\n" + host + b"\n---\n" in serial
      and b"> Bad~line\nerror: prompt: " in serial and serial.count(b"prompt (Enter") == 3)
sys.exit(0 if ok else 1)
EOF
    then
        ok "prompts typed over the serial line: host text, a refused line, Ctrl-D ends (exit 0)"
    else
        bad "prompts typed over the serial line: exit $rc"
        tr -d '\r' <"$work/typed.txt" | tail -n 5 | sed 's/^/    /'
    fi

    # Failure paths.
    "$board" --model "$tiny" --prompt "ROMEO~" --tokens 4 >"$work/out.txt" 2>"$work/err.txt"
    rc=$?
    if [[ $rc -eq 3 ]] && grep -q "TINYGPT_PROMPT" "$work/err.txt"; then
        ok "a prompt the vocabulary lacks fails the build (exit 3) and says why"
    else
        bad "unencodable prompt: exit $rc"
    fi

    TINYGPT_TEST_PANIC=1 "$board" --model "$tiny" --prompt "A" --tokens 4 --timeout 60 >"$work/out.txt" 2>/dev/null
    rc=$?
    if [[ $rc -eq 1 ]] && grep -q "^panic: .*TINYGPT_TEST_PANIC" "$work/out.txt"; then
        ok "a firmware panic prints its message and exits 1"
    else
        bad "panic path: exit $rc"
    fi

    start=$SECONDS
    "$board" --model "$work/board-llama.tgpt" --prompt "A" --tokens 100000 --timeout 3 >/dev/null 2>"$work/err.txt"
    rc=$?
    elapsed=$((SECONDS - start))
    if [[ $rc -eq 124 ]] && grep -q "QEMU ran past the 3 s limit and was stopped" "$work/err.txt"; then
        ok "a run past --timeout is stopped (exit 124, ${elapsed} s including the build)"
    else
        bad "time limit: exit $rc after ${elapsed} s"
    fi
fi

if [[ -f $work/too-much-ram.tgpt ]]; then
    "$board" --model "$work/too-much-ram.tgpt" --tokens 4 >/dev/null 2>"$work/err.txt"
    rc=$?
    if [[ $rc -eq 3 ]] && grep -q "needs [0-9]* bytes of RAM" "$work/err.txt"; then
        ok "a session too large for the RAM fails the build (exit 3) and says why"
    else
        bad "oversized session: exit $rc"
    fi
fi

if [[ -f $work/too-much-flash.tgpt ]]; then
    "$board" --model "$work/too-much-flash.tgpt" --tokens 4 >/dev/null 2>"$work/err.txt"
    rc=$?
    if [[ $rc -eq 3 ]] && grep -q "bytes do not fit in 1048576 bytes of flash" "$work/err.txt" &&
       ! grep -q "will not fit in region" "$work/err.txt"; then
        ok "a model too large for the flash fails the build before linking (exit 3) and says why"
    else
        bad "oversized model: exit $rc"
    fi
fi

# --- chat models ----------------------------------------------------------------------
# chat_run NAME MODEL SET CTX QUIT: types chat-check.py's questions into the board (seed 7, 40
# tokens, temperature 0.8, top-k 40) and checks every answer against tinygpt chat -p.
chat_run() {
    local name=$1 model=$2 set=$3 ctx=$4 quit=$5
    local serial="$work/chat-serial.txt" elf="$work/chat.elf" q=()
    [[ $quit -eq 1 ]] && q=(--quit)
    python3 "$chatpy" input --set "$set" --ctx "$ctx" "${q[@]}" >"$work/typed.bin"
    "$board" --chat --model "$model" --seed 7 --tokens 40 --temperature 0.8 --top-k 40 --ctx "$ctx" \
        --timeout 300 --elf "$elf" <"$work/typed.bin" >"$serial" 2>"$work/board.err"
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        bad "$name: board-qemu --chat exit $rc"
        tail -n 5 "$work/board.err" "$serial" | tr -d '\r' | sed 's/^/    /'
        return
    fi
    ok "$name: chat firmware ran in QEMU and exited 0 ($([[ $quit -eq 1 ]] && echo /quit || echo Ctrl-D))"
    check_budgets "$name" "$serial" "$elf"
    local line
    while IFS= read -r line; do
        case $line in
            "ok   "*) ok "${line#ok   }" ;;
            "FAIL "*) bad "${line#FAIL }" ;;
        esac
    done < <(python3 "$chatpy" check --set "$set" --ctx "$ctx" "${q[@]}" --serial "$serial" --tinygpt "$tinygpt" \
                 --model "$model" --name "$name" --seed 7 --tokens 40 --temp 0.8 --top-k 40 2>&1)
}

chat="$work/chat.tgpt"
if "$synth" --chat --dtype int8 -o "$chat" >&2 &&
   "$board_model" --out "$work/board-chat.tgpt" --name board-chat-random --arch llama --layers 5 --embd 128 \
       --heads 8 --kv-heads 2 --hidden 320 --block 128 --group 64 --seed 3 --chat >&2; then
    ok "chat models written"
    chat_run "chat.tgpt" "$chat" full 64 1
    chat_run "chat.tgpt ctx 48" "$chat" short 48 0
    chat_run "board-chat.tgpt" "$work/board-chat.tgpt" short 128 0
else
    bad "chat models written"
fi
for m in "${chat_models[@]}"; do
    ctx=$("$tinygpt" inspect "$m" | sed -n 's/^block_size *\([0-9]*\).*/\1/p' | head -n 1)
    chat_run "$(basename "$m")" "$m" full "${ctx:-128}" 1
done

if [[ -f $chat && -f $tiny ]]; then
    "$board" --chat --model "$tiny" --tokens 4 </dev/null >/dev/null 2>"$work/err.txt"
    rc=$?
    # Build messages go to stderr too: one line of board-qemu's own.
    if [[ $rc -eq 2 ]] && [[ $(grep -c '^board-qemu:' "$work/err.txt") -eq 1 ]] &&
       grep -q "^board-qemu: --chat: .* is not a chat model" "$work/err.txt"; then
        ok "--chat with a base model: one error line and exit 2"
    else
        bad "--chat with a base model: exit $rc"
    fi
    "$board" --model "$chat" --tokens 4 >/dev/null 2>"$work/err.txt"
    rc=$?
    if [[ $rc -eq 2 ]] && [[ $(grep -c '^board-qemu:' "$work/err.txt") -eq 1 ]] &&
       grep -q "^board-qemu: .* is a chat model: give --chat" "$work/err.txt"; then
        ok "a chat model without --chat: one error line and exit 2"
    else
        bad "a chat model without --chat: exit $rc"
    fi
    "$board" --chat --model "$chat" --ctx 12 </dev/null >/dev/null 2>"$work/err.txt"
    rc=$?
    if [[ $rc -eq 3 ]] && grep -q "cannot hold the chat template" "$work/err.txt"; then
        ok "a context too small for the chat template fails the build (exit 3) and says why"
    else
        bad "chat context too small: exit $rc"
    fi
fi

"$board" --tokens many >/dev/null 2>"$work/err.txt"
rc=$?
if [[ $rc -eq 2 ]] && [[ $(wc -l <"$work/err.txt") -eq 1 ]]; then
    ok "a bad command line gives one error line and exit 2"
else
    bad "bad command line: exit $rc"
fi

finish
