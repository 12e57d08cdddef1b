//! `tinygpt eval`: loss, perplexity and bits per character over a text file.

use core::fmt::Write as _;

use anyhow::{anyhow, bail, Context, Result};
use tinygpt::prelude::*;
use tinygpt_runtime::{eval_loss, Error, Tokenizer};

use crate::cli::EvalArgs;
use crate::modelfile::{self, ModelFile};
use crate::out::thousands;
use crate::sys::{self, Write as _};

pub fn run(a: &EvalArgs) -> Result<()> {
    let bytes = sys::read(&a.file).with_context(|| format!("cannot read '{}'", a.file))?;
    let text = core::str::from_utf8(&bytes).map_err(|e| {
        anyhow!("'{}' is not UTF-8 text (invalid byte at offset {})", a.file, e.valid_up_to())
    })?;
    let file = ModelFile::open(&a.run.model)?;
    let model = file.model()?;
    let tok = model.tokenizer();
    let tokens = encode_text(&tok, text).with_context(|| format!("cannot encode '{}'", a.file))?;
    if tokens.len() < 2 {
        bail!("'{}' is too short: it needs at least two tokens to predict one", a.file);
    }
    let ctx = modelfile::context_len(&model, a.run.ctx)?;
    let kv = a.run.kv.into();
    let mut buf = modelfile::session_buffer(&model, ctx, kv)?;
    let mut session = modelfile::session(&model, &mut buf, ctx, kv)?;
    let (nll, count) = eval_loss(&mut session, &tokens).map_err(|e| anyhow!("evaluation failed: {e}"))?;
    if count == 0 {
        bail!("nothing was predicted");
    }
    // eval_loss predicts every token but the first; bits per character divides by the characters
    // those tokens carry (a character split over BPE tokens counts where its first byte is).
    let chars: u64 = tokens[1..].iter().map(|&t| char_starts(tok.token_bytes(t))).sum();
    let loss = nll / count as f64;
    let mut s = String::new();
    let _ = writeln!(s, "{:<14}{}", "text", a.file);
    let _ = writeln!(
        s,
        "{:<14}{} characters, {} tokens",
        "size",
        thousands(text.chars().count() as u64),
        thousands(tokens.len() as u64)
    );
    let _ = writeln!(
        s,
        "{:<14}{} windows of up to {ctx} tokens, kv {}",
        "context",
        thousands((tokens.len() - 1).div_ceil(ctx) as u64),
        kv.name()
    );
    let _ = writeln!(s, "{:<14}{} tokens ({} characters)", "predicted", thousands(count), thousands(chars));
    let _ = writeln!(s, "{:<14}{loss:.4} nats/token", "loss");
    let _ = writeln!(s, "{:<14}{:.4}", "perplexity", libm::exp(loss));
    if chars > 0 {
        let _ = writeln!(s, "{:<14}{:.4} bits/character", "bpc", nll / core::f64::consts::LN_2 / chars as f64);
    }
    sys::stdout().write_all(s.as_bytes()).context("cannot write to stdout")?;
    Ok(())
}

/// Number of characters that start in `bytes` (bytes that are not UTF-8 continuation bytes).
fn char_starts(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64
}

/// Encodes a whole text; an unknown character is reported with its line and column.
fn encode_text(tok: &Tokenizer<'_>, text: &str) -> Result<Vec<u32>> {
    let mut tokens = vec![0u32; text.len() + 2];
    match tok.encode(text, &mut tokens) {
        Ok(n) => {
            tokens.truncate(n);
            Ok(tokens)
        }
        Err(Error::UnknownChar(c)) => {
            let at = text.find(c).unwrap_or(0);
            let line = text[..at].matches('\n').count() + 1;
            let col = text[..at].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            bail!("line {line}, column {col}: character {c:?} (U+{:04X}) is not in the model's vocabulary", c as u32)
        }
        Err(e) => Err(anyhow!("{e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::char_starts;

    #[test]
    fn char_starts_counts_lead_bytes() {
        assert_eq!(char_starts(b"abc"), 3);
        assert_eq!(char_starts("é".as_bytes()), 1);
        assert_eq!(char_starts(&"é".as_bytes()[1..]), 0);
        assert_eq!(char_starts("a€b".as_bytes()), 3);
    }
}
