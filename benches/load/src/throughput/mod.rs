//! `offpath bench throughput`: end-to-end verdicts/s and publish → verdict latency through
//! a real nats-server and a moderator child process, against raw in-process inference of
//! the same policy on the same texts, measured in the same run.
//!
//! Every request of the headline run has a text of its own (a chat line of the parity
//! fixture with a unique number), so the moderator's spam-wave cache never answers and the
//! figure is inference. Then, on the same moderator: paced runs at 50% and 90% of the
//! measured capacity (publish → verdict latency, what a user feels), and a spam wave (the
//! fixture's lines repeated, so the cache answers most of them) reported on its own line.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use offpath_harness::NatsServer;
use offpath_protocol::subject::request_subject;
use offpath_protocol::topology::{TopologyConfig, ensure};
use offpath_protocol::{ModerationRequest, PROTOCOL_VERSION, Verdict, encode};

use crate::cli::BenchArgs;
use crate::measure::{cpu_seconds, fixture_texts};
use crate::stack;

mod raw;

use raw::{even_sample, raw_rate};

/// Runs the scenario and prints the figures.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut config = args.moderator.clone();
    offpath_harness::locate::complete_model_paths(&mut config.models, &mut config.ort_library)?;
    config.validate().map_err(crate::cli::Usage)?;
    offpath_classifier::init_runtime(config.ort_library.as_deref().context("ORT library")?)?;
    let lines = chat_texts(&config.models[0])?;
    println!(
        "texts: {} chat lines from the parity fixture, each numbered so every request is \
         distinct ({} requests)",
        lines.len(),
        args.messages
    );
    let mut bench = Pipeline::start(&args).await?;
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
fn distinct(lines: &[String], phase: &str, n: usize) -> Vec<String> {
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
    let raw_before = raw_rate(config, &raw_texts, config.max_batch).await?;
    let raw_single = raw_rate(config, &raw_texts[..raw_texts.len() / 4], 1).await?;
    println!(
        "raw in-process, batch {}: {:.0} msg/s ({:.3} ms of CPU per message)",
        config.max_batch, raw_before.rate, raw_before.cpu_ms
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
    let raw_after = raw_rate(config, &raw_texts, config.max_batch).await?;
    let raw_batched = (raw_before.rate + raw_after.rate) / 2.0;
    println!(
        "raw in-process, batch {} again after the pipeline: {:.0} msg/s ({:.3} ms of CPU \
         per message)",
        config.max_batch, raw_after.rate, raw_after.cpu_ms
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
fn chat_texts(model_dir: &Path) -> anyhow::Result<Vec<String>> {
    fixture_texts(&model_dir.join("../fixtures/parity.json"), |t| {
        t.len() <= 2048
    })
}

/// What one run through the pipeline measured.
struct Run {
    /// Verdicts per second, from the first publish to the last verdict.
    rate: f64,
    /// Mean requests per inference batch in the moderator (from `$SRV.STATS`).
    mean_batch: f64,
    /// Milliseconds of the moderator's CPU per verdict.
    cpu_ms: f64,
    /// Publish → verdict received, microseconds, sorted.
    latencies_us: Vec<u64>,
}

impl Run {
    fn latency(&self) -> String {
        let ms = |q: f64| {
            let i = ((self.latencies_us.len() as f64 - 1.0) * q) as usize;
            self.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; mean batch {:.1}",
            ms(0.5),
            ms(0.99),
            ms(1.0),
            self.mean_batch
        )
    }
}

/// A nats-server and a moderator child process, with a subscriber on the verdicts.
struct Pipeline {
    _server: NatsServer,
    client: async_nats::Client,
    js: jetstream::Context,
    verdicts: async_nats::Subscriber,
    moderator: std::process::Child,
    timeout: Duration,
    runs: usize,
}

impl Pipeline {
    async fn start(args: &BenchArgs) -> anyhow::Result<Self> {
        let server = tokio::task::spawn_blocking(NatsServer::start).await??;
        let client = async_nats::connect(server.url()).await?;
        let js = jetstream::new(client.clone());
        ensure(&js, &TopologyConfig::default()).await?;
        let verdicts = client.subscribe("offpath.verdict.bench.>").await?;
        let moderator = Command::new(stack::offpath_binary()?)
            .args(["moderator", "--nats-url", &server.url()])
            .args(args.moderator_flags())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the moderator process")?;
        wait_until_pulling(&js).await?;
        Ok(Self {
            _server: server,
            client,
            js,
            verdicts,
            moderator,
            timeout: Duration::from_secs(args.timeout_s),
            runs: 0,
        })
    }

    /// Publishes one request per text, as fast as JetStream acknowledges them or at `rate`
    /// per second, and waits for every verdict.
    async fn run(&mut self, texts: &[String], rate: Option<f64>) -> anyhow::Result<Run> {
        self.runs += 1;
        let prefix = format!("r{}-", self.runs);
        let before = self.batch_stats().await;
        let cpu_before = cpu_seconds(self.moderator.id());
        let sent = Arc::new(std::sync::Mutex::new(HashMap::with_capacity(texts.len())));
        let publisher = {
            let (js, texts, sent, prefix) = (
                self.js.clone(),
                texts.to_vec(),
                Arc::clone(&sent),
                prefix.clone(),
            );
            tokio::spawn(async move { publish_all(&js, &texts, &prefix, rate, &sent).await })
        };
        let mut latencies_us = Vec::with_capacity(texts.len());
        let mut seen = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        while seen.len() < texts.len() {
            let message = tokio::time::timeout_at(deadline, self.verdicts.next())
                .await
                .context("timed out waiting for verdicts")?
                .context("verdict subscription closed")?;
            let received = Instant::now();
            let verdict: Verdict = serde_json::from_slice(&message.payload)?;
            if !verdict.id.starts_with(&prefix) || !seen.insert(verdict.id.clone()) {
                continue;
            }
            let at = sent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&verdict.id);
            if let Some(at) = at {
                latencies_us.push(received.duration_since(at).as_micros() as u64);
            }
        }
        let started = publisher.await??;
        let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(self.moderator.id())
            .zip(cpu_before)
            .map(|(a, b)| a - b);
        latencies_us.sort_unstable();
        let after = self.batch_stats().await;
        let batches = after.0.saturating_sub(before.0).max(1);
        Ok(Run {
            rate,
            mean_batch: after.1.saturating_sub(before.1) as f64 / batches as f64,
            cpu_ms: cpu.unwrap_or(f64::NAN) * 1000.0 / texts.len() as f64,
            latencies_us,
        })
    }

    /// Batches run and requests batched so far, from the moderator's `$SRV.STATS`.
    async fn batch_stats(&self) -> (u64, u64) {
        let reply = self
            .client
            .request("$SRV.STATS.offpath-moderator", "".into())
            .await;
        let Ok(reply) = reply else { return (0, 0) };
        let stats: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
        let data = &stats["endpoints"][0]["data"];
        (
            data["batches"].as_u64().unwrap_or(0),
            data["batched_requests"].as_u64().unwrap_or(0),
        )
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.moderator.id()));
        let status = status.ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.moderator.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.moderator.wait();
    }
}

/// Publishes one request per text (acks awaited in windows of 512), unpaced or at `rate`
/// per second; records each id's publish instant in `sent`; returns when publishing
/// started.
async fn publish_all(
    js: &jetstream::Context,
    texts: &[String],
    prefix: &str,
    rate: Option<f64>,
    sent: &std::sync::Mutex<HashMap<String, Instant>>,
) -> anyhow::Result<Instant> {
    let started = Instant::now();
    let mut acks = Vec::with_capacity(512);
    for (i, text) in texts.iter().enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let now = offpath_protocol::now_ms();
        let request = ModerationRequest {
            v: PROTOCOL_VERSION,
            id: format!("{prefix}{i}"),
            tenant: "bench".into(),
            room: format!("room{}", i % 16),
            sender: format!("user{}", i % 100),
            text: text.clone(),
            sent_at_ms: now,
            deadline_ms: None,
            priority: None,
            policy: None,
        };
        let publish = PublishMessage::build()
            .payload(encode(&request).into())
            .message_id(request.dedup_key());
        sent.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.id.clone(), Instant::now());
        acks.push(js.send_publish(request_subject("bench"), publish).await?);
        if acks.len() == 512 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(started)
}

/// Waits until the moderator process has loaded its models and is pulling.
async fn wait_until_pulling(js: &jetstream::Context) -> anyhow::Result<()> {
    let stream = js
        .get_stream(offpath_protocol::subject::MODERATION_STREAM)
        .await?;
    for _ in 0..600 {
        let info = stream
            .consumer_info(offpath_protocol::subject::MODERATOR_CONSUMER)
            .await?;
        if info.num_waiting > 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the moderator never started pulling")
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
