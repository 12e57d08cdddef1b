#!/usr/bin/env python3
"""Chat-mode checks of the firmware: what to type into it, and its serial output against the host.

    chat-check.py input --set full|short --ctx N [--quit] >typed.bin
    chat-check.py check --set full|short --ctx N [--quit] --serial FILE --tinygpt BIN --model FILE \\
                  --seed N --tokens N --temp T --top-k K

`input` writes the bytes to type (questions with backspaces, CR, LF and CR LF endings, an empty
line, an over-long line, a character the vocabulary may lack, a question too long for the
context, a question asked twice; with --quit a last `/quit` line). `check` walks the serial output
of a run that was typed those bytes (then Ctrl-D) and prints one `ok   ...` or `FAIL ...` line per
check: each line's echo, each answer against `tinygpt chat -p QUESTION` on the host with the same
model, seed, sampler, context and int8 KV cache (byte for byte, and the token counts against its
-v line), an `error:` line where the host refuses the question, and the budget lines at the end.
Standard library only.
"""

import argparse
import re
import subprocess
import sys

MAX_LINE = 256  # the firmware's line buffer (firmware/src/chat.rs)


def cases(which, ctx, quit_line):
    """(typed bytes, expected echo, what follows): ('ask', host question), ('message', text) or ('none',)."""
    c = [
        (b"What is love?\n", b"What is love?", ("ask", "What is love?")),
        (b"Whaz\x7ft?\n", b"Whaz\x08 \x08t?", ("ask", "What?")),
    ]
    if which == "short":
        c.append((b"Hi\r", b"Hi", ("ask", "Hi")))
    else:
        c += [
            (b"\n", b"", ("none",)),
            (b"Hellx\x08o, friend\r\n", b"Hellx\x08 \x08o, friend", ("ask", "Hello, friend")),
            (b"Good night\r", b"Good night", ("ask", "Good night")),
            (b"a" * (MAX_LINE + 44) + b"\n", b"a" * MAX_LINE,
             ("message", b"error: the line is longer than %d bytes" % MAX_LINE)),
            (b"Who~\n", b"Who~", ("ask", "Who~")),
        ]
        # At least one token per two characters, and the template on top: past the context.
        long_q = b"la" * (ctx + 1)
        if len(long_q) <= MAX_LINE:
            c.append((long_q + b"\n", long_q, ("ask", long_q.decode())))
        c += [
            (b"Farewell.\n", b"Farewell.", ("ask", "Farewell.")),
            (b"What is love?\n", b"What is love?", ("ask", "What is love?")),
        ]
    if quit_line:
        c.append((b"/quit\n", b"/quit", ("none",)))
    return c


STATS = re.compile(rb"\[(\d+) prompt \+ (\d+) generated tokens, (end of turn|token limit|context full); ([1-9]\d*) instructions/token\]\n")
HOST_V = re.compile(r"(\d+) prompt tokens, (\d+) reply tokens \((ended by <\|im_end\|>|cut at the limit)\)")


def host(args, question, seed, temp=None):
    cmd = [args.tinygpt, "chat", "-m", args.model, "-p", question, "-s", str(seed), "--kv", "i8",
           "--ctx", str(args.ctx), "-n", str(args.tokens), "--temp", temp or args.temp, "--top-k", args.top_k, "-v"]
    return subprocess.run(cmd, capture_output=True)


def check(args):
    results = []

    def ok(msg):
        results.append("ok   " + msg)

    def bad(msg):
        results.append("FAIL " + msg)

    serial = open(args.serial, "rb").read().replace(b"\r", b"")
    intro = serial.find(b"chat: type a question")
    if intro < 0:
        bad(f"{args.name}: no chat banner in the serial output")
        return results
    pos = serial.index(b"\n", intro) + 1
    answers = {}
    for i, (_, echo, then) in enumerate(cases(args.set, args.ctx, args.quit), 1):
        label = f"{args.name}: line {i} {echo[:24]!r}"
        want = b"> " + echo + b"\n"
        if not serial.startswith(want, pos):
            bad(f"{label}: echo {want!r} expected, got {serial[pos:pos + len(want) + 20]!r}")
            return results
        pos += len(want)
        if then[0] == "none":
            continue
        if then[0] == "message":
            end = serial.find(b"\n", pos) + 1
            line = serial[pos:end]
            if line.startswith(then[1]):
                ok(f"{label}: refused: {line.decode().strip()}")
                pos = end
                continue
            bad(f"{label}: {then[1]!r} expected, got {line!r}")
            return results
        question = then[1]
        h = host(args, question, args.seed)
        if h.returncode != 0:
            # The host refuses the question: the board must say why in one error line, and go on.
            end = serial.find(b"\n", pos) + 1
            line = serial[pos:end]
            host_msg = h.stderr.decode(errors="replace").strip().splitlines()[-1:]
            same_reason = all(key in line for key in (b"too long", b"not in the model's vocabulary")
                              if key.decode() in h.stderr.decode(errors="replace"))
            if line.startswith(b"error: ") and b" generated tokens" not in line and same_reason:
                ok(f"{label}: refused as the host refuses it: board {line.decode().strip()!r}, host {host_msg}")
                pos = end
                continue
            bad(f"{label}: the host refuses it ({host_msg}) but the board printed {line!r}")
            return results
        reply = h.stdout
        if not serial.startswith(reply, pos):
            bad(f"{label}: board answer differs from tinygpt chat: host {reply[:60]!r}, board {serial[pos:pos + 60]!r}")
            return results
        pos += len(reply)
        m = STATS.match(serial, pos)
        hv = HOST_V.search(h.stderr.decode(errors="replace"))
        if not m or not hv:
            bad(f"{label}: no token-count line after the answer ({serial[pos:pos + 60]!r}) or none from the host -v")
            return results
        pos = m.end()
        same_counts = (int(m[1]), int(m[2])) == (int(hv[1]), int(hv[2]))
        same_end = (m[3] == b"end of turn") == hv[3].startswith("ended by")
        if same_counts and same_end:
            ok(f"{label}: answer equals tinygpt chat -p ({len(reply) - 1} bytes; {m[1].decode()} prompt + "
               f"{m[2].decode()} generated tokens, {m[3].decode()}, {m[4].decode()} instructions/token)")
        else:
            bad(f"{label}: token counts {m.group(0)!r} differ from the host's {hv.group(0)!r}")
        if question in answers and answers[question] != reply:
            bad(f"{label}: the same question got another answer")
        answers[question] = reply
    if not args.quit:
        # Ctrl-D came at a fresh prompt.
        if serial.startswith(b"> \n", pos):
            pos += 3
        else:
            bad(f"{args.name}: Ctrl-D: '> ' and a new line expected, got {serial[pos:pos + 20]!r}")
            return results
    if re.match(rb"flash: \d+ of 1048576 bytes .*\nram: \d+ of 131072 bytes .*\n$", serial[pos:]):
        ok(f"{args.name}: {'/quit' if args.quit else 'Ctrl-D'} ends the chat with the budget lines")
    else:
        bad(f"{args.name}: the budget lines expected at the end, got {serial[pos:pos + 80]!r}")
    # The comparison can fail: the host with other sampler settings answers the first question
    # otherwise. A trained chat model may give one answer to a question at nearly every seed, so
    # other seeds are tried, then a hotter temperature.
    first = cases(args.set, args.ctx, args.quit)[0][2][1]
    tries = [(args.seed + k, None) for k in range(1, 11)] + [(args.seed + k, "2.0") for k in range(1, 11)]
    found = None
    for seed, temp in tries:
        other = host(args, first, seed, temp)
        if other.returncode != 0:
            break
        if first in answers and other.stdout != answers[first]:
            found = (seed, temp or args.temp)
            break
    if found:
        ok(f"{args.name}: seed {found[0]} at temperature {found[1]} on the host answers {first!r} otherwise")
    else:
        bad(f"{args.name}: no other seed or temperature on the host answers {first!r} otherwise (or the host failed)")
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["input", "check"])
    p.add_argument("--set", choices=["full", "short"], default="full")
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--quit", action="store_true")
    p.add_argument("--serial")
    p.add_argument("--tinygpt")
    p.add_argument("--model")
    p.add_argument("--name", default="chat")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--temp", default="0.8")
    p.add_argument("--top-k", default="40")
    args = p.parse_args()
    if args.mode == "input":
        sys.stdout.buffer.write(b"".join(t for t, _, _ in cases(args.set, args.ctx, args.quit)))
        return 0
    if not (args.serial and args.tinygpt and args.model):
        p.error("check needs --serial, --tinygpt and --model")
    lines = check(args)
    print("\n".join(lines))
    return 1 if any(l.startswith("FAIL") for l in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
