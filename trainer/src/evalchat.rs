//! Evaluating a chat model on checkable tasks: greedy answers graded per family (accuracy with a
//! 95 % Wilson interval), prudence (how often it says "I do not know." where it does not know),
//! over-conservativeness against an earlier evaluation, and pass@K over sampled answers.
//!
//! Answers come from the runtime (`chat::reply` over a `Session`), so they are the answers the CLI
//! and the board give. Each answer's sampler seed is derived from the evaluation seed, the
//! question's index and the sample's index, so results do not depend on the number of threads.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tinygpt_runtime::chat::{self, Message, Template};
use tinygpt_runtime::writer::AlignedBytes;
use tinygpt_runtime::{generate_until, Error as RtError, KvDType, Model, Sampler, SamplerConfig, Session};

use crate::tasks::{final_answer, is_refusal, mix_seed, normalize, Family, Task};

/// Most tokens generated for one answer (answers are at most 30 characters).
pub const MAX_REPLY_TOKENS: usize = 48;

/// One answer to produce: the question, the sampling temperature (0: greedy) and the seed.
#[derive(Debug, Clone, Copy)]
pub struct Job<'q> {
    pub question: &'q str,
    pub temperature: f32,
    pub seed: u64,
}

/// Something that answers questions: a chat model run by the runtime, or (in tests) a rule.
pub trait Answerer: Sync {
    /// The replies to `jobs`, in order. Called once per thread with a contiguous share of the
    /// jobs; a reply must depend only on its job, never on the share.
    fn answer_all(&self, jobs: &[Job<'_>]) -> Result<Vec<String>>;
}

/// A `.tgpt` chat model answering with the runtime (f32 KV cache, a fresh context per question).
/// A base model can be asked in plain text instead ([`RuntimeAnswerer::plain`]): the question as a
/// line, the answer is the line the model writes next (the baseline of a report card's base row).
pub struct RuntimeAnswerer {
    bytes: AlignedBytes,
    plain: bool,
}

impl RuntimeAnswerer {
    /// Wraps model file bytes; a base model (no chat tokens) or a file the runtime rejects is an error.
    pub fn new(bytes: AlignedBytes) -> Result<Self> {
        {
            let model = Model::from_bytes(&bytes).map_err(|e| anyhow!("the runtime rejects the model: {e}"))?;
            if let Err(RtError::NotAChatModel) = Template::new(model.tokenizer()) {
                bail!("this is a base model without chat tokens (<|im_start|>, <|im_sep|>, <|im_end|>, <|pad|>): fine-tune it into a chat model with `tinygpt-train sft` first");
            }
        }
        Ok(RuntimeAnswerer { bytes, plain: false })
    }

    /// Wraps model file bytes of any model, chat or base, asked in plain text: the prompt is the
    /// question and a line break, the answer what the model writes up to its next line break
    /// (at most [`MAX_REPLY_TOKENS`] tokens).
    pub fn plain(bytes: AlignedBytes) -> Result<Self> {
        Model::from_bytes(&bytes).map_err(|e| anyhow!("the runtime rejects the model: {e}"))?;
        Ok(RuntimeAnswerer { bytes, plain: true })
    }

    /// Reads a `.tgpt` file (asked in plain text with `plain`).
    pub fn from_file(path: &Path, plain: bool) -> Result<Self> {
        let raw = std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
        let bytes = AlignedBytes::new(&raw);
        if plain { Self::plain(bytes) } else { Self::new(bytes) }.with_context(|| format!("model {}", path.display()))
    }

    /// The model file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Answerer for RuntimeAnswerer {
    fn answer_all(&self, jobs: &[Job<'_>]) -> Result<Vec<String>> {
        if self.plain {
            return self.answer_plain(jobs);
        }
        let model = Model::from_bytes(&self.bytes).map_err(|e| anyhow!("the runtime rejects the model: {e}"))?;
        let template = Template::new(model.tokenizer()).map_err(|e| anyhow!("{e}"))?;
        let ctx = model.config().block_size as usize;
        let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
        let mut session = Session::new(&model, &mut buf, ctx, KvDType::F32).map_err(|e| anyhow!("{e}"))?;
        let mut prompt = vec![0u32; ctx];
        let mut out = Vec::with_capacity(jobs.len());
        // The question whose prompt (`n` tokens) the session holds in its first rows: the next
        // answer to the same question rewinds to it instead of feeding the prompt again (the
        // cache's rows and the logits are the same either way, so is the answer).
        let mut held: Option<(&str, usize)> = None;
        for job in jobs {
            let cfg = SamplerConfig { temperature: job.temperature, top_k: 0, top_p: 1.0 };
            let mut sampler = Sampler::new(cfg, job.seed);
            let mut text = String::new();
            let err = |e| anyhow!("generating an answer to {:?}: {e}", job.question);
            match held {
                Some((q, n)) if q == job.question && session.rewind(n - 1) => {
                    let room = ctx - n + 1;
                    let stop = [template.tokens().im_end];
                    generate_until(&mut session, &mut sampler, &prompt[n - 1..n], MAX_REPLY_TOKENS.min(room), &stop, false, |p| text.push_str(p))
                        .map_err(err)?;
                }
                _ => {
                    let n = template
                        .render(&[Message::user(job.question)], true, &mut prompt)
                        .map_err(|e| anyhow!("the question {:?} cannot be put to this model: {e}", job.question))?;
                    chat::reply(&mut session, &mut sampler, &template, &prompt[..n], MAX_REPLY_TOKENS, |p| text.push_str(p)).map_err(err)?;
                    held = Some((job.question, n));
                }
            }
            out.push(text);
        }
        Ok(out)
    }
}

impl RuntimeAnswerer {
    fn answer_plain(&self, jobs: &[Job<'_>]) -> Result<Vec<String>> {
        let model = Model::from_bytes(&self.bytes).map_err(|e| anyhow!("the runtime rejects the model: {e}"))?;
        let tok = model.tokenizer();
        let ctx = model.config().block_size as usize;
        let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
        let mut session = Session::new(&model, &mut buf, ctx, KvDType::F32).map_err(|e| anyhow!("{e}"))?;
        let mut prompt = vec![0u32; ctx];
        let stop: Vec<u32> = tok.char_id('\n').into_iter().collect();
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let n = tok
                .encode(&format!("{}\n", job.question), &mut prompt)
                .map_err(|e| anyhow!("the question {:?} cannot be put to this model: {e}", job.question))?;
            let cfg = SamplerConfig { temperature: job.temperature, top_k: 0, top_p: 1.0 };
            let mut sampler = Sampler::new(cfg, job.seed);
            let mut text = String::new();
            session.reset();
            let room = (ctx + 1).saturating_sub(n).min(MAX_REPLY_TOKENS);
            generate_until(&mut session, &mut sampler, &prompt[..n], room, &stop, false, |p| text.push_str(p))
                .map_err(|e| anyhow!("generating an answer to {:?}: {e}", job.question))?;
            // A tokenizer whose line break is merged into longer tokens: the answer ends at the first one.
            let line = text.split('\n').next().unwrap_or("").to_string();
            out.push(line);
        }
        Ok(out)
    }
}

/// Runs `jobs` on `threads` threads (contiguous shares), returning replies in job order.
pub fn run_jobs(answerer: &dyn Answerer, jobs: &[Job<'_>], threads: usize) -> Result<Vec<String>> {
    let threads = threads.clamp(1, jobs.len().max(1));
    let share = jobs.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<String>>> = std::thread::scope(|sc| {
        let handles: Vec<_> = jobs.chunks(share).map(|c| sc.spawn(move || answerer.answer_all(c))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("an answering thread panicked")))).collect()
    });
    let mut out = Vec::with_capacity(jobs.len());
    for p in parts {
        out.extend(p?);
    }
    anyhow::ensure!(out.len() == jobs.len(), "the answerer returned {} replies for {} questions", out.len(), jobs.len());
    Ok(out)
}

/// The seed of sample `j` of question `i` under `seed`.
pub fn sample_seed(seed: u64, i: usize, j: usize) -> u64 {
    mix_seed(&[seed, i as u64, j as u64])
}

/// `k` sampled replies per question at `temperature` (`out[i][j]`: sample `j` of question `i`).
pub fn sample_replies(answerer: &dyn Answerer, questions: &[&str], k: usize, temperature: f32, seed: u64, threads: usize) -> Result<Vec<Vec<String>>> {
    let jobs: Vec<Job<'_>> = questions
        .iter()
        .enumerate()
        .flat_map(|(i, q)| (0..k).map(move |j| Job { question: q, temperature, seed: sample_seed(seed, i, j) }))
        .collect();
    let flat = run_jobs(answerer, &jobs, threads)?;
    let mut it = flat.into_iter();
    Ok(questions.iter().map(|_| it.by_ref().take(k).collect()).collect())
}

/// Greedy replies (temperature 0), one per question.
pub fn greedy_replies(answerer: &dyn Answerer, questions: &[&str], threads: usize) -> Result<Vec<String>> {
    let jobs: Vec<Job<'_>> = questions.iter().map(|q| Job { question: q, temperature: 0.0, seed: 0 }).collect();
    run_jobs(answerer, &jobs, threads)
}

/// The 95 % Wilson score interval of `k` successes in `n` trials (`(0, 1)` when `n` is 0).
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A share `k / n` with its 95 % Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub k: usize,
    pub n: usize,
    /// `k / n` (0 when `n` is 0).
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Ratio {
    /// `k` of `n`.
    pub fn new(k: usize, n: usize) -> Self {
        let (lo, hi) = wilson(k, n);
        Ratio { k, n, value: if n == 0 { 0.0 } else { k as f64 / n as f64 }, lo, hi }
    }
}

/// The graded answer(s) to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionResult {
    pub question: String,
    pub family: String,
    /// The kind of question within the family ([`kind_of`]: `alphabet.after`, `words.ends`);
    /// empty in evaluations written before kinds were recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The right answer.
    pub answer: String,
    /// The greedy reply.
    pub reply: String,
    /// Whether the greedy reply is right.
    pub correct: bool,
    /// Whether the greedy reply is "I do not know.".
    pub refused: bool,
    /// Sampled replies (with `--samples`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    /// How many of the sampled replies are right.
    #[serde(default)]
    pub samples_correct: usize,
}

impl QuestionResult {
    fn family(&self) -> Option<Family> {
        Family::from_name(&self.family)
    }

    /// Whether the question has an answer the model can know.
    pub fn answerable(&self) -> bool {
        self.family().is_none_or(|f| f.answerable())
    }
}

/// The kind of a question: its wording without the wording's number (`alphabet.after.2` →
/// `alphabet.after`), or the family's name for a wording of another shape.
pub fn kind_of(task: &Task) -> String {
    match task.wording.rsplit_once('.') {
        Some((kind, n)) if kind.contains('.') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => kind.to_string(),
        _ => task.family.name().to_string(),
    }
}

/// Grades replies: `greedy[i]` (and `samples[i]`, possibly empty) answer `tasks[i]`.
pub fn grade(tasks: &[Task], greedy: &[String], samples: &[Vec<String>]) -> Vec<QuestionResult> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let s = samples.get(i).cloned().unwrap_or_default();
            QuestionResult {
                question: t.question.clone(),
                family: t.family.name().into(),
                kind: kind_of(t),
                answer: t.answer.clone(),
                reply: greedy[i].clone(),
                correct: t.check(&greedy[i]),
                refused: is_refusal(&greedy[i]),
                samples_correct: s.iter().filter(|r| t.check(r)).count(),
                samples: s,
            }
        })
        .collect()
}

/// Per-family figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyStats {
    pub family: String,
    /// Greedy accuracy (for the unanswerable family: the share answered "I do not know.").
    pub accuracy: Ratio,
    /// Share of questions with at least one right sample (with `--samples`).
    pub pass_k: Option<Ratio>,
}

/// Per-kind figures: greedy accuracy and the share refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindStats {
    pub kind: String,
    pub accuracy: Ratio,
    pub refused: Ratio,
}

/// A mean over questions with its 95 % normal interval (± 1.96 standard errors).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mean {
    pub n: usize,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Mean {
    /// The mean of `xs` and its interval (a zero-width interval for fewer than two values).
    pub fn of(xs: &[f64]) -> Self {
        let n = xs.len();
        if n == 0 {
            return Mean { n, value: 0.0, lo: 0.0, hi: 0.0 };
        }
        let m = xs.iter().sum::<f64>() / n as f64;
        let half = if n < 2 {
            0.0
        } else {
            let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
            1.959_963_984_540_054 * (var / n as f64).sqrt()
        };
        Mean { n, value: m, lo: m - half, hi: m + half }
    }
}

/// Greedy accuracy now against an earlier evaluation, question by question (the answerable
/// questions both asked).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Questions compared.
    pub n: usize,
    /// Right before, not now.
    pub lost: usize,
    /// Right now, not before.
    pub gained: usize,
    /// Accuracy now minus accuracy before, with the 95 % normal interval of the mean of the
    /// per-question differences (each -1, 0 or +1).
    pub diff: Mean,
}

/// Compares the greedy answers of `now` with those of `before` on the answerable questions
/// both ask (matched by question text). `None` when none is shared.
pub fn paired(before: &[QuestionResult], now: &[QuestionResult]) -> Option<Paired> {
    let now_by_q: HashMap<&str, &QuestionResult> = now.iter().map(|r| (r.question.as_str(), r)).collect();
    let mut diffs = Vec::new();
    let (mut lost, mut gained) = (0usize, 0usize);
    for b in before.iter().filter(|b| b.answerable()) {
        let Some(r) = now_by_q.get(b.question.as_str()) else { continue };
        lost += (b.correct && !r.correct) as usize;
        gained += (!b.correct && r.correct) as usize;
        diffs.push(r.correct as i32 as f64 - b.correct as i32 as f64);
    }
    (!diffs.is_empty()).then(|| Paired { n: diffs.len(), lost, gained, diff: Mean::of(&diffs) })
}

/// The evaluation's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// One row per family present, in [`Family::ALL`] order.
    pub families: Vec<FamilyStats>,
    /// Greedy accuracy over all answerable questions (pass@1).
    pub answerable: Ratio,
    /// pass@K over all answerable questions (with `--samples`).
    pub answerable_pass_k: Option<Ratio>,
    /// Sampled pass@1 over all answerable questions: the mean share of right samples (with
    /// `--samples`).
    #[serde(default)]
    pub answerable_sampled: Option<Mean>,
    /// Greedy accuracy over every question, unanswerable ones included (right = "I do not know.").
    pub overall: Ratio,
    /// Share of (unanswerable + wrongly answered answerable questions) answered "I do not know.".
    pub prudence: Ratio,
    /// Share of the questions the earlier evaluation answered right that are now refused.
    pub over_conservative: Option<Ratio>,
    /// Greedy accuracy against the earlier evaluation, question by question.
    #[serde(default)]
    pub paired: Option<Paired>,
    /// One row per kind of question, in family order, then by name.
    #[serde(default)]
    pub kinds: Vec<KindStats>,
    /// The most prudence a refusal rule on the question's kind and its samples' agreement can
    /// reach (with `--samples`; see [`refusal_ceiling`]).
    #[serde(default)]
    pub refusal_ceiling: Option<Ceiling>,
}

/// Share of the right greedy answers a refusal rule may give up in [`refusal_ceiling`] (the
/// over-conservativeness goal).
pub const CEILING_BUDGET: f64 = 0.1;

/// What the best refusal rule of [`refusal_ceiling`] reaches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// The share of the right greedy answers it may refuse.
    pub budget: f64,
    /// Its prudence.
    pub prudence: f64,
    /// Its answerable accuracy (the right answers it keeps).
    pub accuracy: f64,
}

/// How many of a question's samples give the greedy reply's answer (after normalisation).
pub fn agreement(r: &QuestionResult) -> usize {
    let greedy = normalize(final_answer(&r.reply));
    r.samples.iter().filter(|s| normalize(final_answer(s)) == greedy).count()
}

/// A refusal rule on the question's kind and its samples' [`agreement`] (see
/// [`fit_refusal_rule`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RefusalRule {
    /// The cells refused, (kind, agreement), each with the share of its questions refused (1 but
    /// for the last cell taken).
    pub cells: Vec<((String, usize), f64)>,
    /// What the rule reaches on the results it was fitted on.
    pub ceiling: Ceiling,
}

/// The highest prudence any rule can reach that decides to refuse from the question's kind and
/// [`agreement`] alone (one cell per pair; a rule may refuse a share of a cell) while refusing at
/// most `budget` of the right greedy answers. Fitted on these very results, it bounds what
/// "I do not know." training that keys on those two things can give this model: refusing
/// more of the wrong answers needs them told apart from the right ones by something else.
/// Questions the model already refuses stay refused; cells are taken best ratio of wrong to
/// right first (the fractional knapsack, whose greedy order is optimal). `None` without samples.
pub fn refusal_ceiling(results: &[QuestionResult], budget: f64) -> Option<Ceiling> {
    fit_refusal_rule(results, budget).map(|r| r.ceiling)
}

/// The rule of [`refusal_ceiling`]: which (kind, agreement) cells it refuses, and how much of
/// each. Fitted on questions with known answers (the probe questions of `idk --refusal-budget`),
/// it turns "refuse where your samples disagree, as far as that costs few right answers" into
/// "I do not know." targets. `None` without samples.
pub fn fit_refusal_rule(results: &[QuestionResult], budget: f64) -> Option<RefusalRule> {
    if results.is_empty() || results.iter().any(|r| r.samples.is_empty()) {
        return None;
    }
    // Per cell: right greedy answers (the cost of refusing it) and unrefused questions of the
    // prudence pool (what refusing it gains).
    let mut cells: BTreeMap<(&str, usize), (usize, usize)> = BTreeMap::new();
    let (mut pool, mut refused, mut right, mut answerable) = (0usize, 0usize, 0usize, 0usize);
    for r in results {
        answerable += r.answerable() as usize;
        let c = cells.entry((r.kind.as_str(), agreement(r))).or_default();
        if r.answerable() && r.correct {
            right += 1;
            c.0 += 1;
        } else {
            pool += 1;
            if r.refused {
                refused += 1;
            } else {
                c.1 += 1;
            }
        }
    }
    let mut order: Vec<((&str, usize), (usize, usize))> = cells.into_iter().filter(|&(_, (_, w))| w > 0).collect();
    // Descending wrong / right, compared as w1 * r2 > w2 * r1 (free cells, r = 0, first).
    order.sort_by(|(_, a), (_, b)| (b.1 * a.0).cmp(&(a.1 * b.0)));
    let mut left = budget * right as f64;
    let (mut gained, mut spent) = (0.0f64, 0.0f64);
    let mut taken = Vec::new();
    for ((kind, agree), (r, w)) in order {
        let take = if r == 0 { 1.0 } else { (left / r as f64).min(1.0) };
        if take <= 0.0 {
            break;
        }
        gained += take * w as f64;
        spent += take * r as f64;
        left -= take * r as f64;
        taken.push(((kind.to_string(), agree), take));
    }
    let share = |k: f64, n: usize| if n == 0 { 0.0 } else { k / n as f64 };
    let ceiling = Ceiling { budget, prudence: share(refused as f64 + gained, pool), accuracy: share(right as f64 - spent, answerable) };
    Some(RefusalRule { cells: taken, ceiling })
}

/// Which of `results` `rule` refuses: every question of a cell refused whole, and of a cell
/// refused in part the first questions of the cell, its share of them rounded to the nearest.
pub fn rule_refusals(results: &[QuestionResult], rule: &RefusalRule) -> Vec<bool> {
    let mut out = vec![false; results.len()];
    let agree_of: Vec<usize> = results.iter().map(agreement).collect();
    for ((kind, agree), share) in &rule.cells {
        let members: Vec<usize> = (0..results.len()).filter(|&i| results[i].kind == *kind && agree_of[i] == *agree).collect();
        let n = (share * members.len() as f64).round() as usize;
        for &i in members.iter().take(n) {
            out[i] = true;
        }
    }
    out
}

/// Prudence: among the unanswerable questions and the answerable questions answered wrong, the
/// share answered "I do not know.".
pub fn prudence(results: &[QuestionResult]) -> Ratio {
    let pool: Vec<&QuestionResult> = results.iter().filter(|r| !r.answerable() || !r.correct).collect();
    Ratio::new(pool.iter().filter(|r| r.refused).count(), pool.len())
}

/// Over-conservativeness: of the answerable questions `before` answered right (matched by
/// question text, among those `now` also asks), the share `now` answers "I do not know.".
/// (Unanswerable questions are left out: refusing them is right, before and now.) `None` when no
/// question matches.
pub fn over_conservativeness(before: &[QuestionResult], now: &[QuestionResult]) -> Option<Ratio> {
    let now_by_q: HashMap<&str, &QuestionResult> = now.iter().map(|r| (r.question.as_str(), r)).collect();
    let (mut k, mut n, mut matched) = (0, 0, 0);
    for b in before {
        let Some(r) = now_by_q.get(b.question.as_str()) else { continue };
        matched += 1;
        if b.correct && b.answerable() {
            n += 1;
            k += r.refused as usize;
        }
    }
    (matched > 0).then(|| Ratio::new(k, n))
}

/// The figures of graded results (`sampled`: whether pass@K was measured).
pub fn summarize(results: &[QuestionResult], sampled: bool, before: Option<&[QuestionResult]>) -> Summary {
    let mut by: BTreeMap<Family, Vec<&QuestionResult>> = BTreeMap::new();
    for r in results {
        if let Some(f) = r.family() {
            by.entry(f).or_default().push(r);
        }
    }
    let ratio = |v: &[&QuestionResult]| Ratio::new(v.iter().filter(|r| r.correct).count(), v.len());
    let pass = |v: &[&QuestionResult]| Ratio::new(v.iter().filter(|r| r.samples_correct > 0).count(), v.len());
    let families = by
        .iter()
        .map(|(f, v)| FamilyStats { family: f.name().into(), accuracy: ratio(v), pass_k: sampled.then(|| pass(v)) })
        .collect();
    let answerable: Vec<&QuestionResult> = results.iter().filter(|r| r.answerable()).collect();
    let all: Vec<&QuestionResult> = results.iter().collect();
    let sampled_pass1 = || {
        let share = |r: &&QuestionResult| if r.samples.is_empty() { 0.0 } else { r.samples_correct as f64 / r.samples.len() as f64 };
        Mean::of(&answerable.iter().map(share).collect::<Vec<f64>>())
    };
    let mut by_kind: BTreeMap<(Option<Family>, &str), Vec<&QuestionResult>> = BTreeMap::new();
    for r in results.iter().filter(|r| !r.kind.is_empty()) {
        by_kind.entry((r.family(), r.kind.as_str())).or_default().push(r);
    }
    let kinds = by_kind
        .into_iter()
        .map(|((_, kind), v)| KindStats { kind: kind.to_string(), accuracy: ratio(&v), refused: Ratio::new(v.iter().filter(|r| r.refused).count(), v.len()) })
        .collect();
    Summary {
        families,
        answerable: ratio(&answerable),
        answerable_pass_k: sampled.then(|| pass(&answerable)),
        answerable_sampled: sampled.then(sampled_pass1),
        overall: ratio(&all),
        prudence: prudence(results),
        over_conservative: before.and_then(|b| over_conservativeness(b, results)),
        paired: before.and_then(|b| paired(b, results)),
        kinds,
        refusal_ceiling: if sampled { refusal_ceiling(results, CEILING_BUDGET) } else { None },
    }
}

/// A whole evaluation, as written to `--out` (and read back as `--before`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub model: String,
    pub tasks: String,
    /// Samples per question for pass@K (0: none).
    pub samples: usize,
    pub temperature: f32,
    pub seed: u64,
    pub summary: Summary,
    pub questions: Vec<QuestionResult>,
}

/// Settings of [`evaluate`].
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Sampled answers per question for pass@K (0: greedy only).
    pub samples: usize,
    pub temperature: f32,
    pub seed: u64,
    pub threads: usize,
}

/// Answers every task greedily (and `samples` times at `temperature`), grades and summarises.
pub fn evaluate(answerer: &dyn Answerer, tasks: &[Task], opts: &EvalOptions, before: Option<&[QuestionResult]>) -> Result<(Summary, Vec<QuestionResult>)> {
    let questions: Vec<&str> = tasks.iter().map(|t| t.question.as_str()).collect();
    let greedy = greedy_replies(answerer, &questions, opts.threads)?;
    let samples = if opts.samples > 0 {
        sample_replies(answerer, &questions, opts.samples, opts.temperature, opts.seed, opts.threads)?
    } else {
        Vec::new()
    };
    let results = grade(tasks, &greedy, &samples);
    Ok((summarize(&results, opts.samples > 0, before), results))
}

/// Reads an evaluation written by `chat-eval --out`.
pub fn read_report(path: &Path) -> Result<EvalReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read evaluation {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{} is not an evaluation written by chat-eval --out: {e}", path.display()))
}

/// Writes an evaluation as JSON, atomically.
pub fn write_report(path: &Path, report: &EvalReport) -> Result<()> {
    let mut text = serde_json::to_string_pretty(report).context("serialising the evaluation")?;
    text.push('\n');
    tinygpt_runtime::writer::write_atomic(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

fn ratio_cell(r: &Ratio) -> String {
    format!("{:5.1}% [{:5.1}, {:5.1}]", 100.0 * r.value, 100.0 * r.lo, 100.0 * r.hi)
}

/// The summary as a table (percentages with 95 % Wilson intervals).
pub fn table(s: &Summary, samples: usize) -> String {
    let pk = format!("pass@{samples}");
    let mut out = format!("{:<12} {:>5}  {:<22}", "family", "n", "greedy (95% CI)");
    if samples > 0 {
        out += &format!("  {pk:<22}");
    }
    out.push('\n');
    let mut row = |name: &str, acc: &Ratio, pass: Option<&Ratio>| {
        out += &format!("{:<12} {:>5}  {:<22}", name, acc.n, ratio_cell(acc));
        if let Some(p) = pass {
            out += &format!("  {:<22}", ratio_cell(p));
        }
        out.push('\n');
    };
    for f in &s.families {
        let name = if f.family == Family::Unknown.name() { "unknown*" } else { f.family.as_str() };
        row(name, &f.accuracy, f.pass_k.as_ref());
    }
    row("answerable", &s.answerable, s.answerable_pass_k.as_ref());
    row("all", &s.overall, None);
    let mut out = out.trim_end().to_string();
    out += "\n* unanswerable: right = \"I do not know.\"";
    out += &format!(
        "\nprudence: {} ({} of {} unanswerable or wrongly answered questions answered \"I do not know.\")",
        ratio_cell(&s.prudence),
        s.prudence.k,
        s.prudence.n
    );
    if let Some(o) = &s.over_conservative {
        out += &format!("\nover-conservativeness: {} ({} of {} answerable questions answered right before are now refused)", ratio_cell(o), o.k, o.n);
    }
    if let Some(m) = &s.answerable_sampled {
        out += &format!("\nsampled pass@1: {} (the mean share of right samples, answerable questions)", mean_cell(m));
    }
    if let Some(p) = &s.paired {
        out += &format!(
            "\nagainst --before: {} points (answerable greedy accuracy now minus before; of {} questions {} gained, {} lost)",
            points_cell(&p.diff),
            p.n,
            p.gained,
            p.lost
        );
    }
    if let Some(c) = &s.refusal_ceiling {
        out += &format!(
            "\nrefusal ceiling: prudence {:.1}% at most, answerable accuracy {:.1}%, for a rule refusing by kind and sample agreement that gives up at most {:.0}% of the right answers",
            100.0 * c.prudence,
            100.0 * c.accuracy,
            100.0 * c.budget
        );
    }
    if !s.kinds.is_empty() {
        out += &format!("\n{:<22} {:>5}  {:<22}  {:<22}", "kind", "n", "greedy (95% CI)", "refused");
        for k in &s.kinds {
            out += &format!("\n{:<22} {:>5}  {:<22}  {:<22}", k.kind, k.accuracy.n, ratio_cell(&k.accuracy), ratio_cell(&k.refused));
        }
    }
    out
}

fn mean_cell(m: &Mean) -> String {
    format!("{:5.1}% [{:5.1}, {:5.1}]", 100.0 * m.value, 100.0 * m.lo, 100.0 * m.hi)
}

fn points_cell(m: &Mean) -> String {
    format!("{:+.1} [{:+.1}, {:+.1}]", 100.0 * m.value, 100.0 * m.lo, 100.0 * m.hi)
}
