//! The isolation report: `isolation.json` (every figure), `isolation.md` (the table) and
//! `isolation.svg` (latency percentiles per scenario on a log axis, and latency over time
//! for the `-hung` scenarios so the stall shows).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::Context;
use serde::Serialize;

use super::load::{BUCKET, Load, Observed};
use crate::cli::IsolationArgs;

/// What the orchestrator knows about a scenario's run besides the clients' observations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunFacts<'a> {
    /// Scenario name.
    pub name: &'a str,
    /// Messages sent.
    pub sent: usize,
    /// Members per room.
    pub members: usize,
    /// How long sending took.
    pub send_seconds: f64,
    /// Requests the outbox shed.
    pub shed: f64,
    /// The generator's CPU use while sending, in cores.
    pub generator_cpu_cores: f64,
    /// Blocked messages are never delivered (inline).
    pub blocked_are_undelivered: bool,
}

/// The figures of one scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// Messages sent.
    pub sent: usize,
    /// Messages delivered to the other members per second (deliveries / (members − 1)).
    pub delivered_msgs_per_s: f64,
    /// Deliveries expected (sent, less messages blocked before delivery, × other members).
    pub expected_deliveries: u64,
    /// Deliveries not made within 5 s.
    pub undelivered_5s: u64,
    /// Delivery latency percentiles, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
    /// p99 of the messages sent in the middle third (moderators frozen in `-hung`), ms.
    pub middle_p99_ms: f64,
    /// Messages with a moderator's verdict by the end, percent.
    pub verdict_coverage_pct: f64,
    /// Moderation requests shed by the transport's outbox.
    pub shed: f64,
    /// Send → verdict at the sender, ms (p50, p99).
    pub lag_p50_ms: f64,
    /// 99th percentile of the moderation lag, ms.
    pub lag_p99_ms: f64,
    /// The generator's own lateness against its schedule, ms (p99, max).
    pub schedule_lag_p99_ms: f64,
    /// Maximum lateness of the generator, ms.
    pub schedule_lag_max_ms: f64,
    /// The generator's CPU use while sending, in cores.
    pub generator_cpu_cores: f64,
    /// Per 250 ms of send time: (seconds, p99 ms, max ms) of those messages' deliveries.
    pub series: Vec<(f64, f64, f64)>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The `q` quantile of `h` in milliseconds; 0 when nothing was recorded.
fn quantile(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        ms(h.value_at_quantile(q))
    }
}

/// (seconds into the run, p99 ms, max ms) of each time bucket that saw deliveries.
fn p99_over_time(observed: &Observed) -> Vec<(f64, f64, f64)> {
    observed
        .series
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let h = h.lock().unwrap_or_else(|e| e.into_inner());
            (!h.is_empty()).then(|| {
                (
                    i as f64 * BUCKET.as_secs_f64(),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max()),
                )
            })
        })
        .collect()
}

impl ScenarioResult {
    /// Reads the figures out of what the clients observed.
    pub(crate) fn from_observed(observed: &Observed, run: &RunFacts) -> Self {
        let RunFacts {
            name,
            sent,
            members,
            send_seconds,
            shed,
            generator_cpu_cores,
            blocked_are_undelivered,
        } = *run;
        let latency = observed.latency.lock().unwrap_or_else(|e| e.into_inner());
        let lag = observed.lag.lock().unwrap_or_else(|e| e.into_inner());
        let schedule = observed
            .schedule_lag
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let middle = observed.middle.lock().unwrap_or_else(|e| e.into_inner());
        let others = members.saturating_sub(1).max(1) as u64;
        let blocked = if blocked_are_undelivered {
            observed.blocked_count(sent)
        } else {
            0
        };
        let expected = (sent - blocked) as u64 * others;
        let on_time = observed.on_time.load(Ordering::Relaxed);
        let deliveries = observed.deliveries.load(Ordering::Relaxed);
        Self {
            name: name.to_string(),
            sent,
            delivered_msgs_per_s: deliveries as f64 / others as f64 / send_seconds,
            expected_deliveries: expected,
            undelivered_5s: expected.saturating_sub(on_time),
            p50_ms: quantile(&latency, 0.5),
            p99_ms: quantile(&latency, 0.99),
            p999_ms: quantile(&latency, 0.999),
            max_ms: ms(latency.max()),
            middle_p99_ms: quantile(&middle, 0.99),
            verdict_coverage_pct: if sent == 0 {
                0.0
            } else {
                observed.verdicts(sent) as f64 * 100.0 / sent as f64
            },
            shed,
            lag_p50_ms: quantile(&lag, 0.5),
            lag_p99_ms: quantile(&lag, 0.99),
            schedule_lag_p99_ms: quantile(&schedule, 0.99),
            schedule_lag_max_ms: ms(schedule.max()),
            generator_cpu_cores,
            series: p99_over_time(observed),
        }
    }

    /// One line for the progress log.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{:.0} msg/s delivered; p50 {:.2} ms p99 {:.2} ms max {:.1} ms; {} undelivered in 5 s; \
             verdicts {:.2}%; shed {}; generator late p99 {:.2} ms, {:.2} cores",
            self.delivered_msgs_per_s,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.undelivered_5s,
            self.verdict_coverage_pct,
            self.shed,
            self.schedule_lag_p99_ms,
            self.generator_cpu_cores
        )
    }
}

/// The Markdown table.
pub(super) fn markdown(args: &IsolationArgs, load: &Load, results: &[ScenarioResult]) -> String {
    let mut out = format!(
        "{} connections in {} rooms, {} msg/s open loop for {} s per scenario; inline timeout \
         {} ms; -slow adds {} ms per batch; -hung freezes the moderators (SIGSTOP) for the \
         middle third.\n\n",
        load.connections,
        load.rooms,
        load.rate,
        args.duration_s,
        args.inline_timeout_ms,
        args.slow_ms
    );
    out.push_str(
        "| scenario | delivered msg/s | p50 ms | p99 ms | p99.9 ms | max ms | p99 middle third ms | \
         undelivered in 5 s | verdicts | shed | moderation lag p50 / p99 ms |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {} of {} | {:.2}% | {} | {:.0} / {:.0} |",
            r.name,
            r.delivered_msgs_per_s,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            r.middle_p99_ms,
            r.undelivered_5s,
            r.expected_deliveries,
            r.verdict_coverage_pct,
            r.shed,
            r.lag_p50_ms,
            r.lag_p99_ms
        );
    }
    out.push_str(&ratios_and_generator_check(results));
    out
}

/// Each scenario's p99 as a multiple of `none`'s, and how late and busy the load generator
/// was (Markdown).
fn ratios_and_generator_check(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    let floor = results.iter().find(|r| r.name == "none");
    if let Some(floor) = floor {
        out.push('\n');
        for r in results.iter().filter(|r| r.name != "none") {
            let _ = writeln!(
                out,
                "* {}: p99 = {:.2} × none; middle third (moderators frozen in -hung) p99 = {:.2} × \
                 none's",
                r.name,
                r.p99_ms / floor.p99_ms.max(0.001),
                r.middle_p99_ms / floor.middle_p99_ms.max(0.001)
            );
        }
    }
    let worst_late = results
        .iter()
        .map(|r| r.schedule_lag_max_ms)
        .fold(0.0, f64::max);
    let worst_cpu = results
        .iter()
        .map(|r| r.generator_cpu_cores)
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "\nLoad generator check: at most {worst_late:.1} ms behind its schedule, at most \
         {worst_cpu:.2} cores of CPU."
    );
    out
}

/// Writes the JSON, Markdown and SVG files into `args.out`.
pub(super) fn write(
    args: &IsolationArgs,
    load: &Load,
    results: &[ScenarioResult],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    let json = serde_json::json!({
        "connections": load.connections,
        "rooms": load.rooms,
        "rate": load.rate,
        "duration_s": args.duration_s,
        "inline_timeout_ms": args.inline_timeout_ms,
        "slow_ms": args.slow_ms,
        "scenarios": results,
    });
    let files = [
        ("isolation.json", serde_json::to_string_pretty(&json)?),
        ("isolation.md", markdown(args, load, results)),
        ("isolation.svg", super::svg::svg(args, results)),
    ];
    let mut paths = Vec::new();
    for (name, body) in files {
        let path = args.out.join(name);
        std::fs::write(&path, body).with_context(|| path.display().to_string())?;
        paths.push(path);
    }
    Ok(paths)
}
