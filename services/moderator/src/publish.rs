//! Storing verdicts in `VERDICTS`, riding out a short outage of the stream.
//!
//! While a node of a cluster fails over (seen: about 6 s, up to 17 s), a verdict publish
//! fails ("no stream found for given subject"). Nak'ing the request at once spent one of
//! its `max_deliver` deliveries per failure: five failures inside one failover and the
//! server gave up on the request, which then had neither a verdict nor a dead letter (the
//! cluster fault test found 7 to 92 such requests in one run of 900). So a failed publish
//! is retried here first, with growing pauses, while the request is kept alive with
//! progress acks on their own timer; only a failure that outlasts [`RETRY_FOR`] goes back
//! to the caller (which naks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, message::PublishMessage};
use futures::future::join_all;
use offpath_protocol::subject::verdict_subject;
use offpath_protocol::{ReviewItem, Verdict, encode};
use tracing::{debug, warn};

use crate::metrics as m;

/// How long a failing verdict publish is retried before its request is nak'ed: longer
/// than a cluster failover.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// The first pause between attempts; each next one doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause: a failover ends at an unknown moment, and the verdicts should follow
/// it within a second or two.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Publishes each verdict (de-duplicated by [`Verdict::dedup_key`], so a retry that did
/// reach the stream stores nothing twice); `progress_every` is how often a request must be
/// told to JetStream as in progress. One result per verdict, in order.
pub(crate) async fn store(
    js: &jetstream::Context,
    settled: &[(jetstream::Message, Verdict)],
    progress_every: Duration,
) -> Vec<Result<(), String>> {
    // Every request of the batch is kept alive, on a timer of its own, until `store`
    // returns and the caller acks: the first attempt can wait 5 s for the stream's ack, a
    // retry round a pause more, both longer than a short `ack_wait`, and a request
    // redelivered meanwhile costs a delivery (also those whose verdict is stored already:
    // they are acked only after the retries).
    let messages: Vec<&jetstream::Message> = settled.iter().map(|(message, _)| message).collect();
    with_progress(&messages, progress_every, async {
        let mut results: Vec<Result<(), String>> =
            join_all(settled.iter().map(|(_, verdict)| once(js, verdict))).await;
        retry(js, settled, &mut results).await;
        results
    })
    .await
}

/// Retries the failed publishes in `results`, with growing pauses, for [`RETRY_FOR`].
async fn retry(
    js: &jetstream::Context,
    settled: &[(jetstream::Message, Verdict)],
    results: &mut [Result<(), String>],
) {
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    while results.iter().any(Result::is_err) && started.elapsed() < RETRY_FOR {
        let failing: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].is_err())
            .collect();
        metrics::counter!(m::NATS_ERRORS, "operation" => "publish_verdict")
            .increment(failing.len() as u64);
        let reason = results[failing[0]]
            .as_ref()
            .err()
            .map_or("", String::as_str);
        if warn_now() {
            warn!(
                failing = failing.len(),
                "verdicts not stored; retrying in {pause:?}: {reason}"
            );
        } else {
            debug!(
                failing = failing.len(),
                "verdicts not stored; retrying in {pause:?}: {reason}"
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        let retried = join_all(failing.iter().map(|&i| once(js, &settled[i].1))).await;
        for (i, result) in failing.into_iter().zip(retried) {
            results[i] = result;
        }
    }
}

/// Awaits `work`, telling JetStream every `every` that `messages` are being worked on, so
/// they are not redelivered to another moderator meanwhile.
pub(crate) async fn with_progress<T>(
    messages: &[&jetstream::Message],
    every: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticks.tick().await;
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = ticks.tick() => {
                for message in messages {
                    if message.ack_with(AckKind::Progress).await.is_err() {
                        metrics::counter!(m::NATS_ERRORS, "operation" => "progress").increment(1);
                    }
                }
            }
        }
    }
}

/// Whether a failing publish is logged at `warn` now: at most once a second over every
/// batch (each batch retries on its own; a failover made one line per request and retry,
/// 1,800 in 10 s). The counter counts every failure.
fn warn_now() -> bool {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = offpath_protocol::now_ms();
    let last = LAST.load(Ordering::Relaxed);
    now.saturating_sub(last) >= 1000
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
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

/// Queues `item` for review in `REVIEW`, awaited until the stream acknowledges it
/// (de-duplicated by [`ReviewItem::dedup_key`]: a redelivered request queues its message
/// once). Not retried here: the caller naks the request, whose redelivery publishes again.
pub(crate) async fn review(js: &jetstream::Context, item: &ReviewItem) -> Result<(), String> {
    let publish = PublishMessage::build()
        .payload(encode(item).into())
        .message_id(item.dedup_key());
    match js.send_publish(item.subject(), publish).await {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    }
}
