//! `offpath bench throughput`: end-to-end verdicts/s and publish → verdict latency through
//! a real nats-server and a moderator child process, against raw in-process inference of
//! the same policy on the same texts, measured in the same run.
//!
//! Every request of the headline run has a text of its own (a chat line of the parity
//! fixture with a unique number), so the moderator's spam-wave cache never answers and the
//! figure is inference. Then, on the same moderator: paced runs at 50% and 90% of the
//! measured capacity (publish → verdict latency, what a user feels), and a spam wave (the
//! fixture's lines repeated, so the cache answers most of them) reported on its own line.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::cli::BenchArgs;
use crate::measure::fixture_texts;

mod nats;
mod pipeline;
mod raw;

pub(crate) use pipeline::{Lane, Pipeline};
use raw::{even_sample, raw_rate};

/// Runs the scenario and prints the figures.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut config = args.moderator.clone();
    offpath_local::locate::complete_model_paths(&mut config.models, &mut config.ort_library)?;
    config.validate().map_err(crate::cli::Usage::problems)?;
    offpath_classifier::init_runtime(config.ort_library.as_deref().context("ORT library")?)?;
    let lines = chat_texts(&config.models[0])?;
    println!(
        "texts: {} chat lines from the parity fixture, each numbered so every request is \
         distinct ({} requests)",
        lines.len(),
        args.messages
    );
    let timeout = Duration::from_secs(args.timeout_s);
    let mut bench = Pipeline::start(&args.moderator_flags(), 1, 1, timeout).await?;
    let capacity = saturated_against_raw(&args, &config, &lines, &mut bench).await?;
    paced_and_spam(&args, &lines, capacity, &mut bench).await?;
    println!(
        "moderator peak RSS: {:.0} MiB",
        bench.peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    bench.stop();
    Ok(())
}

/// `n` texts of the fixture's `lines`, each numbered with `phase` so that all differ.
pub(crate) fn distinct(lines: &[String], phase: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{} ({phase} {i})", lines[i % lines.len()]))
        .collect()
}

/// The headline: end to end with distinct texts, against raw inference before and after
/// on a sample of the same texts. Returns the end-to-end verdicts/s.
async fn saturated_against_raw(
    args: &BenchArgs,
    config: &offpath_moderator::Config,
    lines: &[String],
    bench: &mut Pipeline,
) -> anyhow::Result<f64> {
    let e2e_texts = distinct(lines, "e2e", args.messages);
    // Raw inference runs on an even sample of the very texts the pipeline gets: numbered
    // texts of their own ("raw 12" against "e2e 12345") would be tokens shorter.
    let raw_texts = even_sample(&e2e_texts, args.raw_messages);
    let raw_before = raw_rate(config, &raw_texts, config.inference.max_batch).await?;
    let raw_single = raw_rate(config, &raw_texts[..raw_texts.len() / 4], 1).await?;
    println!(
        "raw in-process, batch {}: {:.0} msg/s ({:.3} ms of CPU per message)",
        config.inference.max_batch, raw_before.rate, raw_before.cpu_ms
    );
    println!(
        "raw in-process, one at a time: {:.0} msg/s",
        raw_single.rate
    );
    let saturated = bench.run(&e2e_texts, None).await?;
    println!(
        "end to end, distinct texts: {:.0} verdicts/s ({:.3} ms of moderator CPU per \
         verdict); publish -> verdict {}",
        saturated.rate,
        saturated.cpu_ms,
        saturated.latency()
    );
    // Raw again, now that the pipeline has run: on a shared machine the speed of the
    // cores drifts within a run, so the headline ratio is against both raw runs' mean.
    let raw_after = raw_rate(config, &raw_texts, config.inference.max_batch).await?;
    let raw_batched = (raw_before.rate + raw_after.rate) / 2.0;
    println!(
        "raw in-process, batch {} again after the pipeline: {:.0} msg/s ({:.3} ms of CPU \
         per message)",
        config.inference.max_batch, raw_after.rate, raw_after.cpu_ms
    );
    println!(
        "ratios: end-to-end / raw batched (mean of both) = {:.2}; end-to-end / raw \
         one-at-a-time = {:.2}; CPU per message raw / end-to-end = {:.2}",
        saturated.rate / raw_batched,
        saturated.rate / raw_single.rate,
        (raw_before.cpu_ms + raw_after.cpu_ms) / 2.0 / saturated.cpu_ms
    );
    Ok(saturated.rate)
}

/// Paced runs at 50% and 90% of `capacity` (what a user feels), then a spam wave.
async fn paced_and_spam(
    args: &BenchArgs,
    lines: &[String],
    capacity: f64,
    bench: &mut Pipeline,
) -> anyhow::Result<()> {
    for share in [0.5, 0.9] {
        let rate = capacity * share;
        let n = ((rate * args.paced_s) as usize).max(1);
        let paced = bench
            .run(&distinct(lines, &format!("paced{share}"), n), Some(rate))
            .await?;
        println!(
            "paced at {:.0}% of capacity ({rate:.0} msg/s for {} s): {:.0} \
             verdicts/s; publish -> verdict {}",
            share * 100.0,
            args.paced_s,
            paced.rate,
            paced.latency()
        );
    }
    let wave: Vec<String> = (0..args.messages)
        .map(|i| lines[i % lines.len()].clone())
        .collect();
    let spam = bench.run(&wave, None).await?;
    println!(
        "spam wave ({} lines repeated; the moderator's cache answers repeats): {:.0} \
         verdicts/s; publish -> verdict {}",
        lines.len(),
        spam.rate,
        spam.latency()
    );
    Ok(())
}

/// The parity fixture's texts without the 10 KiB stress case: chat-like lines.
pub(crate) fn chat_texts(model_dir: &Path) -> anyhow::Result<Vec<String>> {
    fixture_texts(&model_dir.join("../fixtures/parity.json"), |t| {
        t.len() <= 2048
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The raw baseline runs on the pipeline's own texts, spread over all of them: texts
    /// numbered apart (`(raw 12)` against `(e2e 12345)`) were shorter, and raw did less
    /// work per message than the pipeline it was compared with.
    #[test]
    fn raw_texts_are_an_even_sample_of_the_pipelines() {
        let lines: Vec<String> = (1..=203).map(|k| "word ".repeat(k % 17 + 1)).collect();
        let e2e = distinct(&lines, "e2e", 20_000);
        let raw = even_sample(&e2e, 4_000);
        let all: HashSet<&String> = e2e.iter().collect();
        assert!(raw.len() >= 3_900, "{} texts", raw.len());
        assert!(
            raw.iter().all(|t| all.contains(t)),
            "raw texts the pipeline never got"
        );
        let mean = |texts: &[String]| {
            texts.iter().map(String::len).sum::<usize>() as f64 / texts.len() as f64
        };
        let (raw_mean, e2e_mean) = (mean(&raw), mean(&e2e));
        assert!(
            (raw_mean / e2e_mean - 1.0).abs() < 0.01,
            "raw texts {raw_mean:.2} chars on average, the pipeline's {e2e_mean:.2}"
        );
    }
}
