//! One TOML file per run, with `--set key=value` overrides. Names follow nanoGPT.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Everything a training run needs. Unknown keys are an error (in the file and in `--set`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model name stored in the exported file.
    #[serde(default = "d_name")]
    pub name: String,

    // ---- data
    /// UTF-8 text file (relative paths are relative to the working directory).
    #[serde(default)]
    pub corpus: String,
    /// Generate the alphabet task instead of reading a file (`corpus` is then ignored).
    #[serde(default)]
    pub alphabet_task: bool,
    /// Fraction of the text (at its end) used for validation.
    #[serde(default = "d_val_fraction")]
    pub val_fraction: f64,
    /// `char` (vocabulary = sorted unique characters of the corpus) or `bpe` (byte-level BPE).
    #[serde(default = "d_tokenizer")]
    pub tokenizer: String,
    /// BPE only: vocabulary size including the 256 byte tokens.
    #[serde(default = "d_bpe_vocab")]
    pub bpe_vocab_size: u32,

    // ---- model
    /// `gpt2` or `llama`.
    pub arch: String,
    pub n_layer: u32,
    pub n_head: u32,
    /// Key/value heads (0: same as `n_head`).
    #[serde(default)]
    pub n_kv_head: u32,
    pub n_embd: u32,
    /// MLP hidden width (0: gpt2 4*n_embd; llama 2/3 of that, rounded up to a multiple of 32).
    #[serde(default)]
    pub n_hidden: u32,
    pub block_size: u32,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "d_true")]
    pub tie_embeddings: bool,
    #[serde(default = "d_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "d_rope_theta")]
    pub rope_theta: f64,

    // ---- optimisation
    pub batch_size: u32,
    #[serde(default = "d_one")]
    pub grad_accum: u32,
    pub max_iters: u64,
    pub learning_rate: f64,
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default)]
    pub warmup_iters: u64,
    /// Iteration at which the cosine decay reaches `min_lr` (0: `max_iters`).
    #[serde(default)]
    pub lr_decay_iters: u64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    /// Clip the global gradient norm to this value (0: off).
    #[serde(default = "d_one_f")]
    pub grad_clip: f64,
    /// Multiply the learning rate by `plateau_factor` after `plateau_patience` evaluations without a
    /// new best validation loss (0: off).
    #[serde(default)]
    pub plateau_patience: u32,
    #[serde(default = "d_half")]
    pub plateau_factor: f64,
    /// Stop after this many evaluations without a new best validation loss (0: off).
    #[serde(default)]
    pub patience: u32,

    // ---- evaluation, logging, samples
    #[serde(default = "d_eval_interval")]
    pub eval_interval: u64,
    /// Evaluation batch (windows of `block_size` per forward pass).
    #[serde(default = "d_eval_batch")]
    pub eval_batch: u32,
    #[serde(default = "d_one_u64")]
    pub log_interval: u64,
    /// Tokens sampled at each evaluation (0: none).
    #[serde(default = "d_sample_tokens")]
    pub sample_tokens: u32,
    #[serde(default = "d_prompt")]
    pub sample_prompt: String,
    #[serde(default = "d_temp")]
    pub sample_temperature: f64,
    #[serde(default)]
    pub sample_top_k: u32,

    // ---- run control
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Pause after this iteration (0: off): writes the checkpoint and exits; `--resume` continues.
    #[serde(default)]
    pub stop_at: u64,
    /// CPU threads for libtorch (0: all available cores).
    #[serde(default)]
    pub threads: u32,
    /// `auto` (bf16 on CUDA, f32 on CPU), `f32` or `bf16`.
    #[serde(default = "d_precision")]
    pub precision: String,

    // ---- quantization-aware training
    /// Fake-quantize the weights as the export in this dtype stores them: `""` (off), `int8` or
    /// `int4`. Export with the same dtype and `--group-size` as `qat_group_size`.
    #[serde(default)]
    pub qat: String,
    /// First iteration trained (and evaluated) with fake-quantized weights.
    #[serde(default)]
    pub qat_start: u64,
    /// Group size of the fake quantization (the export's `--group-size`).
    #[serde(default = "d_qat_group")]
    pub qat_group_size: u32,
    /// Start from these weights instead of a fresh initialisation (`""`: none): a run directory,
    /// a `.pt` checkpoint or a `.tgpt` file (dequantized) of the same shape and vocabulary; for
    /// instance to fine-tune a model with quantization-aware training.
    #[serde(default)]
    pub init: String,
}

/// The weight type a `qat` setting fakes: `"int8"`, `"int4"`, or none (`""`, off).
pub fn qat_dtype(qat: &str) -> Option<tinygpt_runtime::DType> {
    match qat {
        "int8" => Some(tinygpt_runtime::DType::I8),
        "int4" => Some(tinygpt_runtime::DType::I4),
        _ => None,
    }
}

fn d_qat_group() -> u32 {
    64
}

fn d_name() -> String {
    "tinygpt".into()
}
fn d_val_fraction() -> f64 {
    0.1
}
fn d_tokenizer() -> String {
    "char".into()
}
fn d_bpe_vocab() -> u32 {
    512
}
fn d_true() -> bool {
    true
}
fn d_norm_eps() -> f64 {
    1e-5
}
fn d_rope_theta() -> f64 {
    10000.0
}
fn d_one() -> u32 {
    1
}
fn d_one_u64() -> u64 {
    1
}
fn d_one_f() -> f64 {
    1.0
}
fn d_wd() -> f64 {
    0.1
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.95
}
fn d_half() -> f64 {
    0.5
}
fn d_eval_interval() -> u64 {
    250
}
fn d_eval_batch() -> u32 {
    64
}
fn d_sample_tokens() -> u32 {
    200
}
fn d_prompt() -> String {
    "\n".into()
}
fn d_temp() -> f64 {
    0.8
}
fn d_seed() -> u64 {
    1337
}
fn d_precision() -> String {
    "auto".into()
}

/// Parses TOML text; an error is one line: where, then what.
pub(crate) fn parse_toml(text: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>().map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                anyhow::anyhow!("line {line}, column {column}: {msg}")
            }
            None => anyhow::anyhow!("{msg}"),
        }
    })
}

/// Parses `key=value`; the value is read as a TOML value (`3`, `1e-3`, `true`, `"text"`), and a bare
/// word that is not valid TOML is taken as a string (`arch=llama`).
pub(crate) fn parse_override(s: &str) -> Result<(String, toml::Value)> {
    let (k, v) = s.split_once('=').with_context(|| format!("--set {s:?}: expected key=value"))?;
    let k = k.trim();
    if k.is_empty() {
        bail!("--set {s:?}: empty key");
    }
    let v = v.trim();
    let value = match format!("x = {v}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("x").unwrap_or(toml::Value::String(v.into())),
        Err(_) => toml::Value::String(v.into()),
    };
    Ok((k.to_string(), value))
}

/// Every configuration key, for naming unknown `--set` keys before parsing (a unit test checks
/// that it matches the fields of [`TrainConfig`]).
const KEYS: &[&str] = &[
    "name", "corpus", "alphabet_task", "val_fraction", "tokenizer", "bpe_vocab_size", "arch", "n_layer",
    "n_head", "n_kv_head", "n_embd", "n_hidden", "block_size", "dropout", "tie_embeddings", "norm_eps",
    "rope_theta", "batch_size", "grad_accum", "max_iters", "learning_rate", "min_lr", "warmup_iters",
    "lr_decay_iters", "weight_decay", "beta1", "beta2", "grad_clip", "plateau_patience", "plateau_factor",
    "patience", "eval_interval", "eval_batch", "log_interval", "sample_tokens", "sample_prompt",
    "sample_temperature", "sample_top_k", "seed", "stop_at", "threads", "precision", "qat", "qat_start",
    "qat_group_size", "init",
];

/// Largest model `validate` accepts, in parameters (4 GB of f32 weights).
pub const MAX_PARAMS: u64 = 1_000_000_000;
/// Most libtorch threads `validate` accepts.
pub const MAX_THREADS: u32 = 1024;

impl TrainConfig {
    /// Reads `path` and applies `overrides` (`key=value`).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let table = parse_toml(&text).with_context(|| format!("config {} is not valid TOML", path.display()))?;
        Self::from_table(table, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// Builds a configuration from TOML text and overrides.
    pub fn from_str_with(text: &str, overrides: &[String]) -> Result<Self> {
        let table = parse_toml(text).context("config is not valid TOML")?;
        Self::from_table(table, overrides)
    }

    /// Applies overrides to an existing configuration (used by `--resume`).
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self> {
        let table = toml::Table::try_from(self).context("config does not serialize")?;
        Self::from_table(table, overrides)
    }

    fn from_table(mut table: toml::Table, overrides: &[String]) -> Result<Self> {
        for o in overrides {
            let (k, v) = parse_override(o)?;
            // Check the key first so the message names it even when the value has the wrong type.
            if !Self::known_key(&k) {
                bail!("unknown key `{k}` in --set {o:?}");
            }
            table.insert(k, v);
        }
        let cfg: TrainConfig = table.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Whether `k` is a configuration key.
    pub fn known_key(k: &str) -> bool {
        KEYS.contains(&k)
    }

    /// Key/value heads after defaults.
    pub fn kv_heads(&self) -> u32 {
        if self.n_kv_head == 0 {
            self.n_head
        } else {
            self.n_kv_head
        }
    }

    /// MLP hidden width after defaults.
    pub fn hidden(&self) -> u32 {
        if self.n_hidden != 0 {
            return self.n_hidden;
        }
        match self.arch.as_str() {
            "llama" => (8 * self.n_embd / 3).div_ceil(32) * 32,
            _ => 4 * self.n_embd,
        }
    }

    /// The weights' fake quantization at iteration `it`: from `qat_start` on when `qat` is set.
    pub fn fake_quant_at(&self, it: u64) -> Option<crate::model::FakeQuant> {
        let dtype = qat_dtype(&self.qat)?;
        if it < self.qat_start {
            return None;
        }
        crate::model::FakeQuant::for_dtype(dtype, self.qat_group_size as i64)
    }

    /// Last iteration of the cosine decay.
    pub fn decay_iters(&self) -> u64 {
        if self.lr_decay_iters == 0 {
            self.max_iters
        } else {
            self.lr_decay_iters
        }
    }

    /// Learning rate at iteration `it` (before any plateau reduction): linear warmup, cosine decay.
    pub fn lr_at(&self, it: u64) -> f64 {
        if it < self.warmup_iters {
            return self.learning_rate * (it + 1) as f64 / (self.warmup_iters + 1) as f64;
        }
        let decay = self.decay_iters();
        if it > decay {
            return self.min_lr;
        }
        let span = decay.saturating_sub(self.warmup_iters).max(1) as f64;
        let ratio = (it - self.warmup_iters) as f64 / span;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
        self.min_lr + coeff * (self.learning_rate - self.min_lr)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        match self.arch.as_str() {
            "gpt2" | "llama" => {}
            a => bail!("arch must be \"gpt2\" or \"llama\", not {a:?}"),
        }
        match self.tokenizer.as_str() {
            "char" | "bpe" => {}
            t => bail!("tokenizer must be \"char\" or \"bpe\", not {t:?}"),
        }
        match self.precision.as_str() {
            "auto" | "f32" | "bf16" => {}
            p => bail!("precision must be \"auto\", \"f32\" or \"bf16\", not {p:?}"),
        }
        match self.qat.as_str() {
            "" | "int8" | "int4" => {}
            q => bail!("qat must be \"int8\", \"int4\" or \"\" (off), not {q:?}"),
        }
        if !self.qat.is_empty() && self.qat_group_size == 0 {
            bail!("qat_group_size must be at least 1");
        }
        if self.tokenizer == "bpe" && self.bpe_vocab_size < 257 {
            bail!("bpe_vocab_size must be above 256 (the byte tokens), got {}", self.bpe_vocab_size);
        }
        for (name, v) in [
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
            ("block_size", self.block_size),
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("eval_batch", self.eval_batch),
        ] {
            if v == 0 {
                bail!("{name} must be at least 1");
            }
        }
        // The runtime's limits (a model the trainer makes must load), and a size this trainer is for.
        use tinygpt_runtime::format::{MAX_DIM, MAX_LAYERS};
        for (name, v) in [
            ("n_head", self.n_head),
            ("n_kv_head", self.n_kv_head),
            ("n_embd", self.n_embd),
            ("n_hidden", self.n_hidden),
            ("block_size", self.block_size),
            ("bpe_vocab_size", self.bpe_vocab_size),
        ] {
            if v > MAX_DIM {
                bail!("{name} must be at most {MAX_DIM}, got {v}");
            }
        }
        if self.n_layer > MAX_LAYERS {
            bail!("n_layer must be at most {MAX_LAYERS}, got {}", self.n_layer);
        }
        let per_layer = 4 * self.n_embd as u64 * self.n_embd as u64 + 3 * self.n_embd as u64 * self.hidden() as u64;
        let approx = self.n_layer as u64 * per_layer + 2 * (self.block_size as u64 + 256 + self.bpe_vocab_size as u64) * self.n_embd as u64;
        if approx > MAX_PARAMS {
            bail!("the model would have about {approx} parameters; tinygpt-train makes models of up to {MAX_PARAMS}");
        }
        if self.threads > MAX_THREADS {
            bail!("threads must be at most {MAX_THREADS} (0: one per core), got {}", self.threads);
        }
        if self.n_embd % self.n_head != 0 {
            bail!("n_embd ({}) must be a multiple of n_head ({})", self.n_embd, self.n_head);
        }
        if self.n_head % self.kv_heads() != 0 {
            bail!("n_head ({}) must be a multiple of n_kv_head ({})", self.n_head, self.kv_heads());
        }
        if self.arch == "gpt2" && self.kv_heads() != self.n_head {
            bail!("gpt2 needs n_kv_head == n_head (grouped KV heads are a llama feature)");
        }
        if self.arch == "llama" && (self.n_embd / self.n_head) % 2 != 0 {
            bail!("llama needs an even head size (n_embd / n_head) for RoPE");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("dropout must be in [0, 1), got {}", self.dropout);
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            bail!("val_fraction must be between 0 and 1, got {}", self.val_fraction);
        }
        if self.max_iters == 0 {
            bail!("max_iters must be at least 1");
        }
        for (name, v) in [
            ("learning_rate", self.learning_rate),
            ("min_lr", self.min_lr),
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
            ("norm_eps", self.norm_eps),
            ("rope_theta", self.rope_theta),
            ("sample_temperature", self.sample_temperature),
            ("dropout", self.dropout),
            ("val_fraction", self.val_fraction),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("plateau_factor", self.plateau_factor),
        ] {
            if !v.is_finite() {
                bail!("{name} must be a finite number, got {v}");
            }
        }
        if self.learning_rate <= 0.0 || self.min_lr < 0.0 || self.min_lr > self.learning_rate {
            bail!("need 0 <= min_lr <= learning_rate and learning_rate > 0 (got min_lr {}, learning_rate {})", self.min_lr, self.learning_rate);
        }
        for (name, v) in [("weight_decay", self.weight_decay), ("grad_clip", self.grad_clip), ("sample_temperature", self.sample_temperature)] {
            if v < 0.0 {
                bail!("{name} must be 0 or more, got {v}");
            }
        }
        if self.norm_eps <= 0.0 || self.norm_eps > 1.0 {
            bail!("norm_eps must be above 0 and at most 1, got {}", self.norm_eps);
        }
        if self.rope_theta <= 1.0 {
            bail!("rope_theta must be above 1, got {}", self.rope_theta);
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            bail!("beta1 and beta2 must be in [0, 1)");
        }
        if self.eval_interval == 0 || self.log_interval == 0 {
            bail!("eval_interval and log_interval must be at least 1");
        }
        if !(self.plateau_factor > 0.0 && self.plateau_factor <= 1.0) {
            bail!("plateau_factor must be in (0, 1]");
        }
        if self.corpus.is_empty() && !self.alphabet_task {
            bail!("no corpus: set `corpus` in the config, pass --corpus PATH, or set alphabet_task = true");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        corpus = "x.txt"
        arch = "gpt2"
        n_layer = 2
        n_head = 2
        n_embd = 16
        block_size = 8
        batch_size = 2
        max_iters = 10
        learning_rate = 1e-3
    "#;

    #[test]
    fn overrides_apply_with_types() {
        let c = TrainConfig::from_str_with(BASE, &["n_layer=3".into(), "arch=llama".into(), "min_lr=1e-4".into()])
            .unwrap();
        assert_eq!(c.n_layer, 3);
        assert_eq!(c.arch, "llama");
        assert_eq!(c.min_lr, 1e-4);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = TrainConfig::from_str_with(BASE, &["n_layers=3".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("n_layers"), "{e:#}");
        let e = TrainConfig::from_str_with(&format!("{BASE}\nlearning_rat = 1.0\n"), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("learning_rat"), "{e:#}");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(TrainConfig::from_str_with(BASE, &["n_head=3".into()]).is_err());
        assert!(TrainConfig::from_str_with(BASE, &["arch=gpt3".into()]).is_err());
        assert!(TrainConfig::from_str_with(BASE, &["n_layer=abc".into()]).is_err());
        assert!(TrainConfig::from_str_with(BASE, &["n_layer".into()]).is_err());
    }

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let c = TrainConfig::from_str_with(BASE, &["warmup_iters=2".into(), "min_lr=1e-4".into()]).unwrap();
        assert!(c.lr_at(0) < c.lr_at(1));
        assert!((c.lr_at(2) - 1e-3).abs() < 1e-12);
        assert!(c.lr_at(5) < c.lr_at(3));
        assert!((c.lr_at(10) - 1e-4).abs() < 1e-12);
        assert!((c.lr_at(50) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn round_trips_through_toml() {
        let c = TrainConfig::from_str_with(BASE, &[]).unwrap();
        assert_eq!(c.with_overrides(&[]).unwrap(), c);
    }

    #[test]
    fn known_keys_are_exactly_the_fields() {
        let c = TrainConfig::from_str_with(BASE, &[]).unwrap();
        let table = toml::Table::try_from(&c).unwrap();
        let mut fields: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut keys = KEYS.to_vec();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }

    #[test]
    fn shipped_configurations_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            // sft-*.toml are fine-tuning settings (checked in src/sft.rs), *-space.toml search
            // spaces of `tune` (checked in src/tune/space.rs).
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let other = name.starts_with("sft-") || name.ends_with("-space.toml");
            if p.extension().is_some_and(|x| x == "toml") && !other {
                TrainConfig::load(&p, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 3, "expected alphabet, nanogpt-cpu and board configurations, found {n}");
    }
}
