//! Command-line conventions shared by `tinygpt` and `tinygpt-train`: value parsers that name the
//! problem (negative numbers reach them instead of looking like flags), one-line error reports,
//! and clap's usage errors folded into one line.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// A whole number of at least 1.
pub fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) if s.trim_start().starts_with('-') => Err("must be at least 1".to_owned()),
        Err(_) => Err("not a whole number, or too large".to_owned()),
    }
}

/// A whole number of at least 0 that fits `T`.
pub fn parse_count<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse::<T>().map_err(|_| {
        if s.trim_start().starts_with('-') {
            "must be 0 or more".to_owned()
        } else {
            "not a whole number, or too large".to_owned()
        }
    })
}

/// A finite number.
pub fn parse_float(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| "not a number".to_owned())?;
    if !v.is_finite() {
        return Err("must be a finite number".to_owned());
    }
    Ok(v)
}

/// A sampling temperature: finite, 0 (greedy) or more.
pub fn parse_temp(s: &str) -> Result<f32, String> {
    let v = parse_float(s)?;
    if v < 0.0 {
        return Err("must be 0 or more".to_owned());
    }
    Ok(v)
}

/// A nucleus probability: above 0, at most 1.
pub fn parse_top_p(s: &str) -> Result<f32, String> {
    let v = parse_float(s)?;
    if !(v > 0.0 && v <= 1.0) {
        return Err("must be above 0 and at most 1".to_owned());
    }
    Ok(v)
}

/// `msg` on one line (its lines joined with "; "), after `prefix`, on stderr.
pub fn error_line(prefix: &str, msg: &str) {
    let one: String = msg.split(['\n', '\r']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
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
