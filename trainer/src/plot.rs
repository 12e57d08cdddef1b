//! The loss plot beside the checkpoints, as a small self-contained SVG.
//!
//! Written directly rather than with a plotting crate: text in `plotters` needs a font backend
//! (system fonts through fontconfig, or a bundled font file), while an SVG viewer renders `<text>`
//! itself, so axis labels cost nothing here.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

/// Writes train (blue) and validation (orange) loss against the step. `points`: `(step, is_val, loss)`.
pub fn write_loss_svg(path: &Path, points: &[(u64, bool, f64)]) -> Result<()> {
    let svg = loss_svg(points);
    tinygpt_runtime::writer::write_atomic(path, svg.as_bytes())?;
    Ok(())
}

/// The SVG text of the plot.
pub fn loss_svg(points: &[(u64, bool, f64)]) -> String {
    let (w, h) = (720.0, 420.0);
    let (l, r, t, b) = (60.0, 20.0, 30.0, 45.0);
    let finite: Vec<&(u64, bool, f64)> = points.iter().filter(|p| p.2.is_finite()).collect();
    let max_step = finite.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let (mut lo, mut hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.2), b.max(p.2)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let x = |s: f64| l + (w - l - r) * s / max_step;
    let y = |v: f64| t + (h - t - b) * (1.0 - (v - lo) / (hi - lo));
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="gray"/>"#, w - l - r, h - t - b);
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.3}</text>"#, l - 6.0, y(v) + 4.0);
        let st = max_step * i as f64 / 4.0;
        let _ = writeln!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{st:.0}</text>"#, x(st), h - b + 16.0);
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">step</text>"#, l + (w - l - r) / 2.0, h - 8.0);
    let _ = writeln!(s, r#"<text x="{l}" y="18">loss (nats/token): <tspan fill="steelblue">train</tspan>, <tspan fill="darkorange">val</tspan></text>"#);
    for (is_val, color) in [(false, "steelblue"), (true, "darkorange")] {
        let pts: Vec<String> = finite
            .iter()
            .filter(|p| p.1 == is_val)
            .map(|p| format!("{:.1},{:.1}", x(p.0 as f64), y(p.2)))
            .collect();
        if !pts.is_empty() {
            let _ = writeln!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#, pts.join(" "));
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn plot_has_both_series() {
        let s = super::loss_svg(&[(1, false, 3.0), (2, false, 2.0), (2, true, 2.5)]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
        let s = super::loss_svg(&[]);
        assert_eq!(s.matches("<polyline").count(), 0);
    }
}
