//! Command-line interface: llama.cpp-style flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tinygpt::args::{parse_count, parse_positive, parse_temp, parse_top_p};
use tinygpt_runtime::KvDType;

/// Default prompt: a newline, the start of a fresh line of text.
pub const DEFAULT_PROMPT: &str = "\n";
/// Default seed, so that a plain `tinygpt generate` is reproducible.
pub const DEFAULT_SEED: u64 = 42;

#[derive(Parser, Debug)]
#[command(
    name = "tinygpt",
    version,
    about = "Run tinygpt .tgpt models: generate text, inspect a file, evaluate loss, benchmark speed",
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
    /// Show a model's architecture, size, memory needs and metadata
    Inspect(InspectArgs),
    /// Measure loss, perplexity and bits per character over a text file
    Eval(EvalArgs),
    /// Measure prompt-processing and generation speed (single thread)
    Bench(BenchArgs),
    /// Serve a web page and an OpenAI-compatible HTTP API
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
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
        value_name = "N",
        value_parser = parse_positive,
        allow_negative_numbers = true,
    )]
    pub ctx: Option<usize>,
    /// KV-cache element type
    #[arg(long = "kv", value_name = "TYPE", value_enum, default_value = "f32")]
    pub kv: Kv,
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
        default_value_t = 256,
        value_parser = parse_count::<usize>,
        allow_negative_numbers = true,
    )]
    pub n_predict: usize,
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
    /// Print timing and token counts to stderr when done
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
    #[arg(short = 'n', long = "n-predict", value_name = "N", default_value_t = 256, value_parser = parse_positive, allow_negative_numbers = true)]
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
