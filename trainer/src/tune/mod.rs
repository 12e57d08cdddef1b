//! `tinygpt-train tune`: hyper-parameter search for the lowest validation loss.
//!
//! A base configuration plus a space ([`space`]) of training keys; trials run the trainer's own
//! loop in-process and report the validation loss at each evaluation, where the median rule may
//! stop them; every trial lives in a SQLite study ([`study`]) that several processes share and a
//! re-run resumes; new parameters come from a Gaussian process with expected improvement
//! ([`gp`]) after a random initial design, or from random search. Outputs: `best.toml` (a
//! configuration `train --config` takes), `history.svg`, `params.svg`, one line per trial.

pub mod gp;
pub mod space;
pub mod study;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::Device;

use crate::config::TrainConfig;
use crate::plot::{self, Panel};
use crate::train::{self, median, RunOptions};
use space::{Dist, Point, Rng, Sizer, Space};
use study::{State, Study, Trial};

/// How new trials are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// Gaussian process with expected improvement after a random initial design.
    Gp,
    /// Uniform random search (the baseline).
    Random,
}

impl SamplerKind {
    /// Parses `gp` or `random`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "gp" => Ok(SamplerKind::Gp),
            "random" => Ok(SamplerKind::Random),
            other => bail!("--sampler {other:?}: expected gp or random"),
        }
    }
}

/// Everything `tune` needs besides the files' contents.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub config: PathBuf,
    pub space: PathBuf,
    /// Trials the study should hold in all (a re-run with more extends it).
    pub trials: usize,
    /// The study file (default `out/study.sqlite`).
    pub study: Option<PathBuf>,
    pub sampler: SamplerKind,
    /// Median pruning.
    pub prune: bool,
    /// Evaluations at steps below this are never pruned (Optuna's `n_warmup_steps`): early
    /// losses rank shapes poorly, since smaller models lead at first.
    pub prune_after: u64,
    pub seed: u64,
    pub device: Device,
    pub out: PathBuf,
    /// Random trials before the GP takes over (default: twice the space's dimensions, 3 to 10).
    pub startup: Option<usize>,
}

/// What one `tune` process did.
#[derive(Debug, Clone, Default)]
pub struct TuneSummary {
    /// Trials this process ran (numbers), in order.
    pub ran: Vec<i64>,
    /// The study's best complete trial and its value.
    pub best: Option<(i64, f64)>,
    /// Stopped by Ctrl-C (the trial it was running is taken again by the next run).
    pub interrupted: bool,
}

/// Complete trials the median rule waits for before it prunes.
pub const PRUNE_STARTUP: usize = 3;
/// Random draws tried for a configuration that is valid and meets the constraints.
const FEASIBLE_TRIES: usize = 5000;
/// Random candidates of each GP proposal (plus perturbations of the best points).
const CANDIDATES: usize = 2000;

/// The default size of the random initial design.
pub fn default_startup(space: &Space) -> usize {
    (2 * space.dims()).clamp(3, 10)
}

/// Whether a point gives a valid configuration that meets the constraints (`Err(why)` if not).
fn feasible(space: &Space, base: &TrainConfig, sizer: &mut Sizer, p: &Point) -> Result<std::result::Result<TrainConfig, String>> {
    let cfg = match space.apply(base, p) {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("{e:#}"))),
    };
    Ok(sizer.check(&cfg)?.map(|()| cfg))
}

/// A random point that is valid and meets the constraints.
fn random_feasible(space: &Space, base: &TrainConfig, sizer: &mut Sizer, rng: &mut Rng) -> Result<Point> {
    let mut last = String::new();
    for _ in 0..FEASIBLE_TRIES {
        let p = space.sample(rng);
        match feasible(space, base, sizer, &p)? {
            Ok(_) => return Ok(p),
            Err(why) => last = why,
        }
    }
    bail!("no configuration of the space is valid and meets the constraints ({FEASIBLE_TRIES} random draws; the last: {last})")
}

/// The GP's objective: the logarithm of the loss (losses span decades, and are positive).
fn objective(v: f64) -> f64 {
    v.max(1e-12).ln()
}

/// The sampler's generator for trial `number`: its seed is a hash of the study's seed and the
/// number, so that the trials' streams do not overlap (SplitMix64 advances its state by a fixed
/// increment: seeds that differ by multiples of it give one stream shifted, and a trial that
/// rejected a few infeasible draws would repeat a later trial's parameters).
fn trial_rng(seed: u64, number: i64) -> Rng {
    let mut a = seed;
    let mut b = crate::tasks::splitmix64(&mut a) ^ number as u64;
    Rng::new(crate::tasks::splitmix64(&mut b))
}

/// Chooses the parameters of trial `number` given the study's trials.
fn choose(
    space: &Space,
    base: &TrainConfig,
    sizer: &mut Sizer,
    opts: &TuneOptions,
    trials: &[Trial],
    number: i64,
) -> Result<(serde_json::Value, String)> {
    let mut rng = trial_rng(opts.seed, number);
    let startup = opts.startup.unwrap_or_else(|| default_startup(space));
    let done: Vec<&Trial> = trials.iter().filter(|t| matches!(t.state, State::Complete | State::Pruned | State::Failed)).collect();
    if opts.sampler == SamplerKind::Random || done.len() < startup {
        let p = random_feasible(space, base, sizer, &mut rng)?;
        let name = if opts.sampler == SamplerKind::Random { "random" } else { "startup" };
        return Ok((space.to_json(&p), name.into()));
    }
    match propose_gp(space, base, sizer, trials, &mut rng)? {
        Some(p) => Ok((space.to_json(&p), "gp".into())),
        None => Ok((space.to_json(&random_feasible(space, base, sizer, &mut rng)?), "random".into())),
    }
}

/// The feasible candidate of highest expected improvement under a GP fitted to the trials
/// (failed trials count as the worst value seen; running ones as the mean, a "constant liar", so
/// that processes working at once spread out).
fn propose_gp(space: &Space, base: &TrainConfig, sizer: &mut Sizer, trials: &[Trial], rng: &mut Rng) -> Result<Option<Point>> {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let mut failed = Vec::new();
    let mut pending = Vec::new();
    let mut seen = Vec::new();
    for t in trials {
        let Some(p) = space.from_json(&t.params) else { continue };
        let u = space.encode(&p);
        seen.push(u.clone());
        match (t.state, t.value) {
            (State::Complete | State::Pruned, Some(v)) if v.is_finite() => {
                xs.push(u);
                ys.push(objective(v));
            }
            (State::Running | State::Interrupted, _) => pending.push(u),
            _ => failed.push(u),
        }
    }
    if ys.len() < 2 {
        return Ok(None);
    }
    let worst = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = ys.iter().sum::<f64>() / ys.len() as f64;
    let best = ys.iter().copied().fold(f64::INFINITY, f64::min);
    // The best observed points, for local candidates.
    let mut order: Vec<usize> = (0..ys.len()).collect();
    order.sort_by(|&a, &b| ys[a].total_cmp(&ys[b]));
    let top: Vec<Vec<f64>> = order.iter().take(5).map(|&i| xs[i].clone()).collect();
    for u in failed {
        xs.push(u);
        ys.push(worst);
    }
    for u in pending {
        xs.push(u);
        ys.push(mean);
    }
    let Some(gp) = gp::Gp::fit(&xs, &ys) else { return Ok(None) };
    let d = space.dims();
    let mut cands: Vec<Point> = (0..CANDIDATES).map(|_| space.sample(rng)).collect();
    for t in &top {
        for &sd in &[0.02, 0.08, 0.2] {
            for _ in 0..60 {
                let u: Vec<f64> = (0..d).map(|j| t[j] + sd * rng.normal()).collect();
                cands.push(space.decode(&u));
            }
        }
    }
    let mut scored: Vec<(f64, Point)> = cands
        .into_iter()
        .map(|p| {
            let u = space.encode(&p);
            let (m, s) = gp.predict(&u);
            (gp::expected_improvement(m, s, best, 0.01), p)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, p) in scored.into_iter().take(400) {
        let u = space.encode(&p);
        if seen.iter().any(|s| s.iter().zip(&u).all(|(a, b)| (a - b).abs() < 1e-9)) {
            continue;
        }
        if feasible(space, base, sizer, &p)?.is_ok() {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Reads the base configuration and the space, as `tune` does.
pub fn load_inputs(config: &Path, space_path: &Path) -> Result<(TrainConfig, Space)> {
    let base = TrainConfig::load(config, &[])?;
    let text = std::fs::read_to_string(space_path).with_context(|| format!("cannot read space {}", space_path.display()))?;
    let space = Space::parse(&text, &base).with_context(|| format!("space {}", space_path.display()))?;
    Ok((base, space))
}

/// Runs trials of the study until it holds `opts.trials` (or Ctrl-C); `progress` gets one line
/// per trial.
pub fn tune(opts: &TuneOptions, progress: &mut dyn FnMut(&str)) -> Result<TuneSummary> {
    if opts.trials == 0 {
        bail!("--trials must be at least 1");
    }
    let (base, space) = load_inputs(&opts.config, &opts.space)?;
    let mut sizer = Sizer::new(space.constraints.clone());
    // A space nothing in can meet fails here, before a study exists.
    let mut rng = Rng::new(opts.seed ^ 0x5EED);
    random_feasible(&space, &base, &mut sizer, &mut rng).with_context(|| format!("space {}", opts.space.display()))?;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    let study_path = opts.study.clone().unwrap_or_else(|| opts.out.join("study.sqlite"));
    let mut study = Study::open(&study_path)?;
    let base_text = toml::to_string(&base).context("the base config does not serialize")?;
    let space_text = space.canonical();
    study
        .init_or_check(&[("base config", &base_text), ("space", &space_text)])
        .with_context(|| format!("study {}", study_path.display()))?;

    let mut summary = TuneSummary::default();
    loop {
        if train::stop_requested() {
            summary.interrupted = true;
            break;
        }
        let taken = study.take(opts.trials, &mut |trials, number| choose(&space, &base, &mut sizer, opts, trials, number))?;
        let Some(taken) = taken else { break };
        let n = taken.number;
        let point = space.from_json(&taken.params).with_context(|| format!("trial {n}'s parameters do not fit the space"))?;
        let mut cfg = space.apply(&base, &point)?;
        cfg.sample_tokens = 0;
        let dir = opts.out.join(format!("trial-{n:04}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {} to restart trial {n}", dir.display()))?;
        }
        train::set_threads(cfg.threads);
        let t0 = Instant::now();
        let mut best_so_far = f64::INFINITY;
        let mut last = None;
        let mut hook = |step: u64, val: f64| -> Result<bool> {
            study.report(n, step, val)?;
            best_so_far = best_so_far.min(val);
            last = Some(val);
            if !opts.prune || step < opts.prune_after {
                return Ok(false);
            }
            let mut others = study.values_at(step, n)?;
            Ok(others.len() >= PRUNE_STARTUP && best_so_far > median(&mut others))
        };
        let run = RunOptions { out: dir, resume: false, device: opts.device, verbose: false };
        let result = train::train_with_hook(&cfg, &run, Some(&mut hook));
        let secs = t0.elapsed().as_secs_f64();
        let (state, value, note) = match result {
            Ok(s) if s.reason == "interrupted" => (State::Interrupted, None, "interrupted".to_string()),
            Ok(s) if s.reason == "pruned" => (State::Pruned, last, format!("pruned at step {}", s.steps)),
            Ok(s) => (State::Complete, s.best_val, format!("{} steps", s.steps)),
            Err(e) => (State::Failed, None, format!("{e:#}")),
        };
        study.finish(n, state, value, &note)?;
        summary.ran.push(n);
        let trials = study.trials()?;
        let best = best_trial(&trials);
        summary.best = best.map(|t| (t.number, t.value.unwrap_or(f64::NAN)));
        let mut line = format!("trial {n}/{}{}: {}", opts.trials, if taken.restarted { " (restarted)" } else { "" }, state.name());
        if let Some(v) = value {
            let _ = write!(line, ", val loss {v:.4}");
        }
        if state == State::Failed || state == State::Pruned {
            let _ = write!(line, " ({note})");
        }
        if let Some(b) = best {
            let _ = write!(line, "; best {:.4} (trial {})", b.value.unwrap_or(f64::NAN), b.number);
        }
        let sampler = trials.iter().find(|t| t.number == n).map_or(String::new(), |t| t.sampler.clone());
        let _ = write!(line, "; {secs:.1} s [{sampler}] {}", space.describe(&point));
        progress(&line);
        write_outputs(&opts.out, &base, &space, &trials, &study_path)?;
        if state == State::Interrupted {
            summary.interrupted = true;
            break;
        }
    }
    if summary.best.is_none() {
        let trials = study.trials()?;
        summary.best = best_trial(&trials).map(|t| (t.number, t.value.unwrap_or(f64::NAN)));
        write_outputs(&opts.out, &base, &space, &trials, &study_path)?;
    }
    Ok(summary)
}

/// The complete trial of lowest value.
pub fn best_trial(trials: &[Trial]) -> Option<&Trial> {
    trials
        .iter()
        .filter(|t| t.state == State::Complete && t.value.is_some_and(f64::is_finite))
        .min_by(|a, b| a.value.unwrap_or(f64::NAN).total_cmp(&b.value.unwrap_or(f64::NAN)))
}

/// `best.toml`, `history.svg` and `params.svg` from the study's trials (atomic writes).
pub fn write_outputs(out: &Path, base: &TrainConfig, space: &Space, trials: &[Trial], study_path: &Path) -> Result<()> {
    use tinygpt_runtime::writer::write_atomic;
    if let Some(best) = best_trial(trials) {
        if let Some(p) = space.from_json(&best.params) {
            let cfg = space.apply(base, &p)?;
            let mut text = format!(
                "# The best of {} trials of the study {}: trial {}, validation loss {:.4}.\n# Train it with: tinygpt-train train --config {}\n# Searched: {}\n",
                trials.len(),
                study_path.display(),
                best.number,
                best.value.unwrap_or(f64::NAN),
                out.join("best.toml").display(),
                space.describe(&p)
            );
            text.push_str(&toml::to_string(&cfg).context("the best config does not serialize")?);
            write_atomic(&out.join("best.toml"), text.as_bytes()).with_context(|| format!("cannot write {}", out.join("best.toml").display()))?;
        }
    }
    let colour = |s: State| match s {
        State::Complete => Some("darkorange"),
        State::Pruned => Some("gray"),
        _ => None,
    };
    let mut history = Panel {
        title: "best so far; trials: orange complete, gray pruned".into(),
        x_label: "trial".into(),
        ..Default::default()
    };
    let mut best = f64::INFINITY;
    for t in trials {
        if let (Some(c), Some(v)) = (colour(t.state), t.value) {
            history.points.push((t.number as f64, v, c));
            if t.state == State::Complete && v < best {
                best = v;
            }
        }
        if best.is_finite() {
            history.line.push((t.number as f64, best));
        }
    }
    write_atomic(&out.join("history.svg"), plot::panels_svg(&[history], 1, "validation loss").as_bytes())?;
    let mut panels = Vec::new();
    for p in &space.params {
        let mut panel = Panel { title: p.name.clone(), x_label: p.name.clone(), ..Default::default() };
        match &p.dist {
            Dist::LogUniform { .. } | Dist::Int { log: true, .. } => panel.log_x = true,
            Dist::Choice(v) if !v.iter().all(|x| x.as_float().is_some() || x.as_integer().is_some()) => {
                panel.categories = v.iter().map(|x| x.to_string().trim_matches('"').to_string()).collect();
            }
            _ => {}
        }
        for t in trials {
            let (Some(c), Some(v)) = (colour(t.state), t.value) else { continue };
            let Some(x) = t.params.get(&p.name) else { continue };
            let xv = if panel.categories.is_empty() {
                x.as_f64()
            } else {
                let s = x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string());
                panel.categories.iter().position(|c| *c == s).map(|i| i as f64)
            };
            if let Some(xv) = xv {
                panel.points.push((xv, v, c));
            }
        }
        panels.push(panel);
    }
    write_atomic(&out.join("params.svg"), plot::panels_svg(&panels, 3, "validation loss").as_bytes())?;
    Ok(())
}

/// The study's trials as a table (`tune --show`).
pub fn show(path: &Path) -> Result<String> {
    let study = Study::open_existing(path)?;
    let trials = study.trials()?;
    let mut keys: Vec<String> = Vec::new();
    for t in &trials {
        if let Some(o) = t.params.as_object() {
            for k in o.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let best = best_trial(&trials).map(|t| t.number);
    let mut s = format!("{:>5} {:<11} {:>8} {:>6} {:>9} {:<8}", "trial", "state", "value", "evals", "seconds", "sampler");
    for k in &keys {
        let _ = write!(s, " {k:>12}");
    }
    s.push('\n');
    for t in &trials {
        let v = t.value.map_or("-".into(), |v| format!("{v:.4}"));
        let d = t.duration_s.map_or("-".into(), |d| format!("{d:.1}"));
        let mark = if Some(t.number) == best { "*" } else { " " };
        let _ = write!(s, "{:>4}{mark} {:<11} {v:>8} {:>6} {d:>9} {:<8}", t.number, t.state.name(), t.intermediate.len(), t.sampler);
        for k in &keys {
            let cell = match t.params.get(k) {
                Some(serde_json::Value::Number(x)) if x.is_f64() => space::short(x.as_f64().unwrap_or(f64::NAN)),
                Some(serde_json::Value::String(x)) => x.clone(),
                Some(x) => x.to_string(),
                None => "-".into(),
            };
            let _ = write!(s, " {cell:>12}");
        }
        s.push('\n');
    }
    let count = |st: State| trials.iter().filter(|t| t.state == st).count();
    let _ = write!(
        s,
        "{} trials: {} complete, {} pruned, {} failed, {} running or interrupted",
        trials.len(),
        count(State::Complete),
        count(State::Pruned),
        count(State::Failed),
        count(State::Running) + count(State::Interrupted)
    );
    if let Some(b) = best_trial(&trials) {
        let _ = write!(s, "; best (*): trial {}, {:.4}", b.number, b.value.unwrap_or(f64::NAN));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trials' streams do not overlap: no draw of one trial's first thousand appears among the
    /// first thousand of another's (the old seeding, `seed ^ number · 0x9E37..`, shifted one
    /// stream into the next).
    #[test]
    fn trial_streams_do_not_overlap() {
        let mut seen = std::collections::HashSet::new();
        for number in 0..64 {
            let mut r = trial_rng(0, number);
            for _ in 0..1000 {
                assert!(seen.insert(r.next_u64()), "trial {number} repeats a draw of an earlier trial");
            }
        }
    }
}
