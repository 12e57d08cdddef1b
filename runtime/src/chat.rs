//! The chat template: conversations rendered into tokens, and replies that stop at `<|im_end|>`.
//!
//! A chat model's tokenizer has four special tokens, found by name among its special tokens:
//! `<|im_start|>`, `<|im_sep|>`, `<|im_end|>` and `<|pad|>` (the last pads training batches and is
//! never rendered). One turn renders as
//!
//! ```text
//! <|im_start|> ROLE <|im_sep|> CONTENT <|im_end|>
//! ```
//!
//! where ROLE (`system`, `user` or `assistant`) and CONTENT are encoded as ordinary text. Ordinary
//! text never encodes to a special token, so a user who types `<|im_end|>` gets those ten
//! characters, not the token. A reply is generated after `<|im_start|>assistant<|im_sep|>` and ends
//! when the model samples `<|im_end|>`. Everything here is `no_std` and allocation-free: callers
//! hand in token buffers.

use crate::error::Error;
use crate::model::{generate_while, GenStats, Session};
use crate::sampler::Sampler;
use crate::tokenizer::Tokenizer;

/// Name of the token that opens a turn.
pub const IM_START: &str = "<|im_start|>";
/// Name of the token between a turn's role and its content.
pub const IM_SEP: &str = "<|im_sep|>";
/// Name of the token that closes a turn (and ends a reply).
pub const IM_END: &str = "<|im_end|>";
/// Name of the padding token (training batches only).
pub const PAD: &str = "<|pad|>";
/// The chat model's special tokens, in the order the trainer appends them to a base vocabulary.
pub const CHAT_SPECIALS: [&str; 4] = [IM_START, IM_SEP, IM_END, PAD];

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions before the conversation.
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name as rendered: `system`, `user`, `assistant`.
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// The role called `name`, if it is one of the three.
    pub fn from_name(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'t> {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: &'t str,
}

impl<'t> Message<'t> {
    /// A user turn.
    pub fn user(content: &'t str) -> Self {
        Message { role: Role::User, content }
    }
    /// An assistant turn.
    pub fn assistant(content: &'t str) -> Self {
        Message { role: Role::Assistant, content }
    }
    /// A system turn.
    pub fn system(content: &'t str) -> Self {
        Message { role: Role::System, content }
    }
}

/// The ids of the four chat tokens of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatTokens {
    /// `<|im_start|>`.
    pub im_start: u32,
    /// `<|im_sep|>`.
    pub im_sep: u32,
    /// `<|im_end|>`.
    pub im_end: u32,
    /// `<|pad|>`.
    pub pad: u32,
}

impl ChatTokens {
    /// Looks the four tokens up by name among the tokenizer's special tokens; `None` for a base
    /// model (one that lacks any of them).
    pub fn find(tok: &Tokenizer<'_>) -> Option<Self> {
        Some(ChatTokens {
            im_start: tok.special_id(IM_START)?,
            im_sep: tok.special_id(IM_SEP)?,
            im_end: tok.special_id(IM_END)?,
            pad: tok.special_id(PAD)?,
        })
    }
}

/// Renders conversations for one model's tokenizer.
#[derive(Debug, Clone, Copy)]
pub struct Template<'a> {
    tok: Tokenizer<'a>,
    ids: ChatTokens,
}

fn put(out: &mut [u32], n: &mut usize, id: u32) -> Result<(), Error> {
    let capacity = out.len();
    *out.get_mut(*n).ok_or(Error::TooManyTokens { capacity })? = id;
    *n += 1;
    Ok(())
}

fn put_text(tok: &Tokenizer<'_>, text: &str, out: &mut [u32], n: &mut usize) -> Result<(), Error> {
    let capacity = out.len();
    let rest = out.get_mut(*n..).ok_or(Error::TooManyTokens { capacity })?;
    let k = tok.encode(text, rest).map_err(|e| match e {
        Error::TooManyTokens { .. } => Error::TooManyTokens { capacity },
        e => e,
    })?;
    *n += k;
    Ok(())
}

impl<'a> Template<'a> {
    /// The template of a chat model; `Err(NotAChatModel)` for a base model.
    pub fn new(tok: Tokenizer<'a>) -> Result<Self, Error> {
        let ids = ChatTokens::find(&tok).ok_or(Error::NotAChatModel)?;
        Ok(Template { tok, ids })
    }

    /// The chat tokens' ids.
    pub fn tokens(&self) -> ChatTokens {
        self.ids
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> Tokenizer<'a> {
        self.tok
    }

    /// Renders one turn, `<|im_start|>ROLE<|im_sep|>CONTENT<|im_end|>`, into `out`; returns its
    /// length. `Err(TooManyTokens)` when `out` is too small, `Err(UnknownChar)` for a character a
    /// character vocabulary lacks.
    pub fn render_turn(&self, msg: &Message<'_>, out: &mut [u32]) -> Result<usize, Error> {
        let mut n = self.render_open(msg.role, out)?;
        put_text(&self.tok, msg.content, out, &mut n)?;
        put(out, &mut n, self.ids.im_end)?;
        Ok(n)
    }

    /// Renders the opening of a turn, `<|im_start|>ROLE<|im_sep|>` (for the assistant: where a
    /// reply is generated); returns its length.
    pub fn render_open(&self, role: Role, out: &mut [u32]) -> Result<usize, Error> {
        let mut n = 0;
        put(out, &mut n, self.ids.im_start)?;
        put_text(&self.tok, role.name(), out, &mut n)?;
        put(out, &mut n, self.ids.im_sep)?;
        Ok(n)
    }

    /// Renders every turn of `messages` in order and, with `reply`, the opening of the assistant's
    /// reply; returns the length.
    pub fn render(&self, messages: &[Message<'_>], reply: bool, out: &mut [u32]) -> Result<usize, Error> {
        let capacity = out.len();
        let mut n = 0;
        for m in messages {
            let rest = out.get_mut(n..).ok_or(Error::TooManyTokens { capacity })?;
            n += self.render_turn(m, rest).map_err(|e| self.capacity_error(e, capacity))?;
        }
        if reply {
            let rest = out.get_mut(n..).ok_or(Error::TooManyTokens { capacity })?;
            n += self.render_open(Role::Assistant, rest).map_err(|e| self.capacity_error(e, capacity))?;
        }
        Ok(n)
    }

    fn capacity_error(&self, e: Error, capacity: usize) -> Error {
        match e {
            Error::TooManyTokens { .. } => Error::TooManyTokens { capacity },
            e => e,
        }
    }

    /// Renders as much of the conversation as fits in `out` while leaving `reserve` tokens free for
    /// the reply, followed by the reply's opening. Older turns are dropped whole, oldest first; a
    /// leading system turn is kept, and the kept turns after it start with a user turn. Returns
    /// `(first, len)`: `messages[first..]` (after the system turn, if any) were rendered, in `len`
    /// tokens. `Err(PromptTooLong)` when even the last turn does not fit.
    pub fn render_fitting(&self, messages: &[Message<'_>], reserve: usize, out: &mut [u32]) -> Result<(usize, usize), Error> {
        let budget = out.len().saturating_sub(reserve);
        if messages.iter().all(|m| m.role == Role::System) {
            return Err(Error::EmptyPrompt);
        }
        let (system, rest, offset) = match messages.first() {
            Some(m) if m.role == Role::System => (Some(m), &messages[1..], 1),
            _ => (None, messages, 0),
        };
        // Lengths are measured by rendering each turn into `out`, used as scratch.
        let measure = |m: &Message<'_>, out: &mut [u32]| -> Result<Option<usize>, Error> {
            match self.render_turn(m, out) {
                Ok(n) => Ok(Some(n)),
                Err(Error::TooManyTokens { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let open = self.render_open(Role::Assistant, out).map_err(|_| Error::PromptTooLong { tokens: 0, ctx: out.len() })?;
        let mut used = open;
        if let Some(s) = system {
            used += measure(s, out)?.unwrap_or(usize::MAX / 4);
        }
        let mut first = rest.len();
        for i in (0..rest.len()).rev() {
            let Some(len) = measure(&rest[i], out)? else { break };
            if used + len > budget {
                break;
            }
            used += len;
            first = i;
        }
        // The kept turns start with a user turn.
        while first < rest.len() && rest[first].role != Role::User {
            first += 1;
        }
        if first == rest.len() || used > budget {
            let last = rest.last().map_or(Ok(Some(0)), |m| measure(m, out))?;
            let tokens = last.map_or(out.len() + 1, |l| l + open);
            return Err(Error::PromptTooLong { tokens, ctx: budget });
        }
        let mut n = 0;
        if let Some(s) = system {
            n += self.render_turn(s, out)?;
        }
        n += self.render(&rest[first..], true, &mut out[n..])?;
        Ok((first + offset, n))
    }
}

/// Generates the assistant's reply to `prompt` (a conversation rendered with the reply's opening,
/// see [`Template::render`]) in a fresh context: `session` is reset, the prompt fed, and tokens
/// sampled until `<|im_end|>` or `max_new` tokens. The context never overflows: at most
/// `ctx_len − prompt.len() + 1` tokens are generated, so a reply never shifts the context.
/// `on_text` receives the reply's text; `<|im_end|>` itself is not part of it. `GenStats::stopped`
/// tells whether `<|im_end|>` ended the reply.
pub fn reply(
    session: &mut Session<'_, '_>,
    sampler: &mut Sampler,
    template: &Template<'_>,
    prompt: &[u32],
    max_new: usize,
    on_text: impl FnMut(&str),
) -> Result<GenStats, Error> {
    reply_while(session, sampler, template, prompt, max_new, on_text, || true)
}

/// [`reply`] that can be stopped from outside: `go_on` is asked before each prompt token is fed
/// and before each token is sampled (see [`crate::model::generate_while`]); until it answers
/// `false` the reply is exactly [`reply`]'s.
pub fn reply_while(
    session: &mut Session<'_, '_>,
    sampler: &mut Sampler,
    template: &Template<'_>,
    prompt: &[u32],
    max_new: usize,
    on_text: impl FnMut(&str),
    go_on: impl FnMut() -> bool,
) -> Result<GenStats, Error> {
    let ctx = session.ctx_len();
    if prompt.len() > ctx {
        return Err(Error::PromptTooLong { tokens: prompt.len(), ctx });
    }
    session.reset();
    let room = ctx - prompt.len() + 1;
    let stop = [template.tokens().im_end];
    generate_while(session, sampler, prompt, max_new.min(room), &stop, false, on_text, go_on)
}
