//! `tinygpt bench`: prompt-processing and generation speed on one thread, medians of several runs.

use core::fmt::Write as _;
use core::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tinygpt::prelude::*;
use tinygpt_runtime::{Sampler, SamplerConfig, Session};

use crate::cli::BenchArgs;
use crate::modelfile::{self, ModelFile};
use crate::out::thousands;
use crate::sys::{self, Instant, Write as _};

pub fn run(a: &BenchArgs) -> Result<()> {
    let file = ModelFile::open(&a.run.model)?;
    let model = file.model()?;
    let cfg = *model.config();
    let ctx = modelfile::context_len(&model, a.run.ctx)?;
    let n_prompt = a.n_prompt.unwrap_or(ctx.min(128));
    let n_gen = a.n_gen.unwrap_or(ctx.min(128));
    for (what, n) in [("-p", n_prompt), ("-n", n_gen)] {
        if n > ctx {
            bail!("{what} {n} is larger than the context ({ctx} tokens); each test starts from an empty context");
        }
    }
    let kv = a.run.kv.into();
    let mut buf = modelfile::session_buffer(&model, ctx, kv)?;
    let mut session = modelfile::session(&model, &mut buf, ctx, kv)?;

    // A fixed, varied prompt: token ids spread over the vocabulary.
    let vocab = cfg.vocab_size as u64;
    let prompt: Vec<u32> = (0..n_prompt as u64).map(|i| ((i * 2_654_435_761 + 7) % vocab) as u32).collect();

    // One untimed run of each test warms caches and page-faults the mapped weights in.
    prompt_run(&mut session, &prompt)?;
    gen_run(&mut session, n_gen)?;
    let mut pp = Vec::with_capacity(a.repetitions);
    let mut tg = Vec::with_capacity(a.repetitions);
    for _ in 0..a.repetitions {
        pp.push(prompt_run(&mut session, &prompt)?);
        tg.push(gen_run(&mut session, n_gen)?);
    }
    let (mut pp_wall, mut pp_cpu): (Vec<Duration>, Vec<Duration>) = pp.into_iter().unzip();
    let (mut tg_wall, mut tg_cpu): (Vec<Duration>, Vec<Duration>) = tg.into_iter().unzip();

    let mut s = String::new();
    let _ = writeln!(
        s,
        "model: {}  {} {}  {} params  ctx {ctx}  kv {}  1 thread  {} runs (median)",
        file.path(),
        cfg.arch.name(),
        cfg.dtype.name(),
        thousands(model.param_count()),
        kv.name(),
        a.repetitions
    );
    let _ = writeln!(
        s,
        "{:<8}{:>8}{:>12}{:>12}{:>12}{:>12}{:>12}",
        "test", "tokens", "tokens/s", "ms/token", "min t/s", "max t/s", "cpu t/s"
    );
    let rows = [
        (format!("pp{n_prompt}"), n_prompt, &mut pp_wall, &mut pp_cpu),
        (format!("tg{n_gen}"), n_gen, &mut tg_wall, &mut tg_cpu),
    ];
    for (name, n, wall, cpu) in rows {
        wall.sort();
        cpu.sort();
        let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-12);
        let med = median(wall);
        let _ = writeln!(
            s,
            "{name:<8}{n:>8}{:>12.1}{:>12.4}{:>12.1}{:>12.1}{:>12.1}",
            rate(med),
            med.as_secs_f64() * 1e3 / n as f64,
            rate(wall[wall.len() - 1]),
            rate(wall[0]),
            rate(median(cpu))
        );
    }
    sys::stdout().write_all(s.as_bytes()).context("cannot write to stdout")?;
    Ok(())
}

/// Wall-clock and thread CPU time of one run.
struct Timer {
    wall: Instant,
    cpu: Duration,
}

impl Timer {
    // The wall-clock window encloses the CPU-time window, so the two clock reads of the CPU
    // clock (each a system call) are counted in wall time, not in CPU time.
    fn start() -> Self {
        let wall = Instant::now();
        Timer { wall, cpu: thread_cpu_time() }
    }
    fn stop(self) -> (Duration, Duration) {
        let cpu = thread_cpu_time().saturating_sub(self.cpu);
        (self.wall.elapsed(), cpu)
    }
}

/// CPU time this thread has used. On a shared machine it leaves out the time the thread waited
/// for a core, which wall-clock time includes.
fn thread_cpu_time() -> Duration {
    sys::thread_cpu_time()
}

/// Feeds `prompt` from an empty context. (Not inlined: `tools/bench.sh` counts its instructions.)
#[inline(never)]
fn prompt_run(session: &mut Session<'_, '_>, prompt: &[u32]) -> Result<(Duration, Duration)> {
    session.reset();
    let t = Timer::start();
    for &tok in prompt {
        core::hint::black_box(session.step(tok).map_err(|e| anyhow!("{e}"))?);
    }
    Ok(t.stop())
}

/// Generates `n` tokens from an empty context: a forward pass and a sample (temperature 0.8,
/// top-k 40) per token. (Not inlined: `tools/bench.sh` counts its instructions.)
#[inline(never)]
fn gen_run(session: &mut Session<'_, '_>, n: usize) -> Result<(Duration, Duration)> {
    session.reset();
    let mut sampler = Sampler::new(SamplerConfig::default(), 1);
    let mut tok = 0u32;
    let t = Timer::start();
    for _ in 0..n {
        session.step(tok).map_err(|e| anyhow!("{e}"))?;
        tok = session.sample(&mut sampler);
    }
    Ok(t.stop())
}

/// The median of sorted durations (the mean of the middle two for an even count).
fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let d = |ms| Duration::from_millis(ms);
        assert_eq!(median(&[d(1), d(5), d(9)]), d(5));
        assert_eq!(median(&[d(1), d(3), d(5), d(100)]), d(4));
    }
}
