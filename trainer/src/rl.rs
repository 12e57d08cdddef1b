//! Learning from the model's own samples: "I do not know." targets where the model is never right,
//! and reinforcement learning by re-sampling (rejection-sampling fine-tuning, also called expert
//! iteration).
//!
//! One RL round: export the current model, sample K answers to every training question at
//! temperature T, grade them with the task checkers, fine-tune the current model on the right
//! ones, and evaluate the result on the held-out split (pass@1 greedy, pass@K sampled). The
//! fine-tuning set holds each distinct right answer of a question once (so a question the model
//! always gets right weighs no more than one it gets right once, in its own words). A question
//! right in fewer than `min_right` of its K samples (by default: never right) gets the target
//! "I do not know." (the same rule as `tinygpt-train idk`), unless `idk = false`, which leaves it
//! out. With a `refusal_budget`, each round also answers its questions greedily and fits the
//! refusal rule of [`evalchat::fit_refusal_rule`] on them; the questions it refuses count as
//! never right. Rounds continue from the
//! latest model; the run stops after `patience` rounds without a better held-out pass@1, and
//! the best round's checkpoint is kept as `best.pt`. Every seed is derived from the run's seed,
//! the round, the question and the sample, so the same seed gives the same log.
//!
//! [`Method::Reinforce`] learns from every sample instead, as a policy-gradient step: REINFORCE
//! with the mean reward of the question's K samples as baseline (as in GRPO, without its ratio
//! clipping, KL penalty or division by the standard deviation). A sample's reward is 1 when it is
//! right, `idk_reward` when it says "I do not know." to an answerable question, 0 otherwise; its
//! conversation is trained on with weight reward − baseline, so wrong answers are pushed down
//! and right ones up, and a question whose samples all earn the same teaches nothing and is left
//! out. Between 0 and 1, `idk_reward` sets where refusing pays: a question right with chance p is
//! worth answering when p > idk_reward. `negative_weight` scales the push on samples worse than
//! their group's mean: below 1 it damps the noise of pushing down wrong answers, which at this
//! scale slows learning (see `tests/rl.rs`); 0 trains only on better-than-average samples. With `idk`, "I do not know." joins every question's
//! group as one more sample (see [`reinforce_examples`]). With `questions` set, each round samples only that many
//! training questions (the next ones of a seeded shuffle), so rounds stay close to on-policy.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tinygpt_runtime::writer::AlignedBytes;

use crate::evalchat::{self, Answerer, EvalOptions, Ratio, RuntimeAnswerer};
use crate::tasks::{mix_seed, Family, Task, IDK};

/// Per family: (questions whose answer stays, questions relabelled "I do not know.").
pub type RelabelCounts = Vec<(Family, usize, usize)>;

/// Samples every task `n` times at `temperature`; a task answered right in fewer than
/// `min_right` of them (1: never right) gets the target [`IDK`], the others keep theirs
/// (unanswerable tasks keep [`IDK`]). `min_right` above 1 is the multisample threshold of
/// "Alignment for Honesty": the model says it does not know what it gets right only by luck.
/// With a `budget`, the tasks are also answered greedily and the refusal rule of
/// [`evalchat::fit_refusal_rule`] is fitted on them: the tasks it refuses (by kind of question
/// and by how many samples agree with the greedy answer, giving up at most `budget` of the right
/// greedy answers) get [`IDK`] too, so the model learns to refuse where its samples disagree.
/// Returns the relabelled tasks and the counts per family.
#[allow(clippy::too_many_arguments)]
pub fn relabel_unknown(answerer: &dyn Answerer, tasks: &[Task], n: usize, min_right: usize, budget: Option<f64>, temperature: f32, seed: u64, threads: usize) -> Result<(Vec<Task>, RelabelCounts)> {
    if n == 0 {
        bail!("--samples must be at least 1");
    }
    check_min_right(min_right, n)?;
    if let Some(b) = budget {
        check_budget(b)?;
    }
    let questions: Vec<&str> = tasks.iter().map(|t| t.question.as_str()).collect();
    let samples = evalchat::sample_replies(answerer, &questions, n, temperature, seed, threads)?;
    let by_rule = rule_refusals(answerer, tasks, &samples, budget, threads)?;
    let mut counts: RelabelCounts = Vec::new();
    let mut out = Vec::with_capacity(tasks.len());
    for ((t, s), &ruled) in tasks.iter().zip(&samples).zip(&by_rule) {
        let right = s.iter().filter(|r| t.check(r)).count();
        let mut t2 = t.clone();
        let relabel = t.family.answerable() && (right < min_right || ruled);
        if relabel {
            t2.target = IDK.into();
        }
        match counts.iter_mut().find(|c| c.0 == t.family) {
            Some(c) => {
                c.1 += !relabel as usize;
                c.2 += relabel as usize;
            }
            None => counts.push((t.family, !relabel as usize, relabel as usize)),
        }
        out.push(t2);
    }
    counts.sort_by_key(|c| c.0);
    Ok((out, counts))
}

/// Which tasks the refusal rule fitted on them refuses (see [`relabel_unknown`]): their greedy
/// answers graded with `samples`; none without a budget.
fn rule_refusals(answerer: &dyn Answerer, tasks: &[Task], samples: &[Vec<String>], budget: Option<f64>, threads: usize) -> Result<Vec<bool>> {
    let Some(budget) = budget else { return Ok(vec![false; tasks.len()]) };
    let questions: Vec<&str> = tasks.iter().map(|t| t.question.as_str()).collect();
    let greedy = evalchat::greedy_replies(answerer, &questions, threads)?;
    let results = evalchat::grade(tasks, &greedy, samples);
    Ok(match evalchat::fit_refusal_rule(&results, budget) {
        Some(rule) => evalchat::rule_refusals(&results, &rule),
        None => vec![false; tasks.len()],
    })
}

/// `cfg`'s refusal budget, if any: a share, in rft rounds that train "I do not know.".
pub fn check_refusal_budget(cfg: &RlConfig) -> Result<()> {
    if let Some(b) = cfg.refusal_budget {
        check_budget(b)?;
        if cfg.method != Method::Rft || !cfg.idk {
            bail!("--refusal-budget trains \"I do not know.\" targets in rft rounds: it needs --method rft without --no-idk");
        }
    }
    Ok(())
}

/// A refusal budget is a share of the right answers, between 0 and 1.
pub fn check_budget(budget: f64) -> Result<()> {
    if !budget.is_finite() || !(0.0..=1.0).contains(&budget) {
        bail!("--refusal-budget must be between 0 and 1 (a share of the right answers), not {budget}");
    }
    Ok(())
}

/// `min_right` must be between 1 and the number of samples.
pub fn check_min_right(min_right: usize, samples: usize) -> Result<()> {
    if min_right == 0 || min_right > samples {
        bail!("--min-right must be between 1 and --samples ({samples}), not {min_right}");
    }
    Ok(())
}

/// What RL needs from training: a checkpoint exported for the runtime, and fine-tuning.
pub trait Policy {
    /// The checkpoint at `checkpoint` as a `.tgpt` chat model, the file its answers are sampled from.
    fn export(&self, checkpoint: &Path) -> Result<AlignedBytes>;
    /// Fine-tunes the checkpoint `base` on `train`'s targets (validated on `val`), writing into
    /// `out`; returns the checkpoint to continue from. `weights`: each target's weight in the
    /// loss (`None`: all 1; negative: pushed down).
    fn finetune(&self, base: &Path, train: &[Task], weights: Option<&[f32]>, val: &[Task], out: &Path, seed: u64) -> Result<PathBuf>;
}

/// How a round learns from its graded samples (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Rejection-sampling fine-tuning on the distinct right answers.
    Rft,
    /// REINFORCE with the group's mean reward as baseline, on every sample.
    Reinforce,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "rft" => Ok(Method::Rft),
            "reinforce" => Ok(Method::Reinforce),
            _ => Err(format!("unknown method {s:?}: expected rft or reinforce")),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Rft => "rft",
            Method::Reinforce => "reinforce",
        })
    }
}

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct RlConfig {
    pub method: Method,
    /// The reward of "I do not know." to an answerable question ([`Method::Reinforce`]).
    pub idk_reward: f32,
    /// The scale of negative advantages ([`Method::Reinforce`]; 1: REINFORCE).
    pub negative_weight: f32,
    /// Training questions sampled per round (0: all of them every round).
    pub questions: usize,
    /// Samples per training question per round (also K of the held-out pass@K).
    pub samples: usize,
    /// Most rounds.
    pub rounds: usize,
    /// Sampling temperature.
    pub temperature: f32,
    pub seed: u64,
    /// Rounds without a better held-out pass@1 before stopping.
    pub patience: usize,
    /// Whether a question right in fewer than `min_right` of its K samples is trained to
    /// "I do not know." (else left out).
    pub idk: bool,
    /// Right samples (of K) a question needs for its right answers to be trained on.
    pub min_right: usize,
    /// [`Method::Rft`] with `idk`: also train to "I do not know." the questions the refusal
    /// rule fitted on the round's questions refuses, giving up at most this share of their right
    /// greedy answers (see [`relabel_unknown`]).
    pub refusal_budget: Option<f64>,
    /// [`Method::Rft`]: train on each question's most frequent right answer only, instead of every
    /// distinct one.
    pub one_right: bool,
    /// Sampling threads (results do not depend on it).
    pub threads: usize,
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig { method: Method::Rft, idk_reward: 0.0, negative_weight: 1.0, questions: 0, samples: 4, rounds: 5, temperature: 0.8, seed: 1, patience: 2, idk: true, min_right: 1, refusal_budget: None, one_right: false, threads: 2 }
    }
}

/// One line of `rl.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundLog {
    /// 0: the starting model, evaluated only.
    pub round: usize,
    /// Training questions sampled (0 in round 0).
    pub train_questions: usize,
    /// Share of the training samples that are right.
    pub train_sample_accuracy: f64,
    /// Share of training questions right at least once.
    pub train_pass_k: f64,
    /// Fine-tuning conversations: distinct right answers, and "I do not know." targets (with
    /// `reinforce`: samples with a positive and with a negative advantage).
    pub right_examples: usize,
    pub idk_examples: usize,
    /// Mean reward of the round's samples (`reinforce`; else the share right).
    #[serde(default)]
    pub train_reward: f64,
    /// Held-out greedy accuracy on answerable questions (pass@1), with its Wilson interval.
    pub val_pass1: Ratio,
    /// Held-out pass@K on answerable questions.
    pub val_pass_k: Ratio,
    /// Held-out greedy accuracy on every question (unanswerable ones right when refused).
    pub val_overall: Ratio,
    pub val_prudence: Ratio,
    /// Whether this round is the best so far (by held-out pass@1).
    pub best: bool,
    /// Seconds the round took (not part of the determinism guarantee).
    pub seconds: f64,
}

impl RoundLog {
    /// The log line without timing (equal for equal seeds).
    pub fn without_timing(&self) -> RoundLog {
        RoundLog { seconds: 0.0, ..self.clone() }
    }
}

/// The outcome of [`run`].
#[derive(Debug, Clone)]
pub struct RlSummary {
    pub rounds: Vec<RoundLog>,
    /// The best round (0: the starting model).
    pub best_round: usize,
    /// Why the run stopped.
    pub reason: String,
}

fn evaluate_val(answerer: &dyn Answerer, val: &[Task], cfg: &RlConfig, round: usize) -> Result<evalchat::Summary> {
    let opts = EvalOptions { samples: cfg.samples, temperature: cfg.temperature, seed: mix_seed(&[cfg.seed, round as u64, 2]), threads: cfg.threads };
    Ok(evalchat::evaluate(answerer, val, &opts, None)?.0)
}

fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    tinygpt_runtime::writer::write_atomic(to, &bytes).with_context(|| format!("cannot write {}", to.display()))
}

/// The fine-tuning set of one round from `samples[i]` (the replies to `train[i]`): each distinct
/// right answer of a question right in at least `min_right` samples (with `one_right`, only its
/// most frequent right answer, the first sampled of those tied: for a question with several right
/// answers, the one the model is surest of, so that its most likely answer becomes a right one);
/// "I do not know." for the others when `idk`. A question marked in `refuse` (empty: none)
/// counts as never right.
pub fn round_examples(train: &[Task], samples: &[Vec<String>], refuse: &[bool], idk: bool, min_right: usize, one_right: bool) -> (Vec<Task>, usize, usize) {
    let mut out = Vec::new();
    let (mut right, mut unknown) = (0, 0);
    for (i, (t, s)) in train.iter().zip(samples).enumerate() {
        // Distinct right answers in order of first appearance, with how often each was sampled.
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let n_right = if refuse.get(i).copied().unwrap_or(false) { 0 } else { s.iter().filter(|r| t.check(r)).count() };
        for r in s.iter().map(|r| r.trim()).filter(|r| n_right >= min_right && t.check(r)) {
            match seen.iter_mut().find(|(x, _)| *x == r) {
                Some((_, n)) => *n += 1,
                None => seen.push((r, 1)),
            }
        }
        if one_right && seen.len() > 1 {
            let most = seen.iter().map(|&(_, n)| n).max().unwrap_or(0);
            let first = seen.iter().position(|&(_, n)| n == most).unwrap_or(0);
            seen = vec![seen[first]];
        }
        for &(r, _) in &seen {
            out.push(Task { target: r.to_string(), ..t.clone() });
            right += 1;
        }
        if seen.is_empty() && idk {
            out.push(Task { target: IDK.into(), ..t.clone() });
            unknown += 1;
        }
    }
    (out, right, unknown)
}

/// The reward of `reply` to `t` (see the module documentation): 1 right, `idk_reward` for
/// "I do not know." to an answerable question, else 0.
pub fn reward(t: &Task, reply: &str, idk_reward: f32) -> f32 {
    if t.check(reply) {
        1.0
    } else if t.family.answerable() && crate::tasks::normalize(reply) == crate::tasks::normalize(IDK) {
        idk_reward
    } else {
        0.0
    }
}

/// The policy-gradient examples of one round from `samples[i]` (the replies to `train[i]`):
/// every sample of a question whose samples' rewards differ, as a conversation with its
/// advantage (reward − the mean reward of the question's samples). With `idk`, each question's
/// group also holds "I do not know." as one more sample, whether or not the model said it: where
/// the model is right less often than `idk_reward` the refusal is pushed up, elsewhere down, so a
/// question never answered right still teaches something. Returns the examples, their weights,
/// and how many have a positive and a negative advantage. Negative advantages are scaled by
/// `negative_weight` (1: REINFORCE; 0: only the samples better than their group's mean are
/// trained on, pushed up by how much better they are).
pub fn reinforce_examples(train: &[Task], samples: &[Vec<String>], idk_reward: f32, idk: bool, negative_weight: f32) -> (Vec<Task>, Vec<f32>, usize, usize) {
    let (mut out, mut weights, mut up, mut down) = (Vec::new(), Vec::new(), 0, 0);
    for (t, s) in train.iter().zip(samples) {
        let mut s: Vec<&str> = s.iter().map(|x| x.as_str()).collect();
        if idk {
            s.push(IDK);
        }
        let r: Vec<f32> = s.iter().map(|x| reward(t, x, idk_reward)).collect();
        let mean = r.iter().sum::<f32>() / r.len().max(1) as f32;
        if r.iter().all(|&x| (x - mean).abs() < 1e-6) {
            continue;
        }
        for (x, &ri) in s.iter().zip(&r) {
            let a = ri - mean;
            let a = if a < 0.0 { a * negative_weight } else { a };
            if a.abs() < 1e-6 {
                continue;
            }
            out.push(Task { target: x.trim().to_string(), ..t.clone() });
            weights.push(a);
            if a > 0.0 {
                up += 1;
            } else {
                down += 1;
            }
        }
    }
    (out, weights, up, down)
}

/// The training questions of round `round` (from 1): all of them when `per_round` is 0 or
/// covers them, else the round's `per_round` of a shuffle of them under `seed`, taken in turn
/// (a new shuffle each time they are used up).
pub fn round_questions(n: usize, per_round: usize, seed: u64, round: usize) -> Vec<usize> {
    if per_round == 0 || per_round >= n {
        return (0..n).collect();
    }
    let start = (round - 1) * per_round;
    let mut order: (usize, Vec<usize>) = (usize::MAX, Vec::new());
    (start..start + per_round)
        .map(|k| {
            let (pass, at) = (k / n, k % n);
            if order.0 != pass {
                let mut o: Vec<usize> = (0..n).collect();
                crate::tasks::Rng::new(mix_seed(&[seed, pass as u64, 4])).shuffle(&mut o);
                order = (pass, o);
            }
            order.1[at]
        })
        .collect()
}

/// Runs RL from the checkpoint `start` (see the module documentation), writing `out/rl.jsonl`,
/// `out/best.pt` and one fine-tuning run per round (`out/round-N`). `on_round` sees each log line.
pub fn run(policy: &dyn Policy, start: &Path, train: &[Task], val: &[Task], cfg: &RlConfig, out: &Path, mut on_round: impl FnMut(&RoundLog)) -> Result<RlSummary> {
    if cfg.samples == 0 {
        bail!("--samples must be at least 1");
    }
    check_min_right(cfg.min_right, cfg.samples)?;
    check_refusal_budget(cfg)?;
    if !val.iter().any(|t| t.family.answerable()) {
        bail!("the held-out tasks have no answerable question: pass@1 cannot be measured");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let log_path = out.join("rl.jsonl");
    let best_path = out.join("best.pt");
    let mut log_text = String::new();
    let mut rounds: Vec<RoundLog> = Vec::new();
    let mut write_log = |line: &RoundLog, rounds: &mut Vec<RoundLog>| -> Result<()> {
        log_text.push_str(&serde_json::to_string(line)?);
        log_text.push('\n');
        tinygpt_runtime::writer::write_atomic(&log_path, log_text.as_bytes()).with_context(|| format!("cannot write {}", log_path.display()))?;
        rounds.push(line.clone());
        Ok(())
    };

    let t0 = std::time::Instant::now();
    let answerer = RuntimeAnswerer::new(policy.export(start)?).context("the starting model")?;
    let s = evaluate_val(&answerer, val, cfg, 0)?;
    let first = RoundLog {
        round: 0,
        train_questions: 0,
        train_sample_accuracy: 0.0,
        train_pass_k: 0.0,
        right_examples: 0,
        idk_examples: 0,
        train_reward: 0.0,
        val_pass1: s.answerable,
        val_pass_k: s.answerable_pass_k.unwrap_or(s.answerable),
        val_overall: s.overall,
        val_prudence: s.prudence,
        best: true,
        seconds: t0.elapsed().as_secs_f64(),
    };
    copy_atomic(start, &best_path)?;
    on_round(&first);
    write_log(&first, &mut rounds)?;
    let (mut best_round, mut best_pass1) = (0, first.val_pass1.value);
    let mut current: PathBuf = start.to_path_buf();
    let mut stale = 0;
    let mut reason = format!("{} rounds done", cfg.rounds);
    for round in 1..=cfg.rounds {
        let t0 = std::time::Instant::now();
        let picked: Vec<Task> = round_questions(train.len(), cfg.questions, cfg.seed, round).into_iter().map(|i| train[i].clone()).collect();
        let train = &picked[..];
        let questions: Vec<&str> = train.iter().map(|t| t.question.as_str()).collect();
        let answerer = RuntimeAnswerer::new(policy.export(&current)?)?;
        let samples = evalchat::sample_replies(&answerer, &questions, cfg.samples, cfg.temperature, mix_seed(&[cfg.seed, round as u64, 1]), cfg.threads)?;
        let n_right: usize = train.iter().zip(&samples).map(|(t, s)| s.iter().filter(|r| t.check(r)).count()).sum();
        let any_right = train.iter().zip(&samples).filter(|(t, s)| s.iter().any(|r| t.check(r))).count();
        let total_reward: f64 = train.iter().zip(&samples).flat_map(|(t, s)| s.iter().map(move |r| reward(t, r, cfg.idk_reward) as f64)).sum();
        let (examples, weights, right_examples, idk_examples) = match cfg.method {
            Method::Rft => {
                let refuse = if cfg.idk { rule_refusals(&answerer, train, &samples, cfg.refusal_budget, cfg.threads)? } else { Vec::new() };
                let (e, r, u) = round_examples(train, &samples, &refuse, cfg.idk, cfg.min_right, cfg.one_right);
                (e, None, r, u)
            }
            Method::Reinforce => {
                let (e, w, up, down) = reinforce_examples(train, &samples, cfg.idk_reward, cfg.idk, cfg.negative_weight);
                (e, Some(w), up, down)
            }
        };
        if examples.is_empty() {
            reason = match cfg.method {
                Method::Rft => format!("round {round}: no training question was answered right and idk = false: nothing to learn from"),
                Method::Reinforce => format!("round {round}: every question's samples earned the same reward: nothing to learn from"),
            };
            break;
        }
        let dir = out.join(format!("round-{round}"));
        let next = policy.finetune(&current, &examples, weights.as_deref(), val, &dir, mix_seed(&[cfg.seed, round as u64, 3]))?;
        let answerer = RuntimeAnswerer::new(policy.export(&next)?)?;
        let s = evaluate_val(&answerer, val, cfg, round)?;
        let better = s.answerable.value > best_pass1;
        let line = RoundLog {
            round,
            train_questions: train.len(),
            train_sample_accuracy: n_right as f64 / (train.len() * cfg.samples) as f64,
            train_pass_k: any_right as f64 / train.len() as f64,
            right_examples,
            idk_examples,
            train_reward: if cfg.method == Method::Reinforce { total_reward / (train.len() * cfg.samples) as f64 } else { n_right as f64 / (train.len() * cfg.samples) as f64 },
            val_pass1: s.answerable,
            val_pass_k: s.answerable_pass_k.unwrap_or(s.answerable),
            val_overall: s.overall,
            val_prudence: s.prudence,
            best: better,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if better {
            copy_atomic(&next, &best_path)?;
            best_round = round;
            best_pass1 = s.answerable.value;
            stale = 0;
        } else {
            stale += 1;
        }
        on_round(&line);
        write_log(&line, &mut rounds)?;
        current = next;
        if stale >= cfg.patience {
            reason = format!("held-out pass@1 did not improve for {stale} rounds");
            break;
        }
    }
    Ok(RlSummary { rounds, best_round, reason })
}

/// The progress line of a round.
pub fn progress_line(r: &RoundLog, k: usize, method: Method) -> String {
    let pct = |x: &Ratio| format!("{:.1}% [{:.1}, {:.1}]", 100.0 * x.value, 100.0 * x.lo, 100.0 * x.hi);
    if r.round == 0 {
        return format!("round 0 (start): held-out pass@1 {}, pass@{k} {:.1}%, prudence {:.1}%", pct(&r.val_pass1), 100.0 * r.val_pass_k.value, 100.0 * r.val_prudence.value);
    }
    let learnt = match method {
        Method::Rft => format!("fine-tuned on {} right + {} \"I do not know.\"", r.right_examples, r.idk_examples),
        Method::Reinforce => format!("mean reward {:.3}; {} samples pushed up, {} down", r.train_reward, r.right_examples, r.idk_examples),
    };
    format!(
        "round {}: {} questions, samples right {:.1}%, pass@{k} {:.1}%; {learnt}; held-out pass@1 {}, pass@{k} {:.1}%, prudence {:.1}%{} ({:.0} s)",
        r.round,
        r.train_questions,
        100.0 * r.train_sample_accuracy,
        100.0 * r.train_pass_k,
        pct(&r.val_pass1),
        100.0 * r.val_pass_k.value,
        100.0 * r.val_prudence.value,
        if r.best { " *best" } else { "" },
        r.seconds
    )
}

/// The [`Policy`] of `tinygpt-train`: checkpoints exported with [`crate::export::encode`] and
/// fine-tuned with [`crate::sft::finetune`] (settings `cfg`; each round's seed replaces `cfg.seed`).
pub struct SftPolicy {
    pub cfg: crate::sft::SftConfig,
    pub device: tch::Device,
    /// Print each fine-tuning run's progress.
    pub verbose: bool,
}

/// A task as a conversation: the question, then the target.
pub fn conversation(t: &Task) -> crate::sft::Conversation {
    use tinygpt_runtime::chat::Role;
    crate::sft::Conversation { messages: vec![(Role::User, t.question.clone()), (Role::Assistant, t.target.clone())] }
}

impl Policy for SftPolicy {
    fn export(&self, checkpoint: &Path) -> Result<AlignedBytes> {
        let ck = crate::train::load_checkpoint(checkpoint)?;
        let (model, tok) = crate::train::model_from_checkpoint(&ck, tch::Device::Cpu, false)?;
        // Sampled in the weight type the fine-tuning fakes, so the answers graded are the
        // quantized model's; f32 without fake quantization.
        let (dtype, group) = match crate::config::qat_dtype(&self.cfg.qat) {
            Some(d) => (d, self.cfg.qat_group_size),
            None => (tinygpt_runtime::DType::F32, 64),
        };
        crate::export::encode(&model, &tok, &tinygpt_runtime::writer::MetaData::default(), dtype, group)
    }

    fn finetune(&self, base: &Path, train: &[Task], weights: Option<&[f32]>, val: &[Task], out: &Path, seed: u64) -> Result<PathBuf> {
        let train: Vec<_> = train.iter().map(conversation).collect();
        // Validation on the right answers of the held-out questions.
        let val: Vec<_> = val.iter().map(|t| conversation(&Task { target: t.answer.clone(), ..t.clone() })).collect();
        let cfg = crate::sft::SftConfig { seed, ..self.cfg.clone() };
        let opts = crate::train::RunOptions { out: out.to_path_buf(), resume: false, device: self.device, verbose: self.verbose };
        crate::sft::finetune_weighted(base, &train, weights, &val, &cfg, &opts)?;
        crate::train::checkpoint_in(out)
    }
}
