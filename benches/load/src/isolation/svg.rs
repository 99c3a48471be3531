//! The report's picture: delivery latency percentiles per scenario, and p99 over time with
//! the moderators' frozen third marked.

use std::fmt::Write as _;

use super::load::BUCKET;
use super::report::ScenarioResult;
use crate::cli::IsolationArgs;

const COLORS: [&str; 7] = [
    "#555", "#1b7837", "#5aae61", "#a6dba0", "#b2182b", "#ef8a62", "#d6604d",
];

/// y position of `value_ms` on a log axis from 0.1 ms to 10 s, in a panel `top..top+height`.
fn log_y(value_ms: f64, top: f64, height: f64) -> f64 {
    let (lo, hi) = (0.1f64.log10(), 10_000f64.log10());
    let v = value_ms.clamp(0.1, 10_000.0).log10();
    top + height * (1.0 - (v - lo) / (hi - lo))
}

fn log_axis(out: &mut String, left: f64, right: f64, top: f64, height: f64) {
    for (value, label) in [
        (0.1, "0.1 ms"),
        (1.0, "1 ms"),
        (10.0, "10 ms"),
        (100.0, "100 ms"),
        (1000.0, "1 s"),
        (10_000.0, "10 s"),
    ] {
        let y = log_y(value, top, height);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{label}</text>"##,
            left - 6.0,
            y + 4.0
        );
    }
}

/// The chart: percentiles per scenario (top), latency over time of the hung scenarios
/// (bottom).
pub(super) fn svg(args: &IsolationArgs, results: &[ScenarioResult]) -> String {
    let (width, left) = (900.0, 70.0);
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="680" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="28" font-size="16" font-weight="bold">Delivery latency: chat with moderation off the send path (decoupled) vs awaited inline</text>"##
    );
    percentile_bars(&mut out, results);
    p99_lines(&mut out, args, results);
    out.push_str("</svg>");
    out
}

/// Left and right edges of both charts.
const SVG_X: (f64, f64) = (70.0, 880.0);

/// The upper chart: p50, p99, p99.9 and max of each scenario as bars on a log scale.
fn percentile_bars(out: &mut String, results: &[ScenarioResult]) {
    let (left, right) = SVG_X;
    let (top1, h1) = (50.0, 260.0);
    log_axis(out, left, right, top1, h1);
    let slot = (right - left) / results.len().max(1) as f64;
    let marks = [("p50", 0.0), ("p99", 1.0), ("p99.9", 2.0), ("max", 3.0)];
    for (i, r) in results.iter().enumerate() {
        let x0 = left + slot * i as f64 + slot * 0.15;
        let bar = slot * 0.7 / 4.0;
        let color = COLORS[i % COLORS.len()];
        for ((label, k), value) in marks.iter().zip([r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms]) {
            let x = x0 + bar * k;
            let y = log_y(value, top1, h1);
            let bottom = top1 + h1;
            let opacity = 1.0 - k * 0.2;
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="{opacity:.1}"><title>{} {label}: {value:.2} ms</title></rect>"##,
                bar - 2.0,
                (bottom - y).max(0.5),
                r.name
            );
        }
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#666">p50 p99 p99.9 max</text>"##,
            x0 + slot * 0.35,
            top1 + h1 + 18.0,
            r.name,
            x0 + slot * 0.35,
            top1 + h1 + 31.0
        );
    }
}

/// The lower chart: p99 over time of `none` and the `-hung` scenarios, with the frozen
/// third between dashed lines.
fn p99_lines(out: &mut String, args: &IsolationArgs, results: &[ScenarioResult]) {
    let (left, right) = SVG_X;
    let (top2, h2) = (380.0, 240.0);
    let _ = write!(
        out,
        r##"<text x="{left}" y="{}" font-size="14" font-weight="bold">p99 latency over time (per {} ms of send time); moderators frozen between the dashed lines</text>"##,
        top2 - 16.0,
        BUCKET.as_millis()
    );
    log_axis(out, left, right, top2, h2);
    let duration = args.duration_s.max(1) as f64;
    let x_of = |t: f64| left + (right - left) * (t / duration).min(1.0);
    for third in [1.0, 2.0] {
        let x = x_of(duration * third / 3.0);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{top2}" x2="{x:.1}" y2="{}" stroke="#999" stroke-dasharray="4 4"/>"##,
            top2 + h2
        );
    }
    let mut legend_y = top2 + 14.0;
    for (i, r) in results.iter().enumerate() {
        if !(r.name.ends_with("-hung") || r.name == "none") || r.series.is_empty() {
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = r
            .series
            .iter()
            .map(|(t, p99, _)| format!("{:.1},{:.1}", x_of(*t), log_y(*p99, top2, h2)))
            .collect();
        let _ = write!(
            out,
            r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/><text x="{}" y="{legend_y:.1}" font-size="12" fill="{color}">{}</text>"##,
            points.join(" "),
            right - 120.0,
            r.name
        );
        legend_y += 16.0;
    }
    let _ = write!(
        out,
        r##"<text x="{left}" y="{}" font-size="11">0 s</text><text x="{right}" y="{}" font-size="11" text-anchor="end">{duration} s</text>"##,
        top2 + h2 + 16.0,
        top2 + h2 + 16.0
    );
}
