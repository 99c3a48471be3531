//! The moderator's metrics: names and label values ([`names`], a leaf every stage may use),
//! descriptions (`promtool check metrics` needs one each). [`register`] puts every series
//! on `/metrics` at start (counters at 0, histograms without a sample): the exporter renders
//! a series once touched, and `increase()` over a new series misses its first event.

use metrics::Unit;
use offpath_ops::{Prometheus, Series, Spec};
use offpath_protocol::DecodeError;

/// The moderator's recorder: buckets set here, in one place (`offpath_build_info` and the
/// `process_*` figures are added by `offpath-ops`).
pub(crate) static PROMETHEUS: Prometheus = Prometheus::new(Spec {
    seconds: &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ],
    buckets: &[(
        BATCH_SIZE,
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
    )],
    describe,
    register,
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("OFFPATH_COMMIT"),
});

mod models;
mod names;
mod policies;
mod senders;

pub(crate) use models::model_info;
pub(crate) use names::*;
pub(crate) use policies::policies;

/// What a metric is.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric's kind, unit and description (`promtool check metrics` needs one each).
const DESCRIPTIONS: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        REQUESTS,
        Kind::Counter,
        None,
        "Requests finished, by outcome",
    ),
    (
        POLICY_BUCKET_REFUSED,
        Kind::Counter,
        None,
        "Policy bucket values refused unread: unsigned, untrusted signer, bad signature, stale",
    ),
    (
        BATCH_SIZE,
        Kind::Histogram,
        Some(Unit::Count),
        "Requests per inference batch",
    ),
    (
        INFERENCE_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Inference time per batch",
    ),
    (
        QUEUE_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Stream publish to inference start",
    ),
    (
        DEAD_LETTERS,
        Kind::Counter,
        None,
        "Dead letters published, by reason",
    ),
    (
        INFERENCE_CANCELLED,
        Kind::Counter,
        None,
        "Inference runs terminated by the watchdog",
    ),
    (
        THREADS_REPLACED,
        Kind::Counter,
        None,
        "Inference threads abandoned and replaced",
    ),
    (
        INFERENCE_THREADS,
        Kind::Gauge,
        None,
        "Inference threads alive",
    ),
    (
        BATCH_FAILURES,
        Kind::Counter,
        None,
        "Inference batches that failed, by reason",
    ),
    (
        LAST_PROGRESS,
        Kind::Gauge,
        Some(Unit::Seconds),
        "Unix time of the last completed inference",
    ),
    (
        CACHE_HITS,
        Kind::Counter,
        None,
        "Requests answered from the spam-wave cache",
    ),
    (
        NORMALISED,
        Kind::Counter,
        None,
        "Texts scored in their normalised form (it differed from the text as written)",
    ),
    (
        EXTRA_WINDOWS,
        Kind::Counter,
        None,
        "Windows read beyond the first of each text and view (long texts)",
    ),
    (
        WINDOWS_CAPPED,
        Kind::Counter,
        None,
        "Text views longer than --max-windows windows (their middle was not read)",
    ),
    (
        SPAN_WINDOWS,
        Kind::Counter,
        None,
        "Short windows read to locate a flagged text's span (verdict span; no score changes)",
    ),
    (
        RULE_HITS,
        Kind::Counter,
        None,
        "Messages a policy's text rule (keywords, regex) decided without the models",
    ),
    (
        RULE_SHADOW_HITS,
        Kind::Counter,
        None,
        "Messages a shadow text rule matched (counted, not acted on)",
    ),
    (
        NATS_ERRORS,
        Kind::Counter,
        None,
        "Errors talking to NATS, by operation",
    ),
    (
        CONSUMER_REBINDS,
        Kind::Counter,
        None,
        "JetStream consumer bound again after it was lost",
    ),
    (
        TOPOLOGY_DRIFT,
        Kind::Counter,
        None,
        "Topology settings found differing from this process's (left as they are)",
    ),
    (
        CONSUMER_PENDING,
        Kind::Gauge,
        Some(Unit::Count),
        "Requests in MODERATION not yet delivered to a moderator (consumer num_pending)",
    ),
    (
        CONSUMER_ACK_PENDING,
        Kind::Gauge,
        Some(Unit::Count),
        "Requests delivered to moderators and not yet acked (consumer num_ack_pending)",
    ),
    (
        MODEL_INFO,
        Kind::Gauge,
        None,
        "1, labelled with the running models' name, version and sha256 prefix",
    ),
    (
        INTERACTIVE_PENDING,
        Kind::Gauge,
        Some(Unit::Count),
        "Requests in MODERATION_INTERACTIVE not yet delivered to a moderator",
    ),
    (
        LANE_REQUESTS,
        Kind::Counter,
        None,
        "Requests pulled, by lane",
    ),
    (
        LANE_VERDICT_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Stream publish to stored verdict, by lane",
    ),
    (
        POLICY_VERDICTS,
        Kind::Counter,
        None,
        "Verdicts decided by a named policy, by policy and action",
    ),
    (
        VERDICT_CATEGORIES,
        Kind::Counter,
        None,
        "Flags and blocks, by category that decided",
    ),
    (
        POLICY_FALLBACKS,
        Kind::Counter,
        None,
        "Requests not judged by the policy they named, by reason",
    ),
    (
        POLICY_INFO,
        Kind::Gauge,
        None,
        "1, labelled with each policy's name and version",
    ),
    (
        POLICY_SOURCE,
        Kind::Gauge,
        None,
        "1 for the source of the policies in force (builtin, file, bucket)",
    ),
    (
        POLICY_BUCKET_WATCHING,
        Kind::Gauge,
        None,
        "1 while the moderator follows the fleet's policy bucket",
    ),
    (
        POLICY_VERDICT_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "From a request's sent_at_ms (the transport's clock) to its verdict, by policy",
    ),
    (
        POLICY_RELOADS,
        Kind::Counter,
        None,
        "Policy reloads, by source and outcome (refused: the policies in force were kept)",
    ),
    (
        REVIEW_ITEMS,
        Kind::Counter,
        None,
        "Messages queued for review (the REVIEW stream), by kind",
    ),
    (
        REVIEW_ITEMS_LOST,
        Kind::Counter,
        None,
        "Review items not stored on their request's last delivery (the verdict stood)",
    ),
    (
        MODEL_RELOADS,
        Kind::Counter,
        None,
        "Model reloads on SIGHUP, by outcome (applied, unchanged, refused: the models in force were kept)",
    ),
];

/// Registers the description of every metric with the installed recorder.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for &(name, kind, unit, help) in DESCRIPTIONS.iter().chain(senders::DESCRIPTIONS) {
        match (kind, unit) {
            (Kind::Counter, None) => describe_counter!(name, help),
            (Kind::Counter, Some(unit)) => describe_counter!(name, unit, help),
            (Kind::Gauge, None) => describe_gauge!(name, help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(name, unit, help),
            (Kind::Histogram, None) => describe_histogram!(name, help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(name, unit, help),
        }
    }
}

/// Puts every series on `/metrics` now, at 0 (counters with each label value the code can
/// produce), so that the first event is an increase rather than a new series.
pub(crate) fn register() {
    Series {
        counters: &[
            INFERENCE_CANCELLED,
            THREADS_REPLACED,
            CACHE_HITS,
            NORMALISED,
            EXTRA_WINDOWS,
            WINDOWS_CAPPED,
            SPAN_WINDOWS,
            CONSUMER_REBINDS,
            TOPOLOGY_DRIFT,
            REVIEW_ITEMS_LOST,
            SENDER_EVICTIONS,
            CAMPAIGN_EVICTIONS,
            NEAR_DUPLICATES,
            BRAKE_ENGAGED,
            BRAKE_HELD,
            BRAKE_UNTRACKED,
        ],
        labelled: &[
            (SENDER_EVENTS, "outcome", SENDER_OUTCOMES),
            (REQUESTS, "outcome", OUTCOMES),
            (BATCH_FAILURES, "reason", INFERENCE_FAILURES),
            (BATCH_FAILURES, "reason", &["shutdown"]),
            (DEAD_LETTERS, "reason", INFERENCE_FAILURES),
            (DEAD_LETTERS, "reason", DecodeError::REASONS),
            (DEAD_LETTERS, "reason", &[REVIEW_UNAVAILABLE]),
            (NATS_ERRORS, "operation", NATS_OPERATIONS),
            (LANE_REQUESTS, "lane", LANES),
            (
                MODEL_RELOADS,
                "outcome",
                &["applied", "unchanged", "refused"],
            ),
            (REVIEW_ITEMS, "kind", REVIEW_KINDS),
            (
                POLICY_BUCKET_REFUSED,
                "reason",
                &offpath_protocol::policy_signature::Refusal::REASONS,
            ),
        ],
        gauges: &[
            POLICY_BUCKET_WATCHING,
            INFERENCE_THREADS,
            LAST_PROGRESS,
            CONSUMER_PENDING,
            CONSUMER_ACK_PENDING,
            INTERACTIVE_PENDING,
            SENDERS_TRACKED,
            SENDER_STATE_CAUGHT_UP,
            SENDER_LAST_READ,
        ],
        histograms: &[BATCH_SIZE, INFERENCE_SECONDS, QUEUE_SECONDS],
    }
    .register();
    for lane in LANES {
        let _ = metrics::histogram!(LANE_VERDICT_SECONDS, "lane" => *lane);
    }
}

#[cfg(test)]
mod tests {
    use super::INFERENCE_FAILURES;
    use crate::pool::BatchError;

    /// Every reason a batch can fail with is registered up front.
    #[test]
    fn inference_failures_cover_every_batch_error() {
        for err in [
            BatchError::Failed(String::new()),
            BatchError::Panicked(String::new()),
            BatchError::Cancelled,
            BatchError::Hung,
        ] {
            assert!(INFERENCE_FAILURES.contains(&err.reason()), "{err}");
        }
        assert_eq!(BatchError::Closed.reason(), "shutdown");
    }
}
