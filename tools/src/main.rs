//! `tinygpt`: generate text with a `.tgpt` model, inspect it, evaluate it, benchmark it.

mod bench;
mod cli;
mod eval;
mod generate;
mod inspect;
mod modelfile;
mod out;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    install_panic_hook();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::report_usage_error(e),
    };
    let result = match cli.command {
        cli::Command::Generate(a) => generate::run(&a),
        cli::Command::Inspect(a) => inspect::run(&a),
        cli::Command::Eval(a) => eval::run(&a),
        cli::Command::Bench(a) => bench::run(&a),
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

/// A panic is a bug; still, the user gets one line on stderr and exit code 101, no backtrace.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic".to_owned()
        };
        let place = info
            .location()
            .map(|l| {
                let file = l.file().rsplit(['/', '\\']).next().unwrap_or("");
                format!(" at {file}:{}", l.line())
            })
            .unwrap_or_default();
        out::error_line(&format!("internal error: {msg}{place} (this is a bug in tinygpt)"));
        std::process::exit(101);
    }));
}
