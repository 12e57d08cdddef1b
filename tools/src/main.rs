//! `tinygpt`: generate text with a `.tgpt` model, chat with it, inspect it, evaluate it, benchmark it,
//! convert llama2.c and GGUF models into it.

mod bench;
mod chat;
mod cli;
mod convert_cmd;
mod eval;
mod generate;
mod inspect;
mod modelfile;
mod out;
#[cfg(feature = "serve")]
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tinygpt::args::install_panic_hook("tinygpt", "error: ");
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::report_usage_error(e),
    };
    let result = match cli.command {
        cli::Command::Generate(a) => generate::run(&a),
        cli::Command::Chat(a) => chat::run(&a),
        cli::Command::Inspect(a) => inspect::run(&a),
        cli::Command::Eval(a) => eval::run(&a),
        cli::Command::Bench(a) => bench::run(&a),
        cli::Command::Convert(a) => convert_cmd::run(&a),
        #[cfg(feature = "serve")]
        cli::Command::Serve(a) => serve::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            out::error_line(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

