//! `offpath bench lanes`: what the interactive lane buys a user who waits for a verdict.
//! One moderator's capacity is measured first (distinct texts, saturated). Then, each on a
//! fresh nats-server and moderator, a hold room sends at a low rate (`--hold-rate`) for
//! `--duration-s`:
//!
//! * `idle`: alone (the floor);
//! * `no lanes`: beside bulk chat published at `--overload` × capacity, its requests on the
//!   bulk subject as well (what every request did before lanes);
//! * `lanes`: the same bulk flood, its requests on `offpath.req.<tenant>.interactive`.
//!
//! Reported: the hold room's publish → verdict p50/p99/max per run, and the p99s as ratios
//! to idle's, in one run. Without lanes the hold room waits behind a backlog that grows for
//! the whole run; with lanes it should stay within a small factor of idle.

use std::time::Duration;

use anyhow::Context;
use offpath_protocol::Priority;
use offpath_protocol::subject::{interactive_request_subject, request_subject};

use crate::cli::LanesArgs;
use crate::throughput::{Lane, Pipeline, chat_texts, distinct};

/// Runs the scenario and prints one line per run and the ratios.
pub(crate) async fn run(args: LanesArgs) -> anyhow::Result<()> {
    let mut config = args.bench.moderator.clone();
    offpath_local::locate::complete_model_paths(&mut config.models, &mut config.ort_library)?;
    config.validate().map_err(crate::cli::Usage::problems)?;
    anyhow::ensure!(
        args.hold_rate > 0.0 && args.overload > 0.0 && args.duration_s > 0.0,
        crate::cli::Usage("--hold-rate, --overload and --duration-s must be above 0".into())
    );
    let lines = chat_texts(&config.models[0])?;
    let capacity = capacity(&args, &lines).await?;
    let bulk_rate = args.overload * capacity;
    let held = (args.hold_rate * args.duration_s).ceil().max(1.0) as usize;
    let flood = (bulk_rate * args.duration_s).ceil() as usize;
    println!(
        "one moderator, {} inference threads: capacity {capacity:.0} verdicts/s; a hold room \
         sends {held} requests at {:.1}/s beside bulk chat at {:.1} × capacity ({bulk_rate:.0}/s, \
         {flood} requests)",
        config.inference.inference_threads, args.hold_rate, args.overload
    );
    let mut idle_p99 = None;
    for (name, lanes, bulk) in [
        ("idle", true, 0),
        ("no lanes", false, flood),
        ("lanes", true, flood),
    ] {
        let latencies =
            hold_beside_bulk(&args, &lines, name, lanes, held, (bulk, bulk_rate)).await?;
        let ms = |q: f64| {
            let i = ((latencies.len() as f64 - 1.0) * q) as usize;
            latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        let p99 = ms(0.99);
        let base = *idle_p99.get_or_insert(p99);
        println!(
            "{name}: hold room publish → verdict p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms \
             ({} requests); p99 = {:.2} × idle",
            ms(0.5),
            ms(1.0),
            latencies.len(),
            p99 / base.max(0.001)
        );
    }
    Ok(())
}

/// A fresh nats-server and moderator for one run.
async fn start(args: &LanesArgs) -> anyhow::Result<Pipeline> {
    let flags = args.bench.moderator_flags();
    Pipeline::start(&flags, 1, 1, Duration::from_secs(args.bench.timeout_s)).await
}

/// One moderator's capacity, verdicts per second: `--messages` distinct texts, saturated,
/// after a warm-up.
async fn capacity(args: &LanesArgs, lines: &[String]) -> anyhow::Result<f64> {
    let mut probe = start(args).await.context("starting the capacity probe")?;
    probe.run(&distinct(lines, "warm", 200), None).await?;
    let capacity = probe
        .run(&distinct(lines, "capacity", args.bench.messages), None)
        .await?
        .rate;
    probe.stop();
    Ok(capacity)
}

/// One run (`name`) on a fresh pipeline: the hold room's `held` requests (on the interactive
/// lane with `lanes`, else on the bulk subject) beside `bulk` texts sent at `bulk_rate`.
/// Returns the hold room's publish → verdict latencies (µs, sorted).
async fn hold_beside_bulk(
    args: &LanesArgs,
    lines: &[String],
    name: &str,
    lanes: bool,
    held: usize,
    (bulk, bulk_rate): (usize, f64),
) -> anyhow::Result<Vec<u64>> {
    let mut pipeline = start(args)
        .await
        .with_context(|| format!("starting the {name} run"))?;
    pipeline.run(&distinct(lines, "warm", 200), None).await?;
    let lane = Lane {
        prefix: "held-".into(),
        subject: if lanes {
            interactive_request_subject("bench")
        } else {
            request_subject("bench")
        },
        priority: Some(Priority::High),
    };
    let hold = distinct(lines, "held", held);
    let bulk = distinct(lines, "bulk", bulk);
    let latencies = pipeline
        .run_beside(
            (&hold, args.hold_rate, lane),
            (&bulk, bulk_rate.max(1.0), Lane::bulk("flood-")),
        )
        .await?;
    pipeline.stop();
    Ok(latencies)
}
