#!/usr/bin/env bash
# Profile the firmware under QEMU: instructions per phase (matvec, attention, sampling, ...).
#
#   firmware/scripts/profile.sh --model FILE [--prompt TEXT] [--seed N] [--tokens N] [board-qemu options]
#
# Builds and runs the firmware once with tools/board-qemu (its normal serial output, with the
# firmware's own instruction count, goes to stdout), then runs the same ELF again with QEMU
# logging every executed translation block (-d in_asm,exec,nochain) into profile.py, which
# attributes each instruction to a phase through the ELF's DWARF inline information.
# The trace is streamed through a FIFO, never stored; it slows QEMU down about 20x, so keep
# --tokens small (the default here is 16). PROFILE_HOT=N also lists the N hottest addresses.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

args=("$@")
have_tokens=0
for a in "${args[@]}"; do [[ $a == --tokens ]] && have_tokens=1; done
[[ $have_tokens -eq 1 ]] || args+=(--tokens 16)

"$root/tools/board-qemu" "${args[@]}" --elf "$work/fw.elf" | tee "$work/serial.txt"
tokens=$(sed -n 's/^tokens: \([0-9]*\) prompt + \([0-9]*\) generated.*/\1 \2/p' "$work/serial.txt" | awk '{print $1 + $2}')
params=$(sed -n 's/^model: .*, \([0-9]*\) parameters,.*/\1/p' "$work/serial.txt")
[[ -n $tokens && -n $params ]] || { echo "profile.sh: the run printed no token count" >&2; exit 1; }

mkfifo "$work/trace"
python3 "$root/firmware/scripts/profile.py" "$work/fw.elf" "$work/trace" --tokens "$tokens" --params "$params" --hot "${PROFILE_HOT:-0}" \
    >"$work/table.txt" &
analyser=$!
timeout -k 5 1800 qemu-system-arm -machine netduinoplus2 -nographic -monitor none -icount shift=0 \
    -semihosting-config enable=on,target=native -kernel "$work/fw.elf" \
    -d in_asm,exec,nochain -D "$work/trace" </dev/null >/dev/null
wait "$analyser"
echo
echo "profile of $tokens tokens (prompt + generated), $params parameters:"
cat "$work/table.txt"
smlad=$(python3 "$root/firmware/scripts/elf.py" smlad "$work/fw.elf" | sed 's/^smlad //')
echo
echo "SMLAD instructions in the image: $smlad (0: the int8 dot products were built without the DSP extension)"
