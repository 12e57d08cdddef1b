//! Tokenizers: a character vocabulary, byte-level BPE and sentencepiece-style pieces
//! (`sentencepiece.rs`), all `no_std` and allocation-free.
//!
//! BPE pre-tokenization: the text is cut into chunks, a new chunk starting at every space byte (`0x20`)
//! that is not the first byte of the text; merges never cross a chunk boundary. Inside a chunk, the
//! adjacent pair with the lowest merge rank is merged first (leftmost on ties), until no pair merges.

use crate::error::Error;
use crate::format::{TokenizerHeader, TokenizerKind};
use crate::sentencepiece::{self, TYPE_CONTROL};

/// Largest accepted number of special tokens (their names are checked pairwise for duplicates).
pub const MAX_SPECIAL: usize = 256;

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[4 * i..4 * i + 4]);
    u32::from_le_bytes(w)
}

/// Checks the tables of a tokenizer header against `vocab_size`. Called when a model is loaded, so
/// that encoding and decoding never index out of bounds afterwards.
pub(crate) fn validate<A: crate::model::Shape>(t: &TokenizerHeader<'_>, vocab_size: u32) -> Result<(), Error> {
    if A::TOKENIZER.is_some_and(|k| k != t.kind) {
        return Err(Error::Unsupported("the tokenizer is not the kind this program was compiled for"));
    }
    let v = vocab_size as usize;
    let n_special = t.n_special as usize;
    if t.token_offsets.len() != (v + 1) * 4 {
        return Err(Error::Tokenizer("offset table does not match vocab_size"));
    }
    if n_special > v {
        return Err(Error::Tokenizer("more special tokens than tokens"));
    }
    if n_special > MAX_SPECIAL {
        return Err(Error::Tokenizer("more than 256 special tokens"));
    }
    if let Some(e) = t.eot {
        if e >= vocab_size {
            return Err(Error::Tokenizer("end-of-text token is outside the vocabulary"));
        }
    }
    let mut prev = 0u32;
    if u32_at(t.token_offsets, 0) != 0 {
        return Err(Error::Tokenizer("first offset is not zero"));
    }
    for i in 1..=v {
        let o = u32_at(t.token_offsets, i);
        if o < prev {
            return Err(Error::Tokenizer("offsets are not increasing"));
        }
        prev = o;
    }
    if prev as usize != t.token_bytes.len() {
        return Err(Error::Tokenizer("offsets do not cover the token bytes"));
    }
    let tok = |i: usize| &t.token_bytes[u32_at(t.token_offsets, i) as usize..u32_at(t.token_offsets, i + 1) as usize];
    let n_regular = v - n_special;
    // Special tokens are looked up by name: names are non-empty and distinct.
    for i in n_regular..v {
        if tok(i).is_empty() {
            return Err(Error::Tokenizer("a special token has an empty name"));
        }
        if (n_regular..i).any(|j| tok(j) == tok(i)) {
            return Err(Error::Tokenizer("two special tokens have the same name"));
        }
    }
    // A constant when `A` names the kind: the other kinds' checks are not compiled in.
    match A::TOKENIZER.unwrap_or(t.kind) {
        TokenizerKind::Char => {
            if !t.merges.is_empty() || !t.merges_by_pair.is_empty() {
                return Err(Error::Tokenizer("character vocabulary with merges"));
            }
            for i in 0..n_regular {
                let s = core::str::from_utf8(tok(i)).map_err(|_| Error::Tokenizer("token is not UTF-8"))?;
                let mut cs = s.chars();
                if cs.next().is_none() || cs.next().is_some() {
                    return Err(Error::Tokenizer("character token is not exactly one character"));
                }
            }
        }
        TokenizerKind::ByteBpe => {
            if n_regular < 256 {
                return Err(Error::Tokenizer("byte-level BPE needs the 256 byte tokens"));
            }
            for i in 0..256 {
                if tok(i) != [i as u8] {
                    return Err(Error::Tokenizer("token ids 0..256 are not the bytes"));
                }
            }
            let n_merges = n_regular - 256;
            if t.merges.len() != n_merges * 8 || t.merges_by_pair.len() != n_merges * 4 {
                return Err(Error::Tokenizer("merge tables do not match the vocabulary"));
            }
            for m in 0..n_merges {
                let (a, b) = (u32_at(t.merges, 2 * m) as usize, u32_at(t.merges, 2 * m + 1) as usize);
                if a >= 256 + m || b >= 256 + m {
                    return Err(Error::Tokenizer("merge refers to a later token"));
                }
                let (ta, tb, tm) = (tok(a), tok(b), tok(256 + m));
                if tm.len() != ta.len() + tb.len() || &tm[..ta.len()] != ta || &tm[ta.len()..] != tb {
                    return Err(Error::Tokenizer("merged token is not the concatenation of its pair"));
                }
            }
            // merges_by_pair must list every rank once, sorted by strictly increasing pair.
            let mut last: Option<(u32, u32)> = None;
            for i in 0..n_merges {
                let r = u32_at(t.merges_by_pair, i) as usize;
                if r >= n_merges {
                    return Err(Error::Tokenizer("merge index out of range"));
                }
                let p = (u32_at(t.merges, 2 * r), u32_at(t.merges, 2 * r + 1));
                if last.is_some_and(|l| l >= p) {
                    return Err(Error::Tokenizer("merge pair index is not strictly sorted"));
                }
                last = Some(p);
            }
        }
        TokenizerKind::SentencePiece => sentencepiece::validate(t, v, tok)?,
    }
    Ok(())
}

/// A validated tokenizer borrowed from a model file.
#[derive(Debug, Clone, Copy)]
pub struct Tokenizer<'a> {
    h: TokenizerHeader<'a>,
    vocab_size: usize,
}

impl<'a> Tokenizer<'a> {
    /// Wraps a header that [`crate::Model`] has validated.
    pub(crate) fn new(h: TokenizerHeader<'a>, vocab_size: u32) -> Self {
        Tokenizer { h, vocab_size: vocab_size as usize }
    }

    /// Character vocabulary, BPE or sentencepiece.
    pub fn kind(&self) -> TokenizerKind {
        self.h.kind
    }
    /// The beginning-of-sequence token of a sentencepiece tokenizer, if it has one.
    pub fn bos(&self) -> Option<u32> {
        match self.h.kind {
            TokenizerKind::SentencePiece => Some(self.sp().bos()).filter(|&b| b != sentencepiece::NONE),
            _ => None,
        }
    }
    /// The score of a sentencepiece token (higher scores merge first); `None` for other kinds.
    pub fn piece_score(&self, id: u32) -> Option<f32> {
        match self.h.kind {
            TokenizerKind::SentencePiece if (id as usize) < self.vocab_size => Some(self.sp().score(id as usize)),
            _ => None,
        }
    }
    fn sp(&self) -> sentencepiece::Tables<'a> {
        sentencepiece::Tables::new(&self.h, self.vocab_size)
    }
    /// Whether `id` decodes to nothing: a special token, or a sentencepiece control token.
    fn is_silent(&self, id: u32) -> bool {
        self.is_special(id)
            || (self.h.kind == TokenizerKind::SentencePiece
                && (id as usize) < self.vocab_size
                && self.sp().piece_type(id as usize) == TYPE_CONTROL)
    }
    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    /// The end-of-text token, if the model has one.
    pub fn eot(&self) -> Option<u32> {
        self.h.eot
    }
    /// Number of special tokens (the last ids of the vocabulary).
    pub fn n_special(&self) -> usize {
        self.h.n_special as usize
    }

    /// The id of the special token whose stored name is `name` (for example `<|im_end|>`).
    pub fn special_id(&self, name: &str) -> Option<u32> {
        let first = self.vocab_size - self.h.n_special as usize;
        (first..self.vocab_size).map(|i| i as u32).find(|&i| self.token_bytes(i) == name.as_bytes())
    }

    /// Whether `id` is a special token (never produced by [`Tokenizer::encode`], decoded as nothing).
    pub fn is_special(&self, id: u32) -> bool {
        (id as usize) >= self.vocab_size - self.h.n_special as usize && (id as usize) < self.vocab_size
    }

    /// The bytes of token `id` (empty for ids outside the vocabulary).
    pub fn token_bytes(&self, id: u32) -> &'a [u8] {
        let i = id as usize;
        if i >= self.vocab_size {
            return &[];
        }
        let (s, e) = (u32_at(self.h.token_offsets, i) as usize, u32_at(self.h.token_offsets, i + 1) as usize);
        &self.h.token_bytes[s..e]
    }

    /// Encodes `text` into `out`, returning the number of tokens written.
    ///
    /// Character vocabulary: a character that is not in the vocabulary is `Err(UnknownChar)`.
    /// BPE: every text encodes. Sentencepiece: the BOS token first (when the model's tables say so,
    /// as llama2.c and llama do), a space before a non-empty text, byte fallback for characters
    /// without a piece (the unknown token, or `Err(UnknownChar)`, when there is none); at most
    /// `text.len() + 2` tokens. `Err(TooManyTokens)` if `out` is too small.
    pub fn encode(&self, text: &str, out: &mut [u32]) -> Result<usize, Error> {
        match self.h.kind {
            TokenizerKind::Char => self.encode_chars(text, out),
            TokenizerKind::ByteBpe => self.encode_bpe(text.as_bytes(), out),
            TokenizerKind::SentencePiece => {
                let enc = sentencepiece::Encoder { sp: self.sp(), index: self.h.merges_by_pair, tok: |id| self.token_bytes(id) };
                enc.encode(text, out)
            }
        }
    }

    /// The id of character `c`, if it is in the vocabulary.
    pub fn char_id(&self, c: char) -> Option<u32> {
        let mut buf = [0u8; 4];
        let want = c.encode_utf8(&mut buf).as_bytes();
        let n = self.vocab_size - self.h.n_special as usize;
        (0..n as u32).find(|&i| self.token_bytes(i) == want)
    }

    fn encode_chars(&self, text: &str, out: &mut [u32]) -> Result<usize, Error> {
        let mut n = 0;
        let capacity = out.len();
        for c in text.chars() {
            let id = self.char_id(c).ok_or(Error::UnknownChar(c))?;
            *out.get_mut(n).ok_or(Error::TooManyTokens { capacity })? = id;
            n += 1;
        }
        Ok(n)
    }

    /// Rank of merging `(a, b)`, if that pair is a merge.
    fn merge_rank(&self, a: u32, b: u32) -> Option<usize> {
        let idx = self.h.merges_by_pair;
        let pair_of = |r: usize| (u32_at(self.h.merges, 2 * r), u32_at(self.h.merges, 2 * r + 1));
        let (mut lo, mut hi) = (0usize, idx.len() / 4);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let r = u32_at(idx, mid) as usize;
            match pair_of(r).cmp(&(a, b)) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return Some(r),
            }
        }
        None
    }

    fn encode_bpe(&self, text: &[u8], out: &mut [u32]) -> Result<usize, Error> {
        let mut n = 0;
        let mut start = 0;
        while start < text.len() {
            let mut end = start + 1;
            while end < text.len() && text[end] != b' ' {
                end += 1;
            }
            let chunk = &text[start..end];
            let cap = out.len();
            let toks = out
                .get_mut(n..n + chunk.len())
                .ok_or(Error::TooManyTokens { capacity: cap })?;
            for (t, &b) in toks.iter_mut().zip(chunk) {
                *t = b as u32;
            }
            let len = self.merge_chunk(toks);
            n += len;
            start = end;
        }
        Ok(n)
    }

    /// Applies merges to `toks` in place; returns the new length.
    fn merge_chunk(&self, toks: &mut [u32]) -> usize {
        loop {
            let mut best: Option<(usize, usize, usize)> = None; // (rank, left, right)
            for_each_pair(toks, |i, j| {
                if let Some(r) = self.merge_rank(toks[i], toks[j]) {
                    if best.is_none_or(|(br, _, _)| r < br) {
                        best = Some((r, i, j));
                    }
                }
            });
            let Some((r, i, j)) = best else { return compact(toks) };
            toks[i] = 256 + r as u32;
            toks[j] = HOLE;
        }
    }

    /// Decodes `tokens` into `out` as UTF-8 (invalid sequences become U+FFFD); returns the length.
    /// Stops early (without splitting a character) if `out` fills up.
    pub fn decode_into(&self, tokens: &[u32], out: &mut [u8]) -> usize {
        let mut n = 0;
        let mut d = Decoder::new();
        let mut full = false;
        let mut emit = |s: &str| {
            if full || n + s.len() > out.len() {
                full = true;
                return;
            }
            out[n..n + s.len()].copy_from_slice(s.as_bytes());
            n += s.len();
        };
        for &t in tokens {
            d.push(self, t, &mut emit);
        }
        d.finish(&mut emit);
        n
    }
}

/// Streams token bytes out as valid UTF-8: a character split across tokens is held back until it is
/// complete; a malformed sequence is emitted as U+FFFD.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    pending: [u8; 4],
    len: usize,
    need: usize,
    /// The previous token was a sentencepiece BOS: the next piece's leading space is dropped.
    after_bos: bool,
}

const REPLACEMENT: &str = "\u{FFFD}";

fn utf8_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0, // continuation byte or invalid lead
    }
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pushes one token; calls `emit` with every complete piece of text.
    pub fn push(&mut self, tok: &Tokenizer<'_>, id: u32, emit: &mut impl FnMut(&str)) {
        let after_bos = core::mem::replace(&mut self.after_bos, tok.bos() == Some(id));
        if tok.is_silent(id) {
            return;
        }
        let mut bytes = tok.token_bytes(id);
        // The space encoding put before the text: in a normal piece, or a byte token when the
        // vocabulary has no space piece. (Control tokens returned above.)
        if after_bos && bytes.first() == Some(&b' ') && tok.sp().space_prefix() {
            bytes = &bytes[1..];
        }
        let mut i = 0;
        while i < bytes.len() {
            if self.len == 0 {
                // Fast path: a run of complete characters is emitted straight from the token.
                let run = valid_prefix(&bytes[i..]);
                if run > 0 {
                    // `valid_prefix` returned the length of a valid UTF-8 prefix, so this is `Ok`.
                    if let Ok(s) = core::str::from_utf8(&bytes[i..i + run]) {
                        emit(s);
                    }
                    i += run;
                    continue;
                }
            }
            self.push_byte(bytes[i], emit);
            i += 1;
        }
    }

    fn push_byte(&mut self, b: u8, emit: &mut impl FnMut(&str)) {
        if self.len == 0 {
            let need = utf8_len(b);
            if need == 0 {
                emit(REPLACEMENT);
                return;
            }
            self.pending[0] = b;
            self.len = 1;
            self.need = need;
        } else {
            self.pending[self.len] = b;
            self.len += 1;
            // Check the prefix is still a possible character; if not, replace what we had and restart.
            if core::str::from_utf8(&self.pending[..self.len]).is_err()
                && !is_incomplete_prefix(&self.pending[..self.len])
            {
                self.len -= 1;
                emit(REPLACEMENT);
                self.len = 0;
                self.push_byte(b, emit);
                return;
            }
        }
        if self.len == self.need {
            match core::str::from_utf8(&self.pending[..self.len]) {
                Ok(s) => emit(s),
                Err(_) => emit(REPLACEMENT),
            }
            self.len = 0;
        }
    }

    /// Emits U+FFFD for an unfinished character at the end of the stream.
    pub fn finish(&mut self, emit: &mut impl FnMut(&str)) {
        if self.len > 0 {
            emit(REPLACEMENT);
            self.len = 0;
        }
    }
}

/// Length of the longest prefix of `b` made of complete, valid UTF-8 characters.
fn valid_prefix(b: &[u8]) -> usize {
    match core::str::from_utf8(b) {
        Ok(_) => b.len(),
        Err(e) => e.valid_up_to(),
    }
}

/// Whether `b` (which is not valid UTF-8) could still become a valid character with more bytes.
fn is_incomplete_prefix(b: &[u8]) -> bool {
    match core::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.valid_up_to() == 0 && e.error_len().is_none(),
    }
}

/// Marks a token merged into its left neighbour. Merging leaves holes and closes them once at
/// the end ([`compact`]), rather than moving the tail down after every merge: the result is the
/// same, and no `memmove` is linked (1.5 KB of a microcontroller's flash). No token id reaches it.
pub(crate) const HOLE: u32 = u32::MAX;

/// Calls `f(i, j)` for every pair of adjacent tokens of `toks` (positions `i < j` with only holes
/// between them), left to right.
pub(crate) fn for_each_pair(toks: &[u32], mut f: impl FnMut(usize, usize)) {
    let mut prev = None;
    for (j, &t) in toks.iter().enumerate() {
        if t == HOLE {
            continue;
        }
        if let Some(i) = prev {
            f(i, j);
        }
        prev = Some(j);
    }
}

/// Drops the holes of `toks`, keeping the order; returns the number of tokens left.
pub(crate) fn compact(toks: &mut [u32]) -> usize {
    let mut n = 0;
    for j in 0..toks.len() {
        let t = toks[j];
        if t != HOLE {
            toks[n] = t;
            n += 1;
        }
    }
    n
}
