//! Prints a chat model's reply to one question, computed on the host the way the firmware's chat
//! mode computes it (and `tinygpt chat -p QUESTION`): a session at the given context with an int8
//! KV cache, a fresh sampler with the seed, the conversation `[user: QUESTION]` rendered with
//! `Template::render_fitting(.., 1, ..)`, then `tinygpt_runtime::chat::reply`.
//!
//! ```text
//! chat-reply --model FILE --question TEXT [--seed N] [--tokens N] [--temperature T]
//!            [--top-k K] [--top-p P] [--ctx N]
//! ```
//!
//! Defaults are the firmware's (seed 42, 256 tokens, temperature 0.8, top-k 40, top-p 1, the
//! model's block size). stdout is the reply's text and nothing else; stderr gets one line with the
//! token counts and whether `<|im_end|>` ended the reply. A question the vocabulary lacks or the
//! context cannot hold is an error (exit 1).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use tinygpt_runtime::chat::reply;
use tinygpt_runtime::writer::read_aligned;
use tinygpt_runtime::{KvDType, Message, Model, Sampler, SamplerConfig, Session, Template};

fn main() {
    if let Err(e) = run() {
        eprintln!("chat-reply: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut model_path: Option<PathBuf> = None;
    let mut question: Option<String> = None;
    let (mut seed, mut tokens, mut ctx) = (42u64, 256usize, 0usize);
    let mut cfg = SamplerConfig { temperature: 0.8, top_k: 40, top_p: 1.0 };

    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T> {
            v.parse().map_err(|_| anyhow!("{flag} {v}: not a valid number"))
        }
        match flag.as_str() {
            "--model" => model_path = Some(value()?.into()),
            "--question" => question = Some(value()?),
            "--seed" => seed = num(&flag, value()?)?,
            "--tokens" => tokens = num(&flag, value()?)?,
            "--temperature" => cfg.temperature = num(&flag, value()?)?,
            "--top-k" => cfg.top_k = num(&flag, value()?)?,
            "--top-p" => cfg.top_p = num(&flag, value()?)?,
            "--ctx" => ctx = num(&flag, value()?)?,
            "-h" | "--help" => {
                println!("usage: chat-reply --model FILE --question TEXT [--seed N] [--tokens N] [--temperature T] [--top-k K] [--top-p P] [--ctx N]");
                return Ok(());
            }
            f => bail!("unknown argument {f}"),
        }
    }
    let model_path = model_path.context("--model FILE is required")?;
    let question = question.context("--question TEXT is required")?;

    let bytes = read_aligned(&model_path).with_context(|| format!("cannot read {}", model_path.display()))?;
    let model = Model::from_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", model_path.display()))?;
    let template = Template::new(model.tokenizer()).map_err(|e| anyhow!("{}: {e}", model_path.display()))?;
    if ctx == 0 {
        ctx = model.config().block_size as usize;
    }
    let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::I8)];
    let mut session = Session::new(&model, &mut buf, ctx, KvDType::I8).map_err(|e| anyhow!("session: {e}"))?;

    let mut prompt = vec![0u32; ctx];
    let (_, n) = template
        .render_fitting(&[Message::user(&question)], 1, &mut prompt)
        .map_err(|e| anyhow!("question {question:?}: {e}"))?;
    let mut sampler = Sampler::new(cfg, seed);
    let mut text = Vec::new();
    let stats = reply(&mut session, &mut sampler, &template, &prompt[..n], tokens, |t| text.extend_from_slice(t.as_bytes()))
        .map_err(|e| anyhow!("reply: {e}"))?;
    std::io::stdout().write_all(&text).context("cannot write the reply")?;
    eprintln!(
        "{} prompt + {} generated tokens, {}",
        stats.prompt_tokens,
        stats.generated,
        if stats.stopped { "ended by <|im_end|>" } else { "not ended by <|im_end|>" }
    );
    Ok(())
}
