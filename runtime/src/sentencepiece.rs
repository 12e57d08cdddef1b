//! The sentencepiece-style tokenizer of llama2.c and llama: pieces with scores, byte fallback, the
//! leading-space convention and a BOS token. `no_std`, no allocation: it works in the caller's
//! token buffer.
//!
//! Encoding (as llama2.c's `encode` with `bos = 1, eos = 0`): the BOS token (when the tables say
//! so); then, for a non-empty text, a space before it (when the tables say so); every character
//! becomes the piece that spells it, or else one byte token per UTF-8 byte, or else the unknown
//! token; then, repeatedly, the adjacent pair whose concatenation is a piece with the highest score
//! is merged (the leftmost one on equal scores), until no adjacent pair spells a piece.
//!
//! Decoding: normal pieces are their bytes, byte tokens their byte, control tokens nothing; a
//! token that follows BOS loses its leading space (the space encoding put there).
//!
//! The tables live in the header's `merges` and `merges_by_pair` byte strings (`FORMAT.md`).

use core::cmp::Ordering;

use crate::error::Error;
use crate::format::TokenizerHeader;

/// "None" in the BOS, unknown-token and byte fallback slots.
pub(crate) const NONE: u32 = u32::MAX;
/// Flag: a space is put before a non-empty text.
pub(crate) const FLAG_SPACE_PREFIX: u32 = 1;
/// Flag: encoding starts with the BOS token.
pub(crate) const FLAG_ADD_BOS: u32 = 2;
/// Piece type of a normal piece (text is built from these).
pub(crate) const TYPE_NORMAL: u8 = 0;
/// Piece type of a byte fallback token (`<0xXX>`): decodes to its one byte.
pub(crate) const TYPE_BYTE: u8 = 1;
/// Piece type of a control or unknown token (`<s>`, `</s>`, `<unk>`): decodes to nothing.
pub(crate) const TYPE_CONTROL: u8 = 2;

const BYTES_AT: usize = 12;
const SCORES_AT: usize = BYTES_AT + 256 * 4;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Length of the tables for a vocabulary of `v` tokens.
pub(crate) fn tables_len(v: usize) -> usize {
    SCORES_AT + v * 5
}

/// Checks the sentencepiece tables; `tok(i)` is token `i`'s bytes (the offsets are already valid).
pub(crate) fn validate<'a>(t: &TokenizerHeader<'a>, v: usize, tok: impl Fn(usize) -> &'a [u8]) -> Result<(), Error> {
    let m = t.merges;
    if m.len() != tables_len(v) {
        return Err(Error::Tokenizer("sentencepiece tables do not match the vocabulary"));
    }
    let sp = Tables { m, v };
    let in_vocab = |id: u32| id == NONE || (id as usize) < v;
    if !in_vocab(sp.bos()) || !in_vocab(sp.unk()) {
        return Err(Error::Tokenizer("BOS or unknown token is outside the vocabulary"));
    }
    let flags = u32_at(m, 8);
    if flags & !(FLAG_SPACE_PREFIX | FLAG_ADD_BOS) != 0 {
        return Err(Error::Tokenizer("unknown sentencepiece flags"));
    }
    if flags & FLAG_ADD_BOS != 0 && sp.bos() == NONE {
        return Err(Error::Tokenizer("encoding starts with BOS but there is no BOS token"));
    }
    for i in 0..v {
        let ty = sp.piece_type(i);
        if ty > TYPE_CONTROL {
            return Err(Error::Tokenizer("unknown piece type"));
        }
        if ty == TYPE_BYTE && tok(i).len() != 1 {
            return Err(Error::Tokenizer("a byte token is not one byte"));
        }
        if sp.score(i).is_nan() {
            return Err(Error::Tokenizer("a piece score is NaN"));
        }
    }
    for b in 0..256 {
        let id = sp.byte_id(b as u8);
        if id == NONE {
            continue;
        }
        if id as usize >= v || sp.piece_type(id as usize) != TYPE_BYTE || tok(id as usize) != [b as u8] {
            return Err(Error::Tokenizer("byte fallback table does not point at byte tokens"));
        }
    }
    let idx = t.merges_by_pair;
    if idx.len() % 4 != 0 || idx.len() / 4 > v {
        return Err(Error::Tokenizer("piece index does not match the vocabulary"));
    }
    let mut last: Option<&[u8]> = None;
    for k in 0..idx.len() / 4 {
        let id = u32_at(idx, 4 * k) as usize;
        if id >= v || sp.piece_type(id) != TYPE_NORMAL || tok(id).is_empty() {
            return Err(Error::Tokenizer("piece index lists a token that is not a normal piece"));
        }
        if last.is_some_and(|l| l >= tok(id)) {
            return Err(Error::Tokenizer("piece index is not strictly sorted"));
        }
        last = Some(tok(id));
    }
    Ok(())
}

/// Read access to validated tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables<'a> {
    m: &'a [u8],
    v: usize,
}

impl<'a> Tables<'a> {
    pub(crate) fn new(h: &TokenizerHeader<'a>, v: usize) -> Self {
        Tables { m: h.merges, v }
    }
    pub(crate) fn bos(&self) -> u32 {
        u32_at(self.m, 0)
    }
    pub(crate) fn unk(&self) -> u32 {
        u32_at(self.m, 4)
    }
    fn flags(&self) -> u32 {
        u32_at(self.m, 8)
    }
    fn byte_id(&self, b: u8) -> u32 {
        u32_at(self.m, BYTES_AT + 4 * b as usize)
    }
    pub(crate) fn score(&self, id: usize) -> f32 {
        f32::from_bits(u32_at(self.m, SCORES_AT + 4 * id))
    }
    pub(crate) fn piece_type(&self, id: usize) -> u8 {
        self.m[SCORES_AT + 4 * self.v + id]
    }
    pub(crate) fn space_prefix(&self) -> bool {
        self.flags() & FLAG_SPACE_PREFIX != 0
    }
}

/// Compares `cand` with the concatenation `a ++ b` without building it.
fn cmp_concat(cand: &[u8], a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(cand.len());
    match cand[..n].cmp(&a[..n]) {
        Ordering::Equal if cand.len() < a.len() => Ordering::Less,
        Ordering::Equal => cand[n..].cmp(b),
        o => o,
    }
}

/// The encoder: the tables, the piece index and the token bytes.
pub(crate) struct Encoder<'a, F: Fn(u32) -> &'a [u8]> {
    pub(crate) sp: Tables<'a>,
    pub(crate) index: &'a [u8],
    pub(crate) tok: F,
}

impl<'a, F: Fn(u32) -> &'a [u8]> Encoder<'a, F> {
    /// The normal piece spelled by `a ++ b`, if any.
    fn lookup(&self, a: &[u8], b: &[u8]) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.index.len() / 4);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let id = u32_at(self.index, 4 * mid);
            match cmp_concat((self.tok)(id), a, b) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(id),
            }
        }
        None
    }

    pub(crate) fn encode(&self, text: &str, out: &mut [u32]) -> Result<usize, Error> {
        let mut n = 0;
        fn push(out: &mut [u32], n: &mut usize, id: u32) -> Result<(), Error> {
            let capacity = out.len();
            *out.get_mut(*n).ok_or(Error::TooManyTokens { capacity })? = id;
            *n += 1;
            Ok(())
        }
        if self.sp.flags() & FLAG_ADD_BOS != 0 {
            push(out, &mut n, self.sp.bos())?;
        }
        // Merges never cross the start of a space that follows another character when no piece
        // spells such a space: the text is then merged word by word, which gives the same tokens
        // and keeps long texts from costing the square of their length.
        let split = self.no_piece_joins_words();
        let mut chunk = n;
        let mut prev_space = true;
        let prefix = if !text.is_empty() && self.sp.space_prefix() { Some(' ') } else { None };
        for c in prefix.into_iter().chain(text.chars()) {
            if split && c == ' ' && !prev_space {
                let len = self.merge(&mut out[chunk..n]);
                n = chunk + len;
                chunk = n;
            }
            prev_space = c == ' ';
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf).as_bytes();
            if let Some(id) = self.lookup(s, &[]) {
                push(out, &mut n, id)?;
            } else if s.iter().all(|&b| self.sp.byte_id(b) != NONE) {
                for &b in s {
                    push(out, &mut n, self.sp.byte_id(b))?;
                }
            } else if self.sp.unk() != NONE {
                push(out, &mut n, self.sp.unk())?;
            } else {
                return Err(Error::UnknownChar(c));
            }
        }
        let len = self.merge(&mut out[chunk..n]);
        Ok(chunk + len)
    }

    /// Whether no listed piece has a space right after a character other than a space.
    fn no_piece_joins_words(&self) -> bool {
        (0..self.index.len() / 4).all(|k| {
            let p = (self.tok)(u32_at(self.index, 4 * k));
            !p.windows(2).any(|w| w[0] != b' ' && w[1] == b' ')
        })
    }

    /// Merges the best-scoring adjacent pairs of `toks` in place; returns the new length. Quadratic in
    /// the length, like llama2.c's encoder (which is why `encode` merges word by word when it can).
    fn merge(&self, toks: &mut [u32]) -> usize {
        loop {
            let mut best: Option<(f32, usize, usize, u32)> = None; // (score, left, right, merged id)
            crate::tokenizer::for_each_pair(toks, |i, j| {
                // Byte and control tokens never merge (llama2.c spells them `<0xXX>`, `<s>`).
                let normal = |t: u32| self.sp.piece_type(t as usize) == TYPE_NORMAL;
                if !normal(toks[i]) || !normal(toks[j]) {
                    return;
                }
                if let Some(id) = self.lookup((self.tok)(toks[i]), (self.tok)(toks[j])) {
                    let s = self.sp.score(id as usize);
                    if best.is_none_or(|(bs, _, _, _)| s > bs) {
                        best = Some((s, i, j, id));
                    }
                }
            });
            let Some((_, i, j, id)) = best else { return crate::tokenizer::compact(toks) };
            toks[i] = id;
            toks[j] = crate::tokenizer::HOLE;
        }
    }
}
