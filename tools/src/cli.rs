//! Command-line interface: llama.cpp-style flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tinygpt::args::{parse_count, parse_positive, parse_temp, parse_top_p};
use tinygpt_runtime::{KvDType, SamplerConfig};

/// Default prompt: a newline, the start of a fresh line of text.
pub const DEFAULT_PROMPT: &str = "\n";
/// Default seed, so that a plain `tinygpt generate` is reproducible.
pub const DEFAULT_SEED: u64 = 42;
/// Default number of tokens `generate` samples (and most tokens of a `chat` reply).
pub const DEFAULT_N_PREDICT: usize = 256;

#[derive(Parser, Debug)]
#[command(
    name = "tinygpt",
    version,
    about = "Run tinygpt .tgpt models: generate text, chat, inspect a file, evaluate loss, benchmark speed, convert llama2.c and GGUF models",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stream the prompt and generated text to stdout
    Generate(GenerateArgs),
    /// Chat with a chat model: answer one question (-p) or converse over stdin
    #[command(after_help = CHAT_RULE)]
    Chat(ChatArgs),
    /// Show a model's architecture, size, memory needs and metadata
    Inspect(InspectArgs),
    /// Measure loss, perplexity and bits per character over a text file
    Eval(EvalArgs),
    /// Measure prompt-processing and generation speed (single thread)
    Bench(BenchArgs),
    /// Convert a llama2.c checkpoint or a llama GGUF file into a .tgpt model
    Convert(ConvertArgs),
    /// Serve a web page and an OpenAI-compatible HTTP API
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
}

/// Weight type of a converted model.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertDType {
    /// 32-bit float
    F32,
    /// half precision
    F16,
    /// int8 with one scale per group (Q8_0 inputs are kept as they are when their groups fit)
    #[value(alias = "i8")]
    Int8,
    /// int4, two weights a byte, with one f16 scale per group (every weight requantized)
    #[value(alias = "i4")]
    Int4,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input: a llama2.c checkpoint (legacy float, version 1 float, version 2 Q8_0) or a GGUF file
    /// (llama; F32, F16, Q8_0 tensors)
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output .tgpt file (written atomically)
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: PathBuf,
    /// Weight type [default: int8 for Q8_0 inputs, else f32; int4 quarters the f32 size]
    #[arg(long = "dtype", value_name = "TYPE", value_enum)]
    pub dtype: Option<ConvertDType>,
    /// int8 group size [default: the input's Q8_0 group, else 64]
    #[arg(long = "group-size", value_name = "N", value_parser = parse_positive, allow_negative_numbers = true)]
    pub group_size: Option<usize>,
    /// llama2.c's tokenizer.bin (llama2.c checkpoints carry no tokenizer; GGUF files do)
    #[arg(long = "tokenizer", value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
}

/// KV-cache element type.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kv {
    /// 32-bit float
    F32,
    /// half precision
    F16,
    /// int8 with one scale per head vector
    #[value(alias = "int8")]
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
#[derive(Args, Debug)]
pub struct RunOpts {
    /// Model file (.tgpt)
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    pub model: PathBuf,
    /// Context length in tokens [default: the model's block_size]
    #[arg(
        short = 'c',
        long = "ctx-size",
        visible_alias = "ctx",
        value_name = "N",
        value_parser = parse_positive,
        allow_negative_numbers = true,
    )]
    pub ctx: Option<usize>,
    /// KV-cache element type
    #[arg(long = "kv", value_name = "TYPE", value_enum, default_value = "f32")]
    pub kv: Kv,
}

/// Sampler options every text-producing subcommand shares.
#[derive(Args, Debug)]
pub struct SampleOpts {
    /// Temperature; 0 picks the most likely token every time
    #[arg(
        long = "temp",
        value_name = "T",
        default_value_t = 0.8,
        value_parser = parse_temp,
        allow_negative_numbers = true,
    )]
    pub temp: f32,
    /// Sample only from the K most likely tokens; 0 disables
    #[arg(
        long = "top-k",
        value_name = "K",
        default_value_t = 40,
        value_parser = parse_count::<u32>,
        allow_negative_numbers = true,
    )]
    pub top_k: u32,
    /// Sample only from the most likely tokens whose probabilities add up to P; 1 disables
    #[arg(
        long = "top-p",
        value_name = "P",
        default_value_t = 1.0,
        value_parser = parse_top_p,
        allow_negative_numbers = true,
    )]
    pub top_p: f32,
    /// Random seed
    #[arg(
        short = 's',
        long = "seed",
        value_name = "SEED",
        default_value_t = DEFAULT_SEED,
        value_parser = parse_count::<u64>,
        allow_negative_numbers = true,
    )]
    pub seed: u64,
}

impl SampleOpts {
    /// The runtime's sampler settings.
    pub fn config(&self) -> SamplerConfig {
        SamplerConfig { temperature: self.temp, top_k: self.top_k, top_p: self.top_p }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub run: RunOpts,
    /// Prompt text [default: a newline]
    #[arg(short = 'p', long = "prompt", value_name = "TEXT", conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Number of tokens to generate
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        default_value_t = DEFAULT_N_PREDICT,
        value_parser = parse_count::<usize>,
        allow_negative_numbers = true,
    )]
    pub n_predict: usize,
    #[command(flatten)]
    pub sample: SampleOpts,
    /// Print timing and token counts to stderr when done
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
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

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub run: RunOpts,
    /// Answer this one question and exit [default: read questions from stdin]
    #[arg(short = 'p', long = "prompt", value_name = "QUESTION")]
    pub prompt: Option<String>,
    /// System prompt: instructions rendered before the conversation
    #[arg(long = "system", value_name = "TEXT")]
    pub system: Option<String>,
    /// Most tokens per reply (a reply also ends at <|im_end|> or when the context is full)
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        default_value_t = DEFAULT_N_PREDICT,
        value_parser = parse_count::<usize>,
        allow_negative_numbers = true,
    )]
    pub n_predict: usize,
    #[command(flatten)]
    pub sample: SampleOpts,
    /// Print each reply's token counts and speed to stderr
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model file (.tgpt)
    #[arg(value_name = "FILE")]
    pub model: PathBuf,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub run: RunOpts,
    /// UTF-8 text file to evaluate
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub run: RunOpts,
    /// Prompt tokens to process [default: min(128, context)]
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_name = "N",
        value_parser = parse_positive,
        allow_negative_numbers = true,
    )]
    pub n_prompt: Option<usize>,
    /// Tokens to generate [default: min(128, context)]
    #[arg(short = 'n', long = "n-gen", value_name = "N", value_parser = parse_positive, allow_negative_numbers = true)]
    pub n_gen: Option<usize>,
    /// Timed runs of each test, 1 to 100000 (the median is reported)
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value_t = 5,
        value_parser = parse_repetitions,
        allow_negative_numbers = true,
    )]
    pub repetitions: usize,
}

#[cfg(feature = "serve")]
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub run: RunOpts,
    /// Address to listen on (only this machine by default)
    #[arg(long = "host", value_name = "ADDR", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one)
    #[arg(long = "port", value_name = "PORT", default_value_t = 8080, value_parser = parse_count::<u16>, allow_negative_numbers = true)]
    pub port: u16,
    /// Slots: requests generated at once, each with its own session allocated at start-up
    #[arg(long = "parallel", value_name = "N", default_value_t = 1, value_parser = parse_slots, allow_negative_numbers = true)]
    pub parallel: usize,
    /// Requests that may wait for a slot; beyond them requests get 503 with Retry-After
    #[arg(long = "queue", value_name = "N", default_value_t = 8, value_parser = parse_queue, allow_negative_numbers = true)]
    pub queue: usize,
    /// Require this API key (Authorization: Bearer KEY)
    #[arg(long = "api-key", value_name = "KEY", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,
    /// Require the API key stored in this file
    #[arg(long = "api-key-file", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Let pages from this origin call the API (CORS), e.g. http://localhost:3000
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origin: Option<String>,
    /// Tokens generated when a request gives no max_tokens
    #[arg(short = 'n', long = "n-predict", value_name = "N", default_value_t = DEFAULT_N_PREDICT, value_parser = parse_positive, allow_negative_numbers = true)]
    pub n_predict: usize,
    /// Largest max_tokens a request may ask for
    #[arg(long = "max-tokens", value_name = "N", default_value_t = 4096, value_parser = parse_positive, allow_negative_numbers = true)]
    pub max_tokens: usize,
    /// Largest request body in bytes
    #[arg(long = "max-body", value_name = "BYTES", default_value_t = 1 << 20, value_parser = parse_positive, allow_negative_numbers = true)]
    pub max_body: usize,
    /// Longest a request may take in seconds, waiting for a slot included
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 600, value_parser = parse_timeout, allow_negative_numbers = true)]
    pub timeout: u64,
}

/// Most slots `serve` accepts.
#[cfg(feature = "serve")]
pub const MAX_SLOTS: usize = 256;

#[cfg(feature = "serve")]
fn parse_slots(s: &str) -> Result<usize, String> {
    let n = parse_positive(s)?;
    if n > MAX_SLOTS {
        return Err(format!("at most {MAX_SLOTS}"));
    }
    Ok(n)
}

#[cfg(feature = "serve")]
fn parse_queue(s: &str) -> Result<usize, String> {
    let n = parse_count::<usize>(s)?;
    if n > 4096 {
        return Err("at most 4096".to_owned());
    }
    Ok(n)
}

#[cfg(feature = "serve")]
fn parse_timeout(s: &str) -> Result<u64, String> {
    let n = parse_positive(s)?;
    if n > 86_400 {
        return Err("at most 86400 (a day)".to_owned());
    }
    Ok(n as u64)
}

/// Most timed runs `bench` accepts: each keeps its timings for the median.
pub const MAX_REPETITIONS: usize = 100_000;

fn parse_repetitions(s: &str) -> Result<usize, String> {
    let n = parse_positive(s)?;
    if n > MAX_REPETITIONS {
        return Err(format!("at most {MAX_REPETITIONS}"));
    }
    Ok(n)
}

/// Reports a command-line parsing problem (see [`tinygpt::args::report_usage_error`]).
pub fn report_usage_error(e: clap::Error) -> ExitCode {
    tinygpt::args::report_usage_error(e, "tinygpt", "error: ")
}
