//! Supervised chat fine-tuning (`tinygpt-train sft`): a base model learns the chat template of
//! `runtime/FORMAT.md` ("Chat models") from conversations, with the loss on the assistant's turns.
//!
//! * The base is a run directory, a `.pt` checkpoint or a `.tgpt` file ([`load_base`]). Its
//!   vocabulary is extended with the four chat tokens ([`CHAT_SPECIALS`]); a base that has them
//!   keeps its size. The embedding rows of the new tokens (and of the untied classifier) start at
//!   the mean of the existing rows plus normal noise of [`NEW_ROW_NOISE`] times the rows' spread
//!   around that mean, so each starts as an "average" token, distinct from the others; the other
//!   rows are the base's, so the base's logits over its own tokens are unchanged.
//! * A conversation renders as `<|im_start|>ROLE<|im_sep|>CONTENT<|im_end|>` per turn, exactly as
//!   the runtime's `Template::render` does; the loss mask covers each assistant turn's content and
//!   its `<|im_end|>` ([`render`]).
//! * Batches pad conversations with `<|pad|>` to the batch's longest; targets that are not in the
//!   mask (the user's and system's turns, the assistant turns' openings, padding) are -100, which
//!   the cross-entropy ignores, so the loss is the mean over the assistant's tokens.
//! * Training runs the loop of `train` ([`crate::train::run_loop`]): the same progress bar, log,
//!   plot, checkpoints, `--resume` and Ctrl-C.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};
use tinygpt_runtime::chat::{self, Role, Template, CHAT_SPECIALS, IM_END, IM_SEP, IM_START, PAD};
use tinygpt_runtime::format::{self, for_each_tensor, tensor_shape, TokenizerKind};
use tinygpt_runtime::writer::{self, MetaData};
use tinygpt_runtime::{DType, KvDType, Message, Model, Sampler as RtSampler, SamplerConfig, Session};

use crate::config::{parse_override, parse_toml, TrainConfig};
use crate::data::{TextTokenizer, Vocab};
use crate::export;
use crate::model::{Gpt, ModelDims};
use crate::optim::AdamW;
use crate::train::{
    self, bf16_works, check_resume, copy_into, load_checkpoint, mix, remove_stale_temporaries, Batch, Batches, RunOptions,
    RunSummary, TrainState, TRAINER_VERSION,
};

/// The corpus name `train` stores for the generated alphabet task.
const ALPHABET_CORPUS_NAME: &str = "alphabet task (generated)";

/// Noise added to the new tokens' embedding rows, relative to the spread of the base's rows.
pub const NEW_ROW_NOISE: f64 = 0.1;

/// One conversation: turns in order (an optional first system turn, then user and assistant turns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub messages: Vec<(Role, String)>,
}

impl Conversation {
    /// The runtime's view of the turns.
    pub fn runtime_messages(&self) -> Vec<Message<'_>> {
        self.messages.iter().map(|(role, content)| Message { role: *role, content }).collect()
    }

    /// The turns before the last assistant turn, and that turn's content: the prompt a model
    /// answers and the answer the data gives (`None` without an assistant turn).
    pub fn prompt_and_answer(&self) -> Option<(&[(Role, String)], &str)> {
        let i = self.messages.iter().rposition(|(r, _)| *r == Role::Assistant)?;
        Some((&self.messages[..i], &self.messages[i].1))
    }
}

/// The ids of the chat tokens in a trainer tokenizer.
fn chat_ids(tok: &TextTokenizer) -> Result<(u32, u32, u32, u32)> {
    let id = |name: &str| tok.special_id(name).with_context(|| format!("the tokenizer has no {name} token (not a chat vocabulary)"));
    Ok((id(IM_START)?, id(IM_SEP)?, id(IM_END)?, id(PAD)?))
}

/// Renders `messages` with the chat template: `(tokens, mask)`, where `mask[i]` is true exactly
/// for the tokens of each assistant turn's content and its `<|im_end|>`. The tokens are those of
/// the runtime's `Template::render(messages, false, ..)`. An unknown character of a character
/// vocabulary is an error naming it.
pub fn render(tok: &TextTokenizer, messages: &[(Role, String)]) -> Result<(Vec<u32>, Vec<bool>)> {
    let (start, sep, end, _) = chat_ids(tok)?;
    let mut tokens = Vec::new();
    let mut mask = Vec::new();
    for (role, content) in messages {
        let learn = *role == Role::Assistant;
        tokens.push(start);
        let role_ids = tok.encode(role.name())?;
        tokens.extend_from_slice(&role_ids);
        tokens.push(sep);
        mask.resize(tokens.len(), false);
        tokens.extend(tok.encode(content)?);
        tokens.push(end);
        mask.resize(tokens.len(), learn);
    }
    Ok((tokens, mask))
}

/// Renders the turns of `messages` followed by the opening of the assistant's reply,
/// `<|im_start|>assistant<|im_sep|>`: the prompt a reply is generated after.
pub fn render_prompt(tok: &TextTokenizer, messages: &[(Role, String)]) -> Result<Vec<u32>> {
    let (start, sep, _, _) = chat_ids(tok)?;
    let (mut tokens, _) = render(tok, messages)?;
    tokens.push(start);
    tokens.extend(tok.encode(Role::Assistant.name())?);
    tokens.push(sep);
    Ok(tokens)
}

/// What is wrong with one JSON line of conversation data.
fn parse_line(line: &str, tok: &TextTokenizer, block_size: usize) -> std::result::Result<Conversation, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let obj = v.as_object().ok_or("not a JSON object (expected {\"messages\": [...]})")?;
    let msgs = obj.get("messages").ok_or("no \"messages\" key")?;
    let msgs = msgs.as_array().ok_or("\"messages\" is not a list")?;
    if msgs.is_empty() {
        return Err("\"messages\" is empty".into());
    }
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let n = i + 1;
        let m = m.as_object().ok_or_else(|| format!("message {n} is not an object with \"role\" and \"content\""))?;
        let role = m.get("role").ok_or_else(|| format!("message {n} has no \"role\""))?;
        let role = role.as_str().ok_or_else(|| format!("message {n}: \"role\" is not a string"))?;
        let role = Role::from_name(role)
            .ok_or_else(|| format!("message {n}: unknown role {role:?} (expected system, user or assistant)"))?;
        let content = m.get("content").ok_or_else(|| format!("message {n} has no \"content\""))?;
        let content = content.as_str().ok_or_else(|| format!("message {n}: \"content\" is not a string"))?;
        if content.is_empty() {
            return Err(format!("message {n} ({}) has empty content", role.name()));
        }
        if role == Role::System && i > 0 {
            return Err(format!("message {n}: a system turn may only come first"));
        }
        messages.push((role, content.to_owned()));
    }
    if !messages.iter().any(|(r, _)| *r == Role::Assistant) {
        return Err("no assistant turn (nothing to learn)".into());
    }
    let conv = Conversation { messages };
    let (tokens, _) = render(tok, &conv.messages).map_err(|e| format!("{e:#}"))?;
    if tokens.len() > block_size + 1 {
        return Err(format!(
            "the conversation is {} tokens long, more than the model's context holds (block_size {block_size}, so at most {} tokens)",
            tokens.len(),
            block_size + 1
        ));
    }
    Ok(conv)
}

/// Reads conversations from a JSONL file, one `{"messages": [{"role": .., "content": ..}, ..]}` a
/// line (other keys are ignored; blank lines are skipped). Each conversation must render with
/// `tok` into at most `block_size + 1` tokens (a block of inputs and its last target). A bad line
/// is an error `FILE:LINE: problem`; with `skip_bad` it is reported on stderr and skipped (with a
/// count at the end). A file without any conversation is an error.
pub fn read_jsonl(path: &Path, tok: &TextTokenizer, block_size: usize, skip_bad: bool) -> Result<Vec<Conversation>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read conversations {}", path.display()))?;
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let problem = match std::str::from_utf8(raw) {
            Err(e) => Err(format!("not UTF-8 text (invalid byte at column {})", e.valid_up_to() + 1)),
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => parse_line(line.trim_end_matches('\r'), tok, block_size),
        };
        match problem {
            Ok(c) => out.push(c),
            Err(why) if skip_bad => {
                eprintln!("warning: {}:{}: {why} (skipped)", path.display(), i + 1);
                skipped += 1;
            }
            Err(why) => bail!("{}:{}: {why}", path.display(), i + 1),
        }
    }
    if skipped > 0 {
        eprintln!("warning: {}: skipped {skipped} bad line(s), kept {} conversation(s)", path.display(), out.len());
    }
    if out.is_empty() {
        bail!("{} holds no usable conversation", path.display());
    }
    Ok(out)
}

/// Splits conversations into (train, validation) deterministically under `seed`: a fraction
/// `val_fraction` (at least one) is held out, chosen by a seeded shuffle. Needs two conversations.
pub fn split_conversations(convs: &[Conversation], val_fraction: f64, seed: u64) -> Result<(Vec<Conversation>, Vec<Conversation>)> {
    if convs.len() < 2 {
        bail!("{} conversation(s): a validation split needs at least 2 (or pass --val-data FILE)", convs.len());
    }
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        bail!("val_fraction must be between 0 and 1, got {val_fraction}");
    }
    let mut order: Vec<(u64, usize)> = (0..convs.len()).map(|i| (mix(seed ^ mix(i as u64)), i)).collect();
    order.sort_unstable();
    let n_val = ((convs.len() as f64 * val_fraction).round() as usize).clamp(1, convs.len() - 1);
    let mut val_idx: Vec<usize> = order[..n_val].iter().map(|&(_, i)| i).collect();
    val_idx.sort_unstable();
    let mut is_val = vec![false; convs.len()];
    for &i in &val_idx {
        is_val[i] = true;
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (c, v) in convs.iter().zip(is_val) {
        if v { val.push(c.clone()) } else { train.push(c.clone()) }
    }
    Ok((train, val))
}

/// Settings of a fine-tuning run. Unknown keys are an error (in the file and in `--set`). The
/// model's shape comes from the base; these are the optimisation and run settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// Model name stored in the export ("": the base's name with `-chat`).
    pub name: String,
    /// Text corpus whose validation split the export measures (the prose the base learnt; "": the
    /// base's corpus as its checkpoint names it; a `.tgpt` only stores the file's name).
    pub corpus: String,
    /// Fraction of the conversations held out for validation when no validation file is given.
    pub val_fraction: f64,
    /// Share of each batch's rows that are windows of the base's prose (the training split of
    /// `corpus`, loss on every token) instead of conversations, so that fine-tuning does not
    /// forget the prose (0: conversations only).
    pub prose_fraction: f64,
    pub max_iters: u64,
    /// Conversations per batch.
    pub batch_size: u32,
    pub learning_rate: f64,
    pub min_lr: f64,
    pub warmup_iters: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub dropout: f64,
    /// Clip the global gradient norm to this value (0: off).
    pub grad_clip: f64,
    pub eval_interval: u64,
    /// Validation conversations per forward pass.
    pub eval_batch: u32,
    pub log_interval: u64,
    /// Stop after this many evaluations without a new best validation loss (0: off).
    pub patience: u32,
    /// Scale the learning rate by `plateau_factor` after this many evaluations without a new best (0: off).
    pub plateau_patience: u32,
    pub plateau_factor: f64,
    pub seed: u64,
    /// Pause after this iteration (0: off); `--resume` continues.
    pub stop_at: u64,
    /// CPU threads for libtorch (0: all available cores).
    pub threads: u32,
    /// `auto` (bf16 on CUDA, f32 on CPU), `f32` or `bf16`.
    pub precision: String,
    /// Quantization-aware fine-tuning: `""` (off), `int8` or `int4` (see `TrainConfig::qat`).
    pub qat: String,
    /// First fine-tuning iteration with fake-quantized weights.
    pub qat_start: u64,
    /// Group size of the fake quantization (the export's `--group-size`).
    pub qat_group_size: u32,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            name: String::new(),
            corpus: String::new(),
            val_fraction: 0.1,
            prose_fraction: 0.0,
            max_iters: 1000,
            batch_size: 16,
            learning_rate: 3e-4,
            min_lr: 3e-5,
            warmup_iters: 50,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            dropout: 0.0,
            grad_clip: 1.0,
            eval_interval: 100,
            eval_batch: 64,
            log_interval: 10,
            patience: 0,
            plateau_patience: 0,
            plateau_factor: 0.5,
            seed: 1337,
            stop_at: 0,
            threads: 0,
            precision: "auto".into(),
            qat: String::new(),
            qat_start: 0,
            qat_group_size: 64,
        }
    }
}

impl SftConfig {
    /// Reads a TOML file and applies `overrides` (`key=value`).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let table = parse_toml(&text).with_context(|| format!("config {} is not valid TOML", path.display()))?;
        Self::from_table(table, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// From TOML text and overrides.
    pub fn from_str_with(text: &str, overrides: &[String]) -> Result<Self> {
        let table = parse_toml(text).context("config is not valid TOML")?;
        Self::from_table(table, overrides)
    }

    /// This configuration with overrides applied (`--set` on the defaults, or on a resumed run's).
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self> {
        let table = toml::Table::try_from(self).context("config does not serialize")?;
        Self::from_table(table, overrides)
    }

    fn from_table(mut table: toml::Table, overrides: &[String]) -> Result<Self> {
        let known = toml::Table::try_from(SftConfig::default()).context("config does not serialize")?;
        for o in overrides {
            let (k, v) = parse_override(o)?;
            if !known.contains_key(&k) {
                bail!("unknown key `{k}` in --set {o:?}");
            }
            table.insert(k, v);
        }
        let cfg: SftConfig = table.try_into().map_err(|e: toml::de::Error| anyhow!("{}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values a base does not decide (the rest is checked with the base's shape in
    /// [`SftConfig::apply`]).
    pub fn validate(&self) -> Result<()> {
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            bail!("val_fraction must be between 0 and 1, got {}", self.val_fraction);
        }
        if !(0.0..=0.9).contains(&self.prose_fraction) {
            bail!("prose_fraction must be between 0 and 0.9, got {}", self.prose_fraction);
        }
        let probe = TrainConfig::from_str_with(
            "corpus = \"-\"\narch = \"gpt2\"\nn_layer = 1\nn_head = 1\nn_embd = 8\nblock_size = 8\nbatch_size = 1\nmax_iters = 1\nlearning_rate = 1e-3\n",
            &[],
        )?;
        self.apply(&probe).map(|_| ())
    }

    /// The training configuration of a run fine-tuning a base configured as `base`: the base's
    /// shape, tokenizer and corpus (or `corpus`), these optimisation settings.
    pub fn apply(&self, base: &TrainConfig) -> Result<TrainConfig> {
        let mut c = base.clone();
        if !self.name.is_empty() {
            c.name = self.name.clone();
        } else if !base.name.ends_with("-chat") {
            c.name = format!("{}-chat", base.name);
        }
        if !self.corpus.is_empty() {
            c.corpus = self.corpus.clone();
            c.alphabet_task = false;
        }
        c.max_iters = self.max_iters;
        c.batch_size = self.batch_size;
        c.grad_accum = 1;
        c.learning_rate = self.learning_rate;
        c.min_lr = self.min_lr;
        c.warmup_iters = self.warmup_iters;
        c.lr_decay_iters = 0;
        c.weight_decay = self.weight_decay;
        c.beta1 = self.beta1;
        c.beta2 = self.beta2;
        c.dropout = self.dropout;
        c.grad_clip = self.grad_clip;
        c.eval_interval = self.eval_interval;
        c.eval_batch = self.eval_batch;
        c.log_interval = self.log_interval;
        c.patience = self.patience;
        c.plateau_patience = self.plateau_patience;
        c.plateau_factor = self.plateau_factor;
        c.seed = self.seed;
        c.stop_at = self.stop_at;
        c.threads = self.threads;
        c.precision = self.precision.clone();
        c.qat = self.qat.clone();
        c.qat_start = self.qat_start;
        c.qat_group_size = self.qat_group_size;
        c.sample_tokens = 0;
        c.validate()?;
        Ok(c)
    }
}

/// What a fine-tuning run started from, stored in its checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftOrigin {
    /// The base as given (`--checkpoint`).
    pub base: String,
    /// Optimizer steps and training tokens of the base.
    pub base_steps: u64,
    pub base_tokens_seen: u64,
    /// The corpus the base was trained on, as the base names it.
    pub base_corpus: String,
    /// The fine-tuning settings.
    pub config: SftConfig,
    /// Training and validation conversations, and a fingerprint of the training set (`--resume`
    /// refuses other data).
    pub train_conversations: usize,
    pub val_conversations: usize,
    pub data_fingerprint: u64,
}

/// A base model: its configuration, tokenizer and f32 weights (by the runtime's tensor names).
pub struct BaseModel {
    pub config: TrainConfig,
    pub tok: TextTokenizer,
    pub weights: HashMap<String, Tensor>,
    /// Steps, tokens and corpus name of the base's training.
    pub steps: u64,
    pub tokens_seen: u64,
    pub corpus_name: String,
}

/// Loads a base: a run directory (its best.pt, else last.pt), a `.pt` checkpoint, or a `.tgpt`
/// file (weights dequantized to f32 from int8 or f16).
pub fn load_base(path: &Path) -> Result<BaseModel> {
    let is_tgpt = path.is_file() && {
        use std::io::Read;
        let mut magic = [0u8; 8];
        std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == tinygpt_runtime::MAGIC
    };
    if is_tgpt {
        return load_tgpt(path);
    }
    let ck_path = train::checkpoint_in(path)?;
    let ck = load_checkpoint(&ck_path)?;
    let tok = TextTokenizer::with_specials(ck.state.vocab.clone(), ck.state.specials.clone());
    let weights = ck
        .tensors
        .iter()
        .filter_map(|(k, t)| k.strip_prefix("model.").map(|n| (n.to_owned(), t.shallow_clone())))
        .collect();
    let corpus_name = match &ck.state.sft {
        Some(o) => o.base_corpus.clone(),
        None => train::corpus_text(&ck.state.config).map(|(_, n)| n).unwrap_or_else(|_| ck.state.config.corpus.clone()),
    };
    Ok(BaseModel {
        config: ck.state.config.clone(),
        tok,
        weights,
        steps: ck.state.step,
        tokens_seen: ck.state.tokens_seen,
        corpus_name,
    })
}

fn load_tgpt(path: &Path) -> Result<BaseModel> {
    let bytes = writer::read_aligned(path).with_context(|| format!("cannot read {}", path.display()))?;
    let p = format::parse(&bytes).map_err(|e| anyhow!("{} is not a usable model file: {e}", path.display()))?;
    let cfg = p.header.config;
    let th = p.header.tokenizer;
    let model = Model::from_bytes(&bytes).map_err(|e| anyhow!("{} is not a usable model file: {e}", path.display()))?;
    let rt = model.tokenizer();
    let n_special = th.n_special as usize;
    let n_regular = cfg.vocab_size as usize - n_special;
    let text_of = |id: usize| -> Result<String> {
        String::from_utf8(rt.token_bytes(id as u32).to_vec()).map_err(|_| anyhow!("{}: token {id} is not UTF-8", path.display()))
    };
    let vocab = match th.kind {
        TokenizerKind::Char => {
            let chars = (0..n_regular)
                .map(|i| {
                    let s = text_of(i)?;
                    let mut it = s.chars();
                    match (it.next(), it.next()) {
                        (Some(c), None) => Ok(c),
                        _ => bail!("{}: token {i} of a character vocabulary is not one character", path.display()),
                    }
                })
                .collect::<Result<Vec<char>>>()?;
            Vocab::Char { chars }
        }
        TokenizerKind::ByteBpe => {
            let u = |i: usize| u32::from_le_bytes(th.merges[4 * i..4 * i + 4].try_into().expect("4 bytes"));
            let merges = (0..th.merges.len() / 8).map(|r| (u(2 * r), u(2 * r + 1))).collect();
            Vocab::Bpe { merges }
        }
        TokenizerKind::SentencePiece => bail!(
            "{}: a sentencepiece model (converted from llama2.c or GGUF) cannot be fine-tuned yet; the trainer knows character and byte-level BPE vocabularies",
            path.display()
        ),
    };
    let specials = (n_regular..cfg.vocab_size as usize).map(text_of).collect::<Result<Vec<String>>>()?;
    let tok = TextTokenizer::with_specials(vocab, specials);
    if tok.vocab_size() != cfg.vocab_size as usize {
        bail!("{}: the tokenizer has {} tokens but vocab_size is {}", path.display(), tok.vocab_size(), cfg.vocab_size);
    }

    let meta = p.header.meta;
    let mut t = toml::Table::new();
    let name = if meta.name.is_empty() { "tinygpt" } else { meta.name };
    t.insert("name".into(), name.into());
    let corpus = if meta.corpus.is_empty() { "unknown corpus" } else { meta.corpus };
    t.insert("corpus".into(), corpus.into());
    // The name `train` gives the generated alphabet task: generate it again for `export`.
    t.insert("alphabet_task".into(), (meta.corpus == ALPHABET_CORPUS_NAME).into());
    t.insert("tokenizer".into(), if th.kind == TokenizerKind::Char { "char" } else { "bpe" }.into());
    if th.kind == TokenizerKind::ByteBpe {
        t.insert("bpe_vocab_size".into(), (n_regular as i64).into());
    }
    t.insert("arch".into(), if cfg.arch == tinygpt_runtime::Arch::Llama { "llama" } else { "gpt2" }.into());
    for (k, v) in [
        ("n_layer", cfg.n_layer),
        ("n_head", cfg.n_head),
        ("n_kv_head", cfg.n_kv_head),
        ("n_embd", cfg.n_embd),
        ("n_hidden", cfg.n_hidden),
        ("block_size", cfg.block_size),
    ] {
        t.insert(k.into(), (v as i64).into());
    }
    t.insert("tie_embeddings".into(), cfg.tie_embeddings.into());
    t.insert("norm_eps".into(), (cfg.norm_eps as f64).into());
    t.insert("rope_theta".into(), (cfg.rope_theta as f64).into());
    t.insert("batch_size".into(), 1i64.into());
    t.insert("max_iters".into(), 1i64.into());
    t.insert("learning_rate".into(), 1e-3.into());
    t.insert("sample_tokens".into(), 0i64.into());
    let text = toml::to_string(&t).context("configuration does not serialize")?;
    let config = TrainConfig::from_str_with(&text, &[]).with_context(|| format!("{}: unsupported configuration", path.display()))?;

    let mut weights = HashMap::new();
    for_each_tensor(&cfg, |id| {
        let s = tensor_shape(&cfg, id);
        let mut values = vec![0f32; s.numel()];
        tinygpt_runtime::weights::tensor_f32(&p, id, &mut values);
        let shape: Vec<i64> = if s.vector { vec![s.cols as i64] } else { vec![s.rows as i64, s.cols as i64] };
        weights.insert(id.to_string(), Tensor::from_slice(&values).view(shape.as_slice()));
    });
    Ok(BaseModel {
        config,
        tok,
        weights,
        steps: meta.train_steps,
        tokens_seen: meta.tokens_seen,
        corpus_name: meta.corpus.to_owned(),
    })
}

/// The tokenizer a fine-tuning run of `base` uses (the base's, with the chat tokens) and its
/// block size: what [`read_jsonl`] needs before training. For a fine-tuning run directory with a
/// `last.pt` (to `--resume`), pass that directory.
pub fn base_tokenizer(base: &Path) -> Result<(TextTokenizer, usize)> {
    let b = load_base(base)?;
    Ok((b.tok.add_specials(&CHAT_SPECIALS), b.config.block_size as usize))
}

/// Rows of `w: [rows, cols]` followed by `extra` new rows: the mean of the rows plus normal noise
/// of [`NEW_ROW_NOISE`] times their root-mean-square distance from that mean (per entry).
fn grow_rows(w: &Tensor, extra: i64) -> Tensor {
    if extra == 0 {
        return w.shallow_clone();
    }
    let w = w.to_kind(Kind::Float).to_device(Device::Cpu);
    let cols = w.size()[1];
    let rows = w.size()[0];
    let mean = Tensor::ones([1, rows], (Kind::Float, Device::Cpu)).matmul(&w) / rows as f64;
    let spread = (&w - &mean).square().mean(Kind::Float).sqrt();
    let noise = Tensor::randn([extra, cols], (Kind::Float, Device::Cpu)) * (spread * NEW_ROW_NOISE);
    Tensor::cat(&[w, mean.expand([extra, cols], false) + noise], 0)
}

/// The base's model with the chat tokens added to its vocabulary (see the module documentation),
/// built for training configuration `cfg` (the base's shape) on `device`. Call `tch::manual_seed`
/// first for reproducible new rows.
pub fn chat_model(base: &BaseModel, cfg: &TrainConfig, device: Device, bf16: bool) -> Result<(Gpt, TextTokenizer)> {
    let tok = base.tok.add_specials(&CHAT_SPECIALS);
    let extra = (tok.vocab_size() - base.tok.vocab_size()) as i64;
    let model = Gpt::new(ModelDims::new(cfg, tok.vocab_size()), device, bf16)?;
    for (name, t) in model.named_params() {
        let src = base.weights.get(&name).with_context(|| format!("the base lacks tensor {name}"))?;
        let src = if name == "tok_embeddings" || name == "output" { grow_rows(src, extra) } else { src.shallow_clone() };
        copy_into(&t, &src, &name)?;
    }
    Ok((model, tok))
}

/// A rendered conversation.
pub type Rendered = (Vec<u32>, Vec<bool>);

/// Inputs and targets `[n, time]` for rendered conversations (`time`: the longest's length − 1,
/// at most `block`): inputs padded with `pad`, targets -100 wherever the next token is not in the
/// mask or is padding. Returns them with the number of real (non-padding) input tokens.
pub fn batch_tensors(items: &[&Rendered], pad: u32, block: usize) -> (Tensor, Tensor, u64) {
    let t = items.iter().map(|(tk, _)| tk.len().saturating_sub(1)).max().unwrap_or(0).clamp(1, block.max(1));
    let mut x = vec![pad as i64; items.len() * t];
    let mut y = vec![-100i64; items.len() * t];
    let mut real = 0u64;
    for (b, (tokens, mask)) in items.iter().enumerate() {
        let n = tokens.len().saturating_sub(1).min(t);
        real += n as u64;
        for i in 0..n {
            x[b * t + i] = tokens[i] as i64;
            if mask[i + 1] {
                y[b * t + i] = tokens[i + 1] as i64;
            }
        }
    }
    let shape = [items.len() as i64, t as i64];
    (Tensor::from_slice(&x).view(shape), Tensor::from_slice(&y).view(shape), real)
}

/// Mean cross-entropy over the assistant tokens of `items` (batches of `batch` conversations).
pub fn masked_loss(model: &Gpt, items: &[Rendered], pad: u32, batch: usize) -> f64 {
    let device = model.vs.device();
    let v = model.dims.vocab_size;
    let block = model.dims.block_size as usize;
    tch::no_grad(|| {
        let (mut sum, mut count) = (0.0, 0i64);
        for chunk in items.chunks(batch.max(1)) {
            let refs: Vec<&Rendered> = chunk.iter().collect();
            let (x, y, _) = batch_tensors(&refs, pad, block);
            let y = y.to_device(device);
            count += y.ne(-100i64).sum(Kind::Int64).int64_value(&[]);
            let logits = model.forward(&x.to_device(device), false);
            sum += logits
                .view([-1, v])
                .cross_entropy_loss::<Tensor>(&y.view([-1]), None, Reduction::Sum, -100, 0.0)
                .double_value(&[]);
        }
        if count == 0 {
            f64::NAN
        } else {
            sum / count as f64
        }
    })
}

/// Batches of conversations for the training loop: `batch` conversations drawn (with
/// replacement) from `(seed, step, micro)` alone; validation loss over the assistant tokens of
/// the held-out conversations.
pub struct ChatBatches {
    train: Vec<Rendered>,
    /// Each training conversation's weight in the loss (empty: all 1).
    weights: Vec<f32>,
    val: Vec<Rendered>,
    /// Token ids of the prose mixed into training batches, and the rows per batch it takes.
    prose: Vec<u32>,
    prose_rows: usize,
    pad: u32,
    block: usize,
    batch: usize,
    eval_batch: usize,
    seed: u64,
}

impl ChatBatches {
    /// Renders `train` and `val` with `tok`; a conversation that does not render or does not fit
    /// in `block + 1` tokens is an error naming it.
    pub fn new(tok: &TextTokenizer, train: &[Conversation], val: &[Conversation], cfg: &TrainConfig) -> Result<Self> {
        let block = cfg.block_size as usize;
        let rendered = |set: &[Conversation], what: &str| -> Result<Vec<Rendered>> {
            set.iter()
                .enumerate()
                .map(|(i, c)| {
                    let r = render(tok, &c.messages).with_context(|| format!("{what} conversation {}", i + 1))?;
                    if r.0.len() > block + 1 {
                        bail!("{what} conversation {} is {} tokens long; the context holds at most {} (block_size {block} + 1)", i + 1, r.0.len(), block + 1);
                    }
                    if !r.1.iter().any(|&m| m) {
                        bail!("{what} conversation {} has no assistant turn", i + 1);
                    }
                    Ok(r)
                })
                .collect()
        };
        let (_, _, _, pad) = chat_ids(tok)?;
        let train = rendered(train, "training")?;
        let val = rendered(val, "validation")?;
        if train.is_empty() {
            bail!("no training conversations");
        }
        if val.is_empty() {
            bail!("no validation conversations");
        }
        Ok(ChatBatches {
            train,
            weights: Vec::new(),
            val,
            prose: Vec::new(),
            prose_rows: 0,
            pad,
            block,
            batch: cfg.batch_size as usize,
            eval_batch: cfg.eval_batch as usize,
            seed: cfg.seed,
        })
    }

    /// Mixes prose into every training batch: `round(fraction · batch_size)` of its rows (at least
    /// one when `fraction > 0`, at most all but one) become windows of `tokens` as long as the
    /// batch's longest conversation, with the loss on every token.
    pub fn with_prose(mut self, tokens: Vec<u32>, fraction: f64) -> Result<Self> {
        if fraction <= 0.0 {
            return Ok(self);
        }
        if tokens.len() < self.block + 2 {
            bail!("the prose for prose_fraction has {} tokens; it needs at least block_size + 2 = {}", tokens.len(), self.block + 2);
        }
        let rows = ((fraction * self.batch as f64).round() as usize).max(1);
        if rows >= self.batch {
            bail!("prose_fraction {fraction} leaves no conversation in a batch of {}", self.batch);
        }
        self.prose = tokens;
        self.prose_rows = rows;
        Ok(self)
    }

    /// Weighs each training conversation's loss by `weights` (one per conversation, in order;
    /// prose rows keep weight 1). Negative weights push a conversation's answer down.
    pub fn with_weights(mut self, weights: Vec<f32>) -> Result<Self> {
        if weights.len() != self.train.len() {
            bail!("{} weights for {} training conversations", weights.len(), self.train.len());
        }
        if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
            bail!("a conversation's weight is {w}: weights must be finite");
        }
        self.weights = weights;
        Ok(self)
    }

    /// Rows of each training batch that are prose.
    pub fn prose_rows(&self) -> usize {
        self.prose_rows
    }

    /// Assistant tokens (loss positions) of the training set.
    pub fn train_targets(&self) -> usize {
        self.train.iter().map(|(_, m)| m.iter().filter(|&&b| b).count()).sum()
    }

    /// A fingerprint of the rendered training set (FNV-1a over its tokens and masks).
    pub fn fingerprint(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (t, m) in &self.train {
            for (&id, &b) in t.iter().zip(m) {
                for byte in (id as u64 * 2 + b as u64).to_le_bytes() {
                    h = (h ^ byte as u64).wrapping_mul(0x100_0000_01b3);
                }
            }
            h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
        }
        for w in &self.weights {
            for byte in w.to_le_bytes() {
                h = (h ^ byte as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }
}

impl Batches for ChatBatches {
    fn batch(&self, step: u64, micro: u32) -> Batch {
        let mut s = mix(self.seed ^ mix(step.wrapping_mul(0x1000_0000_01B3) ^ micro as u64 ^ 0x5f7));
        let idx: Vec<usize> = (0..self.batch - self.prose_rows)
            .map(|_| {
                s = mix(s);
                (s % self.train.len() as u64) as usize
            })
            .collect();
        let mut picks: Vec<&Rendered> = idx.iter().map(|&i| &self.train[i]).collect();
        // Prose windows as long as the longest conversation, so they add no padding.
        let len = picks.iter().map(|(t, _)| t.len()).max().unwrap_or(2).clamp(2, self.block + 1);
        let prose: Vec<Rendered> = (0..self.prose_rows)
            .map(|_| {
                s = mix(s);
                let start = (s % (self.prose.len() - len + 1) as u64) as usize;
                let mut mask = vec![true; len];
                mask[0] = false;
                (self.prose[start..start + len].to_vec(), mask)
            })
            .collect();
        picks.extend(prose.iter());
        let (inputs, targets, tokens) = batch_tensors(&picks, self.pad, self.block);
        let weights = (!self.weights.is_empty()).then(|| {
            let w: Vec<f32> = idx.iter().map(|&i| self.weights[i]).chain(std::iter::repeat_n(1.0, self.prose_rows)).collect();
            Tensor::from_slice(&w)
        });
        Batch { inputs, targets, tokens, weights }
    }

    fn val_loss(&self, model: &Gpt) -> f64 {
        masked_loss(model, &self.val, self.pad, self.eval_batch)
    }
}

/// Greedy replies of a chat model file (`bytes`, a `.tgpt`) to each prompt, generated by the
/// runtime (`chat::reply`, temperature 0) and stopped at `<|im_end|>` or `max_new` tokens.
pub fn runtime_replies(bytes: &[u8], prompts: &[&[(Role, String)]], max_new: usize) -> Result<Vec<String>> {
    let model = export::load(bytes)?;
    let template = Template::new(model.tokenizer()).map_err(|e| anyhow!("{e}"))?;
    let ctx = model.config().block_size as usize;
    let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
    let mut session = Session::new(&model, &mut buf, ctx, KvDType::F32).map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(prompts.len());
    let mut tokens = vec![0u32; ctx + 1];
    for p in prompts {
        let msgs: Vec<Message<'_>> = p.iter().map(|(role, content)| Message { role: *role, content }).collect();
        let n = template.render(&msgs, true, &mut tokens).map_err(|e| anyhow!("{e}"))?;
        let mut sampler = RtSampler::new(SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0 }, 0);
        let mut text = String::new();
        chat::reply(&mut session, &mut sampler, &template, &tokens[..n], max_new, |s| text.push_str(s))
            .map_err(|e| anyhow!("{e}"))?;
        out.push(text);
    }
    Ok(out)
}

/// Fine-tunes `base` (a run directory, `.pt` or `.tgpt`) on `train`, validating on `val`, with
/// settings `cfg`; writes best.pt, last.pt, log.jsonl and loss.svg into `opts.out`. With
/// `opts.resume` it continues the run in `opts.out` from its last.pt instead (the base is then not
/// read; the training conversations must be the same). Returns the run summary.
pub fn finetune(base: &Path, train: &[Conversation], val: &[Conversation], cfg: &SftConfig, opts: &RunOptions) -> Result<RunSummary> {
    finetune_weighted(base, train, None, val, cfg, opts)
}

/// [`finetune`] with each training conversation's loss weighted by `weights` (one per
/// conversation; see [`ChatBatches::with_weights`]): the policy-gradient step of `rl --method
/// reinforce`, where a weight is a sampled answer's advantage.
pub fn finetune_weighted(base: &Path, train: &[Conversation], weights: Option<&[f32]>, val: &[Conversation], cfg: &SftConfig, opts: &RunOptions) -> Result<RunSummary> {
    std::fs::create_dir_all(&opts.out).with_context(|| format!("cannot create output directory {}", opts.out.display()))?;
    let last_path = opts.out.join("last.pt");
    if !opts.resume && last_path.exists() {
        bail!("{} already holds a run: pass --resume to continue it or choose another --out", opts.out.display());
    }
    let device = opts.device;
    let bf16 = cfg.precision == "bf16" || (cfg.precision == "auto" && device.is_cuda() && bf16_works(device));

    let (model, tok, mut opt, state, base_line) = if opts.resume {
        let ck = load_checkpoint(&last_path).context("--resume")?;
        let Some(origin) = ck.state.sft.clone() else {
            bail!("--resume: {} is not a fine-tuning run (continue it with `tinygpt-train train --resume`)", opts.out.display());
        };
        let tcfg = cfg.apply(&ck.state.config)?;
        check_resume(&ck.state, &tcfg)?;
        let tok = TextTokenizer::with_specials(ck.state.vocab.clone(), ck.state.specials.clone());
        let model = Gpt::new(ModelDims::new(&tcfg, tok.vocab_size()), device, bf16)?;
        for (name, t) in model.named_params() {
            let src = ck.tensors.get(&format!("model.{name}")).with_context(|| format!("checkpoint lacks tensor {name}"))?;
            copy_into(&t, src, &name)?;
        }
        let mut opt = AdamW::new(&model, tcfg.beta1, tcfg.beta2, 1e-8, tcfg.weight_decay);
        opt.load(&ck.tensors, ck.state.step)?;
        let mut state = ck.state.clone();
        state.config = tcfg;
        if let Some(o) = state.sft.as_mut() {
            o.config = cfg.clone();
        }
        let line = format!("base: {} (resuming at step {})", origin.base, state.step);
        (model, tok, opt, state, line)
    } else {
        let b = load_base(base)?;
        let tcfg = cfg.apply(&b.config)?;
        tch::manual_seed(cfg.seed as i64);
        let (model, tok) = chat_model(&b, &tcfg, device, bf16)?;
        let opt = AdamW::new(&model, tcfg.beta1, tcfg.beta2, 1e-8, tcfg.weight_decay);
        let line = format!(
            "base: {} ({} steps on {}), vocabulary {} + {} chat tokens",
            base.display(),
            b.steps,
            if b.corpus_name.is_empty() { "an unnamed corpus" } else { &b.corpus_name },
            b.tok.vocab_size(),
            tok.vocab_size() - b.tok.vocab_size()
        );
        let state = TrainState {
            trainer_version: TRAINER_VERSION.into(),
            config: tcfg,
            vocab: tok.vocab().clone(),
            specials: tok.specials().to_vec(),
            sft: Some(SftOrigin {
                base: base.display().to_string(),
                base_steps: b.steps,
                base_tokens_seen: b.tokens_seen,
                base_corpus: b.corpus_name.clone(),
                config: cfg.clone(),
                train_conversations: train.len(),
                val_conversations: val.len(),
                data_fingerprint: 0,
            }),
            step: 0,
            tokens_seen: 0,
            best_val: None,
            best_step: 0,
            last_val: None,
            evals_since_best: 0,
            lr_scale: 1.0,
        };
        (model, tok, opt, state, line)
    };
    remove_stale_temporaries(&opts.out);
    let mut state = state;
    let tcfg = state.config.clone();
    // Weighted conversations are sampled answers: one the context cut off before its
    // `<|im_end|>` does not fit with it and is left out.
    let kept: Option<(Vec<Conversation>, Vec<f32>)> = match weights {
        None => None,
        Some(w) => {
            if w.len() != train.len() {
                bail!("{} weights for {} training conversations", w.len(), train.len());
            }
            let mut keep = (Vec::new(), Vec::new());
            for (c, &w) in train.iter().zip(w) {
                if render(&tok, &c.messages)?.0.len() <= tcfg.block_size as usize + 1 {
                    keep.0.push(c.clone());
                    keep.1.push(w);
                }
            }
            Some(keep)
        }
    };
    let train = kept.as_ref().map_or(train, |k| &k.0[..]);
    let mut data = ChatBatches::new(&tok, train, val, &tcfg)?;
    if let Some((_, w)) = &kept {
        data = data.with_weights(w.clone())?;
    }
    if cfg.prose_fraction > 0.0 {
        let prose = train::prepare_data(&tcfg, Some(tok.vocab().clone()))
            .context("reading the prose for prose_fraction (the training split of `corpus`)")?;
        data = data.with_prose(prose.train, cfg.prose_fraction)?;
    }
    let fp = data.fingerprint();
    if let Some(o) = state.sft.as_mut() {
        if opts.resume && o.data_fingerprint != fp {
            bail!("--resume: the training conversations differ from the ones the run started with ({} then, {} now)", o.train_conversations, train.len());
        }
        o.data_fingerprint = fp;
        o.val_conversations = val.len();
    }
    if opts.verbose {
        println!("{base_line}");
        println!(
            "model: {} {} layers, {} heads ({} kv), {} wide, block {}, vocab {}: {} parameters; {}",
            tcfg.arch, tcfg.n_layer, tcfg.n_head, tcfg.kv_heads(), tcfg.n_embd, tcfg.block_size, tok.vocab_size(),
            model.param_count(), if bf16 { "bf16 matmuls and attention" } else { "f32" }
        );
        println!(
            "data: {} train / {} val conversations, {} assistant tokens to learn{}",
            train.len(),
            val.len(),
            data.train_targets(),
            if data.prose_rows() > 0 {
                format!("; {} of {} rows per batch are prose from {}", data.prose_rows(), tcfg.batch_size, tcfg.corpus)
            } else {
                String::new()
            }
        );
    }
    // The sample at each evaluation: the reply to the first validation conversation's prompt.
    let prompt: Option<Vec<(Role, String)>> = val.first().and_then(|c| c.prompt_and_answer()).map(|(p, _)| p.to_vec());
    let sample = |model: &Gpt, _: &TrainState| -> Result<String> {
        let p = prompt.as_deref().unwrap_or_default();
        let bytes = export::encode(model, &tok, &MetaData::default(), DType::F32, 64)?;
        let reply = runtime_replies(&bytes, &[p], tcfg.block_size as usize)?;
        let last_user = p.iter().rev().find(|(r, _)| *r == Role::User).map_or("", |(_, c)| c.as_str());
        Ok(format!("user: {last_user}\nassistant: {}", reply.concat()))
    };
    train::run_loop(&tcfg, opts, &model, &mut opt, state, &data, prompt.as_ref().map(|_| &sample as train::Sampler), None)
}
