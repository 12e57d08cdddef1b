//! Command-line interface: llama.cpp-style flags.
//!
//! Parsed by hand rather than with clap: clap and the std it needs are most of a static binary's
//! size (the program is `no_std`; see `tools/README.md`, "Static builds"). It follows clap's
//! conventions: `--flag value`, `--flag=value`, `-f value`, `-fvalue`, `--` ends the flags,
//! values may be negative numbers (the value parsers then name the problem), `-h`/`--help` and
//! `-V`/`--version` anywhere, `tinygpt help [COMMAND]`; a mistake is one line naming the flag,
//! with the closest flag as a tip.

use core::fmt::Write as _;

use tinygpt::args::{parse_count, parse_positive, parse_temp, parse_top_p};
use tinygpt::prelude::*;
use tinygpt_runtime::{KvDType, SamplerConfig};

/// Default prompt: a newline, the start of a fresh line of text.
pub const DEFAULT_PROMPT: &str = "\n";
/// Default seed, so that a plain `tinygpt generate` is reproducible.
pub const DEFAULT_SEED: u64 = 42;
/// Default number of tokens `generate` samples (and most tokens of a `chat` reply).
pub const DEFAULT_N_PREDICT: usize = 256;

const ABOUT: &str = "Run tinygpt .tgpt models: generate text, chat, inspect a file, evaluate loss, benchmark speed, convert llama2.c and GGUF models";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A parsed command line.
pub enum Command {
    Generate(GenerateArgs),
    Chat(ChatArgs),
    Inspect(InspectArgs),
    Eval(EvalArgs),
    Bench(BenchArgs),
    Convert(ConvertArgs),
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
}

/// What the command line asks for, or why it cannot be followed.
pub enum Parsed {
    /// Run a command.
    Run(Command),
    /// Print this (help or version) on stdout and exit 0.
    Print(String),
    /// Print this overview on stderr and exit 2 (no command given).
    Overview(String),
    /// A usage error: one line for stderr, exit 2.
    Error(String),
}

/// Weight type of a converted model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertDType {
    F32,
    F16,
    Int8,
    Int4,
}

/// KV-cache element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kv {
    F32,
    F16,
    I8,
}

impl From<Kv> for KvDType {
    fn from(k: Kv) -> Self {
        match k {
            Kv::F32 => KvDType::F32,
            Kv::F16 => KvDType::F16,
            Kv::I8 => KvDType::I8,
        }
    }
}

/// Options every model-running subcommand shares.
pub struct RunOpts {
    pub model: String,
    pub ctx: Option<usize>,
    pub kv: Kv,
}

/// Sampler options every text-producing subcommand shares.
pub struct SampleOpts {
    pub temp: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub seed: u64,
}

impl SampleOpts {
    /// The runtime's sampler settings.
    pub fn config(&self) -> SamplerConfig {
        SamplerConfig { temperature: self.temp, top_k: self.top_k, top_p: self.top_p }
    }
}

pub struct GenerateArgs {
    pub run: RunOpts,
    pub prompt: Option<String>,
    pub file: Option<String>,
    pub n_predict: usize,
    pub sample: SampleOpts,
    pub verbose: bool,
}

pub struct ChatArgs {
    pub run: RunOpts,
    pub prompt: Option<String>,
    pub system: Option<String>,
    pub n_predict: usize,
    pub sample: SampleOpts,
    pub verbose: bool,
}

pub struct InspectArgs {
    pub model: String,
}

pub struct EvalArgs {
    pub run: RunOpts,
    pub file: String,
}

pub struct BenchArgs {
    pub run: RunOpts,
    pub n_prompt: Option<usize>,
    pub n_gen: Option<usize>,
    pub repetitions: usize,
}

pub struct ConvertArgs {
    pub input: String,
    pub out: String,
    pub dtype: Option<ConvertDType>,
    pub group_size: Option<usize>,
    pub tokenizer: Option<String>,
}

#[cfg(feature = "serve")]
pub struct ServeArgs {
    pub run: RunOpts,
    pub host: String,
    pub port: u16,
    pub parallel: usize,
    pub queue: usize,
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
    pub cors_origin: Option<String>,
    pub n_predict: usize,
    pub max_tokens: usize,
    pub max_body: usize,
    pub timeout: u64,
}

/// How `chat` answers, shown under `tinygpt chat --help`.
const CHAT_RULE: &str = "\
How an answer is made (the board and `tinygpt serve` answer the same way, so the same model,
question, seed and settings give the same answer everywhere):
  1. a fresh session of context ctx (-c, default block_size) with KV type --kv;
  2. a fresh Sampler::new(SamplerConfig { temperature, top_k, top_p }, seed);
  3. the conversation [system (--system, if given), user: QUESTION] rendered with
     Template::render_fitting(messages, 1, buf[..ctx]): 1 token kept free for the reply, the
     prompt ending with <|im_start|>assistant<|im_sep|>;
  4. tinygpt_runtime::chat::reply(session, sampler, template, prompt, n_predict, ..): tokens
     sampled until <|im_end|>, -n tokens or the end of the context; a reply cut by a limit is
     printed as it is.
With -p, stdout gets only the answer (streamed as it is generated) and a newline.

Without -p, each line of stdin is a question (a prompt `> ` goes to stderr when stdin is a
terminal; stdout gets only the answers, each followed by a newline). Every question is answered
by the same rule, except that one sampler, seeded once, carries on from reply to reply and the
messages are the whole conversation so far; when it no longer fits, render_fitting drops the
oldest turns whole (said on stderr). `/reset` forgets the conversation; an empty line is
ignored; a line that cannot be answered (a character the vocabulary lacks, too long for the
context) is refused on stderr and the chat goes on; end of input (Ctrl-D) ends the chat.";

/// One flag of a subcommand.
struct Opt {
    short: Option<char>,
    long: &'static str,
    /// Another long name, shown in the help.
    alias: Option<&'static str>,
    /// The value's name; `None` for a flag without a value.
    value: Option<&'static str>,
    required: bool,
    help: &'static str,
}

const fn opt(short: Option<char>, long: &'static str, value: &'static str, help: &'static str) -> Opt {
    Opt { short, long, alias: None, value: Some(value), required: false, help }
}

const fn switch(short: char, long: &'static str, help: &'static str) -> Opt {
    Opt { short: Some(short), long, alias: None, value: None, required: false, help }
}

const MODEL: Opt = Opt { required: true, ..opt(Some('m'), "model", "FILE", "Model file (.tgpt)") };
const CTX: Opt = Opt {
    alias: Some("ctx"),
    ..opt(Some('c'), "ctx-size", "N", "Context length in tokens [default: the model's block_size]")
};
const KV: Opt = opt(None, "kv", "TYPE", "KV-cache element type [default: f32] [possible values: f32, f16, i8]");
const TEMP: Opt = opt(None, "temp", "T", "Temperature; 0 picks the most likely token every time [default: 0.8]");
const TOP_K: Opt = opt(None, "top-k", "K", "Sample only from the K most likely tokens; 0 disables [default: 40]");
const TOP_P: Opt = opt(
    None,
    "top-p",
    "P",
    "Sample only from the most likely tokens whose probabilities add up to P; 1 disables [default: 1]",
);
const SEED: Opt = opt(Some('s'), "seed", "SEED", "Random seed [default: 42]");

const GENERATE: &[Opt] = &[
    MODEL,
    CTX,
    KV,
    opt(Some('p'), "prompt", "TEXT", "Prompt text [default: a newline]"),
    opt(Some('f'), "file", "FILE", "Read the prompt from a file"),
    opt(Some('n'), "n-predict", "N", "Number of tokens to generate [default: 256]"),
    TEMP,
    TOP_K,
    TOP_P,
    SEED,
    switch('v', "verbose", "Print timing and token counts to stderr when done"),
];

const CHAT: &[Opt] = &[
    MODEL,
    CTX,
    KV,
    opt(Some('p'), "prompt", "QUESTION", "Answer this one question and exit [default: read questions from stdin]"),
    opt(None, "system", "TEXT", "System prompt: instructions rendered before the conversation"),
    opt(
        Some('n'),
        "n-predict",
        "N",
        "Most tokens per reply (a reply also ends at <|im_end|> or when the context is full) [default: 256]",
    ),
    TEMP,
    TOP_K,
    TOP_P,
    SEED,
    switch('v', "verbose", "Print each reply's token counts and speed to stderr"),
];

const EVAL: &[Opt] =
    &[MODEL, CTX, KV, Opt { required: true, ..opt(Some('f'), "file", "FILE", "UTF-8 text file to evaluate") }];

const BENCH: &[Opt] = &[
    MODEL,
    CTX,
    KV,
    opt(Some('p'), "n-prompt", "N", "Prompt tokens to process [default: min(128, context)]"),
    opt(Some('n'), "n-gen", "N", "Tokens to generate [default: min(128, context)]"),
    opt(Some('r'), "repetitions", "N", "Timed runs of each test, 1 to 100000 (the median is reported) [default: 5]"),
];

const CONVERT: &[Opt] = &[
    Opt { required: true, ..opt(Some('o'), "out", "FILE", "Output .tgpt file (written atomically)") },
    opt(
        None,
        "dtype",
        "TYPE",
        "Weight type [default: int8 for Q8_0 inputs, else f32; int4 quarters the f32 size] [possible values: f32, f16, int8, int4]",
    ),
    opt(None, "group-size", "N", "int8 group size [default: the input's Q8_0 group, else 64]"),
    opt(None, "tokenizer", "FILE", "llama2.c's tokenizer.bin (llama2.c checkpoints carry no tokenizer; GGUF files do)"),
];

#[cfg(feature = "serve")]
const SERVE: &[Opt] = &[
    MODEL,
    CTX,
    KV,
    opt(None, "host", "ADDR", "Address to listen on (only this machine by default) [default: 127.0.0.1]"),
    opt(None, "port", "PORT", "Port to listen on (0 picks a free one) [default: 8080]"),
    opt(
        None,
        "parallel",
        "N",
        "Slots: requests generated at once, each with its own session allocated at start-up [default: 1]",
    ),
    opt(None, "queue", "N", "Requests that may wait for a slot; beyond them requests get 503 with Retry-After [default: 8]"),
    opt(None, "api-key", "KEY", "Require this API key (Authorization: Bearer KEY)"),
    opt(None, "api-key-file", "FILE", "Require the API key stored in this file"),
    opt(None, "cors-origin", "ORIGIN", "Let pages from this origin call the API (CORS), e.g. http://localhost:3000"),
    opt(Some('n'), "n-predict", "N", "Tokens generated when a request gives no max_tokens [default: 256]"),
    opt(None, "max-tokens", "N", "Largest max_tokens a request may ask for [default: 4096]"),
    opt(None, "max-body", "BYTES", "Largest request body in bytes [default: 1048576]"),
    opt(None, "timeout", "SECONDS", "Longest a request may take in seconds, waiting for a slot included [default: 600]"),
];

/// A subcommand: its name, summary, flags, positional argument and text after the help.
struct Sub {
    name: &'static str,
    about: &'static str,
    opts: &'static [Opt],
    /// A required positional argument: its name and help.
    positional: Option<(&'static str, &'static str)>,
    after: Option<&'static str>,
}

const SUBS: &[Sub] = &[
    Sub { name: "generate", about: "Stream the prompt and generated text to stdout", opts: GENERATE, positional: None, after: None },
    Sub {
        name: "chat",
        about: "Chat with a chat model: answer one question (-p) or converse over stdin",
        opts: CHAT,
        positional: None,
        after: Some(CHAT_RULE),
    },
    Sub {
        name: "inspect",
        about: "Show a model's architecture, size, memory needs and metadata",
        opts: &[],
        positional: Some(("FILE", "Model file (.tgpt)")),
        after: None,
    },
    Sub { name: "eval", about: "Measure loss, perplexity and bits per character over a text file", opts: EVAL, positional: None, after: None },
    Sub { name: "bench", about: "Measure prompt-processing and generation speed (single thread)", opts: BENCH, positional: None, after: None },
    Sub {
        name: "convert",
        about: "Convert a llama2.c checkpoint or a llama GGUF file into a .tgpt model",
        opts: CONVERT,
        positional: Some((
            "IN",
            "Input: a llama2.c checkpoint (legacy float, version 1 float, version 2 Q8_0) or a GGUF file (llama; F32, F16, Q8_0 tensors)",
        )),
        after: None,
    },
    #[cfg(feature = "serve")]
    Sub { name: "serve", about: "Serve a web page and an OpenAI-compatible HTTP API", opts: SERVE, positional: None, after: None },
];

/// `--name <VALUE>` as the help and the errors show a flag.
fn shown(o: &Opt) -> String {
    match o.value {
        Some(v) => format!("--{} <{v}>", o.long),
        None => format!("--{}", o.long),
    }
}

/// The overview: the commands and the global flags.
fn overview() -> String {
    let mut s = format!("{ABOUT}\n\nUsage: tinygpt <COMMAND>\n\nCommands:\n");
    for sub in SUBS {
        let _ = writeln!(s, "  {:<10}{}", sub.name, sub.about);
    }
    let _ = writeln!(s, "  {:<10}Print this message or the help of the given subcommand(s)", "help");
    s.push_str("\nOptions:\n  -h, --help     Print help\n  -V, --version  Print version\n");
    s
}

/// A subcommand's help.
fn help(sub: &Sub) -> String {
    let mut usage = format!("Usage: tinygpt {} [OPTIONS]", sub.name);
    for o in sub.opts.iter().filter(|o| o.required) {
        usage.push(' ');
        usage.push_str(&shown(o));
    }
    if let Some((p, _)) = sub.positional {
        let _ = write!(usage, " <{p}>");
    }
    let mut s = format!("{}\n\n{usage}\n\n", sub.about);
    if let Some((p, h)) = sub.positional {
        let _ = write!(s, "Arguments:\n  <{p}>  {h}\n\n");
    }
    let mut rows: Vec<(String, &str)> = Vec::new();
    for o in sub.opts {
        let short = o.short.map_or("    ".to_owned(), |c| format!("-{c}, "));
        let mut left = format!("{short}{}", shown(o));
        if let Some(a) = o.alias {
            let _ = write!(left, " (alias --{a})");
        }
        rows.push((left, o.help));
    }
    rows.push(("-h, --help".to_owned(), "Print help"));
    rows.push(("-V, --version".to_owned(), "Print version"));
    let width = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    s.push_str("Options:\n");
    for (l, h) in rows {
        let _ = writeln!(s, "  {l:<width$}  {h}");
    }
    if let Some(a) = sub.after {
        let _ = write!(s, "\n{a}\n");
    }
    s
}

/// Edit distance of two short strings (for the "did you mean" tip).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `names` to `word`, if close enough to be a likely typo.
fn closest<'n>(word: &str, names: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    let limit = (word.chars().count() / 3).max(1);
    names.map(|n| (distance(word, n), n)).filter(|&(d, _)| d <= limit).min_by_key(|&(d, _)| d).map(|(_, n)| n)
}

/// The values given to one subcommand's flags, by flag.
struct Got<'s> {
    sub: &'s Sub,
    values: Vec<Option<String>>,
    positional: Option<String>,
}

/// What parsing stopped at: help or version asked for, or a mistake.
enum Stop {
    Print(String),
    Error(String),
}

fn err<T>(msg: String) -> Result<T, Stop> {
    Err(Stop::Error(msg))
}

impl<'s> Got<'s> {
    fn parse(sub: &'s Sub, args: &[String]) -> Result<Self, Stop> {
        let mut g = Got { sub, values: sub.opts.iter().map(|_| None).collect(), positional: None };
        let mut i = 0;
        let mut flags_done = false;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if flags_done || arg == "-" || !arg.starts_with('-') {
                match (sub.positional, &g.positional) {
                    (Some(_), None) => g.positional = Some(arg.clone()),
                    _ => return err(format!("unexpected argument '{arg}' found")),
                }
                continue;
            }
            if arg == "--" {
                flags_done = true;
                continue;
            }
            if arg == "-h" || arg == "--help" {
                return Err(Stop::Print(help(sub)));
            }
            if arg == "-V" || arg == "--version" {
                return Err(Stop::Print(format!("tinygpt {VERSION}\n")));
            }
            // The flag and a value attached to it (`--flag=value`, `-fvalue`).
            let (k, attached) = if let Some(long) = arg.strip_prefix("--") {
                let (name, value) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (long, None),
                };
                match sub.opts.iter().position(|o| o.long == name || o.alias == Some(name)) {
                    Some(k) => (k, value),
                    None => {
                        let names = sub.opts.iter().map(|o| o.long).chain(["help", "version"]);
                        let tip = closest(name, names).map_or(String::new(), |n| {
                            format!("; a similar argument exists: '--{n}'")
                        });
                        return err(format!("unexpected argument '--{name}' found{tip}"));
                    }
                }
            } else {
                let mut chars = arg[1..].chars();
                let c = chars.next().unwrap_or('-');
                let rest = chars.as_str();
                match sub.opts.iter().position(|o| o.short == Some(c)) {
                    Some(k) if sub.opts[k].value.is_some() => {
                        let rest = rest.strip_prefix('=').unwrap_or(rest);
                        (k, (!rest.is_empty()).then(|| rest.to_owned()))
                    }
                    Some(k) if rest.is_empty() => (k, None),
                    Some(k) => {
                        return err(format!("unexpected value '{rest}' for '{}': it takes none", shown(&sub.opts[k])))
                    }
                    None => return err(format!("unexpected argument '{arg}' found")),
                }
            };
            let o = &sub.opts[k];
            let value = match (o.value, attached) {
                (None, None) => String::new(),
                (None, Some(_)) => return err(format!("unexpected value for '{}': it takes none", shown(o))),
                (Some(_), Some(v)) => v,
                (Some(_), None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        v.clone()
                    }
                    None => return err(format!("a value is required for '{}' but none was supplied", shown(o))),
                },
            };
            if g.values[k].is_some() {
                return err(format!("the argument '{}' cannot be used multiple times", shown(o)));
            }
            g.values[k] = Some(value);
        }
        let missing: Vec<String> = sub
            .opts
            .iter()
            .zip(&g.values)
            .filter(|(o, v)| o.required && v.is_none())
            .map(|(o, _)| shown(o))
            .chain(sub.positional.filter(|_| g.positional.is_none()).map(|(p, _)| format!("<{p}>")))
            .collect();
        if !missing.is_empty() {
            return err(format!("the following required arguments were not provided: {}", missing.join(" ")));
        }
        Ok(g)
    }

    fn index(&self, long: &str) -> usize {
        self.sub.opts.iter().position(|o| o.long == long).expect("a flag of this subcommand")
    }

    fn raw(&self, long: &str) -> Option<&str> {
        self.values[self.index(long)].as_deref()
    }

    fn string(&self, long: &str) -> Option<String> {
        self.raw(long).map(str::to_owned)
    }

    fn flag(&self, long: &str) -> bool {
        self.raw(long).is_some()
    }

    /// Refuses `a` and `b` together.
    fn conflict(&self, a: &str, b: &str) -> Result<(), Stop> {
        if self.flag(a) && self.flag(b) {
            let (oa, ob) = (&self.sub.opts[self.index(a)], &self.sub.opts[self.index(b)]);
            return err(format!("the argument '{}' cannot be used with '{}'", shown(oa), shown(ob)));
        }
        Ok(())
    }

    /// The flag's value through `parse`, if given.
    fn value<T>(&self, long: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, Stop> {
        match self.raw(long) {
            None => Ok(None),
            Some(v) => match parse(v) {
                Ok(x) => Ok(Some(x)),
                Err(why) => err(format!("invalid value '{v}' for '{}': {why}", shown(&self.sub.opts[self.index(long)]))),
            },
        }
    }

    fn value_or<T>(&self, long: &str, default: T, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, Stop> {
        Ok(self.value(long, parse)?.unwrap_or(default))
    }

    fn run(&self) -> Result<RunOpts, Stop> {
        Ok(RunOpts {
            model: self.string("model").unwrap_or_default(),
            ctx: self.value("ctx-size", parse_positive)?,
            kv: self.value_or("kv", Kv::F32, |s| match s {
                "f32" => Ok(Kv::F32),
                "f16" => Ok(Kv::F16),
                "i8" | "int8" => Ok(Kv::I8),
                _ => Err("possible values: f32, f16, i8".to_owned()),
            })?,
        })
    }

    fn sample(&self) -> Result<SampleOpts, Stop> {
        Ok(SampleOpts {
            temp: self.value_or("temp", 0.8, parse_temp)?,
            top_k: self.value_or("top-k", 40, parse_count::<u32>)?,
            top_p: self.value_or("top-p", 1.0, parse_top_p)?,
            seed: self.value_or("seed", DEFAULT_SEED, parse_count::<u64>)?,
        })
    }

    fn command(&self) -> Result<Command, Stop> {
        Ok(match self.sub.name {
            "generate" => {
                self.conflict("prompt", "file")?;
                Command::Generate(GenerateArgs {
                    run: self.run()?,
                    prompt: self.string("prompt"),
                    file: self.string("file"),
                    n_predict: self.value_or("n-predict", DEFAULT_N_PREDICT, parse_count::<usize>)?,
                    sample: self.sample()?,
                    verbose: self.flag("verbose"),
                })
            }
            "chat" => Command::Chat(ChatArgs {
                run: self.run()?,
                prompt: self.string("prompt"),
                system: self.string("system"),
                n_predict: self.value_or("n-predict", DEFAULT_N_PREDICT, parse_count::<usize>)?,
                sample: self.sample()?,
                verbose: self.flag("verbose"),
            }),
            "inspect" => Command::Inspect(InspectArgs { model: self.positional.clone().unwrap_or_default() }),
            "eval" => Command::Eval(EvalArgs { run: self.run()?, file: self.string("file").unwrap_or_default() }),
            "bench" => Command::Bench(BenchArgs {
                run: self.run()?,
                n_prompt: self.value("n-prompt", parse_positive)?,
                n_gen: self.value("n-gen", parse_positive)?,
                repetitions: self.value_or("repetitions", 5, |s| at_most(parse_positive(s)?, MAX_REPETITIONS, ""))?,
            }),
            "convert" => Command::Convert(ConvertArgs {
                input: self.positional.clone().unwrap_or_default(),
                out: self.string("out").unwrap_or_default(),
                dtype: self.value("dtype", |s| match s {
                    "f32" => Ok(ConvertDType::F32),
                    "f16" => Ok(ConvertDType::F16),
                    "int8" | "i8" => Ok(ConvertDType::Int8),
                    "int4" | "i4" => Ok(ConvertDType::Int4),
                    _ => Err("possible values: f32, f16, int8, int4".to_owned()),
                })?,
                group_size: self.value("group-size", parse_positive)?,
                tokenizer: self.string("tokenizer"),
            }),
            #[cfg(feature = "serve")]
            "serve" => {
                self.conflict("api-key", "api-key-file")?;
                Command::Serve(ServeArgs {
                    run: self.run()?,
                    host: self.string("host").unwrap_or_else(|| "127.0.0.1".to_owned()),
                    port: self.value_or("port", 8080, parse_count::<u16>)?,
                    parallel: self.value_or("parallel", 1, |s| at_most(parse_positive(s)?, MAX_SLOTS, ""))?,
                    queue: self.value_or("queue", 8, |s| at_most(parse_count::<usize>(s)?, 4096, ""))?,
                    api_key: self.string("api-key"),
                    api_key_file: self.string("api-key-file"),
                    cors_origin: self.string("cors-origin"),
                    n_predict: self.value_or("n-predict", DEFAULT_N_PREDICT, parse_positive)?,
                    max_tokens: self.value_or("max-tokens", 4096, parse_positive)?,
                    max_body: self.value_or("max-body", 1 << 20, parse_positive)?,
                    timeout: self.value_or("timeout", 600, |s| {
                        at_most(parse_positive(s)?, 86_400, " (a day)").map(|n| n as u64)
                    })?,
                })
            }
            other => unreachable!("subcommand {other} has no arguments"),
        })
    }
}

/// `n`, if at most `max`.
fn at_most(n: usize, max: usize, note: &str) -> Result<usize, String> {
    if n > max {
        return Err(format!("at most {max}{note}"));
    }
    Ok(n)
}

/// Most slots `serve` accepts.
#[cfg(feature = "serve")]
pub const MAX_SLOTS: usize = 256;

/// Most timed runs `bench` accepts: each keeps its timings for the median.
pub const MAX_REPETITIONS: usize = 100_000;

/// Parses the arguments after the program's name.
pub fn parse(args: &[String]) -> Parsed {
    let Some(first) = args.first() else { return Parsed::Overview(overview()) };
    match first.as_str() {
        "-h" | "--help" => return Parsed::Print(overview()),
        "-V" | "--version" => return Parsed::Print(format!("tinygpt {VERSION}\n")),
        "help" => {
            return match args.get(1) {
                None => Parsed::Print(overview()),
                Some(name) => match SUBS.iter().find(|s| s.name == name.as_str()) {
                    Some(sub) => Parsed::Print(help(sub)),
                    None => Parsed::Error(format!("unrecognized subcommand '{name}'")),
                },
            }
        }
        _ => {}
    }
    let Some(sub) = SUBS.iter().find(|s| s.name == first.as_str()) else {
        let tip = closest(first, SUBS.iter().map(|s| s.name))
            .map_or(String::new(), |n| format!("; a similar subcommand exists: '{n}'"));
        return if first.starts_with('-') {
            Parsed::Error(format!("unexpected argument '{first}' found"))
        } else {
            Parsed::Error(format!("unrecognized subcommand '{first}'{tip}"))
        };
    };
    match Got::parse(sub, &args[1..]).and_then(|g| g.command()) {
        Ok(c) => Parsed::Run(c),
        Err(Stop::Print(s)) => Parsed::Print(s),
        Err(Stop::Error(e)) => Parsed::Error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn error(a: &[&str]) -> String {
        match parse(&args(a)) {
            Parsed::Error(e) => e,
            _ => panic!("{a:?} parsed"),
        }
    }

    #[test]
    fn flags_in_every_spelling() {
        let p = parse(&args(&["generate", "--model=m.tgpt", "-n5", "--temp", "-0", "-s=7", "-v", "--top-k", "3", "--ctx", "9"]));
        let Parsed::Run(Command::Generate(g)) = p else { panic!("not generate") };
        assert_eq!((g.run.model.as_str(), g.n_predict, g.sample.seed, g.sample.top_k, g.run.ctx), ("m.tgpt", 5, 7, 3, Some(9)));
        assert!(g.verbose && g.sample.temp == 0.0 && g.sample.top_p == 1.0 && g.run.kv == Kv::F32);
        let Parsed::Run(Command::Inspect(i)) = parse(&args(&["inspect", "--", "-odd.tgpt"])) else { panic!() };
        assert_eq!(i.model, "-odd.tgpt");
    }

    #[test]
    fn mistakes_name_the_flag() {
        assert!(error(&["generate", "-m", "x", "--top_k", "3"]).contains("'--top-k'"));
        assert!(error(&["generate", "-m", "x", "--temp"]).contains("a value is required for '--temp <T>'"));
        assert!(error(&["generate", "-m", "x", "--temp", "1", "--temp", "2"]).contains("multiple times"));
        assert!(error(&["generate"]).contains("--model <FILE>"));
        assert!(error(&["convert", "-o", "x"]).contains("<IN>"));
        assert!(error(&["generate", "-m", "x", "--kv", "q4"]).contains("possible values"));
        assert!(error(&["generat"]).contains("'generate'"));
        assert!(error(&["inspect", "a", "b"]).contains("'b'"));
        assert!(error(&["generate", "-m", "x", "-v=1"]).contains("--verbose"));
    }

    #[test]
    fn every_flag_is_in_its_help() {
        for sub in SUBS {
            let h = help(sub);
            for o in sub.opts {
                assert!(h.contains(&shown(o)), "{}: {h}", o.long);
            }
            assert!(overview().contains(sub.name));
        }
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("top_k", "top-k"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
