//! One-line error reports: clap's usage errors folded into one line, panics as one line.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// `msg` on one line (its lines joined with "; "), after `prefix`, on stderr.
pub fn error_line(prefix: &str, msg: &str) {
    let one = tinygpt::args::one_line(msg);
    // Nothing useful can be done if stderr itself is closed.
    let _ = writeln!(std::io::stderr().lock(), "{prefix}{one}");
}

/// Reports a command-line parsing problem of `program`. Help and version go to stdout with status
/// 0; the program run without a command prints its overview on stderr with status 2; any other
/// error becomes one line on stderr, `{prefix}{message} (see '{program} --help')`, with clap's
/// tips folded in, and status 2.
pub fn report_usage_error(e: clap::Error, program: &str, prefix: &str) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A closed stdout while printing help is not worth reporting.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
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
            msg.push_str(&format!(" (see '{program} --help')"));
            error_line(prefix, &msg);
            ExitCode::from(2)
        }
    }
}

/// A panic is a bug; still, the user gets one line on stderr (the first line of the message and
/// where it happened), `{prefix}internal error: ... (this is a bug in {program})`, and exit
/// status 101, no backtrace.
pub fn install_panic_hook(program: &'static str, prefix: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic".to_owned()
        };
        let first = msg.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unknown panic");
        let place = info
            .location()
            .map(|l| {
                let file = l.file().rsplit(['/', '\\']).next().unwrap_or("");
                format!(" at {file}:{}", l.line())
            })
            .unwrap_or_default();
        error_line(prefix, &format!("internal error: {first}{place} (this is a bug in {program})"));
        std::process::exit(101);
    }));
}
