//! The offpath review console: a web page and a JSON API for reviewers.
//!
//! It reads the review queue (`REVIEW`, filled by moderators with every flagged message,
//! and blocked ones where the policy asks) and the audit trail (`AUDIT`), from the start of
//! each stream and then as they grow, so every console shows the same queue. A decision
//! (`remove`, `restore`, `dismiss`, `escalate`) by an authenticated reviewer is published as
//! a *human verdict* on the message's verdict subject when it changes the room (every
//! transport applies it: `remove` retracts, `restore` shows the message again), then
//! recorded in `AUDIT` with who, when and why. Reviewers log in with a token; only the
//! token's SHA-256 is configured (`--reviewers FILE`).
//!
//! The port is served by [`offpath_ops::public`] (socket caps, header and request
//! timeouts, a header-size limit: [`Config`]), every response with the security headers;
//! failed logins are throttled per client address.

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod config;
mod metrics;
mod queue;
mod reviewers;
mod routes;
mod senders;
mod throttle;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures::StreamExt;
use offpath_ops::public::{PublicPort, SocketLimits, SocketMetrics};
use offpath_protocol::subject::{
    AUDIT_STREAM, REVIEW_STREAM, audit_subject, review_subject, verdict_subject,
};
use offpath_protocol::{AuditEntry, HumanReview, ReviewItem, Verdict, encode};
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::Config;
pub use reviewers::{Reviewer, Reviewers, ReviewersError};

/// Why the console stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The HTTP listener failed.
    #[error("serving the console: {0}")]
    Serve(#[from] std::io::Error),
}

/// What the handlers share.
pub(crate) struct State {
    js: jetstream::Context,
    reviewers: Reviewers,
    queue: Mutex<queue::Queue>,
    senders: Mutex<senders::Senders>,
    /// `REVIEW` and `AUDIT` were read up to where they stood when reading began: until then
    /// the queue is incomplete (decided items would look open) and `/readyz` says so.
    caught_up: [AtomicBool; 2],
    /// Failed logins per client address.
    throttle: throttle::Throttle,
}

/// Serves the console on `listener` with `config`'s limits until `shutdown` completes,
/// following `REVIEW` and `AUDIT` through `client` meanwhile.
pub async fn run(
    config: &Config,
    client: async_nats::Client,
    reviewers: Reviewers,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReviewError> {
    metrics::PROMETHEUS.handle();
    let state = Arc::new(State {
        js: jetstream::new(client),
        reviewers,
        queue: Mutex::default(),
        senders: Mutex::new(senders::Senders::new(
            config.sender_records,
            SENDER_RECORD_LENGTH,
        )),
        caught_up: Default::default(),
        throttle: throttle::Throttle::new(
            config.auth_failure_burst,
            config.auth_failures_per_minute,
        ),
    });
    let follow = tokio::spawn(follow_streams(Arc::clone(&state)));
    let verdicts = tokio::spawn(follow_verdicts(Arc::clone(&state)).await);
    let gauges = tokio::spawn(metrics::report(Arc::clone(&state)));
    let addr = listener
        .local_addr()
        .map_or_else(|err| format!("unknown ({err})"), |addr| addr.to_string());
    info!(%addr, "review console listening");
    let router = routes::router(Arc::clone(&state), config.max_body_bytes);
    let served = port(config)
        .serve(listener, router, shutdown, || {
            info!("shutting down: finishing requests under way")
        })
        .await;
    follow.abort();
    verdicts.abort();
    gauges.abort();
    served.map_err(ReviewError::from)
}

/// The console's port: its limits, counted under `offpath_review_*`.
fn port(config: &Config) -> PublicPort {
    PublicPort {
        limits: SocketLimits {
            header_timeout: config.header_timeout,
            connection_timeout: config.request_timeout,
            max_sockets: config.max_sockets,
            // The console has no proxy setting: the peer is the client.
            max_sockets_per_address: Some(config.max_sockets_per_ip),
            max_header_bytes: Some(config.max_header_bytes),
            // One request per connection, so `--request-timeout-ms` bounds each request and
            // an idle keep-alive socket never holds a slot (a few reviewers polling every
            // 5 s pay one TCP handshake a request).
            keep_alive: false,
        },
        metrics: SocketMetrics {
            open: metrics::SOCKETS,
            closed: metrics::SOCKETS_CLOSED,
            accept_errors: metrics::ACCEPT_ERRORS,
            timeout_reason: metrics::REQUEST_TIMEOUT,
        },
    }
}

impl State {
    fn queue(&self) -> std::sync::MutexGuard<'_, queue::Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn senders(&self) -> std::sync::MutexGuard<'_, senders::Senders> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The streams not read up to where they stood when the console started.
    pub(crate) fn behind(&self) -> Vec<String> {
        [REVIEW_STREAM, AUDIT_STREAM]
            .iter()
            .zip(&self.caught_up)
            .filter(|(_, done)| !done.load(Ordering::Relaxed))
            .map(|(stream, _)| format!("{stream} not read up to its end yet"))
            .collect()
    }

    /// Publishes `review` of `item`: the human verdict first when the decision changes the
    /// room, then the audit entry; recorded in the queue once both are stored.
    async fn decide(&self, item: &ReviewItem, review: HumanReview) -> Result<(), String> {
        if let Some(action) = review.decision.action() {
            let verdict = Verdict {
                action,
                reason: None,
                review: Some(review.clone()),
                ..item.verdict.clone()
            };
            let subject = verdict_subject(&verdict.tenant, &verdict.room);
            publish(&self.js, subject, encode(&verdict), verdict.dedup_key()).await?;
        }
        let entry = AuditEntry {
            v: offpath_protocol::PROTOCOL_VERSION,
            review: review.clone(),
            item: item.clone(),
        };
        let key = format!(
            "{}/{}/{}",
            item.dedup_key(),
            review.decision.as_str(),
            review.decided_at_ms
        );
        let subject = audit_subject(&item.verdict.tenant);
        publish(&self.js, subject, encode(&entry), key).await?;
        self.queue().record(item, &review);
        Ok(())
    }
}

/// One publish, awaited until the stream acknowledges it.
async fn publish(
    js: &jetstream::Context,
    subject: String,
    payload: Vec<u8>,
    key: String,
) -> Result<(), String> {
    let message = PublishMessage::build()
        .payload(payload.into())
        .message_id(key);
    match js.send_publish(subject, message).await {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    }
}

/// Reads `REVIEW` and `AUDIT` from their start and follows them; a lost stream is read
/// again from its start after a pause (the queue ignores what it already has).
///
/// An entry counts only when it is stored under its own tenant's subject
/// (`offpath.review.<tenant>`, `offpath.audit.<tenant>`). A consumer's delivery redirected
/// into a stream by a reply or delivery subject (issue 26: the reviewer credential pulled
/// an item-shaped AUDIT entry of its own into REVIEW) is stored under the subject it was
/// first published on, so it is refused here and counted as malformed.
async fn follow_streams(state: Arc<State>) {
    // AUDIT is read up to where it stood before REVIEW is read at all: the queue joins a
    // report to an *open* entry of its message and bounds open reports, so it must know
    // which entries are decided when it replays REVIEW, or a restarted console would join
    // a report made after a decision to the decided entry (closing it) and refuse open
    // reports for quotas that decided ones fill.
    let review = async {
        while !state.caught_up[1].load(Ordering::Relaxed) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        follow(&state, 0, REVIEW_STREAM, |state, subject, payload| {
            let item: ReviewItem = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
            own_subject(subject, &review_subject(&item.verdict.tenant))?;
            state.queue().add(item);
            Ok(())
        })
        .await
    };
    let audit = follow(&state, 1, AUDIT_STREAM, |state, subject, payload| {
        let entry: AuditEntry = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        own_subject(subject, &audit_subject(&entry.item.verdict.tenant))?;
        state.queue().record(&entry.item, &entry.review);
        Ok(())
    });
    tokio::join!(review, audit);
}

/// Refuses an entry stored under another subject than its tenant's.
/// Verdicts kept per sender (the newest).
const SENDER_RECORD_LENGTH: usize = 20;

/// Reads every published verdict into the senders' records ([`senders`]), subscribing
/// again after a loss; does nothing with `--sender-records 0`. The first subscription is
/// made before the console serves (so its `/readyz` comes after it).
async fn follow_verdicts(state: Arc<State>) -> impl Future<Output = ()> + use<> {
    let subject = format!("{}.>", offpath_protocol::subject::VERDICT_PREFIX);
    let enabled = state.senders().enabled();
    let first = match enabled {
        true => Some(state.js.client().subscribe(subject.clone()).await),
        false => None,
    };
    async move {
        let Some(mut next) = first else { return };
        loop {
            match next {
                Ok(mut verdicts) => {
                    while let Some(message) = verdicts.next().await {
                        let seen = state.senders().record(
                            &message.subject,
                            message.reply.as_deref(),
                            &message.payload,
                            offpath_protocol::now_ms(),
                        );
                        ::metrics::counter!(metrics::SENDER_VERDICTS, "outcome" => seen.as_str())
                            .increment(1);
                    }
                    warn!("the verdict subscription ended; subscribing again in 2 s");
                }
                Err(err) => warn!("cannot subscribe to verdicts ({err}); trying again in 2 s"),
            }
            ::metrics::counter!(metrics::NATS_ERRORS, "stream" => "VERDICTS").increment(1);
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            next = state.js.client().subscribe(subject.clone()).await;
        }
    }
}

fn own_subject(stored: &str, own: &str) -> Result<(), String> {
    if stored == own {
        Ok(())
    } else {
        Err("stored under another subject than its tenant's (a redirected delivery)".into())
    }
}

type Apply = fn(&State, &str, &[u8]) -> Result<(), String>;

async fn follow(state: &State, which: usize, stream: &'static str, apply: Apply) {
    loop {
        if let Err(err) = read(state, which, stream, apply).await {
            warn!("not following {stream} ({err}); trying again in 2 s");
            ::metrics::counter!(metrics::NATS_ERRORS, "stream" => stream).increment(1);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Reads `stream` from its start with an ordered consumer (nothing acked, nothing kept on
/// the server) until it fails; marks it caught up once past its last message at the start.
///
/// Not `offpath_jetstream::Consumer` (the moderator's and the transport's self-healing
/// durable consumer), on purpose: every console reads the whole stream into its own memory,
/// so there is no position to keep on the server, nothing to ack and no consumer to share or
/// put back; an ordered consumer is the tool for that. It heals itself too: async-nats
/// re-creates it from the last sequence it delivered after two missed heartbeats, a gap in
/// sequence, "no responders" or a deleted consumer. What it cannot heal (the stream gone)
/// ends this read, and [`follow`] reads again from the start.
async fn read(
    state: &State,
    which: usize,
    stream: &'static str,
    apply: Apply,
) -> Result<(), String> {
    let mut source = state
        .js
        .get_stream(stream)
        .await
        .map_err(|e| e.to_string())?;
    let end = source
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let caught_up = &state.caught_up[which];
    if end == 0 {
        caught_up.store(true, Ordering::Relaxed);
    }
    let reader = source
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = reader.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        if let Err(err) = apply(state, &message.subject, &message.payload) {
            ::metrics::counter!(metrics::MALFORMED, "stream" => stream).increment(1);
            warn!("{stream}: skipped a message that is not what it should be: {err}");
        }
        if message.info().is_ok_and(|i| i.stream_sequence >= end) {
            caught_up.store(true, Ordering::Relaxed);
        }
    }
    Err("the consumer ended".into())
}
