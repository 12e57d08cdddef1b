//! Writing to stdout and stderr: one-line errors, quiet exit on a closed pipe.

use tinygpt::prelude::*;

use crate::sys::{self, Write};

/// Prints `error: msg` on stderr as a single line (its lines joined with "; ").
pub fn error_line(msg: &str) {
    let line = format!("error: {}\n", tinygpt::args::one_line(msg));
    // Nothing useful can be done if stderr itself is closed.
    let _ = sys::stderr().write_all(line.as_bytes());
}

/// Whether `e` was caused by writing to a closed pipe (`tinygpt ... | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<sys::Error>().is_some_and(sys::Error::is_broken_pipe))
}

/// Writes `text` to `w` and flushes it; on failure exits the process: quietly with status 0 when
/// the reader has gone away (broken pipe), with an error line and status 1 otherwise.
///
/// Used from inside the runtime's generation callback, which cannot return an error.
pub fn write_or_exit(w: &mut impl Write, text: &str) {
    if let Err(e) = w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
        if e.is_broken_pipe() {
            sys::exit(0);
        }
        error_line(&format!("cannot write to stdout: {e}"));
        sys::exit(1);
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count with a binary unit, e.g. `1.50 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn human_bytes_picks_units() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
    }
}
