//! `tinygpt-train`: train, export and sample tinygpt models.

mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tinygpt::args::{parse_count, parse_float, parse_temp};
use tinygpt_runtime::writer::{self, MetaData};
use tinygpt_runtime::DType;

use tinygpt_train::config::TrainConfig;
use tinygpt_train::data::TextTokenizer;
use tinygpt_train::evalchat::{self, EvalOptions, EvalReport, RuntimeAnswerer};
use tinygpt_train::export::{self, parse_dtype};
use tinygpt_train::rl::{self, RlConfig, SftPolicy};
use tinygpt_train::sft::{self, SftConfig};
use tinygpt_train::tasks::{self, TaskConfig};
use tinygpt_train::train::{self, RunOptions, LIBTORCH_VERSION, TRAINER_VERSION};
use tinygpt_train::tune;

/// MKL's question "is this an Intel CPU?", answered by `tinygpt-train` (see `tinygpt_train::mkl`):
/// exported from the executable (`build.rs`), so libtorch's MKL calls this definition.
#[cfg(target_arch = "x86_64")]
#[no_mangle]
pub extern "C" fn mkl_serv_intel_cpu_true() -> std::ffi::c_int {
    tinygpt_train::mkl::treat_as_intel() as std::ffi::c_int
}

#[derive(Parser)]
#[command(name = "tinygpt-train", version, about = "Train a tiny GPT with libtorch and export .tgpt files")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model (or continue one with --resume).
    Train {
        /// TOML configuration (optional with --resume: the checkpoint's configuration is used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a configuration key: --set key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Corpus file (overrides `corpus` in the configuration).
        #[arg(long)]
        corpus: Option<String>,
        /// Output directory for checkpoints, log and plot (default: runs/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out from its last checkpoint.
        #[arg(long)]
        resume: bool,
        /// auto (CUDA when present), cpu or cuda.
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Fine-tune a base model into a chat model on conversations (JSONL, one
    /// {"messages": [{"role": .., "content": ..}, ..]} a line); the loss is on the assistant's turns.
    Sft {
        /// The base: a run directory (its best.pt, else last.pt), a .pt checkpoint or a .tgpt file
        /// (not needed with --resume).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Training conversations (JSONL).
        #[arg(long)]
        data: PathBuf,
        /// Validation conversations (JSONL; default: `val_fraction` of --data, held out).
        #[arg(long)]
        val_data: Option<PathBuf>,
        /// SFT configuration (TOML; default: the built-in settings, see configs/sft-board.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a configuration key: --set key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Corpus whose validation split `export` measures (overrides `corpus` in the configuration).
        #[arg(long)]
        corpus: Option<String>,
        /// Output directory for checkpoints, log and plot.
        #[arg(long)]
        out: PathBuf,
        /// Skip bad lines of the data (with a warning each) instead of refusing the file.
        #[arg(long)]
        skip_bad: bool,
        /// Continue the run in --out from its last checkpoint.
        #[arg(long)]
        resume: bool,
        /// auto (CUDA when present), cpu or cuda.
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Export a run's best checkpoint as a .tgpt file, with validation losses measured by the runtime.
    Export {
        /// A run directory (its best.pt, else last.pt) or a checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Weight storage: f32, f16, int8 or int4.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// int8 or int4 group size along each row.
        #[arg(long, default_value_t = 64, value_parser = parse_count::<u32>, allow_negative_numbers = true)]
        group_size: u32,
        /// Evaluate on at most this many validation tokens, at least 2 (default: the whole split).
        #[arg(long, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        eval_tokens: Option<usize>,
        /// Corpus to take the validation split from (default: the one the run was trained on).
        #[arg(long)]
        corpus: Option<String>,
        /// Skip the runtime evaluation (no losses in the metadata).
        #[arg(long)]
        no_eval: bool,
    },
    /// Generate text from a run's best checkpoint with the runtime (same text as `tinygpt generate`
    /// with the same flags on its f32 export; same defaults).
    Sample {
        /// A run directory (its best.pt, else last.pt) or a checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Prompt text.
        #[arg(short = 'p', long, default_value = "\n")]
        prompt: String,
        /// Tokens to generate.
        #[arg(short = 'n', long, default_value_t = 256, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        n: usize,
        /// Temperature (0: greedy).
        #[arg(long, default_value_t = 0.8, value_parser = parse_temp, allow_negative_numbers = true)]
        temp: f32,
        /// Keep the K most likely tokens (0: all).
        #[arg(long, default_value_t = 40, value_parser = parse_count::<u32>, allow_negative_numbers = true)]
        top_k: u32,
        /// Random seed.
        #[arg(short = 's', long, default_value_t = 42, value_parser = parse_count::<u64>, allow_negative_numbers = true)]
        seed: u64,
    },
    /// Generate checkable chat tasks (train.jsonl, val.jsonl in the SFT format): alphabet,
    /// backwards spelling, letter counting, arithmetic in words, words that fit two letters and a
    /// length (many right answers), and unanswerable questions.
    Tasks {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Random seed of the split and of every question.
        #[arg(long, default_value_t = 1, value_parser = parse_count::<u64>, allow_negative_numbers = true)]
        seed: u64,
        /// Training questions.
        #[arg(long, default_value_t = 2000, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        train: usize,
        /// Held-out questions (no item shared with the training split).
        #[arg(long, default_value_t = 400, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        val: usize,
        /// Probe questions (probe.jsonl; 0: none): training questions about items of their own,
        /// asked of the fine-tuned model by `idk` and `rl`, which it answers from what it learnt.
        #[arg(long, default_value_t = 0, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        probe: usize,
        /// Share of unanswerable questions (right answer: "I do not know.").
        #[arg(long, default_value_t = 0.2, value_parser = parse_float, allow_negative_numbers = true)]
        unanswerable_frac: f32,
        /// A text whose words (runs of 3 to 8 letters, lower-cased) the backwards and counting
        /// questions ask about and the words questions accept, for example the corpus (default: a
        /// built-in list of 163 words)
        #[arg(long)]
        words: Option<PathBuf>,
        /// The answerable families to draw questions from, comma-separated (default: all of
        /// alphabet, backwards, count, arithmetic, words)
        #[arg(long, value_delimiter = ',')]
        families: Option<Vec<String>>,
        /// Worked targets: answers show their working before a colon ("ABCDEFGHIJK: L",
        /// "hoRse: R: one", "D: HA IB JC KD: ten" for seven plus three); the checker grades what
        /// follows the last colon. The items and questions are those of the same seed without it.
        /// Bare `--worked` works the alphabet and counting; `--worked=count,arithmetic` (any of
        /// alphabet, count, arithmetic) names the families
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "alphabet,count", value_name = "FAMILIES")]
        worked: Option<String>,
        /// Train the words questions on fitting words drawn by how often the --words text uses
        /// them, so that common words are the likeliest answers (default: any fitting word, each
        /// as likely); the questions are the same either way
        #[arg(long)]
        frequent_words: bool,
    },
    /// Evaluate a chat model on a task file: greedy accuracy per family with 95% Wilson intervals,
    /// prudence, over-conservativeness against an earlier evaluation, pass@K with --samples.
    ChatEval {
        /// The chat model (.tgpt).
        #[arg(long)]
        model: PathBuf,
        /// Task file (val.jsonl from `tasks`).
        #[arg(long)]
        tasks: PathBuf,
        /// An earlier evaluation (--out of chat-eval) for over-conservativeness.
        #[arg(long)]
        before: Option<PathBuf>,
        /// Write per-question results and figures as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Sampled answers per question for pass@K (0: greedy only).
        #[arg(long, default_value_t = 0, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        samples: usize,
        /// Sampling temperature for pass@K.
        #[arg(long, default_value_t = 0.8, value_parser = parse_temp, allow_negative_numbers = true)]
        temp: f32,
        /// Random seed of the samples.
        #[arg(long, default_value_t = 42, value_parser = parse_count::<u64>, allow_negative_numbers = true)]
        seed: u64,
        /// Answering threads (results do not depend on it).
        #[arg(long, default_value_t = 2, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        threads: usize,
        /// Ask in plain text, without the chat template (for a base model: the question as a line,
        /// the answer is the next line the model writes).
        #[arg(long)]
        plain: bool,
    },
    /// Relabel training tasks from the model's own samples: where none of N samples is right, the
    /// target becomes "I do not know."; elsewhere the answer stays (then run `sft` on the output).
    Idk {
        /// The chat model (.tgpt).
        #[arg(long)]
        model: PathBuf,
        /// Task file (train.jsonl from `tasks`).
        #[arg(long)]
        tasks: PathBuf,
        /// Samples per question.
        #[arg(long, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        samples: usize,
        /// Sampling temperature.
        #[arg(long, default_value_t = 0.8, value_parser = parse_temp, allow_negative_numbers = true)]
        temp: f32,
        /// Random seed of the samples.
        #[arg(long, default_value_t = 42, value_parser = parse_count::<u64>, allow_negative_numbers = true)]
        seed: u64,
        /// Right samples a question needs to keep its answer (1: relabel only questions never
        /// answered right; more: also those right only now and then).
        #[arg(long, default_value_t = 1, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        min_right: usize,
        /// Also refuse where the model's samples disagree: fit the refusal rule of `chat-eval`'s
        /// refusal ceiling (by kind of question and by how many samples agree with the greedy
        /// answer) on these questions, giving up at most this share of their right greedy answers,
        /// and train "I do not know." on the questions it refuses.
        #[arg(long, allow_negative_numbers = true)]
        refusal_budget: Option<f64>,
        /// Output task file.
        #[arg(long)]
        out: PathBuf,
        /// Sampling threads (results do not depend on it).
        #[arg(long, default_value_t = 2, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        threads: usize,
    },
    /// RL by re-sampling: per round, sample K answers per training question and grade them; with
    /// --method rft (rejection-sampling fine-tuning) fine-tune on the right ones (questions never
    /// right: "I do not know."), with --method reinforce train on every sample weighted by its
    /// reward minus its question's mean reward; evaluate held-out pass@1 and pass@K; stop when
    /// pass@1 stops improving. DIR/best.pt is the best round.
    Rl {
        /// The chat model to start from: a fine-tuning run directory (its best.pt) or a .pt checkpoint.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Training tasks (train.jsonl from `tasks`).
        #[arg(long)]
        tasks: PathBuf,
        /// Held-out tasks (val.jsonl from `tasks`).
        #[arg(long)]
        val: PathBuf,
        /// Samples per training question per round (and K of the held-out pass@K).
        #[arg(long, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        samples: usize,
        /// Output directory: rl.jsonl, best.pt, round-N/ (one fine-tuning run per round).
        #[arg(long)]
        out: PathBuf,
        /// Most rounds.
        #[arg(long, default_value_t = 5, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        rounds: usize,
        /// Sampling temperature.
        #[arg(long, default_value_t = 0.8, value_parser = parse_temp, allow_negative_numbers = true)]
        temp: f32,
        /// Random seed (same seed, same log on the CPU).
        #[arg(long, default_value_t = 1, value_parser = parse_count::<u64>, allow_negative_numbers = true)]
        seed: u64,
        /// Stop after this many rounds without a better held-out pass@1.
        #[arg(long, default_value_t = 2, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        patience: usize,
        /// rft: fine-tune on the right samples; reinforce: policy gradient on every sample, the
        /// question's mean reward as baseline.
        #[arg(long, default_value = "rft")]
        method: rl::Method,
        /// reinforce: the reward of "I do not know." to an answerable question (right: 1, wrong:
        /// 0); a question is worth answering where the model is right more often than this.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        idk_reward: f32,
        /// reinforce: scale of the negative advantages (1: REINFORCE; 0: train only on samples
        /// better than their question's mean).
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        negative_weight: f32,
        /// Training questions sampled per round, the next ones of a seeded shuffle (0: all).
        #[arg(long, default_value_t = 0, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        questions: usize,
        /// rft: leave questions never answered right out of the fine-tuning set (instead of
        /// training them to "I do not know."); reinforce: do not add "I do not know." to each
        /// question's samples.
        #[arg(long)]
        no_idk: bool,
        /// Right samples (of --samples) a question needs for its right answers to be trained on;
        /// fewer, and it counts as never right (1: train on every right answer).
        #[arg(long, default_value_t = 1, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        min_right: usize,
        /// rft: train on each question's most frequent right answer only (the first sampled of
        /// those tied) instead of every distinct one: where several answers are right, the
        /// model's most likely answer becomes one of them.
        #[arg(long)]
        one_right: bool,
        /// Also refuse where the model's samples disagree: fit the refusal rule of `chat-eval`'s
        /// refusal ceiling (by kind of question and by how many samples agree with the greedy
        /// answer) on each round's questions, giving up at most this share of their right greedy answers,
        /// and train (rft) "I do not know." on the questions it refuses.
        #[arg(long, allow_negative_numbers = true)]
        refusal_budget: Option<f64>,
        /// Fine-tuning configuration of each round (SFT TOML; default: the built-in SFT settings with
        /// max_iters = 200).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a fine-tuning key: --set key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Sampling threads (results do not depend on it).
        #[arg(long, default_value_t = 2, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        threads: usize,
        /// auto (CUDA when present), cpu or cuda (fine-tuning; sampling runs on the CPU).
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Search a space of configurations for the lowest validation loss: a Gaussian process with
    /// expected improvement (or random search), median pruning, a resumable SQLite study that
    /// several processes share; writes best.toml, history.svg and params.svg to --out.
    Tune {
        /// The base configuration (TOML, as for `train`).
        #[arg(long, required_unless_present = "show")]
        config: Option<PathBuf>,
        /// The search space (TOML: [params] and [constraints]; see trainer/README.md).
        #[arg(long, required_unless_present = "show")]
        space: Option<PathBuf>,
        /// Trials the study should hold in all (re-running resumes; more extends it).
        #[arg(long, required_unless_present = "show", value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        trials: Option<usize>,
        /// The study database (default: OUT/study.sqlite); share it to run processes side by side.
        #[arg(long)]
        study: Option<PathBuf>,
        /// gp (Gaussian process, expected improvement) or random.
        #[arg(long, default_value = "gp")]
        sampler: String,
        /// median (stop a trial worse than the median of complete trials at the same step) or none.
        #[arg(long, default_value = "median")]
        prune: String,
        /// Never prune at an evaluation before this step (the first evaluations rank shapes poorly).
        #[arg(long, default_value_t = 0, value_parser = parse_count::<u64>, allow_negative_numbers = true)]
        prune_after: u64,
        /// Seed of the sampler (the trials' own seed is the config's).
        #[arg(long, default_value_t = 0, value_parser = parse_count::<u64>, allow_negative_numbers = true)]
        seed: u64,
        /// Random trials before the GP takes over (default: twice the dimensions, 3 to 10).
        #[arg(long, value_parser = parse_count::<usize>, allow_negative_numbers = true)]
        startup: Option<usize>,
        /// auto, cpu, cuda or cuda:N (one process per GPU on a shared --study).
        #[arg(long, default_value = "auto")]
        device: String,
        /// Output directory: the study, trial-NNNN/ runs, best.toml, history.svg, params.svg.
        #[arg(long, required_unless_present = "show")]
        out: Option<PathBuf>,
        /// Print the trials of a study as a table, and do nothing else.
        #[arg(long, value_name = "FILE.sqlite", conflicts_with_all = ["config", "space", "trials", "out", "study"])]
        show: Option<PathBuf>,
    },
}

fn banner(device: tch::Device) {
    println!("{TRAINER_VERSION}: device {}, libtorch {LIBTORCH_VERSION}", train::device_name(device));
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Train { config, mut set, corpus, out, resume, device } => {
            // --corpus is one more override, applied before the configuration is validated (so a
            // configuration without a corpus accepts it); quoted as a TOML string.
            if let Some(c) = corpus {
                set.push(format!("corpus={}", toml::Value::String(c)));
            }
            let cfg = match (&config, resume, &out) {
                (Some(path), _, _) => TrainConfig::load(path, &set)?,
                (None, true, Some(dir)) => {
                    let ck = train::load_checkpoint(&dir.join("last.pt")).context("--resume")?;
                    ck.state.config.with_overrides(&set)?
                }
                (None, true, None) => bail!("--resume needs --out DIR (the run to continue)"),
                (None, false, _) => bail!("train needs --config FILE"),
            };
            let out = out.unwrap_or_else(|| Path::new("runs").join(&cfg.name));
            train::set_threads(cfg.threads);
            let dev = train::select_device(&device)?;
            banner(dev);
            let s = train::train(&cfg, &RunOptions { out: out.clone(), resume, device: dev, verbose: true })?;
            println!(
                "{}: {} steps; median {:.2} ms/iter, {:.0} tokens/s; best val loss {}; checkpoints in {}",
                s.reason,
                s.steps,
                s.median_ms_per_iter,
                s.tokens_per_s,
                s.best_val.map_or("-".into(), |v| format!("{v:.4}")),
                out.display()
            );
            if s.reason == "interrupted" {
                std::process::exit(130);
            }
            Ok(())
        }
        Cmd::Sft { checkpoint, data, val_data, config, mut set, corpus, out, skip_bad, resume, device } => {
            if let Some(c) = corpus {
                set.push(format!("corpus={}", toml::Value::String(c)));
            }
            // The tokenizer and context the data must fit: the run's own when resuming.
            let (cfg, tok, block, base) = if resume {
                let ck = train::load_checkpoint(&out.join("last.pt")).context("--resume")?;
                let origin = ck.state.sft.clone().with_context(|| {
                    format!("--resume: {} is not a fine-tuning run (continue it with `tinygpt-train train --resume`)", out.display())
                })?;
                let cfg = match &config {
                    Some(p) => SftConfig::load(p, &set)?,
                    None => origin.config.with_overrides(&set)?,
                };
                let tok = TextTokenizer::with_specials(ck.state.vocab.clone(), ck.state.specials.clone());
                (cfg, tok, ck.state.config.block_size as usize, checkpoint.unwrap_or_else(|| PathBuf::from(&origin.base)))
            } else {
                let base = checkpoint.context("sft needs --checkpoint BASE (a run directory, .pt or .tgpt file)")?;
                let cfg = match &config {
                    Some(p) => SftConfig::load(p, &set)?,
                    None => SftConfig::default().with_overrides(&set)?,
                };
                let (tok, block) = sft::base_tokenizer(&base)?;
                (cfg, tok, block, base)
            };
            let convs = sft::read_jsonl(&data, &tok, block, skip_bad)?;
            let (train_set, val_set) = match &val_data {
                Some(p) => (convs, sft::read_jsonl(p, &tok, block, skip_bad)?),
                None => sft::split_conversations(&convs, cfg.val_fraction, cfg.seed)?,
            };
            train::set_threads(cfg.threads);
            let dev = train::select_device(&device)?;
            banner(dev);
            let s = sft::finetune(&base, &train_set, &val_set, &cfg, &RunOptions { out: out.clone(), resume, device: dev, verbose: true })?;
            println!(
                "{}: {} steps; median {:.2} ms/iter, {:.0} tokens/s; best val loss {} (assistant tokens); checkpoints in {}",
                s.reason,
                s.steps,
                s.median_ms_per_iter,
                s.tokens_per_s,
                s.best_val.map_or("-".into(), |v| format!("{v:.4}")),
                out.display()
            );
            if s.reason == "interrupted" {
                std::process::exit(130);
            }
            Ok(())
        }
        Cmd::Export { checkpoint, dtype, out, group_size, eval_tokens, corpus, no_eval } => {
            let dtype = parse_dtype(&dtype)?;
            if group_size == 0 {
                bail!("--group-size must be at least 1");
            }
            if eval_tokens.is_some_and(|n| n < 2) {
                bail!("--eval-tokens must be at least 2 (one prediction needs two tokens)");
            }
            // Before the evaluation, which takes a while: can the file be written there?
            writer::check_writable(&out).with_context(|| format!("cannot write {}", out.display()))?;
            train::set_threads(0);
            let path = train::checkpoint_in(&checkpoint)?;
            let ck = train::load_checkpoint(&path)?;
            let (model, tok) = train::model_from_checkpoint(&ck, tch::Device::Cpu, false)?;
            let mut cfg = ck.state.config.clone();
            let mut meta = MetaData {
                name: cfg.name.clone(),
                corpus: String::new(),
                train_steps: ck.state.step,
                tokens_seen: ck.state.tokens_seen,
                val_loss_f32: None,
                val_loss_f16: None,
                val_loss_i8: None,
                trainer_version: TRAINER_VERSION.into(),
            };
            if let Some(c) = corpus {
                // Also for a run of the generated alphabet task: evaluate on the file given.
                cfg.corpus = c;
                cfg.alphabet_task = false;
            }
            println!("exporting {} (step {}) as {}", path.display(), ck.state.step, dtype.name());
            if !no_eval {
                let data = train::prepare_data(&cfg, Some(ck.state.vocab.clone()))
                    .context("reading the validation split (use --corpus PATH, or --no-eval)")?;
                meta.corpus = data.corpus_name.clone();
                let n = eval_tokens.unwrap_or(data.val.len()).clamp(2, data.val.len());
                let val = &data.val[..n];
                println!("validation: {n} of {} tokens (runtime eval_loss, windows of {})", data.val.len(), cfg.block_size);
                let tch_loss = tch::no_grad(|| train::eval_loss(&model, val, cfg.block_size as usize, 64));
                let l = export::losses_per_dtype(&model, &tok, &meta, group_size, val, &[DType::F32, DType::F16, DType::I8])?;
                meta.val_loss_f32 = l.f32.map(|v| v as f32);
                meta.val_loss_f16 = l.f16.map(|v| v as f32);
                meta.val_loss_i8 = l.i8.map(|v| v as f32);
                println!("val loss: tch {tch_loss:.4}; runtime f32 {:.4}, f16 {:.4}, int8 {:.4} (group {group_size})",
                    l.f32.unwrap_or(f64::NAN), l.f16.unwrap_or(f64::NAN), l.i8.unwrap_or(f64::NAN));
            } else {
                let (_, name) = train::corpus_text(&cfg).unwrap_or((String::new(), cfg.corpus.clone()));
                meta.corpus = name;
            }
            let bytes = export::encode(&model, &tok, &meta, dtype, group_size)?;
            let m = export::load(&bytes)?;
            writer::write_atomic(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} ({} bytes, {} parameters)", out.display(), bytes.len(), m.param_count());
            Ok(())
        }
        Cmd::Sample { checkpoint, prompt, n, temp, top_k, seed } => {
            train::set_threads(0);
            let path = train::checkpoint_in(&checkpoint)?;
            let ck = train::load_checkpoint(&path)?;
            let (model, tok) = train::model_from_checkpoint(&ck, tch::Device::Cpu, false)?;
            let ids = tok.encode(&prompt)?;
            if ids.is_empty() {
                bail!("the prompt is empty");
            }
            let bytes = export::encode(&model, &tok, &MetaData::default(), DType::F32, 64)?;
            let text = export::runtime_generate(&bytes, &ids, n, temp, top_k, seed)?;
            println!("{text}");
            Ok(())
        }
        Cmd::Tasks { out, seed, train, val, probe, unanswerable_frac, words, families, worked, frequent_words } => {
            if !(0.0..=1.0).contains(&unanswerable_frac) {
                bail!("--unanswerable-frac must be between 0 and 1 (got {unanswerable_frac})");
            }
            if train == 0 || val == 0 {
                bail!("--train and --val must be at least 1");
            }
            let mut cfg = TaskConfig { seed, train, val, probe, unanswerable_frac: unanswerable_frac as f64, ..TaskConfig::default() };
            for n in worked.iter().flat_map(|w| w.split(',')) {
                match tasks::Family::from_name(n.trim()) {
                    Some(f @ (tasks::Family::Alphabet | tasks::Family::Count | tasks::Family::Arithmetic)) => cfg.worked.push(f),
                    _ => bail!("--worked: {n:?} has no worked answers (expected alphabet, count or arithmetic)"),
                }
            }
            if frequent_words && words.is_none() {
                bail!("--frequent-words needs --words (the text whose words it counts)");
            }
            if let Some(path) = words {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read the word text {}", path.display()))?;
                cfg.words = tasks::words_of(&text);
                if frequent_words {
                    cfg.word_counts = tasks::word_counts_of(&text);
                }
                if cfg.words.len() < 4 {
                    bail!("{}: {} words of 3 to 8 letters, the backwards and counting questions need at least 4", path.display(), cfg.words.len());
                }
                println!("words: {} distinct, from {}", cfg.words.len(), path.display());
            }
            if let Some(names) = families {
                cfg.families = Vec::new();
                for n in &names {
                    match tasks::Family::from_name(n.trim()) {
                        Some(f) if f.answerable() => cfg.families.push(f),
                        _ => bail!(
                            "--families: unknown answerable family {n:?} (expected some of {})",
                            tasks::Family::ALL.iter().filter(|f| f.answerable()).map(|f| f.name()).collect::<Vec<_>>().join(", ")
                        ),
                    }
                }
            }
            tasks_cmd(&out, &cfg)
        }
        Cmd::ChatEval { model, tasks, before, out, samples, temp, seed, threads, plain } => {
            if threads == 0 {
                bail!("--threads must be at least 1");
            }
            let opts = EvalOptions { samples, temperature: temp, seed, threads };
            chat_eval_cmd(&model, &tasks, before.as_deref(), out.as_deref(), &opts, plain)
        }
        Cmd::Idk { model, tasks, samples, temp, seed, min_right, refusal_budget, out, threads } => idk_cmd(&model, &tasks, samples, min_right, refusal_budget, temp, seed, &out, threads),
        Cmd::Tune { config, space, trials, study, sampler, prune, prune_after, seed, startup, device, out, show } => {
            if let Some(path) = show {
                println!("{}", tune::show(&path)?);
                return Ok(());
            }
            let (Some(config), Some(space), Some(trials), Some(out)) = (config, space, trials, out) else {
                bail!("tune needs --config, --space, --trials and --out (or --show FILE)");
            };
            let sampler = tune::SamplerKind::parse(&sampler)?;
            let prune = match prune.as_str() {
                "median" => true,
                "none" => false,
                other => bail!("--prune {other:?}: expected median or none"),
            };
            if startup == Some(0) {
                bail!("--startup must be at least 1");
            }
            let dev = train::select_device(&device)?;
            banner(dev);
            let opts = tune::TuneOptions { config, space, trials, study, sampler, prune, prune_after, seed, device: dev, out: out.clone(), startup };
            let s = tune::tune(&opts, &mut |line| println!("{line}"))?;
            match s.best {
                Some((n, v)) => println!("best: trial {n}, val loss {v:.4}; {} trains it", out.join("best.toml").display()),
                None => println!("no trial has completed yet"),
            }
            if s.interrupted {
                println!("interrupted: run the same command again to continue the study");
                std::process::exit(130);
            }
            Ok(())
        }
        Cmd::Rl { checkpoint, tasks, val, samples, out, rounds, temp, seed, patience, method, idk_reward, negative_weight, questions, no_idk, min_right, refusal_budget, one_right, config, set, threads, device } => {
            let cfg = RlConfig { method, idk_reward, negative_weight, questions, samples, rounds, temperature: temp, seed, patience, idk: !no_idk, min_right, refusal_budget, one_right, threads };
            rl_cmd(RlArgs { checkpoint, tasks, val, out, config, set, device }, cfg)
        }
    }
}

fn tasks_cmd(out: &Path, cfg: &TaskConfig) -> Result<()> {
    if !out.is_dir() {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let set = tasks::generate(cfg)?;
    tasks::write_tasks(&out.join("train.jsonl"), &set.train)?;
    tasks::write_tasks(&out.join("val.jsonl"), &set.val)?;
    if !set.probe.is_empty() {
        tasks::write_tasks(&out.join("probe.jsonl"), &set.probe)?;
    }
    for (name, split) in [("train", &set.train), ("val", &set.val), ("probe", &set.probe)] {
        if split.is_empty() {
            continue;
        }
        let c = tasks::counts(split);
        let per: Vec<String> = c.iter().map(|(f, n)| format!("{f} {n}")).collect();
        println!("{name}: {} questions ({})", split.len(), per.join(", "));
    }
    let files = if set.probe.is_empty() { "train.jsonl and val.jsonl" } else { "train.jsonl, val.jsonl and probe.jsonl" };
    println!("wrote {files} in {}", out.display());
    Ok(())
}

fn chat_eval_cmd(model: &Path, tasks_path: &Path, before: Option<&Path>, out: Option<&Path>, opts: &EvalOptions, plain: bool) -> Result<()> {
    let answerer = RuntimeAnswerer::from_file(model, plain)?;
    let tasks = tasks::read_tasks(tasks_path)?;
    let before = before.map(evalchat::read_report).transpose()?;
    if let Some(o) = out {
        writer::check_writable(o).with_context(|| format!("cannot write {}", o.display()))?;
    }
    let t0 = std::time::Instant::now();
    let (summary, questions) = evalchat::evaluate(&answerer, &tasks, opts, before.as_ref().map(|b| &b.questions[..]))?;
    if before.is_some() && summary.over_conservative.is_none() {
        eprintln!("warning: the --before evaluation shares no question with {}", tasks_path.display());
    }
    println!("{}: {} questions in {:.1} s", model.display(), tasks.len(), t0.elapsed().as_secs_f64());
    println!("{}", evalchat::table(&summary, opts.samples));
    if let Some(o) = out {
        let report = EvalReport {
            model: model.display().to_string(),
            tasks: tasks_path.display().to_string(),
            samples: opts.samples,
            temperature: opts.temperature,
            seed: opts.seed,
            summary,
            questions,
        };
        evalchat::write_report(o, &report)?;
        println!("wrote {}", o.display());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn idk_cmd(model: &Path, tasks_path: &Path, samples: usize, min_right: usize, refusal_budget: Option<f64>, temp: f32, seed: u64, out: &Path, threads: usize) -> Result<()> {
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    rl::check_min_right(min_right, samples)?;
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let answerer = RuntimeAnswerer::from_file(model, false)?;
    let tasks = tasks::read_tasks(tasks_path)?;
    writer::check_writable(out).with_context(|| format!("cannot write {}", out.display()))?;
    let t0 = std::time::Instant::now();
    let (relabelled, counts) = rl::relabel_unknown(&answerer, &tasks, samples, min_right, refusal_budget, temp, seed, threads)?;
    println!("{}: {} questions x {samples} samples at temperature {temp} in {:.1} s", model.display(), tasks.len(), t0.elapsed().as_secs_f64());
    println!("{:<12} {:>6} {:>12}", "family", "kept", "relabelled");
    for (f, kept, relabelled) in &counts {
        println!("{:<12} {:>6} {:>12}", f.name(), kept, relabelled);
    }
    tasks::write_tasks(out, &relabelled)?;
    println!("wrote {}", out.display());
    Ok(())
}

struct RlArgs {
    checkpoint: PathBuf,
    tasks: PathBuf,
    val: PathBuf,
    out: PathBuf,
    config: Option<PathBuf>,
    set: Vec<String>,
    device: String,
}

fn rl_cmd(a: RlArgs, cfg: RlConfig) -> Result<()> {
    if cfg.samples == 0 {
        bail!("--samples must be at least 1");
    }
    if cfg.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if cfg.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if cfg.patience == 0 {
        bail!("--patience must be at least 1");
    }
    rl::check_min_right(cfg.min_right, cfg.samples)?;
    rl::check_refusal_budget(&cfg)?;
    if !cfg.idk_reward.is_finite() || !(-1.0..=1.0).contains(&cfg.idk_reward) {
        bail!("--idk-reward must be between -1 and 1 (a right answer earns 1), not {}", cfg.idk_reward);
    }
    if !cfg.negative_weight.is_finite() || !(0.0..=1.0).contains(&cfg.negative_weight) {
        bail!("--negative-weight must be between 0 and 1, not {}", cfg.negative_weight);
    }
    if cfg.method == rl::Method::Reinforce && cfg.samples < 2 {
        bail!("--method reinforce needs --samples of at least 2 (the baseline is the mean of a question's samples)");
    }
    let mut sets = vec!["max_iters=200".to_string()];
    sets.extend(a.set.iter().cloned());
    let sft_cfg = match &a.config {
        Some(p) => SftConfig::load(p, &a.set)?,
        None => SftConfig::default().with_overrides(&sets)?,
    };
    let train_tasks = tasks::read_tasks(&a.tasks)?;
    let val_tasks = tasks::read_tasks(&a.val)?;
    if a.checkpoint.extension().is_some_and(|e| e == "tgpt") {
        bail!("--checkpoint {} is a .tgpt file: rl needs the fine-tuning run (its directory or a .pt checkpoint)", a.checkpoint.display());
    }
    if !a.checkpoint.exists() {
        bail!("--checkpoint {} does not exist", a.checkpoint.display());
    }
    let start = train::checkpoint_in(&a.checkpoint)?;
    if a.out.join("rl.jsonl").exists() {
        bail!("{} already holds an RL run (rl.jsonl): choose another --out", a.out.display());
    }
    train::set_threads(sft_cfg.threads);
    let dev = train::select_device(&a.device)?;
    banner(dev);
    let policy = SftPolicy { cfg: sft_cfg, device: dev, verbose: false };
    println!(
        "rl: {} from {}; {} training ({} a round) / {} held-out questions, {} samples at temperature {}, up to {} rounds (patience {})",
        match cfg.method {
            rl::Method::Reinforce => format!(
                "REINFORCE, group-mean baseline, negative advantages x{}, \"I do not know.\" rewarded {}{}",
                cfg.negative_weight,
                cfg.idk_reward,
                if cfg.idk { " and added to every question's samples" } else { "" }
            ),
            rl::Method::Rft => format!(
                "rejection sampling on {}, never-right questions{} {}",
                if cfg.one_right { "each question's most frequent right answer" } else { "every distinct right answer" },
                match cfg.refusal_budget {
                    Some(b) => format!(" and those the refusal rule refuses (budget {b})"),
                    None => String::new(),
                },
                if cfg.idk { "trained to \"I do not know.\"" } else { "left out" }
            ),
        },
        start.display(),
        train_tasks.len(),
        if cfg.questions == 0 || cfg.questions >= train_tasks.len() { train_tasks.len() } else { cfg.questions },
        val_tasks.len(),
        cfg.samples,
        cfg.temperature,
        cfg.rounds,
        cfg.patience
    );
    let (k, m) = (cfg.samples, cfg.method);
    let s = rl::run(&policy, &start, &train_tasks, &val_tasks, &cfg, &a.out, |r| println!("{}", rl::progress_line(r, k, m)))?;
    let best = &s.rounds[s.best_round];
    println!(
        "{}: best round {} (held-out pass@1 {:.1}%, pass@{k} {:.1}%); {} holds its checkpoint, {} the log",
        s.reason,
        s.best_round,
        100.0 * best.val_pass1.value,
        100.0 * best.val_pass_k.value,
        a.out.join("best.pt").display(),
        a.out.join("rl.jsonl").display()
    );
    Ok(())
}

const ERROR: &str = "tinygpt-train: error: ";

fn main() -> ExitCode {
    // A closed stdout (`tinygpt-train chat-eval ... | head`) ends the program quietly, as it does
    // other Unix tools, instead of failing a print; files are written atomically, so nothing
    // half-written is left behind.
    // SAFETY: setting a signal's disposition to its default is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    report::install_panic_hook("tinygpt-train", ERROR);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return report::report_usage_error(e, "tinygpt-train", ERROR),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report::error_line(ERROR, &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

