#!/usr/bin/env python3
"""The report card of a chat recipe run (tools/train-chat.sh) as a Markdown table.

    tools/chat-report.py RUN_DIR > report.md

Reads RUN_DIR/eval-{base,sft,idk,rl,rl-noidk}.json (those that exist) (`tinygpt-train chat-eval --out`) and
RUN_DIR/prose-*.txt (`tinygpt eval` on Shakespeare's validation text). Each cell is the share,
then the count over the number of questions and the 95 % Wilson interval, as chat-eval computed
them.
"""
import json
import pathlib
import re
import sys

STAGES = [
    ("base", "base (plain text)"),
    ("sft", "SFT"),
    ("idk", "SFT + \"I do not know\""),
    ("rl", "RL"),
    # An optional variant: RL trained on right answers only (`rl --no-idk`).
    ("rl-noidk", "RL, right answers only"),
]
FAMILIES = ["alphabet", "backwards", "count", "arithmetic", "words"]


def cell(r):
    if r is None:
        return "–"
    return f"{100 * r['value']:.1f} % ({r['k']}/{r['n']}) [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]"


def main():
    run = pathlib.Path(sys.argv[1])
    head = ["stage"] + FAMILIES + ["answerable (pass@1)", "unanswerable refused", "prudence", "over-conservativeness", "Shakespeare val loss"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for stage, label in STAGES:
        p = run / f"eval-{stage}.json"
        if not p.exists():
            continue
        s = json.loads(p.read_text())["summary"]
        fam = {f["family"]: f for f in s["families"]}
        prose = run / f"prose-{stage}.txt"
        loss = "–"
        if prose.exists():
            m = re.search(r"^loss\s+([0-9.]+)", prose.read_text(), re.M)
            loss = m.group(1) if m else "–"
        # A family the run's tasks do not have (an older run without the words family) is "–".
        row = [label] + [cell(fam.get(f, {}).get("accuracy")) for f in FAMILIES]
        row += [cell(s["answerable"]), cell(fam.get("unknown", {}).get("accuracy")), cell(s["prudence"]), cell(s.get("over_conservative")), loss]
        print("| " + " | ".join(row) + " |")
    print()
    print("pass@K (K samples at temperature 0.8, answerable questions):", end=" ")
    parts = []
    for stage, label in STAGES:
        p = run / f"eval-{stage}.json"
        if p.exists():
            j = json.loads(p.read_text())
            parts.append(f"{label} {cell(j['summary'].get('answerable_pass_k'))} (K = {j['samples']})")
    print("; ".join(parts) + ".")


if __name__ == "__main__":
    main()
