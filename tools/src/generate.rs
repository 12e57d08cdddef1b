//! `tinygpt generate`: stream the prompt and sampled text to stdout.

use anyhow::{anyhow, bail, Context, Result};
use tinygpt::prelude::*;
use tinygpt_runtime::{generate, Model, Sampler};

use crate::cli::{GenerateArgs, DEFAULT_PROMPT};
use crate::modelfile::{self, ModelFile};
use crate::out;
use crate::sys::{self, Instant, Write};

pub fn run(a: &GenerateArgs) -> Result<()> {
    let prompt = match (&a.prompt, &a.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            sys::read_to_string(f).with_context(|| format!("cannot read the prompt file '{f}'"))?
        }
        (None, None) => DEFAULT_PROMPT.to_owned(),
    };
    let file = ModelFile::open(&a.run.model)?;
    let model = file.model()?;
    let tokens = encode_prompt(&model, &prompt)?;
    let ctx = modelfile::context_len(&model, a.run.ctx)?;
    let kv = a.run.kv.into();
    let mut buf = modelfile::session_buffer(&model, ctx, kv)?;
    let mut session = modelfile::session(&model, &mut buf, ctx, kv)?;
    let mut sampler = Sampler::new(a.sample.config(), a.sample.seed);

    let mut w = sys::stdout();
    let start = Instant::now();
    let stats = generate(&mut session, &mut sampler, &tokens, a.n_predict, |text| out::write_or_exit(&mut w, text))
        .map_err(|e| anyhow!("generation failed: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    w.flush().context("cannot write to stdout")?;
    if a.verbose {
        let total = stats.prompt_tokens + stats.generated;
        // Stats are optional: a closed stderr is not an error.
        let _ = writeln!(
            sys::stderr(),
            "tinygpt: {} prompt tokens, {} generated tokens, context {ctx}, kv {}, {:.3} s, {:.1} tokens/s",
            stats.prompt_tokens,
            stats.generated,
            kv.name(),
            secs,
            total as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

/// Encodes the prompt; a character the vocabulary lacks is named with its code point.
pub fn encode_prompt(model: &Model<'_>, prompt: &str) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        bail!("the prompt is empty (give at least one character with -p)");
    }
    // Every tokenizer gives at most one token per byte (sentencepiece adds BOS and a space).
    let mut tokens = vec![0u32; prompt.len() + 2];
    let n = model.tokenizer().encode(prompt, &mut tokens).map_err(|e| anyhow!("cannot encode the prompt: {e}"))?;
    tokens.truncate(n);
    Ok(tokens)
}
