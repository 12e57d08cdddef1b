#!/usr/bin/env bash
# The chat recipe from the shipped base model to models/shakespeare-chat.tgpt, with every
# evaluation of the model card's report card:
#
#   tools/train-chat.sh [RUN_DIR]          (default runs/chat; about 75 minutes on 2 CPU cores with the
#                                        release build (TINYGPT_BIN_DIR=target/release); the
#                                        shipped models/shakespeare-chat.tgpt is RUN_DIR/rl.tgpt)
#
# From another base: BASE=models/shakespeare-board-int4-fast.tgpt DTYPE=int4 GROUP_SIZE=128
# QAT=int4 tools/train-chat.sh runs/chat4 (every stage's export in DTYPE, fine-tuned with the
# export's rounding faked from the first step when QAT is set).
#
# Stages: base → SFT → SFT + "I do not know" → RL. Each stage's model is evaluated on the held-out
# split (RUN_DIR/eval-*.json, the tables in RUN_DIR/report.txt, the report card as Markdown in
# RUN_DIR/report.md by tools/chat-report.py) and on Shakespeare's validation text (the last 10 % of
# the corpus). The binaries come from `cargo build -p tinygpt-train -p
# tinygpt` (TINYGPT_BIN_DIR to use others). Re-running continues: finished stages are kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUN=${1:-runs/chat}
BIN=${TINYGPT_BIN_DIR:-target/debug}
T="$BIN/tinygpt-train"
G="$BIN/tinygpt"
BASE=${BASE:-models/shakespeare-board.tgpt}
# The exports' weight type and group size, and the fine-tuning's fake quantization ("" for none).
DTYPE=${DTYPE:-int8}
GROUP_SIZE=${GROUP_SIZE:-64}
QAT=${QAT:-}
CORPUS=../shared/data/tinyshakespeare.txt
THREADS=${THREADS:-2}
# libtorch threads of the fine-tuning runs (1 on a machine that does other work: fewer stalls).
TRAIN_THREADS=${TRAIN_THREADS:-$THREADS}
# The questions (`tinygpt-train tasks`): the backwards, counting and words questions ask about Tiny
# Shakespeare's own 9,025 words, and counting and arithmetic answers show their working
# (`--worked=count,arithmetic`: `hoRse: R: one`, `D: HA IB JC KD: ten` for seven plus three), which
# a model this size learns where it does not learn the bare count or sum.
TASK_FLAGS=${TASK_FLAGS:---train 200000 --val 3000 --probe 30000 --seed 1 --words $CORPUS --worked=count,arithmetic}
# Steps and peak learning rate of the supervised fine-tuning stage.
SFT_ITERS=${SFT_ITERS:-12000}
SFT_LR=${SFT_LR:-1e-3}
# A second supervised pass of SFT2_ITERS steps on the same questions, the learning rate warmed
# back up to SFT_LR (0: none). The later stages start from it, and it is the report card's SFT row.
SFT2_ITERS=${SFT2_ITERS:-4000}
# Steps on the training split's counting questions alone, between the two passes (0: none; needs
# the second pass). With bare counts (TASK_FLAGS without --worked=count) counting is learnt slowly,
# and not beside the lookups the other families are; alone it is, and the second pass brings the
# rest back (the chat card's "Counting first"). Worked counting answers need no such stage.
COUNT_ITERS=${COUNT_ITERS:-0}
# Probe questions the "I do not know" stage samples (the first ones of probe.jsonl), and the
# training questions it mixes in with them.
IDK_QUESTIONS=${IDK_QUESTIONS:-6000}
# Answers the "I do not know" stage samples per question.
IDK_SAMPLES=${IDK_SAMPLES:-8}
# Right samples a question needs to keep its answer: of the IDK_SAMPLES of the "I do not know" stage
# (IDK_MIN_RIGHT) and of the RL_SAMPLES of each RL round (RL_MIN_RIGHT); 1 relabels only what is never
# right.
IDK_MIN_RIGHT=${IDK_MIN_RIGHT:-1}
# Steps and peak learning rate (decayed to a tenth) of the "I do not know" stage.
IDK_ITERS=${IDK_ITERS:-300}
IDK_LR=${IDK_LR:-3e-4}
RL_MIN_RIGHT=${RL_MIN_RIGHT:-1}
# Refusal budgets (set to "" for none): "I do not know." targets also where the model's samples disagree
# with its greedy answer, by the refusal rule fitted on the sampled questions themselves (by kind
# of question and agreement, as chat-eval's refusal ceiling), giving up at most this share of
# their right greedy answers: IDK_BUDGET in the "I do not know" stage, RL_BUDGET in each RL round.
IDK_BUDGET=${IDK_BUDGET-0.1}
RL_BUDGET=${RL_BUDGET-0.04}
# Answers sampled per question in each RL round, questions per round (fresh ones of the probe
# split each round), most rounds, and fine-tuning steps a round.
RL_SAMPLES=${RL_SAMPLES:-8}
RL_QUESTIONS=${RL_QUESTIONS:-8000}
RL_ROUNDS=${RL_ROUNDS:-8}
# Rounds without a better dev pass@1 before RL stops (with refusal budgets pass@1 falls as refusals
# rise, so 1 stops after the first round; more goes on refusing more).
RL_PATIENCE=${RL_PATIENCE:-1}
RL_ITERS=${RL_ITERS:-300}
RL_LR=${RL_LR:-1e-4}
# More flags for the RL stage, e.g. RL_FLAGS='--method reinforce --negative-weight 0 --idk-reward 0.3'
# for policy-gradient rounds instead of rejection sampling.
RL_FLAGS=${RL_FLAGS:-}
if [[ $COUNT_ITERS -gt 0 && $SFT2_ITERS -eq 0 ]]; then
    echo "error: COUNT_ITERS needs the second SFT pass (SFT2_ITERS > 0)" >&2
    exit 1
fi
for b in "$T" "$G"; do
    [[ -x $b ]] || { echo "error: $b is missing: run cargo build -p tinygpt-train -p tinygpt" >&2; exit 1; }
done
[[ -f $CORPUS ]] || { echo "error: the corpus $CORPUS is missing" >&2; exit 1; }
mkdir -p "$RUN"
D="$RUN/data"
REPORT="$RUN/report.txt"
stamp() { date -u +%H:%M:%S; }
note() { echo "[$(stamp)] $*" | tee -a "$RUN/log.txt"; }

# Shakespeare's validation text: the last 10 % of the corpus (nanoGPT's split).
python3 -c "import sys; d=open(sys.argv[1]).read(); open(sys.argv[2],'w').write(d[int(len(d)*0.9):])" "$CORPUS" "$RUN/val.txt"

# 1. Tasks: training, held-out and probe questions (probe items are in neither other split). The
# held-out split is cut in two by item: dev.jsonl, which RL watches to decide when to stop, and
# test.jsonl, which every stage is graded on (so no choice is made on the questions the report
# card counts). A question asked more than once (the same item in the same wording) is kept once.
if [[ ! -f $D/test.jsonl ]]; then
    note "tasks"
    # shellcheck disable=SC2086 # TASK_FLAGS is a list of flags
    "$T" tasks --out "$D" $TASK_FLAGS
    python3 - "$D" <<'PY'
import json, sys, zlib
d = sys.argv[1]
seen, halves = set(), ([], [])
for line in open(f"{d}/val.jsonl").read().splitlines():
    rec = json.loads(line)
    question = rec["messages"][0]["content"]
    if question not in seen:
        seen.add(question)
        halves[zlib.crc32(rec["task"]["item"].encode()) % 2].append(line + "\n")
for name, lines in zip(("dev", "test"), halves):
    open(f"{d}/{name}.jsonl", "w").write("".join(lines))
PY
fi

# A fine-tuning stage, continued where an earlier run of this script stopped.
# A finished run is marked (OUT/finished), so a re-run after it goes straight to the export.
finetune() { # OUT sft-args...
    local out=$1
    shift
    [[ -f $out/finished ]] && return 0
    local resume=()
    [[ -f $out/last.pt ]] && resume=(--resume)
    "$T" sft "$@" --out "$out" "${resume[@]}" 2>&1 | tail -n 40
    touch "$out/finished"
}

evaluate() { # NAME MODEL [chat-eval flags...]
    local name=$1 model=$2
    shift 2
    if [[ ! -f $RUN/eval-$name.json ]]; then
        note "evaluate $name"
        "$T" chat-eval --model "$model" --tasks "$D/test.jsonl" --threads "$THREADS" --samples 8 --out "$RUN/eval-$name.json" "$@" \
            | tee "$RUN/eval-$name.txt"
        "$G" eval -m "$model" -f "$RUN/val.txt" | tee "$RUN/prose-$name.txt"
    fi
}

# 2. The base model, asked in plain text (it knows no chat template).
evaluate base "$BASE" --plain

QAT_SET=()
[[ -n $QAT ]] && QAT_SET=(--set qat="$QAT" --set qat_start=0 --set qat_group_size="$GROUP_SIZE")
export_model() { # CHECKPOINT OUT
    "$T" export --checkpoint "$1" --dtype "$DTYPE" --group-size "$GROUP_SIZE" --eval-tokens 20000 --out "$2"
}

SFT_MIN_LR=$(python3 -c "print($SFT_LR / 10)")
SFT_SET=("${QAT_SET[@]}" --set max_iters="$SFT_ITERS" --set learning_rate="$SFT_LR" --set min_lr="$SFT_MIN_LR" --set warmup_iters=100
    --set val_fraction=0.02 --set eval_interval=2000 --set patience=0 --set threads="$TRAIN_THREADS")

# 3. Supervised fine-tuning on the training split (and the second pass, when asked for).
SFT_RUN=$RUN/sft
if [[ $SFT2_ITERS -gt 0 ]]; then SFT_RUN=$RUN/sft2; fi
if [[ ! -f $RUN/sft.tgpt ]]; then
    note "sft"
    finetune "$RUN/sft" --checkpoint "$BASE" --data "$D/train.jsonl" --config trainer/configs/sft-board.toml "${SFT_SET[@]}"
    if [[ $SFT2_ITERS -gt 0 ]]; then
        second_from=$RUN/sft
        if [[ $COUNT_ITERS -gt 0 ]]; then
            note "sft, counting alone"
            grep '"family":"count"' "$D/train.jsonl" > "$D/count.jsonl" || { echo "error: $D/train.jsonl has no counting questions" >&2; exit 1; }
            finetune "$RUN/count" --checkpoint "$RUN/sft" --data "$D/count.jsonl" --config trainer/configs/sft-board.toml "${QAT_SET[@]}" \
                --set max_iters="$COUNT_ITERS" --set learning_rate="$SFT_LR" --set min_lr="$SFT_MIN_LR" --set warmup_iters=50 \
                --set eval_interval=500 --set patience=0 --set threads="$TRAIN_THREADS"
            second_from=$RUN/count
        fi
        note "sft, second pass"
        finetune "$RUN/sft2" --checkpoint "$second_from" --data "$D/train.jsonl" --config trainer/configs/sft-board.toml "${SFT_SET[@]}" \
            --set max_iters="$SFT2_ITERS" --set warmup_iters=50 --set eval_interval=1000
    fi
    export_model "$SFT_RUN" "$RUN/sft.tgpt"
fi
evaluate sft "$RUN/sft.tgpt"

# 4. "I do not know": the SFT model samples each of IDK_QUESTIONS probe questions IDK_SAMPLES times; where it
# is never right the target becomes "I do not know."; then fine-tune the SFT model on them and as
# many training questions (a seeded draw), so that refusals are a good share of what it sees.
if [[ ! -f $RUN/idk.tgpt ]]; then
    note "idk labels"
    head -n "$IDK_QUESTIONS" "$D/probe.jsonl" > "$D/probe-idk-questions.jsonl"
    idk_budget=()
    [[ -n $IDK_BUDGET ]] && idk_budget=(--refusal-budget "$IDK_BUDGET")
    "$T" idk --model "$RUN/sft.tgpt" --tasks "$D/probe-idk-questions.jsonl" --samples "$IDK_SAMPLES" --min-right "$IDK_MIN_RIGHT" "${idk_budget[@]}" \
        --threads "$THREADS" --out "$D/probe-idk.jsonl"
    python3 - "$D/train.jsonl" "$IDK_QUESTIONS" > "$D/train-idk.jsonl" <<'PY'
import random, sys
lines = open(sys.argv[1]).read().splitlines()
for line in random.Random(1).sample(lines, min(int(sys.argv[2]), len(lines))):
    print(line)
PY
    cat "$D/probe-idk.jsonl" >> "$D/train-idk.jsonl"
    note "sft + idk"
    IDK_MIN_LR=$(python3 -c "print($IDK_LR / 10)")
    finetune "$RUN/idk" --checkpoint "$SFT_RUN" --data "$D/train-idk.jsonl" --config trainer/configs/sft-board.toml \
        "${QAT_SET[@]}" --set max_iters="$IDK_ITERS" --set learning_rate="$IDK_LR" --set min_lr="$IDK_MIN_LR" --set warmup_iters=20 --set patience=3 --set threads="$TRAIN_THREADS"
    export_model "$RUN/idk" "$RUN/idk.tgpt"
fi
evaluate idk "$RUN/idk.tgpt" --before "$RUN/eval-sft.json"

# 5. RL by re-sampling: each round RL_QUESTIONS fresh probe questions, K = RL_SAMPLES samples each,
# fine-tune on each question's most frequent right answer (and "I do not know." where none of the
# K is right); the run stops when pass@1 on the dev half of the held-out split stops improving.
if [[ ! -f $RUN/rl.tgpt ]]; then
    note "rl"
    RL_MIN_LR=$(python3 -c "print($RL_LR / 10)")
    rl_budget=()
    [[ -n $RL_BUDGET ]] && rl_budget=(--refusal-budget "$RL_BUDGET")
    # shellcheck disable=SC2086 # RL_FLAGS is a list of flags
    "$T" rl --checkpoint "$RUN/idk" --tasks "$D/probe.jsonl" --val "$D/dev.jsonl" --samples "$RL_SAMPLES" --questions "$RL_QUESTIONS" \
        --min-right "$RL_MIN_RIGHT" "${rl_budget[@]}" --one-right --rounds "$RL_ROUNDS" --patience "$RL_PATIENCE" $RL_FLAGS \
        --config trainer/configs/sft-board.toml "${QAT_SET[@]}" --set max_iters="$RL_ITERS" --set learning_rate="$RL_LR" --set min_lr="$RL_MIN_LR" \
        --set warmup_iters=10 --set eval_interval=1000 --set patience=0 --set threads="$TRAIN_THREADS" --threads "$THREADS" --out "$RUN/rl" 2>&1 | tail -n 40
    # The policy after the last round (rl's best.pt is the round with the best dev pass@1, which
    # can be the start).
    last=$(ls -d "$RUN"/rl/round-* | sort -V | tail -n 1)
    export_model "$last" "$RUN/rl.tgpt"
fi
evaluate rl "$RUN/rl.tgpt" --before "$RUN/eval-sft.json"

{
    for s in base sft idk rl; do
        echo "== $s"
        cat "$RUN/eval-$s.txt"
        cat "$RUN/prose-$s.txt"
    done
} > "$REPORT"
python3 tools/chat-report.py "$RUN" > "$RUN/report.md"
note "done: $REPORT, $RUN/report.md"
