#!/usr/bin/env python3
"""Where the firmware's instructions go, from a QEMU execution trace.

  profile.py ELF TRACE [--tokens N] [--params N] [--hot N]

TRACE is QEMU's log of `-d in_asm,exec,nochain` (a file or a FIFO; `-` for stdin):
`in_asm` lists the guest instructions of every translation block once, `exec` with
`nochain` logs every execution of a block. Instructions executed at each address are then
exact (what `-icount` counts). Each address is mapped to its chain of inlined functions
with addr2line (DWARF inline information: the release build keeps debug info) and the
chain decides the phase: the outermost frame that names a phase wins, so an `expf`
inside the sampler counts as sampling and one inside softmax-in-attention as attention.

Prints a table of phases: instructions, share, and per token when --tokens is given
(per token = instructions / (prompt + generated tokens), the firmware's own definition);
with --params, instructions per weight per token too; with --hot, the N most executed
instruction addresses (to read next to a disassembly).
"""
import collections
import re
import shutil
import subprocess
import sys

# (phase, substrings of a demangled function name), tested in this order on each frame
# from the outermost inward.
PHASES = [
    ("sampling", ["Sampler", "Session::sample", "sampler::"]),
    ("matvec (weights x activations)", ["matvec"]),
    ("quantize activations", ["quantize", "::prepare"]),
    ("attention (q.k, softmax, v)", ["KvElem", "softmax"]),
    ("norms", ["layernorm", "rmsnorm"]),
    ("MLP activation", ["gelu", "silu", "erff"]),
    ("RoPE", ["rope", "cos_sin"]),
    ("embedding rows, residual adds", ["::row", "add_assign"]),
    ("text output (decoder, USART)", ["Decoder", "Serial", "core::fmt", "write_str"]),
]
FORWARD = "forward_typed"

TRACE_RE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
INSN_RE = re.compile(r"^0x([0-9a-f]+):")
ADDR_RE = re.compile(r"0x[0-9a-f]+")


def die(msg):
    print(f"profile.py: {msg}", file=sys.stderr)
    sys.exit(2)


def addr2line_tool():
    for t in ("arm-none-eabi-addr2line", "arm-linux-gnueabihf-addr2line", "llvm-addr2line"):
        if shutil.which(t):
            return t
    die("no addr2line for ARM (install Debian's binutils-arm-none-eabi)")


def read_trace(stream):
    blocks = {}  # block start pc -> instruction addresses
    counts = collections.Counter()  # block start pc -> executions
    current = None
    for line in stream:
        if line.startswith("Trace "):
            m = TRACE_RE.match(line)
            if m:
                counts[int(m.group(1), 16)] += 1
            current = None
        elif line.startswith("IN:"):
            current = []
        elif current is not None:
            m = INSN_RE.match(line)
            if m:
                addr = int(m.group(1), 16)
                if not current:
                    blocks[addr] = current
                current.append(addr)
            elif not line.strip():
                current = None
    return blocks, counts


def inline_chains(elf, addrs):
    """address -> list of function names, innermost first."""
    tool = addr2line_tool()
    text = "\n".join(f"{a:#x}" for a in addrs) + "\n"
    out = subprocess.run([tool, "-a", "-i", "-f", "-C", "-e", elf], input=text, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    # Per address: the address line, then (function, file:line) for each inlined frame.
    chains, cur, expect_function = {}, None, True
    for line in out:
        if ADDR_RE.fullmatch(line):
            cur, expect_function = int(line, 16), True
            chains[cur] = []
        elif cur is not None:
            if expect_function:
                chains[cur].append(line)
            expect_function = not expect_function
    return chains


def phase_of(chain):
    outer_first = list(reversed(chain))
    for frame in outer_first:
        for phase, keys in PHASES:
            if any(k in frame for k in keys):
                return phase
    if any(FORWARD in f for f in chain):
        return "forward pass, other (loops, indexing, scaling)"
    return "other (boot, banner, generate loop)"


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        die("usage: profile.py ELF TRACE [--tokens N] [--params N] [--hot N]")
    elf, trace = args[0], args[1]
    opts = dict(zip(args[2::2], args[3::2]))
    tokens = int(opts.get("--tokens", 0))
    hot = int(opts.get("--hot", 0))
    params = int(opts.get("--params", 0))
    stream = sys.stdin if trace == "-" else open(trace, errors="replace")
    blocks, counts = read_trace(stream)
    per_addr = collections.Counter()
    for pc, n in counts.items():
        for a in blocks.get(pc, []):
            per_addr[a] += n
    if not per_addr:
        die("the trace holds no executed blocks")
    chains = inline_chains(elf, sorted(per_addr))
    phases = collections.Counter()
    for a, n in per_addr.items():
        phases[phase_of(chains.get(a, []))] += n
    total = sum(phases.values())
    if hot:
        print(f"hottest {hot} instruction addresses:")
        for a, n in per_addr.most_common(hot):
            chain = chains.get(a, [])
            print(f"  {a:#010x} {n:12d}  {chain[0] if chain else '?'}")
        print()
    print(f"{'phase':48s} {'instructions':>14s} {'share':>7s}" + (f" {'per token':>11s}" if tokens else "")
          + (f" {'per weight':>10s}" if tokens and params else ""))
    for phase, n in phases.most_common():
        row = f"{phase:48s} {n:14d} {100 * n / total:6.1f}%"
        if tokens:
            row += f" {n / tokens:11.0f}"
            if params:
                row += f" {n / tokens / params:10.2f}"
        print(row)
    row = f"{'total':48s} {total:14d} {100.0:6.1f}%"
    if tokens:
        row += f" {total / tokens:11.0f}"
        if params:
            row += f" {total / tokens / params:10.2f}"
    print(row)


if __name__ == "__main__":
    main()
