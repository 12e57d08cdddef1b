//! `tinygpt chat`: answer one question (`-p`) or hold a conversation over stdin with a chat model.
//!
//! Every answer follows one rule, shared with the board and `tinygpt serve`: the conversation is
//! rendered with [`Template::render_fitting`] into a buffer of the context's length, keeping one
//! token free for the reply, and [`chat::reply`] samples the reply in a fresh context. With `-p`
//! the sampler is fresh; in a conversation one sampler, seeded once, carries on from reply to
//! reply, and the whole conversation is rendered again for every question.

use anyhow::{anyhow, bail, Context, Result};
use tinygpt::prelude::*;
use tinygpt_runtime::chat::{self, Message, Role, Template};
use tinygpt_runtime::{Error, GenStats, KvDType, Model, Sampler, Session};

use crate::cli::ChatArgs;
use crate::modelfile::{self, ModelFile};
use crate::out;
use crate::sys::{self, Instant, Stdin, Write};

/// The line that forgets the conversation.
const RESET: &str = "/reset";
/// Longest line read as a question, in bytes; a longer one is skipped with an error line, so that
/// input without line endings cannot grow memory without bound.
const MAX_LINE: usize = 1 << 20;

pub fn run(a: &ChatArgs) -> Result<()> {
    let file = ModelFile::open(&a.run.model)?;
    let model = file.model()?;
    let template = chat_template(&model, &file)?;
    let ctx = modelfile::context_len(&model, a.run.ctx)?;
    let kv: KvDType = a.run.kv.into();
    let system = a.system.as_deref();
    if let Some(s) = system {
        check_system(&template, s, ctx)?;
    }
    if a.prompt.as_deref() == Some("") {
        bail!("the question is empty (give it with -p)");
    }
    let mut buf = modelfile::session_buffer(&model, ctx, kv)?;
    let session = modelfile::session(&model, &mut buf, ctx, kv)?;
    let mut chat = Chat {
        template,
        session,
        sampler: Sampler::new(a.sample.config(), a.sample.seed),
        tokens: vec![0; ctx],
        system,
        n_predict: a.n_predict,
        verbose: a.verbose,
        block_size: model.config().block_size as usize,
    };
    let mut w = sys::stdout();
    match &a.prompt {
        Some(question) => chat.one_question(question, &mut w),
        None => {
            let mut stdin = Stdin::new();
            let terminal = stdin.is_terminal();
            if terminal {
                let name = model.metadata().name;
                note(&format!(
                    "chatting with '{}'{}, context {ctx} tokens; /reset forgets the conversation, Ctrl-D ends",
                    file.path(),
                    if name.is_empty() { String::new() } else { format!(" ({})", crate::inspect::printable(name)) }
                ));
            }
            chat.converse(&mut stdin, terminal, &mut w)
        }
    }
}

/// The model's chat template; a base model is named as such.
fn chat_template<'a>(model: &Model<'a>, file: &ModelFile) -> Result<Template<'a>> {
    Template::new(model.tokenizer()).map_err(|e| {
        let path = file.path();
        let msg = e.to_string();
        match (e, msg.strip_prefix("this ")) {
            (Error::NotAChatModel, Some(rest)) => anyhow!("'{path}' {rest}; 'tinygpt generate' runs it"),
            _ => anyhow!("'{path}': {msg}"),
        }
    })
}

/// Tokens `messages` take when rendered with the reply's opening, plus the token reserved for the
/// reply; `None` if they cannot be rendered.
fn tokens_needed(template: &Template<'_>, messages: &[Message<'_>]) -> Option<usize> {
    // At most one token per byte of text, plus the chat tokens and the role names of every turn
    // and of the reply's opening.
    let bound = messages.iter().map(|m| m.content.len() + 16).sum::<usize>() + 16;
    let mut scratch = vec![0u32; bound];
    template.render(messages, true, &mut scratch).ok().map(|n| n + 1)
}

/// Refuses a system prompt the vocabulary cannot encode, or one that leaves no room for a question.
fn check_system(template: &Template<'_>, system: &str, ctx: usize) -> Result<()> {
    let mut scratch = vec![0u32; system.len()];
    template.tokenizer().encode(system, &mut scratch).map_err(|e| anyhow!("cannot encode the system prompt: {e}"))?;
    let need = tokens_needed(template, &[Message::system(system), Message::user("")])
        .ok_or_else(|| anyhow!("cannot render the system prompt with the chat template"))?;
    if need > ctx {
        bail!(
            "the system prompt is too long: with the chat template, an empty question and 1 token for the reply it needs {need} tokens, but the context holds {ctx}"
        );
    }
    Ok(())
}

/// One line of information on stderr (a closed stderr is not an error).
fn note(msg: &str) {
    let _ = writeln!(sys::stderr(), "tinygpt: {msg}");
}

/// The conversation: the system prompt, if any, then `turns`, then the question.
fn messages<'t>(system: Option<&'t str>, turns: &'t [(Role, String)], question: &'t str) -> Vec<Message<'t>> {
    let mut m = Vec::with_capacity(turns.len() + 2);
    if let Some(s) = system {
        m.push(Message::system(s));
    }
    m.extend(turns.iter().map(|(role, content)| Message { role: *role, content }));
    m.push(Message::user(question));
    m
}

/// A reply that was generated.
struct Answer {
    text: String,
    stats: GenStats,
    secs: f64,
}

/// One line of input.
enum Line {
    /// A line, without its line ending.
    Text(Vec<u8>),
    /// A line longer than [`MAX_LINE`] (skipped).
    TooLong,
    /// End of input.
    Eof,
}

/// Reads one line (`\n`, `\r\n` or the end of input ends it) into `buf`.
fn read_line(r: &mut Stdin, buf: &mut Vec<u8>) -> sys::Result<Line> {
    buf.clear();
    let n = r.read_until_newline(buf, MAX_LINE + 1)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Line::Text(core::mem::take(buf)));
    }
    if buf.len() <= MAX_LINE {
        // The last line, without a line ending.
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Line::Text(core::mem::take(buf)));
    }
    // Skip the rest of the over-long line.
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            r.consume(i + 1);
            break;
        }
        let len = avail.len();
        r.consume(len);
    }
    Ok(Line::TooLong)
}

/// A model, its session and sampler, and the settings of the chat.
struct Chat<'s, 'a, 'c> {
    template: Template<'a>,
    session: Session<'s, 'a>,
    sampler: Sampler,
    /// The rendered conversation: one entry per position of the context.
    tokens: Vec<u32>,
    system: Option<&'c str>,
    n_predict: usize,
    verbose: bool,
    block_size: usize,
}

impl Chat<'_, '_, '_> {
    /// Renders `messages` (the last one the question) into the context, keeping 1 token for the
    /// reply. `Ok(Err(message))` refuses the question (a character the vocabulary lacks, or too
    /// long for the context); otherwise `(first, len)` as [`Template::render_fitting`] gives it.
    fn render(&mut self, messages: &[Message<'_>]) -> Result<Result<(usize, usize), String>> {
        let question = messages.last().map_or("", |m| m.content);
        let mut scratch = vec![0u32; question.len()];
        if let Err(e) = self.template.tokenizer().encode(question, &mut scratch) {
            return Ok(Err(format!("cannot encode the question: {e}")));
        }
        let ctx = self.tokens.len();
        match self.template.render_fitting(messages, 1, &mut self.tokens[..ctx]) {
            Ok(r) => Ok(Ok(r)),
            Err(Error::PromptTooLong { .. }) => {
                let alone = &messages[messages.len() - 1 - usize::from(self.system.is_some())..];
                let need = tokens_needed(&self.template, alone).map_or(String::new(), |n| format!(" {n} tokens"));
                let with = if self.system.is_some() { " with the system prompt," } else { "" };
                let hint = if ctx < self.block_size {
                    format!(" (-c can go up to the model's block_size, {})", self.block_size)
                } else {
                    String::new()
                };
                Ok(Err(format!(
                    "the question is too long:{with} the chat template and 1 token for the reply it needs{need}, but the context holds {ctx}{hint}"
                )))
            }
            Err(e) => Err(anyhow!("cannot render the conversation: {e}")),
        }
    }

    /// Generates the reply to the first `len` rendered tokens, streaming it to `w`, then a newline.
    fn reply(&mut self, len: usize, w: &mut impl Write) -> Result<Answer> {
        let mut text = String::new();
        let start = Instant::now();
        let stats = chat::reply(&mut self.session, &mut self.sampler, &self.template, &self.tokens[..len], self.n_predict, |t| {
            out::write_or_exit(w, t);
            text.push_str(t);
        })
        .map_err(|e| anyhow!("generation failed: {e}"))?;
        let secs = start.elapsed().as_secs_f64();
        out::write_or_exit(w, "\n");
        Ok(Answer { text, stats, secs })
    }

    /// With `-v`: the reply's counts and speed on stderr.
    fn report(&self, a: &Answer) {
        if !self.verbose {
            return;
        }
        let s = &a.stats;
        let end = if s.stopped { "ended by <|im_end|>" } else { "cut at the limit" };
        note(&format!(
            "{} prompt tokens, {} reply tokens ({end}), context {}, kv {}, {:.3} s, {:.1} tokens/s",
            s.prompt_tokens,
            s.generated,
            self.session.ctx_len(),
            self.session.kv_dtype().name(),
            a.secs,
            (s.prompt_tokens + s.generated) as f64 / a.secs.max(1e-9)
        ));
    }

    /// `-p`: answers one question.
    fn one_question(&mut self, question: &str, w: &mut impl Write) -> Result<()> {
        let (_, len) = match self.render(&messages(self.system, &[], question))? {
            Ok(r) => r,
            Err(msg) => bail!(msg),
        };
        let a = self.reply(len, w)?;
        w.flush().context("cannot write to stdout")?;
        self.report(&a);
        Ok(())
    }

    /// Questions from `input`, one per line, until its end.
    fn converse(&mut self, input: &mut Stdin, terminal: bool, w: &mut impl Write) -> Result<()> {
        let mut turns: Vec<(Role, String)> = Vec::new();
        let mut buf = Vec::new();
        loop {
            if terminal {
                let _ = sys::stderr().write_all(b"> ");
            }
            let bytes = match read_line(input, &mut buf).context("cannot read from stdin")? {
                Line::Eof => {
                    if terminal {
                        let _ = sys::stderr().write_all(b"\n");
                    }
                    return Ok(());
                }
                Line::TooLong => {
                    out::error_line(&format!("the line is longer than {} MiB; ignored", MAX_LINE >> 20));
                    continue;
                }
                Line::Text(b) => b,
            };
            let line = match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => {
                    out::error_line(&format!(
                        "the line is not valid UTF-8 (byte {}); ignored",
                        e.utf8_error().valid_up_to() + 1
                    ));
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            if line.trim() == RESET {
                turns.clear();
                note("conversation forgotten");
                continue;
            }
            let system = usize::from(self.system.is_some());
            let (first, len) = match self.render(&messages(self.system, &turns, &line))? {
                Ok(r) => r,
                Err(msg) => {
                    out::error_line(&msg);
                    continue;
                }
            };
            // Older turns that no longer fit never will again (the conversation only grows): forget them.
            let dropped = first - system;
            if dropped > 0 {
                note(&format!(
                    "the conversation no longer fits the context of {} tokens: dropped its {dropped} oldest turn{}",
                    self.tokens.len(),
                    if dropped == 1 { "" } else { "s" }
                ));
                turns.drain(..dropped);
            }
            let a = self.reply(len, w)?;
            self.report(&a);
            turns.push((Role::User, line));
            turns.push((Role::Assistant, a.text));
        }
    }
}
