//! End-to-end tests of `tinygpt chat` on synthetic chat models (character and BPE vocabularies,
//! llama and gpt2, f32, f16 and int8): every answer is compared with one computed here through the
//! runtime's API (and, for character models, with a reply loop written here token by token), in
//! one-question mode and turn by turn through a pipe, plus the error cases.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::*;

use tinygpt::synth::{Spec, Vocab};
use tinygpt_runtime::chat::{self, ChatTokens, Message, Role, Template, CHAT_SPECIALS};
use tinygpt_runtime::{writer::read_aligned, Arch, DType, Error, KvDType, Model, Sampler, SamplerConfig, Session};

/// The text of no special token appears in an answer.
fn assert_no_special_text(out: &str) {
    for name in CHAT_SPECIALS {
        assert!(!out.contains(name), "{name} in {out:?}");
    }
}

impl Models {
    /// A character-level chat model (the Shakespeare characters and the four chat tokens), with
    /// a context of 128 tokens: room for a few turns.
    fn chat(&self, arch: Arch, dtype: DType) -> PathBuf {
        let spec = Spec { chat: true, block_size: 128, ..Spec::tiny(arch, dtype) };
        self.write(&format!("chat-{}-{}.tgpt", arch.name(), dtype.name()), &spec)
    }
    /// A byte-level BPE chat model whose dimensions are not multiples of the int8 group size.
    fn chat_bpe(&self, arch: Arch, dtype: DType) -> PathBuf {
        let spec = Spec {
            chat: true,
            vocab: Vocab::Bpe(120),
            group_size: 24,
            block_size: 128,
            seed: 7,
            ..Spec::tiny(arch, dtype)
        };
        self.write(&format!("chat-bpe-{}-{}.tgpt", arch.name(), dtype.name()), &spec)
    }
    fn base(&self) -> PathBuf {
        self.write("base.tgpt", &Spec::tiny(Arch::Llama, DType::F32))
    }
}

/// Settings of one run, as flags and as the oracle sees them.
#[derive(Clone)]
struct Opts {
    ctx: Option<usize>,
    kv: KvDType,
    cfg: SamplerConfig,
    seed: u64,
    n: usize,
    system: Option<String>,
}

impl Default for Opts {
    /// The command's defaults.
    fn default() -> Self {
        Opts { ctx: None, kv: KvDType::F32, cfg: SamplerConfig::default(), seed: 42, n: 256, system: None }
    }
}

impl Opts {
    /// The flags that give these settings; defaults are left out, so the command's own defaults
    /// are tested too.
    fn flags(&self) -> Vec<String> {
        let d = Opts::default();
        let mut f = Vec::new();
        let mut add = |k: &str, v: String| {
            f.push(k.to_owned());
            f.push(v);
        };
        if let Some(c) = self.ctx {
            add("-c", c.to_string());
        }
        if self.kv != d.kv {
            add("--kv", self.kv.name().to_owned());
        }
        if self.cfg.temperature != d.cfg.temperature {
            add("--temp", self.cfg.temperature.to_string());
        }
        if self.cfg.top_k != d.cfg.top_k {
            add("--top-k", self.cfg.top_k.to_string());
        }
        if self.cfg.top_p != d.cfg.top_p {
            add("--top-p", self.cfg.top_p.to_string());
        }
        if self.seed != d.seed {
            add("-s", self.seed.to_string());
        }
        if self.n != d.n {
            add("-n", self.n.to_string());
        }
        if let Some(sys) = &self.system {
            add("--system", sys.clone());
        }
        f
    }
}

/// What the oracle expects for one line of input.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// An answer, after `dropped` older turns were dropped; `stopped`: ended by `<|im_end|>`.
    Answer { text: String, dropped: usize, stopped: bool },
    /// The line is refused with this runtime error.
    Refused(Error),
    /// `/reset`.
    Reset,
}

/// The oracle: a chat computed here with the runtime's API, following the rule the command
/// documents. One sampler for the whole chat; the whole conversation (never trimmed) rendered
/// again for every question with `render_fitting(messages, 1, buf[..ctx])`; `chat::reply`.
fn oracle(path: &Path, o: &Opts, lines: &[&str]) -> Vec<Expect> {
    let bytes = read_aligned(path).expect("read model");
    let model = Model::from_bytes(&bytes).expect("valid model");
    let template = Template::new(model.tokenizer()).expect("a chat model");
    let ctx = o.ctx.unwrap_or(model.config().block_size as usize);
    let mut buf = vec![0u8; model.session_bytes(ctx, o.kv)];
    let mut session = Session::new(&model, &mut buf, ctx, o.kv).expect("session");
    let mut sampler = Sampler::new(o.cfg, o.seed);
    let mut history: Vec<(Role, String)> = Vec::new();
    let mut gone = 0;
    let mut out = Vec::new();
    for &line in lines {
        if line == "/reset" {
            history.clear();
            gone = 0;
            out.push(Expect::Reset);
            continue;
        }
        let mut msgs: Vec<Message<'_>> = Vec::new();
        if let Some(sys) = &o.system {
            msgs.push(Message::system(sys));
        }
        let offset = msgs.len();
        msgs.extend(history.iter().map(|(role, content)| Message { role: *role, content }));
        msgs.push(Message::user(line));
        let mut tokens = vec![0u32; ctx];
        let (first, len) = match template.render_fitting(&msgs, 1, &mut tokens[..ctx]) {
            Ok(r) => r,
            Err(e) => {
                out.push(Expect::Refused(e));
                continue;
            }
        };
        let dropped = first - offset - gone;
        gone += dropped;
        let mut text = String::new();
        let stats = chat::reply(&mut session, &mut sampler, &template, &tokens[..len], o.n, |t| text.push_str(t))
            .expect("reply");
        history.push((Role::User, line.to_owned()));
        history.push((Role::Assistant, text.clone()));
        out.push(Expect::Answer { text, dropped, stopped: stats.stopped });
    }
    out
}

/// The one answer of a one-question chat.
fn oracle_one(path: &Path, o: &Opts, question: &str) -> (String, bool) {
    match oracle(path, o, &[question]).remove(0) {
        Expect::Answer { text, stopped, .. } => (text, stopped),
        e => panic!("the oracle refused {question:?}: {e:?}"),
    }
}

/// `tinygpt chat -m PATH -p QUESTION` with `o`'s flags.
fn chat_p(path: &Path, o: &Opts, question: &str) -> Output {
    let mut args: Vec<String> = vec!["chat".into(), "-m".into(), s(path).into(), "-p".into(), question.into()];
    args.extend(o.flags());
    tinygpt(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `tinygpt chat -m PATH` with `o`'s flags (and `extra`), fed `input`.
fn chat_fed(path: &Path, o: &Opts, extra: &[&str], input: &[u8]) -> Output {
    let mut args: Vec<String> = vec!["chat".into(), "-m".into(), s(path).into()];
    args.extend(o.flags());
    args.extend(extra.iter().map(|e| e.to_string()));
    tinygpt_fed(&args.iter().map(String::as_str).collect::<Vec<_>>(), input)
}

/// What stdout must hold after a chat: every answer followed by a newline.
fn expected_stdout(expect: &[Expect]) -> String {
    expect
        .iter()
        .filter_map(|e| match e {
            Expect::Answer { text, .. } => Some(format!("{text}\n")),
            _ => None,
        })
        .collect()
}

fn sampling(temperature: f32, top_k: u32, top_p: f32) -> SamplerConfig {
    SamplerConfig { temperature, top_k, top_p }
}

#[test]
fn one_question_prints_the_answer_the_runtime_gives() {
    let m = Models::new();
    let models = [
        (m.chat(Arch::Llama, DType::F32), "Who art thou, and whence comest thou?"),
        (m.chat(Arch::Gpt2, DType::F16), "Speak, what news?"),
        (m.chat(Arch::Llama, DType::I8), "Good morrow."),
        (m.chat(Arch::Gpt2, DType::I8), "Wherefore?"),
        (m.chat_bpe(Arch::Gpt2, DType::I8), "naïve café — what is <|im_end|> to you?"),
        (m.chat_bpe(Arch::Llama, DType::F32), "To be, or not to be?"),
    ];
    let d = Opts::default();
    let settings = [
        d.clone(),
        Opts { seed: 1, ..d.clone() },
        Opts { seed: 2, ..d.clone() },
        Opts { cfg: sampling(0.0, 40, 1.0), ..d.clone() },
        Opts { cfg: sampling(1.3, 5, 1.0), seed: 9, ..d.clone() },
        Opts { cfg: sampling(1.0, 0, 0.8), seed: 3, ..d.clone() },
        Opts { ctx: Some(64), kv: KvDType::F16, seed: 4, ..d.clone() },
        Opts { kv: KvDType::I8, n: 10, seed: 5, ..d.clone() },
        Opts { system: Some("You are a player.".into()), seed: 6, ..d.clone() },
    ];
    let (mut stopped, mut cut, mut nonempty) = (0, 0, 0);
    for (path, question) in &models {
        let mut answers = std::collections::HashSet::new();
        for o in &settings {
            let out = ok(&chat_p(path, o, question));
            let (text, stop) = oracle_one(path, o, question);
            assert_eq!(out, format!("{text}\n"), "{} {:?}", path.display(), o.flags());
            assert_no_special_text(&out);
            stopped += usize::from(stop);
            cut += usize::from(!stop);
            nonempty += usize::from(!text.is_empty());
            answers.insert(text);
        }
        // Seeds and settings change the answer.
        assert!(answers.len() >= settings.len() - 2, "{}: {answers:?}", path.display());
    }
    // Both ends of a reply were exercised: <|im_end|> and the token limit.
    assert!(stopped > 0 && cut > 0 && nonempty > 0, "stopped {stopped}, cut {cut}, non-empty {nonempty}");
}

/// A reply computed token by token, with no help from `chat::reply` or the template: the prompt
/// spelt out with the chat tokens' ids, fed, then tokens sampled until `<|im_end|>`, `n`, or the
/// end of the context, and the bytes of the ordinary ones joined (character models: valid UTF-8
/// by construction).
fn hand_reply(path: &Path, o: &Opts, question: &str) -> String {
    let bytes = read_aligned(path).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let tok = model.tokenizer();
    let id = |name: &str| tok.special_id(name).unwrap_or_else(|| panic!("{name}"));
    let text = |t: &str| -> Vec<u32> { t.chars().map(|c| tok.char_id(c).expect("character in the vocabulary")).collect() };
    let mut prompt = Vec::new();
    let mut turn = |role: &str, content: &str, close: bool| {
        prompt.push(id("<|im_start|>"));
        prompt.extend(text(role));
        prompt.push(id("<|im_sep|>"));
        prompt.extend(text(content));
        if close {
            prompt.push(id("<|im_end|>"));
        }
    };
    if let Some(sys) = &o.system {
        turn("system", sys, true);
    }
    turn("user", question, true);
    turn("assistant", "", false);
    let ctx = o.ctx.unwrap_or(model.config().block_size as usize);
    assert!(prompt.len() < ctx, "the test's question fits");
    let mut buf = vec![0u8; model.session_bytes(ctx, o.kv)];
    let mut session = Session::new(&model, &mut buf, ctx, o.kv).unwrap();
    let mut sampler = Sampler::new(o.cfg, o.seed);
    for &t in &prompt {
        session.step(t).unwrap();
    }
    let limit = o.n.min(ctx - prompt.len() + 1);
    let mut out = Vec::new();
    for i in 0..limit {
        let t = session.sample(&mut sampler);
        if t == id("<|im_end|>") {
            break;
        }
        // Other special tokens are fed but print nothing.
        if !tok.is_special(t) {
            out.extend_from_slice(tok.token_bytes(t));
        }
        if i + 1 < limit {
            session.step(t).unwrap();
        }
    }
    String::from_utf8(out).expect("a character model's reply is UTF-8")
}

#[test]
fn one_question_matches_a_reply_loop_written_here() {
    let m = Models::new();
    let d = Opts::default();
    for path in [m.chat(Arch::Llama, DType::F32), m.chat(Arch::Gpt2, DType::I8), m.chat(Arch::Llama, DType::F16)] {
        for o in [
            d.clone(),
            Opts { seed: 11, cfg: sampling(1.0, 0, 1.0), ..d.clone() },
            // The prompt takes 31 of 34 positions: a reply of at most 4 tokens.
            Opts { ctx: Some(34), seed: 12, ..d.clone() },
            Opts { n: 3, seed: 13, ..d.clone() },
            Opts { kv: KvDType::I8, system: Some("Be brief.".into()), seed: 14, ..d.clone() },
        ] {
            let q = "What say you?";
            let out = ok(&chat_p(&path, &o, q));
            assert_eq!(out, format!("{}\n", hand_reply(&path, &o, q)), "{} {:?}", path.display(), o.flags());
        }
    }
}

#[test]
fn a_conversation_through_a_pipe_matches_the_runtime_turn_by_turn() {
    let m = Models::new();
    let questions = ["Who art thou?", "Speak.", "What news?", "Good night.", "And then?", "Farewell."];
    let input = questions.iter().map(|q| format!("{q}\n")).collect::<String>();
    let d = Opts::default();
    let mut drops_seen = 0;
    let mut greedy_checked = false;
    for (path, o) in [
        // A small context: older turns are dropped.
        (m.chat(Arch::Llama, DType::F32), Opts { ctx: Some(40), n: 12, ..d.clone() }),
        (m.chat(Arch::Gpt2, DType::I8), Opts { ctx: Some(40), kv: KvDType::I8, seed: 3, ..d.clone() }),
        (m.chat_bpe(Arch::Gpt2, DType::I8), Opts { ctx: Some(40), n: 8, seed: 4, ..d.clone() }),
        (m.chat_bpe(Arch::Llama, DType::F16), Opts { n: 6, ..d.clone() }),
        // The system prompt is kept when turns are dropped.
        (m.chat(Arch::Llama, DType::I8), Opts { ctx: Some(56), n: 8, system: Some("Be brief.".into()), ..d.clone() }),
        (m.chat(Arch::Gpt2, DType::F32), Opts { cfg: sampling(0.0, 40, 1.0), n: 10, ..d.clone() }),
    ] {
        let expect = oracle(&path, &o, &questions);
        let o_run = chat_fed(&path, &o, &[], input.as_bytes());
        assert!(o_run.status.success(), "{}", stderr(&o_run));
        let out = stdout(&o_run);
        assert_eq!(out, expected_stdout(&expect), "{} {:?}", path.display(), o.flags());
        assert_no_special_text(&out);
        // stderr: one line per drop, naming how many turns went, and nothing else (no prompt on a pipe).
        let err = stderr(&o_run);
        let drops: Vec<usize> = expect
            .iter()
            .filter_map(|e| match e {
                Expect::Answer { dropped, .. } if *dropped > 0 => Some(*dropped),
                _ => None,
            })
            .collect();
        assert_eq!(err.lines().count(), drops.len(), "{err}");
        for (line, n) in err.lines().zip(&drops) {
            assert!(line.starts_with("tinygpt: ") && line.contains(&format!("dropped its {n} oldest turn")), "{line}");
        }
        drops_seen += drops.len();
        // Greedy: the sampler's state does not matter, so an answer that differs from the one the
        // question gets alone shows that the earlier turns were part of the prompt.
        if o.cfg.temperature == 0.0 {
            let alone: Vec<Expect> =
                questions.iter().flat_map(|q| oracle(&path, &o, &[q])).collect();
            assert_ne!(expected_stdout(&alone), out, "the conversation must matter");
            greedy_checked = true;
        }
    }
    assert!(drops_seen > 0, "a small context must drop turns");
    assert!(greedy_checked);
}

#[test]
fn reset_forgets_the_conversation() {
    let m = Models::new();
    let d = Opts::default();
    let path = m.chat(Arch::Llama, DType::F32);
    // Greedy: after /reset the same question gets the same answer as at the start.
    let greedy = Opts { cfg: sampling(0.0, 40, 1.0), n: 12, ..d.clone() };
    let lines = ["Who art thou?", "What news?", "/reset", "Who art thou?"];
    let expect = oracle(&path, &greedy, &lines);
    let o = chat_fed(&path, &greedy, &[], lines.map(|l| format!("{l}\n")).concat().as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out, expected_stdout(&expect));
    let answers: Vec<&str> = out.lines().collect();
    assert_eq!(answers.len(), 3, "{out:?}");
    assert_eq!(answers[0], answers[2], "after /reset the conversation starts afresh");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("tinygpt: ") && err.contains("forgotten"), "{err}");
    // Without the reset, the last answer is another one (so the check above can fail).
    let kept = oracle(&path, &greedy, &["Who art thou?", "What news?", "Who art thou?"]);
    assert_ne!(expected_stdout(&kept), expected_stdout(&expect));
    // Sampling: the sampler carries on across the reset.
    let sampled = Opts { seed: 8, n: 20, ..d.clone() };
    let lines = ["Hark!", "/reset", "Hark!", "  /reset  ", "Hark!"];
    let expect = oracle(&path, &sampled, &["Hark!", "/reset", "Hark!", "/reset", "Hark!"]);
    let o = chat_fed(&path, &sampled, &[], lines.map(|l| format!("{l}\n")).concat().as_bytes());
    assert!(o.status.success());
    assert_eq!(stdout(&o), expected_stdout(&expect));
    assert_eq!(stderr(&o).lines().filter(|l| l.contains("forgotten")).count(), 2);
}

#[test]
fn end_of_input_and_empty_lines() {
    let m = Models::new();
    let path = m.chat_bpe(Arch::Llama, DType::F32);
    let o = Opts { n: 16, ..Opts::default() };
    // No input at all: a clean end.
    let r = chat_fed(&path, &o, &[], b"");
    assert_eq!(ok(&r), "");
    // Empty and blank lines are ignored; CRLF line endings; a last line without a line ending.
    let expect = oracle(&path, &o, &["Who art thou?", "Tell me more."]);
    for input in [
        &b"\n\n   \nWho art thou?\r\n\r\n\t\nTell me more.\n\n"[..],
        b"Who art thou?\nTell me more.",
        b"Who art thou?\r\nTell me more.\r\n",
    ] {
        let r = chat_fed(&path, &o, &[], input);
        assert_eq!(ok(&r), expected_stdout(&expect), "{input:?}");
    }
}

#[test]
fn base_model_is_refused() {
    let m = Models::new();
    let base = m.base();
    for o in [tinygpt(&["chat", "-m", s(&base), "-p", "Hello"]), tinygpt_fed(&["chat", "-m", s(&base)], b"Hello\n")] {
        let e = clean_error(&o, 1);
        assert!(e.contains(&format!("'{}' is a base model, not a chat model", s(&base))), "{e}");
        assert!(e.contains("<|im_start|>"), "{e}");
    }
}

#[test]
fn unknown_characters_are_named() {
    let m = Models::new();
    let path = m.chat(Arch::Llama, DType::F32);
    let e = clean_error(&tinygpt(&["chat", "-m", s(&path), "-p", "naïve?"]), 1);
    assert!(e.contains("question") && e.contains("'ï'") && e.contains("U+00EF"), "{e}");
    let e = clean_error(&tinygpt(&["chat", "-m", s(&path), "-p", "Hi", "--system", "tab\there"]), 1);
    assert!(e.contains("system prompt") && e.contains("U+0009"), "{e}");
    // Interactive: the line is refused, the chat goes on (its sampler untouched).
    let o = Opts { n: 20, seed: 5, ..Opts::default() };
    let r = chat_fed(&path, &o, &[], "naïve?\nWho art thou?\n€\nAnd thou?\n".as_bytes());
    assert!(r.status.success());
    let expect = oracle(&path, &o, &["Who art thou?", "And thou?"]);
    assert_eq!(stdout(&r), expected_stdout(&expect));
    let err = stderr(&r);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains("U+00EF"), "{err}");
    assert!(lines[1].starts_with("error: ") && lines[1].contains("U+20AC"), "{err}");
    // A line that is not UTF-8 is refused too.
    let r = chat_fed(&path, &o, &[], b"\xff\xfeWho?\nWho art thou?\nAnd thou?\n");
    assert!(r.status.success());
    assert_eq!(stdout(&r), expected_stdout(&expect));
    assert!(stderr(&r).starts_with("error: ") && stderr(&r).contains("UTF-8") && stderr(&r).lines().count() == 1);
}

/// Tokens `[system?, user: question]` and the reply's opening take, plus the reserved one.
fn tokens_needed(path: &Path, system: Option<&str>, question: &str) -> usize {
    let bytes = read_aligned(path).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let template = Template::new(model.tokenizer()).unwrap();
    let mut msgs = Vec::new();
    if let Some(sys) = system {
        msgs.push(Message::system(sys));
    }
    msgs.push(Message::user(question));
    let mut buf = vec![0u32; 4096];
    template.render(&msgs, true, &mut buf).unwrap() + 1
}

#[test]
fn questions_too_long_for_the_context_are_refused_with_the_sizes() {
    let m = Models::new();
    let path = m.chat(Arch::Gpt2, DType::F32);
    let long = "Now is the winter of our discontent made glorious summer.";
    let need = tokens_needed(&path, None, long);
    assert!(need > 40);
    let e = clean_error(&tinygpt(&["chat", "-m", s(&path), "-c", "40", "-p", long]), 1);
    assert!(e.contains("too long") && e.contains(&format!("{need} tokens")) && e.contains("holds 40"), "{e}");
    // The same question fits the full context.
    ok(&tinygpt(&["chat", "-m", s(&path), "-p", long]));
    // At the edge: 1 token is kept for the reply, so a context of `need` is the smallest that
    // answers (with at most 2 tokens: the reserved one, and the one sampled at the last position).
    let o = Opts { ctx: Some(need), seed: 3, cfg: sampling(1.0, 0, 1.0), ..Opts::default() };
    let (text, _) = oracle_one(&path, &o, long);
    assert!(text.chars().count() <= 2, "{text:?}");
    assert_eq!(ok(&chat_p(&path, &o, long)), format!("{text}\n"));
    let e = clean_error(&chat_p(&path, &Opts { ctx: Some(need - 1), ..o.clone() }, long), 1);
    assert!(e.contains(&format!("{need} tokens")) && e.contains(&format!("holds {}", need - 1)), "{e}");
    // With a system prompt, its tokens count too.
    let need = tokens_needed(&path, Some("Be brief."), "Who goes there, friend?");
    let e = clean_error(&tinygpt(&["chat", "-m", s(&path), "-c", "40", "--system", "Be brief.", "-p", "Who goes there, friend?"]), 1);
    assert!(e.contains("system prompt") && e.contains(&format!("{need} tokens")), "{e}");
    // A system prompt that leaves no room for any question is refused at once.
    let r = chat_fed(&path, &Opts { ctx: Some(40), system: Some(long.into()), ..Opts::default() }, &[], b"Hi\n");
    let e = clean_error(&r, 1);
    assert!(e.contains("system prompt is too long") && e.contains("40"), "{e}");
    // Interactive: refused, and the chat goes on.
    let o = Opts { ctx: Some(40), n: 8, ..Opts::default() };
    let r = chat_fed(&path, &o, &[], format!("Hi\n{long}\nAnd thou?\n").as_bytes());
    assert!(r.status.success());
    let expect = oracle(&path, &o, &["Hi", long, "And thou?"]);
    assert!(matches!(expect[1], Expect::Refused(Error::PromptTooLong { .. })), "{expect:?}");
    assert_eq!(stdout(&r), expected_stdout(&expect));
    let err = stderr(&r);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("too long") && errors[0].contains("holds 40"), "{err}");
}

#[test]
fn context_flag_alias_and_verbose() {
    let m = Models::new();
    let path = m.chat(Arch::Llama, DType::I8);
    let a = ok(&tinygpt(&["chat", "-m", s(&path), "-c", "40", "-p", "Hark!"]));
    let b = ok(&tinygpt(&["chat", "-m", s(&path), "--ctx", "40", "-p", "Hark!"]));
    let c = ok(&tinygpt(&["chat", "-m", s(&path), "--ctx-size", "40", "-p", "Hark!"]));
    assert!(a == b && b == c);
    assert_eq!(a, format!("{}\n", oracle_one(&path, &Opts { ctx: Some(40), ..Opts::default() }, "Hark!").0));
    // -v: one line of counts per reply on stderr, the same answers on stdout.
    let r = tinygpt_fed(&["chat", "-m", s(&path), "-c", "40", "-v"], b"Hark!\nWhat?\n");
    assert!(r.status.success());
    let err = stderr(&r);
    assert!(err.lines().all(|l| l.starts_with("tinygpt: ")), "{err}");
    let counts: Vec<&str> = err.lines().filter(|l| l.contains("reply tokens")).collect();
    assert_eq!(counts.len(), 2, "{err}");
    assert!(counts.iter().all(|l| l.contains("prompt tokens") && l.contains("context 40")), "{err}");
    let quiet = tinygpt_fed(&["chat", "-m", s(&path), "-c", "40"], b"Hark!\nWhat?\n");
    assert_eq!(stdout(&r), stdout(&quiet));
    assert!(stdout(&r).starts_with(&a));
}

#[test]
fn bad_command_lines_fail_with_one_line() {
    let m = Models::new();
    let path = m.chat(Arch::Llama, DType::F32);
    let p = s(&path);
    let cases: &[(&[&str], &str)] = &[
        (&["chat", "-m", p, "--bogus"], "--bogus"),
        (&["chat", "-m", p, "--top_k", "3"], "--top-k"),
        (&["chat", "-p", "Hi"], "--model"),
        (&["chat", "-m", p, "--temp", "-1"], "--temp"),
        (&["chat", "-m", p, "--top-p", "0"], "--top-p"),
        (&["chat", "-m", p, "-n", "-1"], "--n-predict"),
        (&["chat", "-m", p, "-s", "x"], "--seed"),
        (&["chat", "-m", p, "-c", "0"], "--ctx-size"),
        (&["chat", "-m", p, "--kv", "q4"], "--kv"),
        (&["chat", "-m", p, "-f", "x"], "-f"),
        (&["chat", "-m", p, "-p"], "-p"),
    ];
    for (args, needle) in cases {
        let e = clean_error(&tinygpt(args), 2);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    let e = clean_error(&tinygpt(&["chat", "-m", p, "-c", "129", "-p", "Hi"]), 1);
    assert!(e.contains("128"), "{e}");
    let e = clean_error(&tinygpt(&["chat", "-m", p, "-p", ""]), 1);
    assert!(e.contains("empty"), "{e}");
    let missing = m.dir.path().join("missing.tgpt");
    clean_error(&tinygpt(&["chat", "-m", s(&missing), "-p", "Hi"]), 1);
    // Help names the flags and the rule.
    let help = stdout(&tinygpt(&["chat", "--help"]));
    for flag in ["--model", "--prompt", "--system", "--n-predict", "--temp", "--top-k", "--top-p", "--seed", "--ctx-size", "--kv"] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
    assert!(help.contains("render_fitting(messages, 1, buf[..ctx])") && help.contains("chat::reply"), "{help}");
    assert!(help.contains("/reset"), "{help}");
    assert!(stdout(&tinygpt(&["--help"])).contains("chat"));
}

#[test]
fn inspect_says_whether_a_model_is_a_chat_model() {
    let m = Models::new();
    let chat_line = |path: &Path| -> String {
        let out = ok(&tinygpt(&["inspect", s(path)]));
        out.lines().find(|l| l.split_whitespace().next() == Some("chat")).unwrap_or_else(|| panic!("{out}")).to_owned()
    };
    for path in [m.chat(Arch::Llama, DType::F32), m.chat_bpe(Arch::Gpt2, DType::I8)] {
        let bytes = read_aligned(&path).unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        let ids = ChatTokens::find(&model.tokenizer()).unwrap();
        let line = chat_line(&path);
        let want = format!(
            "yes (<|im_start|> id {}, <|im_sep|> id {}, <|im_end|> id {}, <|pad|> id {})",
            ids.im_start, ids.im_sep, ids.im_end, ids.pad
        );
        assert!(line.ends_with(&want), "{line}");
    }
    assert!(chat_line(&m.base()).ends_with("no (base model)"));
}
