//! Value parsers shared by `tinygpt` and `tinygpt-train` that name the problem (negative numbers
//! reach them instead of looking like flags), and the one-line form of a message.

use crate::prelude::*;

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
pub fn parse_count<T: core::str::FromStr>(s: &str) -> Result<T, String> {
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

/// `msg` on one line: its lines trimmed and joined with "; ".
pub fn one_line(msg: &str) -> String {
    msg.split(['\n', '\r']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ")
}
