//! The pipeline a throughput run measures: a nats-server, moderator processes sharing its
//! consumer, a publisher of distinct requests and a subscriber timing their verdicts.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use offpath_protocol::subject::request_subject;
use offpath_protocol::topology::{TopologyConfig, ensure};
use offpath_protocol::{ModerationRequest, PROTOCOL_VERSION, Verdict, encode};

use crate::measure::cpu_seconds;
use crate::stack;

use super::nats::{Nats, wait_until_pulling};

/// What one run through the pipeline measured.
pub(crate) struct Run {
    /// Verdicts per second, from the first publish to the last verdict.
    pub(crate) rate: f64,
    /// Mean requests per inference batch in the moderator (from `$SRV.STATS`).
    pub(crate) mean_batch: f64,
    /// Milliseconds of the moderator's CPU per verdict.
    pub(crate) cpu_ms: f64,
    /// Publish → verdict received, microseconds, sorted.
    pub(crate) latencies_us: Vec<u64>,
}

impl Run {
    pub(crate) fn latency(&self) -> String {
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

/// A nats-server and moderator child processes sharing its consumer, with a subscriber on
/// the verdicts.
pub(crate) struct Pipeline {
    _nats: Nats,
    client: async_nats::Client,
    js: jetstream::Context,
    verdicts: async_nats::Subscriber,
    moderators: Vec<std::process::Child>,
    timeout: Duration,
    runs: usize,
}

impl Pipeline {
    /// A fresh nats-server (or, with `replicas` above 1, a local cluster of that many
    /// nodes with the streams replicated on all) and `moderators` processes started with
    /// `flags`, once all pull.
    pub(crate) async fn start(
        flags: &[String],
        moderators: usize,
        replicas: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let (nats, url) = Nats::start(replicas).await?;
        let servers = url
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<async_nats::ServerAddr>, _>>()?;
        let client = async_nats::connect(servers).await?;
        if let Nats::Cluster(cluster) = &nats {
            cluster.wait_for_meta_leader(&client).await?;
        }
        let js = jetstream::new(client.clone());
        let topology = TopologyConfig {
            replicas,
            ..TopologyConfig::default()
        };
        ensure(&js, &topology).await?;
        let verdicts = client.subscribe("offpath.verdict.bench.>").await?;
        let mut children = Vec::with_capacity(moderators);
        for _ in 0..moderators {
            let child = Command::new(stack::offpath_binary()?)
                .args(["moderator", "--nats-url", &url])
                .arg(format!("--replicas={replicas}"))
                .args(flags)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a moderator process")?;
            children.push(child);
        }
        let mut pipeline = Self {
            _nats: nats,
            client,
            js,
            verdicts,
            moderators: children,
            timeout,
            runs: 0,
        };
        if let Err(err) = wait_until_pulling(&pipeline.js, moderators).await {
            pipeline.stop_moderators();
            return Err(err);
        }
        Ok(pipeline)
    }

    /// CPU seconds of every moderator process so far (`None` when one cannot be read).
    fn cpu(&self) -> Option<f64> {
        self.moderators
            .iter()
            .map(|child| cpu_seconds(child.id()))
            .sum()
    }

    /// Publishes one request per text, as fast as JetStream acknowledges them or at `rate`
    /// per second, and waits for every verdict.
    pub(crate) async fn run(&mut self, texts: &[String], rate: Option<f64>) -> anyhow::Result<Run> {
        self.runs += 1;
        let prefix = format!("r{}-", self.runs);
        let before = self.batch_stats().await;
        let cpu_before = self.cpu();
        let sent = Arc::new(std::sync::Mutex::new(HashMap::with_capacity(texts.len())));
        let publisher = {
            let (js, texts, sent, prefix) = (
                self.js.clone(),
                texts.to_vec(),
                Arc::clone(&sent),
                prefix.clone(),
            );
            tokio::spawn(async move {
                let lane = Lane::bulk(&prefix);
                publish_all(&js, &texts, &lane, rate, &sent).await
            })
        };
        let mut latencies_us = Vec::with_capacity(texts.len());
        let mut seen = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        while seen.len() < texts.len() {
            let (verdict, received) = self.next_verdict(deadline).await?;
            if !verdict.id.starts_with(&prefix) || !seen.insert(verdict.id.clone()) {
                continue;
            }
            latencies_us.extend(latency_us(&sent, &verdict.id, received));
        }
        let started = publisher.await??;
        let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
        let cpu = self.cpu().zip(cpu_before).map(|(a, b)| a - b);
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

    /// Publishes one request per text, unpaced, and returns each text's verdict, in the
    /// texts' order (`offpath bench quality`: what was decided, not how fast).
    pub(crate) async fn verdicts(&mut self, texts: &[String]) -> anyhow::Result<Vec<Verdict>> {
        self.runs += 1;
        let lane = Lane::bulk(&format!("v{}-", self.runs));
        let sent = std::sync::Mutex::new(HashMap::with_capacity(texts.len()));
        publish_all(&self.js, texts, &lane, None, &sent).await?;
        let mut verdicts: Vec<Option<Verdict>> = (0..texts.len()).map(|_| None).collect();
        let mut left = texts.len();
        let deadline = tokio::time::Instant::now() + self.timeout;
        while left > 0 {
            let (verdict, _) = self.next_verdict(deadline).await?;
            let index = verdict
                .id
                .strip_prefix(&lane.prefix)
                .and_then(|n| n.parse().ok());
            if let Some(slot) = index.and_then(|i: usize| verdicts.get_mut(i))
                && slot.is_none()
            {
                *slot = Some(verdict);
                left -= 1;
            }
        }
        Ok(verdicts.into_iter().flatten().collect())
    }

    /// Publishes `hold` (requests someone waits for) at `hold_rate` per second as `lane`
    /// says, while `bulk` is published at `bulk_rate` beside them as `flood` says; returns
    /// the hold requests' publish → verdict latencies (µs, sorted) once each has its
    /// verdict. The bulk backlog is left behind: start a fresh pipeline for the next run.
    pub(crate) async fn run_beside(
        &mut self,
        (hold, hold_rate, lane): (&[String], f64, Lane),
        (bulk, bulk_rate, flood): (&[String], f64, Lane),
    ) -> anyhow::Result<Vec<u64>> {
        let sent = Arc::new(std::sync::Mutex::new(HashMap::with_capacity(hold.len())));
        let flood = {
            let (js, bulk) = (self.js.clone(), bulk.to_vec());
            let ignored = Arc::new(std::sync::Mutex::new(HashMap::new()));
            tokio::spawn(
                async move { publish_all(&js, &bulk, &flood, Some(bulk_rate), &ignored).await },
            )
        };
        let publisher = {
            let (js, hold, sent) = (self.js.clone(), hold.to_vec(), Arc::clone(&sent));
            tokio::spawn(
                async move { publish_all(&js, &hold, &lane, Some(hold_rate), &sent).await },
            )
        };
        let mut latencies_us = Vec::with_capacity(hold.len());
        let deadline = tokio::time::Instant::now() + self.timeout;
        while latencies_us.len() < hold.len() {
            let (verdict, received) = self.next_verdict(deadline).await?;
            latencies_us.extend(latency_us(&sent, &verdict.id, received));
        }
        publisher.await??;
        flood.abort();
        latencies_us.sort_unstable();
        Ok(latencies_us)
    }

    /// The next verdict on the subscription and when it arrived; an error past `deadline`.
    async fn next_verdict(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<(Verdict, Instant)> {
        let message = tokio::time::timeout_at(deadline, self.verdicts.next())
            .await
            .context("timed out waiting for verdicts")?
            .context("verdict subscription closed")?;
        let received = Instant::now();
        Ok((serde_json::from_slice(&message.payload)?, received))
    }

    /// Batches run and requests batched so far, from a moderator's `$SRV.STATS` (the first
    /// to answer: with several moderators, one of them).
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

    /// The largest peak RSS of the moderators, KiB.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        self.moderators
            .iter()
            .filter_map(|child| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
                let status = status.ok()?;
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .max()
    }

    /// Stops the moderators (SIGTERM) and the server.
    pub(crate) fn stop(mut self) {
        self.stop_moderators();
    }

    fn stop_moderators(&mut self) {
        for child in &self.moderators {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        for child in &mut self.moderators {
            let _ = child.wait();
        }
    }
}

/// Microseconds from `id`'s publish (taken out of `sent`) to `received`; `None` for an id
/// this run did not publish (or already timed).
fn latency_us(
    sent: &std::sync::Mutex<HashMap<String, Instant>>,
    id: &str,
    received: Instant,
) -> Option<u64> {
    let at = sent.lock().unwrap_or_else(|e| e.into_inner()).remove(id)?;
    Some(received.duration_since(at).as_micros() as u64)
}

/// Where and how a run's requests are published.
pub(crate) struct Lane {
    /// Prefix of the request ids.
    pub(crate) prefix: String,
    /// The subject published on.
    pub(crate) subject: String,
    /// The requests' `priority`.
    pub(crate) priority: Option<offpath_protocol::Priority>,
}

impl Lane {
    /// Post-moderated chat: `offpath.req.bench`, no priority.
    pub(crate) fn bulk(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
            subject: request_subject("bench"),
            priority: None,
        }
    }
}

/// Publishes one request per text (acks awaited in windows of 512), unpaced or at `rate`
/// per second, as `lane` says; records each id's publish instant in `sent`; returns when
/// publishing started.
pub(crate) async fn publish_all(
    js: &jetstream::Context,
    texts: &[String],
    lane: &Lane,
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
            id: format!("{}{i}", lane.prefix),
            tenant: "bench".into(),
            room: format!("room{}", i % 16),
            sender: format!("user{}", i % 100),
            text: text.clone(),
            sent_at_ms: now,
            deadline_ms: None,
            priority: lane.priority,
            policy: None,
            report: None,
            context: Vec::new(),
            mentions: Vec::new(),
            account_created_ms: None,
        };
        let publish = PublishMessage::build()
            .payload(encode(&request).into())
            .message_id(request.dedup_key());
        sent.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.id.clone(), Instant::now());
        acks.push(js.send_publish(lane.subject.clone(), publish).await?);
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
