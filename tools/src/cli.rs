//! Command-line interface: llama.cpp-style flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Timed runs of each test (the median is reported)
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value_t = 5,
        value_parser = parse_positive,
        allow_negative_numbers = true,
    )]
    pub repetitions: usize,
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) if s.trim_start().starts_with('-') => Err("must be at least 1".to_owned()),
        Err(_) => Err("not a whole number, or too large".to_owned()),
    }
}

fn parse_count<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse::<T>().map_err(|_| {
        if s.trim_start().starts_with('-') {
            "must be 0 or more".to_owned()
        } else {
            "not a whole number, or too large".to_owned()
        }
    })
}

fn parse_float(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| "not a number".to_owned())?;
    if !v.is_finite() {
        return Err("must be a finite number".to_owned());
    }
    Ok(v)
}

fn parse_temp(s: &str) -> Result<f32, String> {
    let v = parse_float(s)?;
    if v < 0.0 {
        return Err("must be 0 or more".to_owned());
    }
    Ok(v)
}

fn parse_top_p(s: &str) -> Result<f32, String> {
    let v = parse_float(s)?;
    if !(v > 0.0 && v <= 1.0) {
        return Err("must be above 0 and at most 1".to_owned());
    }
    Ok(v)
}

/// Reports a command-line parsing problem. Help and version go to stdout with status 0; an error
/// becomes one `error: ...` line on stderr (with clap's tips folded in) and status 2.
pub fn report_usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A closed stdout while printing help is not worth reporting.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `tinygpt` alone: the overview, on stderr, as a usage error.
            eprint!("{}", e.render());
            ExitCode::from(2)
        }
        _ => {
            // clap writes the error, indented details and tips, then a usage block: keep everything
            // before the usage block on one line.
            let text = e.render().to_string();
            let mut msg = String::new();
            for line in text.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:")) {
                if line.is_empty() || line.starts_with("For more information") {
                    continue;
                }
                let line = line.trim_start_matches("error: ");
                if let Some(tip) = line.strip_prefix("tip: ") {
                    msg.push_str("; ");
                    msg.push_str(tip);
                } else {
                    if !msg.is_empty() {
                        msg.push(' ');
                    }
                    msg.push_str(line);
                }
            }
            msg.push_str(" (see 'tinygpt --help')");
            crate::out::error_line(&msg);
            ExitCode::from(2)
        }
    }
}
