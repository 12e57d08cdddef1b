//! Corpus loading, the train/validation split, and the two tokenizers (characters, byte-level BPE).
//!
//! Both tokenizers encode exactly as `tinygpt_runtime::Tokenizer::encode` does, so the ids the model
//! is trained on are the ids the runtime feeds it (tested against the runtime in `tests/`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tinygpt_runtime::writer::TokenizerData;

/// Reads a UTF-8 text file; a missing, empty or non-UTF-8 file is an error naming the path.
pub fn read_corpus(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read corpus {}", path.display()))?;
    if bytes.is_empty() {
        bail!("corpus {} is empty", path.display());
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            bail!("corpus {} is not UTF-8 text (invalid byte at offset {at})", path.display())
        }
    }
}

/// The alphabet task: the lower-case alphabet, one copy per line, `lines` times.
pub fn alphabet_corpus(lines: usize) -> String {
    "abcdefghijklmnopqrstuvwxyz\n".repeat(lines)
}

/// Splits token ids into (train, validation): the last `val_fraction` is validation, cut where
/// nanoGPT cuts (`int(n * 0.9)`: the product truncated).
pub fn split(tokens: &[u32], val_fraction: f64, block_size: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let n = tokens.len();
    let n_train = ((n as f64) * (1.0 - val_fraction)) as usize;
    let (train, val) = tokens.split_at(n_train.min(n));
    if train.len() < block_size + 2 {
        bail!(
            "the training split has {} tokens, fewer than block_size + 2 = {}: use a larger corpus or a smaller block_size",
            train.len(),
            block_size + 2
        );
    }
    if val.len() < 2 {
        bail!("the validation split has {} tokens; it needs at least 2", val.len());
    }
    Ok((train.to_vec(), val.to_vec()))
}

/// A tokenizer's vocabulary, as stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vocab {
    /// One token per character, ids in sorted character order.
    Char { chars: Vec<char> },
    /// Byte-level BPE: ids 0..256 are bytes, id 256+i is `merges[i]`.
    Bpe { merges: Vec<(u32, u32)> },
}

/// Encodes text the way the runtime does.
///
/// Special tokens (for a chat model `tinygpt_runtime::chat::CHAT_SPECIALS`) follow the regular
/// ids, in the order given: they count in [`TextTokenizer::vocab_size`], are never produced by
/// [`TextTokenizer::encode`] (text that spells `<|im_end|>` stays characters) and decode as
/// nothing, as in the runtime.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    vocab: Vocab,
    specials: Vec<String>,
    char_ids: HashMap<char, u32>,
    ranks: HashMap<(u32, u32), u32>,
}

impl TextTokenizer {
    /// Wraps a vocabulary (no special tokens).
    pub fn new(vocab: Vocab) -> Self {
        Self::with_specials(vocab, Vec::new())
    }

    /// Wraps a vocabulary followed by special tokens named `specials` (ids `n_regular()..`).
    pub fn with_specials(vocab: Vocab, specials: Vec<String>) -> Self {
        let mut char_ids = HashMap::new();
        let mut ranks = HashMap::new();
        match &vocab {
            Vocab::Char { chars } => {
                for (i, &c) in chars.iter().enumerate() {
                    char_ids.insert(c, i as u32);
                }
            }
            Vocab::Bpe { merges } => {
                for (r, &p) in merges.iter().enumerate() {
                    ranks.entry(p).or_insert(r as u32);
                }
            }
        }
        TextTokenizer { vocab, specials, char_ids, ranks }
    }

    /// This vocabulary with `names` appended as special tokens, skipping those it already has.
    pub fn add_specials(&self, names: &[&str]) -> Self {
        let mut specials = self.specials.clone();
        for n in names {
            if !specials.iter().any(|s| s == n) {
                specials.push((*n).to_owned());
            }
        }
        Self::with_specials(self.vocab.clone(), specials)
    }

    /// The special tokens' names, in id order.
    pub fn specials(&self) -> &[String] {
        &self.specials
    }

    /// Number of regular tokens (the ids before the special tokens).
    pub fn n_regular(&self) -> usize {
        match &self.vocab {
            Vocab::Char { chars } => chars.len(),
            Vocab::Bpe { merges } => 256 + merges.len(),
        }
    }

    /// The id of the special token called `name`.
    pub fn special_id(&self, name: &str) -> Option<u32> {
        self.specials.iter().position(|s| s == name).map(|i| (self.n_regular() + i) as u32)
    }

    /// Whether `id` is a special token.
    pub fn is_special(&self, id: u32) -> bool {
        (id as usize) >= self.n_regular() && (id as usize) < self.vocab_size()
    }

    /// Character vocabulary of `text`: its sorted unique characters.
    pub fn train_char(text: &str) -> Self {
        let set: BTreeSet<char> = text.chars().collect();
        Self::new(Vocab::Char { chars: set.into_iter().collect() })
    }

    /// Trains byte-level BPE with `vocab_size` tokens (256 bytes + merges) on `text`, using the
    /// `tokenizers` crate with the runtime's pre-tokenization (a new chunk at every space).
    pub fn train_bpe(text: &str, vocab_size: u32) -> Result<Self> {
        let merges = bpe::train(text, vocab_size)?;
        Ok(Self::new(Vocab::Bpe { merges }))
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Number of tokens, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.n_regular() + self.specials.len()
    }

    /// The regular vocabulary in the runtime writer's form (the special tokens are passed to the
    /// writer separately, see [`TextTokenizer::specials`]).
    pub fn to_runtime(&self) -> TokenizerData {
        match &self.vocab {
            Vocab::Char { chars } => TokenizerData::Char { chars: chars.clone() },
            Vocab::Bpe { merges } => TokenizerData::ByteBpe { merges: merges.clone() },
        }
    }

    /// Encodes `text`. Character vocabulary: an unknown character is an error.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.vocab {
            Vocab::Char { .. } => text
                .chars()
                .map(|c| {
                    self.char_ids
                        .get(&c)
                        .copied()
                        .with_context(|| format!("character {c:?} is not in the model's vocabulary"))
                })
                .collect(),
            Vocab::Bpe { .. } => {
                let mut out = Vec::with_capacity(text.len() / 2);
                let mut cache: HashMap<&[u8], Vec<u32>> = HashMap::new();
                for chunk in bpe::chunks(text.as_bytes()) {
                    let ids = cache.entry(chunk).or_insert_with(|| self.merge_chunk(chunk));
                    out.extend_from_slice(ids);
                }
                Ok(out)
            }
        }
    }

    /// Lowest-rank adjacent pair first, leftmost on ties, until nothing merges.
    fn merge_chunk(&self, chunk: &[u8]) -> Vec<u32> {
        let mut toks: Vec<u32> = chunk.iter().map(|&b| b as u32).collect();
        loop {
            let best = toks
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.ranks.get(&(w[0], w[1])).map(|&r| (r, i)))
                .min();
            let Some((r, i)) = best else { return toks };
            toks[i] = 256 + r;
            toks.remove(i + 1);
        }
    }

    /// The bytes of token `id` (none for a special token or an id outside the vocabulary).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        if id as usize >= self.n_regular() {
            return Vec::new();
        }
        match &self.vocab {
            Vocab::Char { chars } => chars.get(id as usize).map(|c| c.to_string().into_bytes()).unwrap_or_default(),
            Vocab::Bpe { merges } => {
                if id < 256 {
                    vec![id as u8]
                } else if let Some(&(a, b)) = merges.get(id as usize - 256) {
                    [self.token_bytes(a), self.token_bytes(b)].concat()
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Decodes ids to text (invalid UTF-8 becomes U+FFFD; special tokens are skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| self.token_bytes(i)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Byte-level BPE training with the `tokenizers` crate.
pub mod bpe {
    use std::collections::HashMap;

    use anyhow::{anyhow, bail, Context, Result};
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::Split;
    use tokenizers::{
        DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
        TokenizerBuilder, TokenizerImpl,
    };

    /// The runtime's pre-tokenization: a new chunk starts at every space byte that is not the
    /// first byte of the text.
    pub fn chunks(text: &[u8]) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= text.len() {
                return None;
            }
            let end = text[start + 1..].iter().position(|&b| b == b' ').map_or(text.len(), |p| start + 1 + p);
            let c = &text[start..end];
            start = end;
            Some(c)
        })
    }

    /// GPT-2's byte to printable-character table, as the `ByteLevel` pre-tokenizer uses it.
    pub fn byte_chars() -> [char; 256] {
        let mut table = ['\0'; 256];
        let mut extra = 0u32;
        for b in 0..=255u8 {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            table[b as usize] = if printable {
                char::from(b)
            } else {
                let c = char::from_u32(256 + extra).expect("valid");
                extra += 1;
                c
            };
        }
        table
    }

    type Tk = TokenizerImpl<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

    /// A `tokenizers` pipeline matching the runtime's BPE pre-tokenization.
    pub fn pipeline(model: BPE) -> Result<Tk> {
        let split = Split::new(" ", SplitDelimiterBehavior::MergedWithNext, false)
            .map_err(|e| anyhow!("cannot build the split pre-tokenizer: {e}"))?;
        let pre = Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()]);
        TokenizerBuilder::new()
            .with_model(model)
            .with_pre_tokenizer(Some(pre.into()))
            .build()
            .map_err(|e| anyhow!("cannot build the BPE tokenizer: {e}"))
    }

    /// Trains and returns the merges in the runtime's id space (rank order).
    pub fn train(text: &str, vocab_size: u32) -> Result<Vec<(u32, u32)>> {
        let tk = train_tokenizers(text, vocab_size)?;
        merges_of(&tk)
    }

    /// Trains the `tokenizers` model itself (also used by tests as an independent encoder).
    pub fn train_tokenizers(text: &str, vocab_size: u32) -> Result<Tk> {
        let alphabet = ByteLevel::alphabet().into_iter().collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size as usize)
            .min_frequency(0)
            .show_progress(false)
            .initial_alphabet(alphabet)
            .build();
        let mut tk = pipeline(BPE::default())?;
        tk.train(&mut trainer, std::iter::once(text)).map_err(|e| anyhow!("BPE training failed: {e}"))?;
        Ok(tk)
    }

    /// Converts a trained model's merges (strings of byte-level characters) into runtime ids.
    pub fn merges_of(tk: &Tk) -> Result<Vec<(u32, u32)>> {
        let json = serde_json::to_value(tk.get_model()).context("cannot serialize the BPE model")?;
        let merges = json.get("merges").and_then(|m| m.as_array()).context("BPE model has no merges")?;
        let table = byte_chars();
        let char_byte: HashMap<char, u8> = table.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let to_bytes = |s: &str| -> Result<Vec<u8>> {
            s.chars().map(|c| char_byte.get(&c).copied().with_context(|| format!("unexpected symbol {c:?}"))).collect()
        };
        let mut ids: HashMap<Vec<u8>, u32> = (0..=255u8).map(|b| (vec![b], b as u32)).collect();
        let mut out = Vec::with_capacity(merges.len());
        for m in merges {
            let (a, b) = match m {
                serde_json::Value::Array(p) if p.len() == 2 => {
                    (p[0].as_str().unwrap_or_default().to_string(), p[1].as_str().unwrap_or_default().to_string())
                }
                serde_json::Value::String(s) => match s.split_once(' ') {
                    Some((a, b)) => (a.to_string(), b.to_string()),
                    None => bail!("malformed merge {s:?}"),
                },
                other => bail!("malformed merge {other}"),
            };
            let (ba, bb) = (to_bytes(&a)?, to_bytes(&b)?);
            let ia = *ids.get(&ba).with_context(|| format!("merge refers to unknown token {a:?}"))?;
            let ib = *ids.get(&bb).with_context(|| format!("merge refers to unknown token {b:?}"))?;
            let new_id = 256 + out.len() as u32;
            ids.entry([ba, bb].concat()).or_insert(new_id);
            out.push((ia, ib));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_start_at_spaces() {
        let c: Vec<&[u8]> = bpe::chunks(b" ab  c\nd e").collect();
        assert_eq!(c, vec![&b" ab"[..], b" ", b" c\nd", b" e"]);
        let c: Vec<&[u8]> = bpe::chunks(b"x").collect();
        assert_eq!(c, vec![&b"x"[..]]);
        assert_eq!(bpe::chunks(b"").count(), 0);
    }

    #[test]
    fn char_vocab_is_sorted_unique() {
        let t = TextTokenizer::train_char("hello world");
        assert_eq!(t.vocab(), &Vocab::Char { chars: vec![' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w'] });
        assert_eq!(t.encode("hold").unwrap(), vec![3, 5, 4, 1]);
        assert!(t.encode("hz").is_err());
        assert_eq!(t.decode(&[3, 2]), "he");
    }

    #[test]
    fn bpe_learns_frequent_pairs_and_round_trips() {
        let text = "the cat the hat the bat ".repeat(50);
        let t = TextTokenizer::train_bpe(&text, 270).unwrap();
        assert!(t.vocab_size() > 256 && t.vocab_size() <= 270);
        let ids = t.encode(&text).unwrap();
        assert!(ids.len() < text.len() / 2, "{} tokens for {} bytes", ids.len(), text.len());
        assert_eq!(t.decode(&ids), text);
        let odd = "žluťoučký kůň ☃";
        assert_eq!(t.decode(&t.encode(odd).unwrap()), odd);
    }

    #[test]
    fn split_is_last_tenth() {
        let toks: Vec<u32> = (0..100).collect();
        let (tr, va) = split(&toks, 0.1, 8).unwrap();
        assert_eq!(tr.len(), 90);
        assert_eq!(va[0], 90);
        assert!(split(&toks[..5], 0.1, 8).is_err());
        // Tiny Shakespeare: nanoGPT's int(1115394 * 0.9) = 1003854.
        let big = vec![0u32; 1_115_394];
        assert_eq!(split(&big, 0.1, 8).unwrap().0.len(), 1_003_854);
    }
}
