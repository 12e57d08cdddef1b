//! Chat mode (a chat model in flash): questions typed over USART1, answers from the chat template.
//!
//! Each question is answered as `tinygpt chat -p QUESTION` answers it on the host: a fresh
//! sampler with the build's seed and settings, the conversation `[user: QUESTION]` rendered with
//! `Template::render_fitting` into the context, and `tinygpt_runtime::chat::reply` (which resets
//! the session) generating until `<|im_end|>`, the token limit or a full context. So a question
//! always gets the same answer, whatever came before it.
//!
//! Ctrl-D or a `/quit` line ends the input: the budgets are printed and, under QEMU, the
//! firmware exits; on silicon it keeps waiting for questions.

use core::fmt::Write as _;

use tinygpt_runtime::chat::reply;
use tinygpt_runtime::{Error, Message, Sampler, SamplerConfig, Session, Template};

use crate::board::{self, Platform, Serial};
use crate::config;
use crate::line::{Line, LineReader};

/// Longest line (bytes) taken over the serial line.
pub const MAX_LINE: usize = 256;

/// Tokens a rendered question can take: at most one per byte of the line, plus the chat tokens
/// and the role names (`user`, `assistant`: one token per byte at most).
const MAX_RENDERED: usize = MAX_LINE + 32;

/// Room for the rendered question: the context, or more to measure a question too long for it.
const PROMPT_BUF: usize = if config::CTX > MAX_RENDERED { config::CTX } else { MAX_RENDERED };

/// The line that ends the input, as Ctrl-D does.
const QUIT: &[u8] = b"/quit";

/// Answers questions until the end of the input (QEMU) or forever (silicon).
pub fn run(out: &mut Serial, platform: Platform, session: &mut Session<'_, '_>) -> Result<(), ()> {
    let template = match Template::new(session.model().tokenizer()) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return Err(());
        }
    };
    let _ = writeln!(out, "chat: type a question and Enter (at most {MAX_LINE} bytes); Ctrl-D or /quit ends");
    let mut reader = LineReader::new();
    let mut line = [0u8; MAX_LINE];
    loop {
        out.write_bytes(b"> ");
        let question = match reader.read(out, &mut line) {
            Line::Text(0) => continue,
            Line::Text(len) if &line[..len] == QUIT => None,
            Line::Text(len) => Some(&line[..len]),
            Line::TooLong => {
                let _ = writeln!(out, "error: the line is longer than {MAX_LINE} bytes; type a shorter question");
                continue;
            }
            Line::Lost => {
                let _ = writeln!(out, "error: characters were lost (typed while the board was busy); type the line again");
                continue;
            }
            Line::End => None,
        };
        match question {
            Some(q) => match core::str::from_utf8(q) {
                Ok(q) => answer(out, platform, session, &template, q),
                Err(_) => {
                    let _ = writeln!(out, "error: the line is not UTF-8");
                }
            },
            None => {
                let budgets = crate::report_budgets(out);
                if platform == Platform::Qemu {
                    return budgets;
                }
                let _ = writeln!(out, "end of input; waiting for the next question");
            }
        }
    }
}

/// Answers one question: the reply streamed as it comes, then one line with the token counts,
/// why the reply ended and the cost per token. A question the vocabulary cannot encode or the
/// context cannot hold gets one `error:` line instead.
fn answer(out: &mut Serial, platform: Platform, session: &mut Session<'_, '_>, template: &Template<'_>, question: &str) {
    let messages = [Message::user(question)];
    let mut prompt = [0u32; PROMPT_BUF];
    let n = match template.render_fitting(&messages, 1, &mut prompt[..config::CTX]) {
        Ok((_, n)) => n,
        Err(Error::PromptTooLong { .. }) => {
            // What it would take, measured in the larger buffer (as `tinygpt chat` words it).
            let _ = write!(out, "error: the question is too long: with the chat template and 1 token for the reply it needs");
            if let Ok(len) = template.render(&messages, true, &mut prompt) {
                let _ = write!(out, " {} tokens,", len + 1);
            }
            let _ = writeln!(out, " but the context holds {}", config::CTX);
            return;
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return;
        }
    };
    let sampler_cfg = SamplerConfig { temperature: config::TEMPERATURE, top_k: config::TOP_K, top_p: config::TOP_P };
    let mut sampler = Sampler::new(sampler_cfg, config::SEED);

    let t0 = board::ticks();
    let result = reply(session, &mut sampler, template, &prompt[..n], config::TOKENS, |text| out.write_bytes(text.as_bytes()));
    let t1 = board::ticks();
    let _ = writeln!(out);
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "error: reply: {e}");
            return;
        }
    };
    let end = if stats.stopped {
        "end of turn"
    } else if stats.generated >= config::TOKENS {
        "token limit"
    } else {
        "context full"
    };
    let steps = (stats.prompt_tokens + stats.generated) as u64;
    let unit = platform.cost_unit();
    let per_token = board::cost(platform, t1 - t0) / steps.max(1);
    let _ = writeln!(
        out,
        "[{} prompt + {} generated tokens, {end}; {per_token} {unit}/token]",
        stats.prompt_tokens, stats.generated
    );
}
