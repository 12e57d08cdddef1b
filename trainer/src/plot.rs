//! The loss plot beside the checkpoints, and `tune`'s panels, as small self-contained SVGs.
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

/// One scatter panel of [`panels_svg`]: points `(x, y, colour)`, an optional line through
/// `line`, and for a categorical axis the names of `x = 0, 1, ...`.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub log_x: bool,
    pub points: Vec<(f64, f64, &'static str)>,
    pub line: Vec<(f64, f64)>,
    pub categories: Vec<String>,
}

/// Panels side by side (`columns` per row), all with the y axis `y_label`.
pub fn panels_svg(panels: &[Panel], columns: usize, y_label: &str) -> String {
    let (pw, ph) = (360.0, 260.0);
    let (l, r, t, b) = (58.0, 14.0, 28.0, 42.0);
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let (w, h) = (pw * columns.min(panels.len().max(1)) as f64, ph * rows as f64);
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (k, p) in panels.iter().enumerate() {
        let (ox, oy) = ((k % columns) as f64 * pw, (k / columns) as f64 * ph);
        let fx = |x: f64| if p.log_x { x.max(1e-300).log10() } else { x };
        let pts: Vec<(f64, f64, &str)> = p.points.iter().filter(|q| q.0.is_finite() && q.1.is_finite()).map(|q| (fx(q.0), q.1, q.2)).collect();
        let line: Vec<(f64, f64)> = p.line.iter().filter(|q| q.0.is_finite() && q.1.is_finite()).map(|q| (fx(q.0), q.1)).collect();
        let all = pts.iter().map(|q| (q.0, q.1)).chain(line.iter().copied());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for (x, y) in all {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if !p.categories.is_empty() {
            (x0, x1) = (-0.5, p.categories.len() as f64 - 0.5);
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x1 - x0 < 1e-12 {
            (x0, x1) = (x0 - 0.5, x1 + 0.5);
        }
        if y1 - y0 < 1e-12 {
            (y0, y1) = (y0 - 0.5, y1 + 0.5);
        }
        let pad = 0.04 * (x1 - x0);
        let (x0, x1) = (x0 - pad, x1 + pad);
        let px = |x: f64| ox + l + (pw - l - r) * (x - x0) / (x1 - x0);
        let py = |y: f64| oy + t + (ph - t - b) * (1.0 - (y - y0) / (y1 - y0));
        let _ = writeln!(s, r#"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="gray"/>"#, ox + l, oy + t, pw - l - r, ph - t - b);
        let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, ox + l, oy + 18.0, xml(&p.title));
        for i in 0..=4 {
            let y = y0 + (y1 - y0) * i as f64 / 4.0;
            let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{y:.3}</text>"#, ox + l - 5.0, py(y) + 4.0);
        }
        if p.categories.is_empty() {
            for i in 0..=4 {
                let x = x0 + (x1 - x0) * i as f64 / 4.0;
                let label = if p.log_x { tick(10f64.powf(x)) } else { tick(x) };
                let _ = writeln!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#, px(x), oy + ph - b + 14.0);
            }
        } else {
            for (i, c) in p.categories.iter().enumerate() {
                let _ = writeln!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, px(i as f64), oy + ph - b + 14.0, xml(c));
            }
        }
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}{}</text>"#, ox + l + (pw - l - r) / 2.0, oy + ph - 10.0, xml(&p.x_label), if p.log_x { " (log scale)" } else { "" });
        if k % columns == 0 {
            let _ = writeln!(s, r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#, ox + 12.0, oy + t + (ph - t - b) / 2.0, xml(y_label));
        }
        if !line.is_empty() {
            let d: Vec<String> = line.iter().map(|q| format!("{:.1},{:.1}", px(q.0), py(q.1))).collect();
            let _ = writeln!(s, r#"<polyline fill="none" stroke="steelblue" stroke-width="1.5" points="{}"/>"#, d.join(" "));
        }
        for (x, y, c) in &pts {
            let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}" fill-opacity="0.8"/>"#, px(*x), py(*y));
        }
    }
    s.push_str("</svg>\n");
    s
}

fn tick(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-2 || x.abs() >= 1e4) {
        format!("{x:.1e}")
    } else {
        format!("{}", (x * 1000.0).round() / 1000.0)
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
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

    #[test]
    fn panels_have_their_points() {
        let p = super::Panel { title: "a<b".into(), points: vec![(1.0, 2.0, "red"), (10.0, 1.0, "red"), (f64::NAN, 1.0, "red")], log_x: true, ..Default::default() };
        let s = super::panels_svg(&[p.clone(), p], 2, "loss");
        assert_eq!(s.matches("<circle").count(), 4);
        assert!(s.contains("a&lt;b") && s.trim_end().ends_with("</svg>"));
    }
}
