//! A hand-written SVG plot of a run: tokens, admissions per second and queue size over time.

use std::fmt::Write;

use super::engine::Run;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 190.0;
const GAP: f64 = 50.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 60.0;

struct Series<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// Renders `run` as an SVG document.
pub fn render(run: &Run) -> String {
    let mib = |b: i64| b as f64 / (1u64 << 20) as f64;
    let series = |label, color, f: &dyn Fn(&super::engine::Sample) -> f64| Series {
        label,
        color,
        points: run.samples.iter().map(|s| (s.t, f(s))).collect(),
    };
    let panels = [
        (
            "tokens available (MiB)",
            vec![
                series("regular", "#1f77b4", &|s| mib(s.regular_tokens)),
                series("elastic", "#ff7f0e", &|s| mib(s.elastic_tokens)),
                series("held back", "#7f7f7f", &|s| mib(s.send_queue_bytes as i64)),
            ],
        ),
        (
            "admissions per second",
            vec![
                series("regular", "#1f77b4", &|s| s.regular_per_sec as f64),
                series("elastic", "#ff7f0e", &|s| s.elastic_per_sec as f64),
            ],
        ),
        (
            "requests waiting",
            vec![
                series("regular", "#1f77b4", &|s| s.regular_waiting as f64),
                series("elastic", "#ff7f0e", &|s| s.elastic_waiting as f64),
            ],
        ),
    ];
    let height = TOP + panels.len() as f64 * (PANEL + GAP) + 10.0;
    let t_end = run.samples.last().map_or(1.0, |s| s.t).max(1.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="28" font-size="16" font-weight="bold">{}: {}</text>"#,
        escape(run.name),
        escape(run.title)
    );
    for (i, (title, lines)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        panel(&mut svg, top, title, lines, t_end);
    }
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, top: f64, title: &str, lines: &[Series<'_>], t_end: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let values = lines.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi, step) = nice_range(lo, hi);
    let x = |t: f64| LEFT + t / t_end * plot_w;
    let y = |v: f64| top + PANEL - (v - lo) / (hi - lo) * PANEL;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 8.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
    );
    let ticks = ((hi - lo) / step).round() as u32;
    for k in 0..=ticks {
        let v = lo + step * f64::from(k);
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            label(v)
        );
    }
    let step = if t_end > 30.0 { 10.0 } else { 5.0 };
    let mut t = 0.0;
    while t <= t_end + 1e-9 {
        let xx = x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{t}s</text>"##,
            top + PANEL,
            top + PANEL + 15.0
        );
        t += step;
    }
    if lo < 0.0 {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#444" stroke-dasharray="4 3"/>"##,
            LEFT + plot_w,
            y(0.0),
            y(0.0)
        );
    }
    for (j, s) in lines.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            s.color,
            points.join(" ")
        );
        let ly = top + 16.0 + j as f64 * 18.0;
        let lx = LEFT + plot_w + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            s.color,
            lx + 26.0,
            ly + 4.0,
            escape(s.label)
        );
    }
}

/// Rounds a value range out to whole steps of 1, 2 or 5 times a power of ten (four to ten of
/// them), never empty; returns the range and the step.
fn nice_range(lo: f64, hi: f64) -> (f64, f64, f64) {
    let span = (hi - lo).max(1.0);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    if hi > lo {
        (lo, hi, step)
    } else {
        (lo, lo + 4.0 * step, step)
    }
}

fn label(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
