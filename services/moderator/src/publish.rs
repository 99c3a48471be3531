//! Storing verdicts in `VERDICTS`, riding out a short outage of the stream.
//!
//! While a node of a cluster fails over (seen: about 6 s, up to 17 s), a verdict publish
//! fails ("no stream found for given subject"). Nak'ing the request at once spent one of
//! its `max_deliver` deliveries per failure: five failures inside one failover and the
//! server gave up on the request, which then had neither a verdict nor a dead letter (the
//! cluster fault test found 7 to 92 such requests in one run of 900). So a failed publish
//! is retried here first, with growing pauses, while the request is kept alive with
//! progress acks; only a failure that outlasts [`RETRY_FOR`] goes back to the caller (which
//! naks).

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, message::PublishMessage};
use futures::future::join_all;
use offpath_protocol::subject::verdict_subject;
use offpath_protocol::{Verdict, encode};
use tracing::warn;

use crate::metrics as m;

/// How long a failing verdict publish is retried before its request is nak'ed: longer
/// than a cluster failover.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// The first pause between attempts; each next one doubles, up to the progress interval.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// Publishes each verdict (de-duplicated by [`Verdict::dedup_key`], so a retry that did
/// reach the stream stores nothing twice); `progress_every` is how often a request must be
/// told to JetStream as in progress. One result per verdict, in order.
pub(crate) async fn store(
    js: &jetstream::Context,
    settled: &[(jetstream::Message, Verdict)],
    progress_every: Duration,
) -> Vec<Result<(), String>> {
    let mut results: Vec<Result<(), String>> =
        join_all(settled.iter().map(|(_, verdict)| once(js, verdict))).await;
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    while results.iter().any(Result::is_err) && started.elapsed() < RETRY_FOR {
        let failing: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].is_err())
            .collect();
        metrics::counter!(m::NATS_ERRORS, "operation" => "publish_verdict")
            .increment(failing.len() as u64);
        warn!(
            failing = failing.len(),
            "verdicts not stored; retrying in {pause:?}: {}",
            results[failing[0]]
                .as_ref()
                .err()
                .map_or("", String::as_str)
        );
        for &i in &failing {
            // Keeps the request from being redelivered while its verdict waits.
            let _ = settled[i].0.ack_with(AckKind::Progress).await;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(progress_every.max(FIRST_PAUSE));
        let retried = join_all(failing.iter().map(|&i| once(js, &settled[i].1))).await;
        for (i, result) in failing.into_iter().zip(retried) {
            results[i] = result;
        }
    }
    results
}

/// One publish of `verdict`, awaited until the stream acknowledges it.
async fn once(js: &jetstream::Context, verdict: &Verdict) -> Result<(), String> {
    let subject = verdict_subject(&verdict.tenant, &verdict.room);
    let publish = PublishMessage::build()
        .payload(encode(verdict).into())
        .message_id(verdict.dedup_key());
    match js.send_publish(subject, publish).await {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    }
}
