#!/usr/bin/env python3
"""The report card of a chat recipe run (tools/train-chat.sh) as a Markdown table.

    tools/chat-report.py RUN_DIR > report.md

Reads RUN_DIR/eval-{base,sft,idk,rl,rl-noidk}.json (those that exist) (`tinygpt-train chat-eval --out`) and
RUN_DIR/prose-*.txt (`tinygpt eval` on Shakespeare's validation text). Each cell is the share,
then the count over the number of questions and the 95 % Wilson interval, as chat-eval computed
them. Then sampled pass@1, each stage against the SFT model question by question, the refusal
ceiling, and the answers by kind of question (from evaluations that recorded them).
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
    reports = [(label, json.loads((run / f"eval-{stage}.json").read_text())) for stage, label in STAGES if (run / f"eval-{stage}.json").exists()]
    sampled = [f"{label} {mean(j['summary']['answerable_sampled'])}" for label, j in reports if j["summary"].get("answerable_sampled")]
    if sampled:
        print()
        print("Sampled pass@1 (the mean share of right samples over the answerable questions, 95 % normal interval):", "; ".join(sampled) + ".")
    paired = [(label, j["summary"]["paired"]) for label, j in reports if j["summary"].get("paired")]
    if paired:
        print()
        print("Against the SFT model (`chat-eval --before`), question by question on the answerable questions:", end=" ")
        print("; ".join(f"{label} {points(p['diff'])} points ({p['gained']} gained, {p['lost']} lost of {p['n']})" for label, p in paired) + ".")
    ceilings = [(label, j["summary"]["refusal_ceiling"]) for label, j in reports if j["summary"].get("refusal_ceiling")]
    if ceilings:
        print()
        print(
            "Refusal ceiling (`chat-eval`: the most prudence a rule refusing by the kind of question and by how many of the",
            "8 samples agree with the greedy answer can reach while giving up at most 10 % of the right answers; fitted on",
            "the test questions themselves, so an upper bound for such rules):",
            end=" ",
        )
        print("; ".join(f"{label} prudence {100 * c['prudence']:.1f} % at accuracy {100 * c['accuracy']:.1f} %" for label, c in ceilings) + ".")
    kinds = [(label, {k["kind"]: k for k in j["summary"].get("kinds", [])}) for label, j in reports if j["summary"].get("kinds")]
    if kinds:
        print()
        print("By kind of question (greedy: right / refused of n):")
        print()
        print("| kind | " + " | ".join(label for label, _ in kinds) + " |")
        print("|" + "---|" * (len(kinds) + 1))
        order = list(dict.fromkeys(k for _, ks in kinds for k in ks))
        for kind in order:
            row = [kind]
            for _, ks in kinds:
                k = ks.get(kind)
                row.append("–" if k is None else f"{k['accuracy']['k']} / {k['refused']['k']} of {k['accuracy']['n']}")
            print("| " + " | ".join(row) + " |")


def mean(m):
    return f"{100 * m['value']:.1f} % [{100 * m['lo']:.1f}, {100 * m['hi']:.1f}]"


def points(m):
    return f"{100 * m['value']:+.1f} [{100 * m['lo']:+.1f}, {100 * m['hi']:+.1f}]"


if __name__ == "__main__":
    main()
