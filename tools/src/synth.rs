//! Synthetic `.tgpt` models: random weights of a chosen shape, written by the runtime's writer.
//!
//! The weights are drawn from a seeded generator, so a spec always gives the same file. They are
//! scaled so that the logits spread over a few nats: sampling then depends visibly on the seed and
//! on the sampler settings, which is what the tests and the cross-target checks need.

use alloc::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};

use crate::prelude::*;
use tinygpt_runtime::chat::CHAT_SPECIALS;
use tinygpt_runtime::writer::{encode_model_with_specials, tensor_layout, MetaData, TokenizerData};
use tinygpt_runtime::{Arch, Config, DType};

/// The 65 characters of Tiny Shakespeare, the usual character vocabulary.
pub const SHAKESPEARE_CHARS: &str = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The tokenizer of a synthetic model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vocab {
    /// Character vocabulary made of these characters (in this order).
    Chars(String),
    /// Byte-level BPE with this many merges (vocabulary `256 + merges`), learned from a short
    /// English sample, then random.
    Bpe(u32),
}

/// Everything that defines a synthetic model.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Block type.
    pub arch: Arch,
    /// Number of layers.
    pub n_layer: u32,
    /// Number of query heads.
    pub n_head: u32,
    /// Number of key/value heads (must equal `n_head` for gpt2).
    pub n_kv_head: u32,
    /// Residual width.
    pub n_embd: u32,
    /// MLP hidden width.
    pub n_hidden: u32,
    /// Maximum context.
    pub block_size: u32,
    /// Tokenizer.
    pub vocab: Vocab,
    /// Weight storage.
    pub dtype: DType,
    /// int8 group size.
    pub group_size: u32,
    /// Whether the classifier shares the token embeddings.
    pub tie_embeddings: bool,
    /// Seed of the weights.
    pub seed: u64,
    /// Whether the vocabulary ends with the four chat tokens (`<|im_start|>`, `<|im_sep|>`,
    /// `<|im_end|>`, `<|pad|>`), making it a chat model.
    pub chat: bool,
}

impl Spec {
    /// A small character-level model of `arch` (about 30K parameters), quick to run anywhere.
    pub fn tiny(arch: Arch, dtype: DType) -> Self {
        Spec {
            arch,
            n_layer: 2,
            n_head: 4,
            n_kv_head: if arch == Arch::Llama { 2 } else { 4 },
            n_embd: 32,
            n_hidden: if arch == Arch::Llama { 88 } else { 128 },
            block_size: 64,
            vocab: Vocab::Chars(SHAKESPEARE_CHARS.to_owned()),
            dtype,
            group_size: 32,
            tie_embeddings: arch == Arch::Gpt2,
            seed: 1,
            chat: false,
        }
    }

    /// llama2.c's 260K shape (dim 64, 5 layers, 8 heads, 4 KV heads, hidden 172, vocab 512,
    /// block 512), here with a byte-level BPE vocabulary of 512 tokens. For gpt2 the KV heads
    /// equal the query heads and the MLP is 4x wide, as nanoGPT builds it.
    pub fn shape_260k(arch: Arch, dtype: DType) -> Self {
        Spec {
            arch,
            n_layer: 5,
            n_head: 8,
            n_kv_head: if arch == Arch::Llama { 4 } else { 8 },
            n_embd: 64,
            n_hidden: if arch == Arch::Llama { 172 } else { 256 },
            block_size: 512,
            vocab: Vocab::Bpe(256),
            dtype,
            group_size: 64,
            tie_embeddings: true,
            seed: 260,
            chat: false,
        }
    }

    /// A character-level model of about 1M parameters (5 layers, 128 wide, block 256).
    pub fn shape_1m(arch: Arch, dtype: DType) -> Self {
        Spec {
            arch,
            n_layer: 5,
            n_head: 4,
            n_kv_head: 4,
            n_embd: 128,
            n_hidden: if arch == Arch::Llama { 352 } else { 512 },
            block_size: 256,
            vocab: Vocab::Chars(SHAKESPEARE_CHARS.to_owned()),
            dtype,
            group_size: 64,
            tie_embeddings: arch == Arch::Gpt2,
            seed: 1_000_000,
            chat: false,
        }
    }

    /// The runtime configuration this spec describes.
    pub fn config(&self) -> Config {
        let vocab_size = match &self.vocab {
            Vocab::Chars(s) => s.chars().count() as u32,
            Vocab::Bpe(m) => 256 + m,
        } + if self.chat { CHAT_SPECIALS.len() as u32 } else { 0 };
        Config {
            arch: self.arch,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            n_embd: self.n_embd,
            n_hidden: self.n_hidden,
            block_size: self.block_size,
            vocab_size,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            tie_embeddings: self.tie_embeddings,
            dtype: self.dtype,
            group_size: self.group_size,
        }
    }

    /// Builds the `.tgpt` file bytes.
    pub fn build(&self) -> Result<Vec<u8>> {
        let cfg = self.config();
        let tokenizer = match &self.vocab {
            Vocab::Chars(s) => TokenizerData::Char { chars: s.chars().collect() },
            Vocab::Bpe(n) => TokenizerData::ByteBpe { merges: random_merges(*n, self.seed) },
        };
        let meta = MetaData {
            name: format!("synthetic-{}-{}", cfg.arch.name(), cfg.dtype.name()),
            corpus: "none (random weights)".to_owned(),
            trainer_version: concat!("tinygpt-synth ", env!("CARGO_PKG_VERSION")).to_owned(),
            ..MetaData::default()
        };
        let mut tensors = BTreeMap::new();
        let mut rng = SplitMix(self.seed);
        let dim = cfg.n_embd as f32;
        for (name, shape) in tensor_layout(&cfg) {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = if shape.len() == 1 {
                // Norm weights: around 1.
                (0..n).map(|_| 1.0 + 0.1 * rng.normal()).collect()
            } else {
                let fan_in = shape[1] as f32;
                let std = if name == "tok_embeddings" || name == "output" {
                    // Logits = classifier · normalised x: a spread of about 2 nats.
                    2.0 / libm::sqrtf(dim)
                } else if name == "pos_embeddings" {
                    0.5 / libm::sqrtf(dim)
                } else {
                    1.0 / libm::sqrtf(fan_in)
                };
                (0..n).map(|_| std * rng.normal()).collect()
            };
            tensors.insert(name, v);
        }
        let specials: &[&str] = if self.chat { &CHAT_SPECIALS } else { &[] };
        encode_model_with_specials(&cfg, &tokenizer, specials, &meta, &|name| tensors.get(name).cloned())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("cannot encode the synthetic model")
    }
}

/// A little English text that the BPE merges of synthetic models are learned from.
const MERGE_SAMPLE: &str = "First Citizen: Before we proceed any further, hear me speak. \
All: Speak, speak. First Citizen: You are all resolved rather to die than to famish? \
All: Resolved. resolved. First Citizen: First, you know Caius Marcius is chief enemy to the people. \
All: We know't, we know't. First Citizen: Let us kill him, and we'll have corn at our own price. \
Is't a verdict? All: No more talking on't; let it be done: away, away! \
To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer \
the slings and arrows of outrageous fortune, or to take arms against a sea of troubles.";

/// `n` valid BPE merges: first the most frequent pairs of [`MERGE_SAMPLE`] (split into words that
/// start at a space, as the runtime's encoder splits), then random pairs once the sample is used up.
fn random_merges(n: u32, seed: u64) -> Vec<(u32, u32)> {
    let mut words: Vec<Vec<u32>> = Vec::new();
    for (i, w) in MERGE_SAMPLE.split(' ').enumerate() {
        let mut ids: Vec<u32> = if i == 0 { Vec::new() } else { vec![u32::from(b' ')] };
        ids.extend(w.bytes().map(u32::from));
        words.push(ids);
    }
    let mut merges: Vec<(u32, u32)> = Vec::with_capacity(n as usize);
    let mut seen = BTreeSet::new();
    while merges.len() < n as usize {
        let mut counts: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        for w in &words {
            for p in w.windows(2) {
                *counts.entry((p[0], p[1])).or_default() += 1;
            }
        }
        // Most frequent first; ties to the smallest pair, so the result is deterministic.
        let Some((&pair, &c)) = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) else { break };
        if c < 2 {
            break;
        }
        let id = 256 + merges.len() as u32;
        merges.push(pair);
        seen.insert(pair);
        for w in &mut words {
            let mut i = 0;
            while i + 1 < w.len() {
                if (w[i], w[i + 1]) == pair {
                    w[i] = id;
                    w.remove(i + 1);
                }
                i += 1;
            }
        }
    }
    let mut rng = SplitMix(seed ^ 0x9e37_79b9_7f4a_7c15);
    let base: Vec<u32> = (b' '..=b'~').map(u32::from).collect();
    while merges.len() < n as usize {
        let i = merges.len() as u32;
        let pick = |rng: &mut SplitMix| {
            if rng.next_u64() % 3 == 0 {
                256 + (rng.next_u64() % u64::from(i)) as u32
            } else {
                base[(rng.next_u64() % base.len() as u64) as usize]
            }
        };
        let pair = (pick(&mut rng), pick(&mut rng));
        if seen.insert(pair) {
            merges.push(pair);
        }
    }
    merges
}

/// Parses the names `f32`, `f16`, `int8`/`i8`, `int4`/`i4`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    Ok(match s {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "int8" | "i8" => DType::I8,
        "int4" | "i4" => DType::I4,
        _ => bail!("unknown dtype '{s}' (expected f32, f16, int8 or int4)"),
    })
}

/// Parses the names `gpt2`, `llama`.
pub fn parse_arch(s: &str) -> Result<Arch> {
    Ok(match s {
        "gpt2" => Arch::Gpt2,
        "llama" => Arch::Llama,
        _ => bail!("unknown architecture '{s}' (expected gpt2 or llama)"),
    })
}

/// SplitMix64: a small, well-mixed seeded generator (enough for test weights).
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * core::f64::consts::PI * u2)) as f32
    }
}
