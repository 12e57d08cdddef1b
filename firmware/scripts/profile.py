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

Prints a table of phases inside the runtime's `generate` (the span the firmware's own cost
line covers): instructions, share, and per token when --tokens is given (per token =
instructions / (prompt + generated tokens), the firmware's own definition); then what runs
outside it (boot, the model's checksum, printing the banner and the report);
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
    ("sampling", ["Sampler", "Session::sample", "sampler::", "slice::sort"]),
    # Attention first: its int8 products are matvecs (and its query and weights are quantized)
    # inlined into `Session::attention_*`, the outer frame.
    ("attention (q.k, softmax, v)", ["Session::attention_", "KvElem", "softmax", "ops::scores", "weighted_sum",
                                     "matvec_i8_i16", "quantize_i16", "widen_pairs_i16", "quant_params",
                                     "quant_one"]),
    ("matvec (weights x activations)", ["matvec"]),
    ("quantize activations", ["quantize", "::prepare", "widen_pairs"]),
    ("norms", ["layernorm", "rmsnorm"]),
    ("MLP activation", ["gelu", "silu", "erff"]),
    ("RoPE", ["rope", "cos_sin"]),
    ("embedding rows, residual adds", ["::row", "add_assign"]),
    ("text output (decoder, USART)", ["Decoder", "Serial", "run::{{closure}}"]),
    ("math library calls (exp, erf, sqrt, ...)", ["libm::", "libm_math"]),
    ("memory fill and copy", ["compiler_builtins::mem", "memset", "memcpy", "memmove"]),
]
FORWARD = "forward_typed"
# Frames that mark code run by generate (the runtime, the text callback, the console).
INSIDE = ["tinygpt_runtime::", "run::{{closure}}", "Serial", "libm::", "slice::sort", "compiler_builtins"]

TRACE_RE = re.compile(r"^Trace \d+: 0x([0-9a-f]+) \[[0-9a-f]+/([0-9a-f]+)/")
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


# Out-of-line kernels that several phases call (demangled symbol names, as substrings): their
# instructions count for the phase of the code that called them (attention calls the same int8
# matvec as the weight matrices do). The caller is the last block executed outside them.
SHARED_KERNELS = ["ops::matvec_i8", "ops::matvec_i4", "ops::arm_dsp::"]


def kernel_ranges(elf):
    """[(start, end)] of the SHARED_KERNELS functions in the ELF (from nm)."""
    tool = shutil.which("arm-none-eabi-nm") or shutil.which("arm-linux-gnueabihf-nm") or shutil.which("llvm-nm")
    if not tool:
        die("no nm for ARM (install Debian's binutils-arm-none-eabi)")
    out = subprocess.run([tool, "-C", "-S", elf], capture_output=True, text=True, check=True).stdout
    ranges = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in "tT" and any(k in parts[3] for k in SHARED_KERNELS):
            start = int(parts[0], 16) & ~1
            ranges.append((start, start + int(parts[1], 16)))
    return ranges


def read_trace(stream, kernels=()):
    """Instructions executed at each guest address, and for the shared kernels, at each
    (address, caller's block address).

    Blocks are told apart by their host code pointer, not by their guest start address: under
    -icount QEMU also translates shorter blocks from the same address (to stop exactly at a
    timer deadline), so one address can start blocks of different lengths. A block's guest
    instructions (its `IN:` listing) are tied to its host pointer by the first `Trace` line
    after the listing, which is the block's first execution."""
    insns_of = {}  # host code pointer -> guest instruction addresses
    latest_by_pc = {}  # guest start address -> instructions of its latest translation
    counts = collections.Counter()  # host code pointer -> executions
    kernel_counts = collections.Counter()  # (host code pointer, caller's guest pc) -> executions
    pc_of = {}
    pending, current = None, None
    caller = 0
    for line in stream:
        if line.startswith("Trace "):
            m = TRACE_RE.match(line)
            current = None
            if not m:
                continue
            ptr, pc = int(m.group(1), 16), int(m.group(2), 16)
            if pending is not None and pending[0] == pc:
                insns_of[ptr] = pending
                pending = None
            if any(a <= pc < b for a, b in kernels):
                kernel_counts[(ptr, caller)] += 1
            else:
                counts[ptr] += 1
                caller = pc
            pc_of[ptr] = pc
        elif line.startswith("IN:"):
            current = []
        elif current is not None:
            m = INSN_RE.match(line)
            if m:
                current.append(int(m.group(1), 16))
                if len(current) == 1:
                    pending = current
                    latest_by_pc[current[0]] = current
            elif not line.strip():
                current = None
    per_addr = collections.Counter()
    for ptr, n in counts.items():
        for a in insns_of.get(ptr) or latest_by_pc.get(pc_of[ptr], []):
            per_addr[a] += n
    per_kernel = collections.Counter()  # (address, caller pc) -> instructions
    for (ptr, c), n in kernel_counts.items():
        for a in insns_of.get(ptr) or latest_by_pc.get(pc_of[ptr], []):
            per_kernel[(a, c)] += n
    return per_addr, per_kernel


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


OUTSIDE = "outside generate: "


def phase_of(chain):
    """Phase of one instruction from its inline chain (innermost first).

    Addresses only know their inlining, not their callers, so "inside generate" means code of
    the runtime (other than loading the model), the firmware's text callback and console, and
    the library code the runtime leaves out of line (libm, memset/memcpy, sorting, iterator
    set-up); formatting and everything else belongs to boot, the banner and the report."""
    if any("crc" in f or "Model::from_bytes" in f or "format::parse" in f for f in chain):
        return OUTSIDE + "model check at boot (CRC)"
    for frame in reversed(chain):
        for phase, keys in PHASES:
            if any(k in frame for k in keys):
                return phase
    if chain and all(f.startswith(("core::", "<core::")) for f in chain) and not any("fmt" in f for f in chain):
        # Generic core helpers that opt-level "s" left out of line (mostly Zip/ChunksExact
        # set-up from the matvec loops); formatting helpers belong to the banner and report.
        return "core helpers left out of line (iterator set-up)"
    if any(k in f for f in chain for k in INSIDE):
        if any(FORWARD in f for f in chain):
            return "forward pass, other (loops, indexing, scaling)"
        return "generate loop, other"
    return OUTSIDE + "boot, banner, report"


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
    per_addr, per_kernel = read_trace(stream, kernel_ranges(elf))
    if not per_addr:
        die("the trace holds no executed blocks")
    chains = inline_chains(elf, sorted(set(per_addr) | {c for _, c in per_kernel}))
    phases = collections.Counter()
    for a, n in per_addr.items():
        phases[phase_of(chains.get(a, []))] += n
    for (a, c), n in per_kernel.items():
        phases[phase_of(chains.get(c, []))] += n
        per_addr[a] += n
    total = sum(phases.values())
    if hot:
        print(f"hottest {hot} instruction addresses outside generate:")
        outside = [(n, a) for a, n in per_addr.items() if phase_of(chains.get(a, [])).startswith(OUTSIDE)]
        for n, a in sorted(outside, reverse=True)[:hot]:
            chain = chains.get(a, [])
            print(f"  {a:#010x} {n:12d}  {' <- '.join(chain) if chain else '?'}")
        print(f"hottest {hot} instruction addresses:")
        for a, n in per_addr.most_common(hot):
            chain = chains.get(a, [])
            print(f"  {a:#010x} {n:12d}  {chain[0] if chain else '?'}")
        print()
    inside = {p: n for p, n in phases.items() if not p.startswith(OUTSIDE)}
    gen_total = sum(inside.values())
    per = bool(tokens)
    print(f"{'phase (inside generate)':48s} {'instructions':>14s} {'share':>7s}"
          + (f" {'per token':>11s}" if per else "") + (f" {'per weight':>10s}" if per and params else ""))

    def row(name, n, share_of, per_token):
        r = f"{name:48s} {n:14d} {100 * n / share_of:6.1f}%"
        if per and per_token:
            r += f" {n / tokens:11.0f}"
            if params:
                r += f" {n / tokens / params:10.2f}"
        print(r)

    for phase, n in sorted(inside.items(), key=lambda kv: -kv[1]):
        row(phase, n, gen_total, True)
    row("total inside generate", gen_total, gen_total, True)
    print()
    for phase, n in sorted(phases.items(), key=lambda kv: -kv[1]):
        if phase.startswith(OUTSIDE):
            row(phase, n, total, False)
    row("whole run", total, total, False)


if __name__ == "__main__":
    main()
