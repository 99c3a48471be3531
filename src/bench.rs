//! `offpath bench throughput`: end-to-end verdicts/s and publish → verdict latency through
//! a real nats-server and a moderator child process, against raw in-process inference of
//! the same policy measured in the same run (batched, and one message at a time).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use offpath_classifier::{Model, SessionConfig, policy::Policy};
use offpath_nats_local::NatsServer;
use offpath_protocol::subject::request_subject;
use offpath_protocol::topology::{TopologyConfig, ensure};
use offpath_protocol::{ModerationRequest, PROTOCOL_VERSION, Verdict, encode};

use crate::cli::BenchArgs;
use crate::tools;

/// Runs the scenario and prints the figures.
pub async fn throughput(args: BenchArgs) -> anyhow::Result<()> {
    let config = tools::complete_moderator_config(args.moderator.clone())?;
    config.validate().map_err(crate::cli::Usage)?;
    offpath_classifier::init_runtime(config.ort_library.as_deref().context("ORT library")?)?;
    let texts = chat_texts(&config.models[0])?;
    println!(
        "texts: {} chat lines from the parity fixture, cycled to {}",
        texts.len(),
        args.messages
    );

    let raw_sample = args.raw_messages.min(args.messages);
    let raw_batched = raw_rate(&config, &texts, raw_sample, config.max_batch).await?;
    let raw_single = raw_rate(&config, &texts, raw_sample / 4, 1).await?;
    println!(
        "raw in-process, batch {}: {raw_batched:.0} msg/s",
        config.max_batch
    );
    println!("raw in-process, one at a time: {raw_single:.0} msg/s");

    let (e2e, latencies, rss) = end_to_end(&args, &texts).await?;
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    println!(
        "end to end: {e2e:.0} verdicts/s; publish -> verdict p50 {} ms, p99 {} ms",
        p(0.5),
        p(0.99)
    );
    println!("moderator peak RSS: {:.0} MiB", rss as f64 / 1024.0);
    println!(
        "ratios: end-to-end / raw batched = {:.2}; end-to-end / raw one-at-a-time = {:.2}",
        e2e / raw_batched,
        e2e / raw_single
    );
    Ok(())
}

/// The parity fixture's texts without the 10 KiB stress case: chat-like lines.
fn chat_texts(model_dir: &Path) -> anyhow::Result<Vec<String>> {
    fixture_texts(&model_dir.join("../fixtures/parity.json"), |t| {
        t.len() <= 2048
    })
}

/// The texts of the parity fixture at `path` that `keep` accepts (the load scenarios use
/// them as chat lines).
pub fn fixture_texts(path: &Path, keep: impl Fn(&str) -> bool) -> anyhow::Result<Vec<String>> {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| path.display().to_string())?,
    )?;
    let texts: Vec<String> = json["cases"]
        .as_array()
        .context("fixture cases")?
        .iter()
        .filter_map(|c| c["text"].as_str())
        .filter(|t| keep(t))
        .map(String::from)
        .collect();
    if texts.is_empty() {
        bail!("no texts in {}", path.display());
    }
    Ok(texts)
}

/// Messages/s of the policy on `inference_threads` threads, as the moderator runs it.
async fn raw_rate(
    config: &offpath_moderator::Config,
    texts: &[String],
    messages: usize,
    batch: usize,
) -> anyhow::Result<f64> {
    let threads = config.inference_threads.max(1);
    let session = SessionConfig {
        intra_threads: config.intra_threads,
        ..SessionConfig::default()
    };
    let mut policies = Vec::new();
    for _ in 0..threads {
        let models = config
            .models
            .iter()
            .map(|d| Model::load(d, &session))
            .collect::<Result<Vec<_>, _>>()?;
        policies.push(Policy::new(
            models,
            config.sub_batch,
            config.max_batch_tokens,
        ));
    }
    let texts: Arc<Vec<String>> = Arc::new(texts.to_vec());
    let started = Instant::now();
    let handles: Vec<_> = policies
        .into_iter()
        .enumerate()
        .map(|(t, mut policy)| {
            let texts = Arc::clone(&texts);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mine: Vec<&str> = (t..messages)
                    .step_by(threads)
                    .map(|i| texts[i % texts.len()].as_str())
                    .collect();
                for chunk in mine.chunks(batch.max(1)) {
                    policy.assess(chunk, None)?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("raw inference thread panicked"))??;
    }
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}

async fn end_to_end(args: &BenchArgs, texts: &[String]) -> anyhow::Result<(f64, Vec<u64>, u64)> {
    let server = tokio::task::spawn_blocking(NatsServer::start).await??;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client.clone());
    ensure(&js, &TopologyConfig::default()).await?;
    let mut verdicts = client.subscribe("offpath.verdict.bench.>").await?;
    let mut moderator = Command::new(std::env::current_exe()?)
        .args(["moderator", "--nats-url", &server.url()])
        .args(args.moderator_flags())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the moderator process")?;
    let pid = moderator.id();
    wait_until_pulling(&js).await?;
    let publisher = {
        let js = js.clone();
        let texts = texts.to_vec();
        let n = args.messages;
        tokio::spawn(async move { publish_all(&js, &texts, n).await })
    };
    let mut latencies = Vec::with_capacity(args.messages);
    let mut seen = std::collections::HashSet::new();
    let mut first: Option<Instant> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_s);
    while seen.len() < args.messages {
        let message = tokio::time::timeout_at(deadline, verdicts.next())
            .await
            .context("timed out waiting for verdicts")?
            .context("verdict subscription closed")?;
        let verdict: Verdict = serde_json::from_slice(&message.payload)?;
        first.get_or_insert_with(Instant::now);
        if seen.insert(verdict.id.clone()) {
            let sent: u64 = verdict
                .id
                .rsplit('-')
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            latencies.push(offpath_moderator::pipeline::now_ms().saturating_sub(sent));
        }
    }
    let published_at = publisher.await??;
    let elapsed = published_at.elapsed().as_secs_f64();
    let rss = peak_rss_kib(pid).unwrap_or(0);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = moderator.wait();
    latencies.sort_unstable();
    Ok((args.messages as f64 / elapsed, latencies, rss))
}

/// Publishes `n` requests as fast as JetStream acknowledges them (acks awaited in windows
/// of 512); returns when publishing started. The send time travels in the id.
async fn publish_all(
    js: &jetstream::Context,
    texts: &[String],
    n: usize,
) -> anyhow::Result<Instant> {
    let started = Instant::now();
    let mut acks = Vec::with_capacity(512);
    for i in 0..n {
        let now = offpath_moderator::pipeline::now_ms();
        let request = ModerationRequest {
            v: PROTOCOL_VERSION,
            id: format!("b{i}-{now}"),
            tenant: "bench".into(),
            room: format!("room{}", i % 16),
            sender: format!("user{}", i % 100),
            text: texts[i % texts.len()].clone(),
            sent_at_ms: now,
            deadline_ms: None,
            priority: None,
            policy: None,
        };
        let publish = PublishMessage::build()
            .payload(encode(&request).into())
            .message_id(&request.id);
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

/// VmHWM (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
