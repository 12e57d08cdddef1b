//! The training loop: batches, AdamW, schedule, evaluation, checkpoints, logs, samples.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};
use tinygpt_runtime::writer::MetaData;
use tinygpt_runtime::DType;

use crate::config::TrainConfig;
use crate::data::{self, TextTokenizer, Vocab};
use crate::export;
use crate::model::{Gpt, ModelDims};
use crate::optim::AdamW;
use crate::plot;

/// Version string stored in checkpoints and exported files.
pub const TRAINER_VERSION: &str = concat!("tinygpt-train ", env!("CARGO_PKG_VERSION"));
/// libtorch version the trainer was built against.
pub const LIBTORCH_VERSION: &str = env!("TINYGPT_LIBTORCH_VERSION");

/// Picks the device: `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`. For `auto` and `cuda`, first
/// loads libtorch's CUDA library (see [`crate::cuda`]).
pub fn select_device(choice: &str) -> Result<Device> {
    match choice {
        "auto" => {
            let _ = crate::cuda::load();
            Ok(Device::cuda_if_available())
        }
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if let Err(why) = crate::cuda::load() {
                bail!(
                    "--device cuda: libtorch's CUDA library does not load ({why}); a CPU-only install lacks the CUDA libraries: run tools/setup-libtorch.sh --cuda, or use --device cpu"
                )
            }
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                bail!("--device cuda: libtorch's CUDA library is loaded but sees no GPU (driver or device missing); use --device cpu")
            }
        }
        other => {
            let Some(index) = other.strip_prefix("cuda:") else {
                bail!("unknown device {other:?}: expected auto, cpu, cuda or cuda:N");
            };
            let i: usize = index.parse().map_err(|_| anyhow!("--device {other}: N in cuda:N must be a GPU number (0, 1, ...)"))?;
            if let Err(why) = crate::cuda::load() {
                bail!("--device {other}: libtorch's CUDA library does not load ({why}); use --device cpu")
            }
            let n = tch::Cuda::device_count().max(0) as usize;
            if i >= n {
                bail!("--device {other}: libtorch sees {n} GPU(s) (numbered from 0)");
            }
            Ok(Device::Cuda(i))
        }
    }
}

/// Whether `precision = "auto"` should use bf16 on `device`: a GPU with native bf16 (compute
/// capability 8.0, Ampere, or newer; older GPUs emulate it, slower than f32) where a bf16 matmul
/// runs and gives the right answer.
pub fn bf16_works(device: Device) -> bool {
    if let Device::Cuda(i) = device {
        if crate::cuda::compute_capability(i as i32).is_some_and(|(major, _)| major < 8) {
            return false;
        }
    }
    let a = Tensor::ones([8, 8], (Kind::BFloat16, device));
    a.f_matmul(&a).and_then(|c| c.f_to_kind(Kind::Float)).and_then(|c| c.f_double_value(&[0, 0])).is_ok_and(|v| v == 8.0)
}

/// Sets libtorch's CPU thread count (0: all available cores); returns it.
pub fn set_threads(n: u32) -> i32 {
    let n = if n == 0 { std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1) } else { n };
    tch::set_num_threads(n as i32);
    n as i32
}

/// Describes the device for the start-up line.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(i) => {
            let cc = crate::cuda::compute_capability(i as i32).map_or(String::new(), |(a, b)| format!(", compute capability {a}.{b}"));
            format!("cuda:{i} ({} device(s){cc})", tch::Cuda::device_count())
        }
        other => format!("{other:?}"),
    }
}

/// Everything a checkpoint stores besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub trainer_version: String,
    pub config: TrainConfig,
    pub vocab: Vocab,
    /// Special tokens after the regular vocabulary (a chat model's four; none in a base run).
    #[serde(default)]
    pub specials: Vec<String>,
    /// What a supervised fine-tuning run started from (none for `train` runs).
    #[serde(default)]
    pub sft: Option<crate::sft::SftOrigin>,
    /// Completed optimizer steps.
    pub step: u64,
    pub tokens_seen: u64,
    pub best_val: Option<f64>,
    pub best_step: u64,
    pub last_val: Option<f64>,
    pub evals_since_best: u32,
    /// Learning-rate multiplier from reduce-on-plateau.
    pub lr_scale: f64,
}

/// A checkpoint read from disk.
pub struct Checkpoint {
    pub state: TrainState,
    pub tensors: HashMap<String, Tensor>,
}

const STATE_KEY: &str = "state_json";

fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes a checkpoint atomically (temporary file, fsync, rename).
pub fn save_checkpoint(path: &Path, state: &TrainState, model: &Gpt, opt: &AdamW) -> Result<()> {
    let json = serde_json::to_vec(state)?;
    let mut named: Vec<(String, Tensor)> = Vec::new();
    named.push((STATE_KEY.into(), Tensor::from_slice(&json)));
    for (name, t) in model.named_params() {
        named.push((format!("model.{name}"), t.to_device(Device::Cpu)));
    }
    for (name, m, v) in opt.named_state() {
        named.push((format!("adam_m.{name}"), m.to_device(Device::Cpu)));
        named.push((format!("adam_v.{name}"), v.to_device(Device::Cpu)));
    }
    let tmp = tmp_path(path);
    let result = (|| -> Result<()> {
        Tensor::save_multi(&named, &tmp).map_err(|e| anyhow!("{}", torch_message(&e)))?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write checkpoint {}", path.display()))
}

/// The first line of a libtorch error: the message, without the C++ stack libtorch appends.
pub fn torch_message(e: &tch::TchError) -> String {
    let text = e.to_string();
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("libtorch error");
    first.trim_start_matches("Internal torch error: ").to_owned()
}

/// Reads a checkpoint file.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    if !path.exists() {
        bail!("no checkpoint at {}", path.display());
    }
    let list = Tensor::load_multi(path).map_err(|e| {
        anyhow!("cannot read checkpoint {}: not a checkpoint file, or damaged ({})", path.display(), torch_message(&e))
    })?;
    let mut tensors: HashMap<String, Tensor> = list.into_iter().collect();
    let json = tensors.remove(STATE_KEY).with_context(|| format!("{} is not a tinygpt checkpoint", path.display()))?;
    let bytes = Vec::<u8>::try_from(&json).map_err(|e| anyhow!("{} is not a tinygpt checkpoint: {}", path.display(), torch_message(&e)))?;
    let state: TrainState =
        serde_json::from_slice(&bytes).with_context(|| format!("checkpoint {} has an unreadable state", path.display()))?;
    Ok(Checkpoint { state, tensors })
}

/// The checkpoint file to export or sample from in a run directory: `best.pt`, else `last.pt`.
pub fn checkpoint_in(dir: &Path) -> Result<PathBuf> {
    if dir.is_file() {
        return Ok(dir.to_path_buf());
    }
    for name in ["best.pt", "last.pt"] {
        let p = dir.join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("no checkpoint in {} (expected best.pt or last.pt from `tinygpt-train train --out {}`)", dir.display(), dir.display())
}

pub(crate) fn copy_into(dst: &Tensor, src: &Tensor, name: &str) -> Result<()> {
    if dst.size() != src.size() {
        bail!("checkpoint tensor {name} has shape {:?}, the model needs {:?}", src.size(), dst.size());
    }
    tch::no_grad(|| {
        let mut d = dst.shallow_clone();
        d.copy_(&src.to_kind(dst.kind()).to_device(dst.device()));
    });
    Ok(())
}

/// Builds the model of a checkpoint on `device`.
pub fn model_from_checkpoint(ck: &Checkpoint, device: Device, bf16: bool) -> Result<(Gpt, TextTokenizer)> {
    let tok = TextTokenizer::with_specials(ck.state.vocab.clone(), ck.state.specials.clone());
    let dims = ModelDims::new(&ck.state.config, tok.vocab_size());
    let model = Gpt::new(dims, device, bf16)?;
    for (name, t) in model.named_params() {
        let src = ck.tensors.get(&format!("model.{name}")).with_context(|| format!("checkpoint lacks tensor {name}"))?;
        copy_into(&t, src, &name)?;
    }
    Ok((model, tok))
}

/// Corpus text of a configuration (the generated alphabet task, or the file).
pub fn corpus_text(cfg: &TrainConfig) -> Result<(String, String)> {
    if cfg.alphabet_task {
        Ok((data::alphabet_corpus(2000), "alphabet task (generated)".into()))
    } else {
        let p = Path::new(&cfg.corpus);
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| cfg.corpus.clone());
        Ok((data::read_corpus(p)?, name))
    }
}

/// Tokenized data of a run.
pub struct Prepared {
    pub tok: TextTokenizer,
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub corpus_name: String,
}

/// Reads the corpus, builds (or reuses) the tokenizer, encodes and splits.
pub fn prepare_data(cfg: &TrainConfig, vocab: Option<Vocab>) -> Result<Prepared> {
    let (text, corpus_name) = corpus_text(cfg)?;
    let tok = match vocab {
        Some(v) => TextTokenizer::new(v),
        None if cfg.tokenizer == "bpe" => {
            // Train on the training part only, so validation text stays unseen.
            let mut cut = ((text.len() as f64) * (1.0 - cfg.val_fraction)) as usize;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            TextTokenizer::train_bpe(&text[..cut], cfg.bpe_vocab_size)?
        }
        None => TextTokenizer::train_char(&text),
    };
    let ids = tok.encode(&text).context("the corpus does not encode with the checkpoint's tokenizer")?;
    let (train, val) = data::split(&ids, cfg.val_fraction, cfg.block_size as usize)?;
    Ok(Prepared { tok, train, val, corpus_name })
}

/// splitmix64: batch offsets come from (seed, step, micro-step) alone, so a resumed run draws the
/// same batches as an uninterrupted one without saving any generator state.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A training batch `(inputs, targets)`, both `[batch, block]`, on the CPU.
pub fn get_batch(data: &Tensor, n: usize, block: usize, batch: usize, seed: u64, step: u64, micro: u32) -> (Tensor, Tensor) {
    let mut s = mix(seed ^ mix(step.wrapping_mul(0x1000_0000_01B3) ^ micro as u64));
    let span = (n - block) as u64;
    let offsets: Vec<i64> = (0..batch)
        .map(|_| {
            s = mix(s);
            (s % span) as i64
        })
        .collect();
    let idx = Tensor::from_slice(&offsets).view([batch as i64, 1])
        + Tensor::arange(block as i64, (Kind::Int64, Device::Cpu)).view([1, block as i64]);
    let x = data.index_select(0, &idx.view([-1])).view([batch as i64, block as i64]);
    let y = data.index_select(0, &(idx + 1).view([-1])).view([batch as i64, block as i64]);
    (x, y)
}

/// Mean cross-entropy over `tokens` with the runtime's `eval_loss` definition: consecutive windows
/// of `ctx` inputs, each predicting the next token at every position (every token but the first is
/// predicted once).
pub fn eval_loss(model: &Gpt, tokens: &[u32], ctx: usize, batch: usize) -> f64 {
    let n = tokens.len();
    if n < 2 {
        return f64::NAN;
    }
    let device = model.vs.device();
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let data = Tensor::from_slice(&ids);
    let v = model.dims.vocab_size;
    let sum_ce = |inp: Tensor, tgt: Tensor| -> f64 {
        let logits = model.forward(&inp.to_device(device), false);
        logits
            .view([-1, v])
            .cross_entropy_loss::<Tensor>(&tgt.to_device(device).view([-1]), None, Reduction::Sum, -100, 0.0)
            .double_value(&[])
    };
    tch::no_grad(|| {
        let full = (n - 1) / ctx;
        let mut sum = 0.0;
        let mut w = 0;
        while w < full {
            let cnt = (full - w).min(batch);
            let start = (w * ctx) as i64;
            let len = (cnt * ctx) as i64;
            let inp = data.narrow(0, start, len).view([cnt as i64, ctx as i64]);
            let tgt = data.narrow(0, start + 1, len).view([cnt as i64, ctx as i64]);
            sum += sum_ce(inp, tgt);
            w += cnt;
        }
        let start = full * ctx;
        if start + 1 < n {
            let len = (n - 1 - start) as i64;
            sum += sum_ce(data.narrow(0, start as i64, len).view([1, len]), data.narrow(0, start as i64 + 1, len).view([1, len]));
        }
        sum / (n - 1) as f64
    })
}

static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<bool> = OnceLock::new();

fn install_ctrlc() {
    HANDLER.get_or_init(|| ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)).is_ok());
}

/// Whether Ctrl-C was pressed since the last run started (for callers that run one after another).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Options of `tinygpt-train train` (and `sft`) besides the configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub device: Device,
    /// Print the progress bar and samples (off in tests).
    pub verbose: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps: u64,
    /// `(step, train loss)` for every step of this invocation.
    pub train_losses: Vec<(u64, f64)>,
    /// `(step, val loss)` for every evaluation of this invocation.
    pub val_losses: Vec<(u64, f64)>,
    pub best_val: Option<f64>,
    pub median_ms_per_iter: f64,
    pub tokens_per_s: f64,
    /// Why it stopped: `finished`, `early stop`, `paused`, `interrupted`, `pruned`.
    pub reason: String,
    pub params: i64,
}

#[derive(Serialize, Deserialize)]
struct LogRow {
    step: u64,
    split: String,
    loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ms_per_iter: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    tokens_per_s: Option<f64>,
}

fn read_log(path: &Path) -> Vec<LogRow> {
    fs::read_to_string(path)
        .map(|s| s.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

/// Redraws `loss.svg` from the log (best effort: a plot that cannot be written never stops a run).
fn write_plot(out: &Path, log_path: &Path) {
    let points: Vec<(u64, bool, f64)> = read_log(log_path).iter().map(|r| (r.step, r.split == "val", r.loss)).collect();
    if !points.is_empty() {
        let _ = plot::write_loss_svg(&out.join("loss.svg"), &points);
    }
}

fn note(pb: &ProgressBar, verbose: bool, msg: &str) {
    if !verbose {
        return;
    }
    if pb.is_hidden() {
        eprintln!("{msg}");
    } else {
        pb.println(msg);
    }
}

/// The median of `v` (sorted in place; NaN when empty).
pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// What `--resume` may not change: the model's shape and the data it was trained on.
pub(crate) fn check_resume(saved: &TrainState, cfg: &TrainConfig) -> Result<()> {
    let (a, b) = (&saved.config, cfg);
    let fixed: [(&str, String, String); 11] = [
        ("arch", a.arch.clone(), b.arch.clone()),
        ("n_layer", a.n_layer.to_string(), b.n_layer.to_string()),
        ("n_head", a.n_head.to_string(), b.n_head.to_string()),
        ("n_kv_head", a.kv_heads().to_string(), b.kv_heads().to_string()),
        ("n_embd", a.n_embd.to_string(), b.n_embd.to_string()),
        ("n_hidden", a.hidden().to_string(), b.hidden().to_string()),
        ("block_size", a.block_size.to_string(), b.block_size.to_string()),
        ("tie_embeddings", a.tie_embeddings.to_string(), b.tie_embeddings.to_string()),
        ("tokenizer", a.tokenizer.clone(), b.tokenizer.clone()),
        ("bpe_vocab_size", a.bpe_vocab_size.to_string(), b.bpe_vocab_size.to_string()),
        ("val_fraction", a.val_fraction.to_string(), b.val_fraction.to_string()),
    ];
    for (key, was, now) in fixed {
        if was != now {
            bail!("--resume: `{key}` cannot change ({was} in the checkpoint, {now} now): the model and its data depend on it");
        }
    }
    if a.alphabet_task != b.alphabet_task {
        bail!("--resume: `alphabet_task` cannot change (the checkpoint trained on {})", if a.alphabet_task { "the alphabet task" } else { "a corpus" });
    }
    if cfg.max_iters <= saved.step {
        bail!("--resume: the checkpoint is at step {}; set max_iters above it to train further (it is {})", saved.step, cfg.max_iters);
    }
    Ok(())
}

/// Removes temporary checkpoint files a killed run left behind (`.best.pt.PID.tmp`).
pub(crate) fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with(".best.pt.") || name.starts_with(".last.pt.")) && name.ends_with(".tmp") {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// One micro-batch: inputs and targets `[batch, time]` on the CPU (targets of -100 are not
/// predicted), the number of tokens it trains on (for the token counts and rates), and the
/// rows' weights in the loss (`[batch]`; `None`: every row weighs 1).
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    pub tokens: u64,
    pub weights: Option<Tensor>,
}

/// Where the training loop takes its data from: a corpus of text (`train`) or conversations
/// (`sft`). Batches depend on `(step, micro)` alone, so a resumed run sees the batches an
/// uninterrupted one would have.
pub trait Batches {
    /// Micro-batch `micro` of optimizer step `step`.
    fn batch(&self, step: u64, micro: u32) -> Batch;
    /// The validation loss of `model` (mean cross-entropy per predicted token).
    fn val_loss(&self, model: &Gpt) -> f64;
}

/// Random windows of a token stream; validation on the held-out stream with [`eval_loss`].
pub struct TextBatches {
    data: Tensor,
    n: usize,
    val: Vec<u32>,
    block: usize,
    batch: usize,
    eval_batch: usize,
    seed: u64,
}

impl TextBatches {
    /// Windows of `cfg.block_size` from `train`, `cfg.batch_size` at a time.
    pub fn new(cfg: &TrainConfig, train: &[u32], val: &[u32]) -> Self {
        let ids: Vec<i64> = train.iter().map(|&t| t as i64).collect();
        TextBatches {
            data: Tensor::from_slice(&ids),
            n: train.len(),
            val: val.to_vec(),
            block: cfg.block_size as usize,
            batch: cfg.batch_size as usize,
            eval_batch: cfg.eval_batch as usize,
            seed: cfg.seed,
        }
    }
}

impl Batches for TextBatches {
    fn batch(&self, step: u64, micro: u32) -> Batch {
        let (inputs, targets) = get_batch(&self.data, self.n, self.block, self.batch, self.seed, step, micro);
        Batch { inputs, targets, tokens: (self.batch * self.block) as u64, weights: None }
    }

    fn val_loss(&self, model: &Gpt) -> f64 {
        eval_loss(model, &self.val, self.block, self.eval_batch)
    }
}

/// A sample written at each evaluation (verbose runs): text from the model as it is.
pub type Sampler<'a> = &'a dyn Fn(&Gpt, &TrainState) -> Result<String>;

/// Called after each evaluation with `(step, validation loss)`; `true` stops the run there
/// (`tune`'s pruning: the run ends with reason `pruned`).
pub type EvalHook<'a> = &'a mut dyn FnMut(u64, f64) -> Result<bool>;

/// Trains (or resumes) a run.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary> {
    train_with_hook(cfg, opts, None)
}

/// [`train`], with `on_eval` told of every evaluation (and able to stop the run).
pub fn train_with_hook(cfg: &TrainConfig, opts: &RunOptions, on_eval: Option<EvalHook<'_>>) -> Result<RunSummary> {
    fs::create_dir_all(&opts.out).with_context(|| format!("cannot create output directory {}", opts.out.display()))?;
    let last_path = opts.out.join("last.pt");

    let resumed = if opts.resume { Some(load_checkpoint(&last_path).context("--resume")?) } else { None };
    if !opts.resume && last_path.exists() {
        bail!(
            "{} already holds a run: pass --resume to continue it or choose another --out",
            opts.out.display()
        );
    }
    if let Some(ck) = &resumed {
        if ck.state.sft.is_some() {
            bail!("--resume: {} is a fine-tuning run; continue it with `tinygpt-train sft --resume`", opts.out.display());
        }
        check_resume(&ck.state, cfg)?;
    }
    remove_stale_temporaries(&opts.out);
    let vocab = resumed.as_ref().map(|c| c.state.vocab.clone());
    let data = prepare_data(cfg, vocab)?;
    let device = opts.device;
    let bf16 = cfg.precision == "bf16" || (cfg.precision == "auto" && device.is_cuda() && bf16_works(device));

    tch::manual_seed(cfg.seed as i64);
    let dims = ModelDims::new(cfg, data.tok.vocab_size());
    let model = Gpt::new(dims, device, bf16)?;
    if resumed.is_none() && !cfg.init.is_empty() {
        init_from(&model, &data.tok, cfg)?;
    }
    let mut opt = AdamW::new(&model, cfg.beta1, cfg.beta2, 1e-8, cfg.weight_decay);
    let mut state = TrainState {
        trainer_version: TRAINER_VERSION.into(),
        config: cfg.clone(),
        vocab: data.tok.vocab().clone(),
        specials: Vec::new(),
        sft: None,
        step: 0,
        tokens_seen: 0,
        best_val: None,
        best_step: 0,
        last_val: None,
        evals_since_best: 0,
        lr_scale: 1.0,
    };
    if let Some(ck) = &resumed {
        for (name, t) in model.named_params() {
            let src = ck.tensors.get(&format!("model.{name}")).with_context(|| format!("checkpoint lacks tensor {name}"))?;
            copy_into(&t, src, &name)?;
        }
        opt.load(&ck.tensors, ck.state.step)?;
        let keep_cfg = state.config.clone();
        state = ck.state.clone();
        state.config = keep_cfg;
    }

    if opts.verbose {
        println!(
            "model: {} {} layers, {} heads ({} kv), {} wide, hidden {}, block {}, vocab {} ({}): {} parameters; {}",
            cfg.arch, cfg.n_layer, cfg.n_head, cfg.kv_heads(), cfg.n_embd, cfg.hidden(), cfg.block_size,
            data.tok.vocab_size(), cfg.tokenizer, model.param_count(),
            if bf16 { "bf16 matmuls and attention" } else { "f32" }
        );
        println!(
            "data: {}: {} train / {} val tokens{}",
            data.corpus_name,
            data.train.len(),
            data.val.len(),
            if opts.resume { format!("; resuming at step {}", state.step) } else { String::new() }
        );
    }

    let meta = |state: &TrainState| MetaData {
        name: cfg.name.clone(),
        corpus: data.corpus_name.clone(),
        train_steps: state.step,
        tokens_seen: state.tokens_seen,
        val_loss_f32: None,
        val_loss_f16: None,
        val_loss_i8: None,
        trainer_version: TRAINER_VERSION.into(),
    };
    // The default prompt, a newline, falls back to the first validation token where the
    // vocabulary lacks it; a prompt the configuration sets must encode.
    let sample_prompt = match data.tok.encode(&cfg.sample_prompt) {
        Ok(p) if !p.is_empty() => p,
        Err(e) if cfg.sample_tokens > 0 && cfg.sample_prompt != "\n" => bail!("sample_prompt: {e:#}"),
        _ => vec![data.val[0]],
    };
    let sample = |model: &Gpt, state: &TrainState| -> Result<String> {
        let bytes = export::encode(model, &data.tok, &meta(state), DType::F32, 64)?;
        export::runtime_generate(&bytes, &sample_prompt, cfg.sample_tokens as usize, cfg.sample_temperature as f32, cfg.sample_top_k, cfg.seed)
    };
    let source = TextBatches::new(cfg, &data.train, &data.val);
    run_loop(cfg, opts, &model, &mut opt, state, &source, (cfg.sample_tokens > 0).then_some(&sample as Sampler), on_eval)
}

/// Copies the weights of `cfg.init` (a run, a `.pt` or a `.tgpt`) into a fresh `model`, which must
/// have its shape and vocabulary.
fn init_from(model: &Gpt, tok: &TextTokenizer, cfg: &TrainConfig) -> Result<()> {
    let path = std::path::Path::new(&cfg.init);
    let base = crate::sft::load_base(path).with_context(|| format!("init = {:?}", cfg.init))?;
    let b = &base.config;
    let shape = |c: &TrainConfig| (c.arch.clone(), c.n_layer, c.n_head, c.kv_heads(), c.n_embd, c.hidden(), c.block_size, c.tie_embeddings);
    if shape(b) != shape(cfg) {
        bail!(
            "init = {:?}: its shape (arch, layers, heads, kv heads, width, hidden, block, tied) {:?} is not this run's {:?}",
            cfg.init, shape(b), shape(cfg)
        );
    }
    if base.tok.vocab() != tok.vocab() || !base.tok.specials().is_empty() {
        bail!("init = {:?}: its vocabulary ({} tokens) is not the one of this run's corpus ({} tokens)", cfg.init, base.tok.vocab_size(), tok.vocab_size());
    }
    for (name, t) in model.named_params() {
        let src = base.weights.get(&name).with_context(|| format!("init = {:?} lacks tensor {name}", cfg.init))?;
        copy_into(&t, &src.to_device(t.device()), &name)?;
    }
    Ok(())
}

/// The training loop both `train` and `sft` run: steps of AdamW on `data`'s batches under `cfg`'s
/// schedule from `state` on, evaluation every `eval_interval` steps, `log.jsonl`, `loss.svg`,
/// atomic checkpoints (`last.pt` at each evaluation, `best.pt` at each new best), early stop,
/// reduce-on-plateau, `stop_at` pauses and Ctrl-C (the checkpoint is saved, then it returns).
/// With `opts.resume`, the log rows up to `state.step` are kept. `on_eval` hears of every
/// evaluation, after its checkpoints are saved, and may stop the run (reason `pruned`).
#[allow(clippy::too_many_arguments)]
pub fn run_loop(
    cfg: &TrainConfig,
    opts: &RunOptions,
    model: &Gpt,
    opt: &mut AdamW,
    mut state: TrainState,
    data: &dyn Batches,
    sample: Option<Sampler<'_>>,
    mut on_eval: Option<EvalHook<'_>>,
) -> Result<RunSummary> {
    let last_path = opts.out.join("last.pt");
    let best_path = opts.out.join("best.pt");
    let log_path = opts.out.join("log.jsonl");
    let device = opts.device;
    // Keep the log consistent with the checkpoint: drop rows written after it. The rows kept are
    // copied as they were written, not re-serialized.
    let kept: Vec<String> = if opts.resume {
        fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<LogRow>(l).is_ok_and(|r| r.step <= state.step))
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    {
        let mut f = fs::File::create(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
        for l in &kept {
            writeln!(f, "{l}")?;
        }
    }
    let mut log = fs::OpenOptions::new().append(true).open(&log_path)?;

    install_ctrlc();
    STOP.store(false, Ordering::SeqCst);

    let accum = cfg.grad_accum;
    let params_list: Vec<Tensor> = model.named_params().into_iter().map(|(_, t)| t).collect();

    let pb = if opts.verbose { ProgressBar::new(cfg.max_iters) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_position(state.step);

    let mut summary = RunSummary {
        steps: state.step,
        train_losses: Vec::new(),
        val_losses: Vec::new(),
        best_val: state.best_val,
        median_ms_per_iter: f64::NAN,
        tokens_per_s: f64::NAN,
        reason: "finished".into(),
        params: model.param_count(),
    };
    let mut iter_ms: Vec<f64> = Vec::new();
    let mut window_start = Instant::now();
    let mut window_iters = 0u64;
    let mut window_tokens = 0u64;
    let mut run_tokens = 0u64;

    while state.step < cfg.max_iters {
        if STOP.load(Ordering::SeqCst) {
            save_checkpoint(&last_path, &state, model, opt)?;
            note(&pb, true, &format!("interrupted: checkpoint saved at step {} in {}", state.step, last_path.display()));
            summary.reason = "interrupted".into();
            break;
        }
        let it = state.step;
        let t0 = Instant::now();
        // Quantization-aware training: from `qat_start` on, this step and the evaluations after
        // it see the weights as the export stores them.
        let fq = cfg.fake_quant_at(it);
        if fq != model.fake_quant() {
            if let Some(q) = fq {
                note(&pb, opts.verbose, &format!("step {it}: training on fake-quantized {} weights (groups of {})", cfg.qat, q.group));
            }
            model.set_fake_quant(fq);
        }
        let lr = cfg.lr_at(it) * state.lr_scale;
        if cfg.dropout > 0.0 {
            tch::manual_seed((mix(cfg.seed ^ mix(it)) >> 1) as i64);
        }
        // The micro-batch losses are summed on the device (in f64) and read once per step, so a
        // GPU is not waited for after every micro-batch.
        let mut loss_sum: Option<Tensor> = None;
        let mut step_tokens = 0u64;
        for micro in 0..accum {
            let b = data.batch(it, micro);
            step_tokens += b.tokens;
            let (x, y) = (b.inputs.to_device(device), b.targets.to_device(device));
            let loss = match &b.weights {
                None => model.loss(&x, &y, true),
                Some(w) => model.weighted_loss(&x, &y, w, true),
            };
            let scaled = if accum > 1 { &loss / accum as f64 } else { loss.shallow_clone() };
            scaled.backward();
            let l = loss.detach().to_kind(Kind::Double);
            loss_sum = Some(match loss_sum {
                None => l,
                Some(sum) => sum + l,
            });
        }
        let train_loss = loss_sum.map_or(f64::NAN, |s| s.double_value(&[])) / accum as f64;
        if !train_loss.is_finite() {
            save_checkpoint(&last_path, &state, model, opt)?;
            bail!("training diverged at step {it} (loss {train_loss}); lower learning_rate. Last good state: {}", last_path.display());
        }
        opt.clip_and_step(&params_list, lr, cfg.grad_clip);
        state.step += 1;
        state.tokens_seen += step_tokens;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        iter_ms.push(ms);
        window_iters += 1;
        window_tokens += step_tokens;
        run_tokens += step_tokens;
        summary.train_losses.push((state.step, train_loss));
        pb.set_position(state.step);

        if state.step % cfg.log_interval == 0 || state.step == cfg.max_iters {
            let secs = window_start.elapsed().as_secs_f64();
            let tps = window_tokens as f64 / secs.max(1e-9);
            pb.set_message(format!("loss {train_loss:.4} | {:.1}k tok/s", tps / 1e3));
            let row = LogRow {
                step: state.step,
                split: "train".into(),
                loss: train_loss,
                lr: Some(lr),
                ms_per_iter: Some(secs * 1e3 / window_iters as f64),
                tokens_per_s: Some(tps),
            };
            writeln!(log, "{}", serde_json::to_string(&row)?)?;
            window_start = Instant::now();
            window_iters = 0;
            window_tokens = 0;
        }

        let finished = state.step == cfg.max_iters;
        if state.step % cfg.eval_interval == 0 || finished {
            let val = data.val_loss(model);
            if !val.is_finite() {
                let saved = if last_path.exists() {
                    format!("the last checkpoint, {}, is from an earlier evaluation", last_path.display())
                } else {
                    "no checkpoint was saved".to_owned()
                };
                bail!("training diverged: validation loss {val} at step {} (lower learning_rate); {saved}", state.step);
            }
            summary.val_losses.push((state.step, val));
            state.last_val = Some(val);
            writeln!(log, "{}", serde_json::to_string(&LogRow { step: state.step, split: "val".into(), loss: val, lr: None, ms_per_iter: None, tokens_per_s: None })?)?;
            let improved = state.best_val.is_none_or(|b| val < b);
            if improved {
                state.best_val = Some(val);
                state.best_step = state.step;
                state.evals_since_best = 0;
            } else {
                state.evals_since_best += 1;
                if cfg.plateau_patience > 0 && state.evals_since_best % cfg.plateau_patience == 0 {
                    state.lr_scale *= cfg.plateau_factor;
                    note(&pb, opts.verbose, &format!("plateau: learning rate scaled to {:.3}x", state.lr_scale));
                }
            }
            note(
                &pb,
                opts.verbose,
                &format!(
                    "step {}: train loss {train_loss:.4}, val loss {val:.4}{} (lr {lr:.2e})",
                    state.step,
                    if improved { " (best)" } else { "" }
                ),
            );
            save_checkpoint(&last_path, &state, model, opt)?;
            if improved {
                save_checkpoint(&best_path, &state, model, opt)?;
            }
            write_plot(&opts.out, &log_path);
            if let (Some(sample), true) = (sample, opts.verbose) {
                match sample(model, &state) {
                    Ok(t) => note(&pb, true, &format!("--- sample at step {} ---\n{t}\n---", state.step)),
                    Err(e) => note(&pb, true, &format!("sample failed: {e:#}")),
                }
            }
            if let Some(hook) = on_eval.as_mut() {
                if hook(state.step, val)? && !finished {
                    summary.reason = "pruned".into();
                    break;
                }
            }
            if cfg.patience > 0 && state.evals_since_best >= cfg.patience && !finished {
                note(&pb, opts.verbose, &format!("early stop: no improvement in {} evaluations", cfg.patience));
                summary.reason = "early stop".into();
                break;
            }
        }
        if cfg.stop_at > 0 && state.step == cfg.stop_at && !finished {
            save_checkpoint(&last_path, &state, model, opt)?;
            summary.reason = "paused".into();
            break;
        }
    }
    if summary.reason == "finished" && state.step == cfg.max_iters && !last_path.exists() {
        save_checkpoint(&last_path, &state, model, opt)?;
    }
    pb.finish_and_clear();
    // Also when the run stopped between evaluations (interrupted, paused): rows logged since the
    // last evaluation's plot.
    if state.step % cfg.eval_interval != 0 && state.step != cfg.max_iters {
        write_plot(&opts.out, &log_path);
    }
    summary.steps = state.step;
    summary.best_val = state.best_val;
    summary.median_ms_per_iter = median(&mut iter_ms.clone());
    let tokens_per_iter = if iter_ms.is_empty() { 0.0 } else { run_tokens as f64 / iter_ms.len() as f64 };
    summary.tokens_per_s = tokens_per_iter / (summary.median_ms_per_iter / 1e3);
    Ok(summary)
}
