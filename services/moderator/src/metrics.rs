//! Metric names, declared once, with the label values the code can produce and their
//! descriptions (`promtool check metrics` needs one for every metric). [`register`] puts
//! every series on `/metrics` at start (counters at 0, histograms without a sample): the
//! exporter renders a series only once it is touched, and `increase()` over a series that
//! appears with its first event misses that event.

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

/// The dead-letter reason of a report whose review item could not be stored.
pub(crate) const REVIEW_UNAVAILABLE: &str = "review_unavailable";

/// Requests finished, by `outcome` (one of [`OUTCOMES`]).
pub(crate) const REQUESTS: &str = "offpath_moderator_requests_total";
/// Every `outcome` of [`REQUESTS`]: settled from the stream (`verdict`, `expired`, `cached`,
/// `dead_letter`, `retried`), answered to a synchronous call (`direct`) or refused to one
/// (`overloaded`, `timeout`, `unavailable`; `bad_reply`: its reply subject is not an inbox,
/// so answering it would publish a verdict wherever the caller pointed).
pub(crate) const OUTCOMES: &[&str] = &[
    "verdict",
    "expired",
    "cached",
    "dead_letter",
    "retried",
    "direct",
    "overloaded",
    "timeout",
    "unavailable",
    "bad_reply",
];
/// Requests per inference batch.
pub(crate) const BATCH_SIZE: &str = "offpath_moderator_batch_size";
/// Time in inference per batch.
pub(crate) const INFERENCE_SECONDS: &str = "offpath_moderator_inference_seconds";
/// From stream publish to the start of inference.
pub(crate) const QUEUE_SECONDS: &str = "offpath_moderator_queue_seconds";
/// Dead letters published, by `reason`: a [`DecodeError::REASONS`] or a failure of
/// [`INFERENCE_FAILURES`] (a batch that failed on each of `max_deliver` deliveries).
pub(crate) const DEAD_LETTERS: &str = "offpath_moderator_dead_letters_total";
/// Runs terminated by the watchdog.
pub(crate) const INFERENCE_CANCELLED: &str = "offpath_moderator_inference_cancelled_total";
/// Inference threads abandoned and replaced.
pub(crate) const THREADS_REPLACED: &str = "offpath_moderator_threads_replaced_total";
/// Inference threads alive.
pub(crate) const INFERENCE_THREADS: &str = "offpath_moderator_inference_threads";
/// Batches that failed, by `reason` (before bisection or retry): one of
/// [`INFERENCE_FAILURES`] or `shutdown`.
pub(crate) const BATCH_FAILURES: &str = "offpath_moderator_batch_failures_total";
/// The `reason`s of a failed inference ([`crate::pool::BatchError::reason`] but `shutdown`,
/// which is never dead-lettered).
pub(crate) const INFERENCE_FAILURES: &[&str] = &[
    "inference_failed",
    "inference_panicked",
    "inference_cancelled",
    "inference_hung",
];
/// Unix time of the last batch that completed inference.
pub(crate) const LAST_PROGRESS: &str = "offpath_moderator_last_progress_timestamp_seconds";
/// Requests answered from the spam-wave cache.
pub(crate) const CACHE_HITS: &str = "offpath_moderator_cache_hits_total";
/// Texts scored in their normalised form (it differed from the text as written).
pub(crate) const NORMALISED: &str = "offpath_moderator_normalised_total";
/// Windows read beyond the first of each text and view (texts longer than a model reads).
pub(crate) const EXTRA_WINDOWS: &str = "offpath_moderator_extra_windows_total";
/// Text views longer than `--max-windows` windows: their middle was not read.
pub(crate) const WINDOWS_CAPPED: &str = "offpath_moderator_windows_capped_total";
/// Errors talking to NATS, by `operation` (one of [`NATS_OPERATIONS`]).
pub(crate) const NATS_ERRORS: &str = "offpath_moderator_nats_errors_total";
/// Every `operation` of [`NATS_ERRORS`].
pub(crate) const NATS_OPERATIONS: &[&str] = &[
    "publish_review",
    "bind",
    "pull",
    "pull_again",
    "progress",
    "nak",
    "ack",
    "publish_verdict",
    "publish_dead_letter",
    "respond",
    "consumer_info",
];
/// Times the JetStream consumer was bound again after it was lost (deleted, or its stream).
pub(crate) const CONSUMER_REBINDS: &str = "offpath_moderator_consumer_rebinds_total";
/// Settings of existing streams or consumers that differ from this process's topology.
pub(crate) const TOPOLOGY_DRIFT: &str = "offpath_moderator_topology_drift_total";
/// Requests in `MODERATION` not yet delivered to any moderator (the consumer's
/// `num_pending`): the backlog to scale on.
pub(crate) const CONSUMER_PENDING: &str = "offpath_moderator_consumer_pending";
/// Requests delivered to moderators and not yet acked (the consumer's `num_ack_pending`).
pub(crate) const CONSUMER_ACK_PENDING: &str = "offpath_moderator_consumer_ack_pending";
/// Requests in `MODERATION_INTERACTIVE` not yet delivered to any moderator: the interactive
/// lane's backlog (it should stay near 0; [`CONSUMER_PENDING`] is the bulk lane's).
pub(crate) const INTERACTIVE_PENDING: &str = "offpath_moderator_interactive_pending";
/// Requests pulled, by `lane` ([`LANES`]).
pub(crate) const LANE_REQUESTS: &str = "offpath_moderator_lane_requests_total";
/// From a request's stream publish (the server's clock) to its stored verdict, by `lane`:
/// what lanes are for, per lane.
pub(crate) const LANE_VERDICT_SECONDS: &str = "offpath_moderator_lane_verdict_seconds";
/// The request lanes: `interactive` (`offpath.req.<tenant>.interactive`), `bulk`.
pub(crate) const LANES: &[&str] = &["interactive", "bulk"];
/// 1, labelled with the running models' `name`, `version` and `sha256` (the first 12 hex
/// digits of each ONNX file's, `+`-joined like the names).
pub(crate) const MODEL_INFO: &str = "offpath_moderator_model_info";

/// Verdicts decided by a named policy, by `policy` and `action` (every policy of the
/// policy file, or `default`; registered by [`policies`]).
pub(crate) const POLICY_VERDICTS: &str = "offpath_moderator_policy_verdicts_total";
/// Requests not judged by the policy they named, by `reason`
/// ([`crate::policies::Fallback::reason`]).
pub(crate) const POLICY_FALLBACKS: &str = "offpath_moderator_policy_fallbacks_total";
/// 1, labelled with each policy's `policy` name and `version`.
pub(crate) const POLICY_INFO: &str = "offpath_moderator_policy_info";
/// From a request's `sent_at_ms` (the transport's clock) to its verdict, by the `policy`
/// that decided it: what a waiting user sees of moderation, per policy.
pub(crate) const POLICY_VERDICT_SECONDS: &str = "offpath_moderator_policy_verdict_seconds";
/// 1 for the `source` of the policies in force (`builtin`, `file`, `bucket`), 0 for the
/// others.
pub(crate) const POLICY_SOURCE: &str = "offpath_moderator_policy_source";
/// 1 while the moderator follows the fleet's policy bucket, 0 while it cannot (no bucket, no
/// permission, NATS away): its policies may then differ from the fleet's.
pub(crate) const POLICY_BUCKET_WATCHING: &str = "offpath_moderator_policy_bucket_watching";
/// Bucket values refused before anything reads them, by `reason`
/// ([`offpath_protocol::policy_signature::Refusal::reason`]): not signed by a key of
/// `--policy-signers`, or older than the newest signed value seen. Any NATS role can make
/// the server publish on the bucket's key (a reply subject is never permission-checked):
/// alert on any increase.
pub(crate) const POLICY_BUCKET_REFUSED: &str = "offpath_moderator_policy_bucket_refused_total";
/// Policy reloads, by `source` ([`crate::policies::Source`]) and `outcome` (`applied`,
/// `refused`: the policies in force were kept).
pub(crate) const POLICY_RELOADS: &str = "offpath_moderator_policy_reloads_total";
/// Messages queued for review in `REVIEW`, by `kind` (`flag`, `block`).
pub(crate) const REVIEW_ITEMS: &str = "offpath_moderator_review_items_total";
/// Review items not stored on their request's last delivery (the verdict stood).
pub(crate) const REVIEW_ITEMS_LOST: &str = "offpath_moderator_review_items_lost_total";
/// Model reloads (SIGHUP), by `outcome`: `applied`, `unchanged` (the model files are the
/// ones in force), `refused` (the models in force were kept).
pub(crate) const MODEL_RELOADS: &str = "offpath_moderator_model_reloads_total";
/// Every `kind` of [`REVIEW_ITEMS`].
const REVIEW_KINDS: &[&str] = &[
    offpath_protocol::ReviewKind::Flag.as_str(),
    offpath_protocol::ReviewKind::Block.as_str(),
    offpath_protocol::ReviewKind::Report.as_str(),
];
/// Every verdict `action` a policy produces (`unmoderated` verdicts are decided by no policy).
pub(crate) const POLICY_ACTIONS: &[&str] = &["allow", "flag", "block"];

/// Registers the description of every metric with the installed recorder.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests finished, by outcome");
    describe_counter!(
        POLICY_BUCKET_REFUSED,
        "Policy bucket values refused unread: unsigned, untrusted signer, bad signature, stale"
    );
    describe_histogram!(BATCH_SIZE, Unit::Count, "Requests per inference batch");
    describe_histogram!(INFERENCE_SECONDS, Unit::Seconds, "Inference time per batch");
    describe_histogram!(
        QUEUE_SECONDS,
        Unit::Seconds,
        "Stream publish to inference start"
    );
    describe_counter!(DEAD_LETTERS, "Dead letters published, by reason");
    describe_counter!(
        INFERENCE_CANCELLED,
        "Inference runs terminated by the watchdog"
    );
    describe_counter!(THREADS_REPLACED, "Inference threads abandoned and replaced");
    describe_gauge!(INFERENCE_THREADS, "Inference threads alive");
    describe_counter!(BATCH_FAILURES, "Inference batches that failed, by reason");
    describe_gauge!(
        LAST_PROGRESS,
        Unit::Seconds,
        "Unix time of the last completed inference"
    );
    describe_counter!(CACHE_HITS, "Requests answered from the spam-wave cache");
    describe_counter!(
        NORMALISED,
        "Texts scored in their normalised form (it differed from the text as written)"
    );
    describe_counter!(
        EXTRA_WINDOWS,
        "Windows read beyond the first of each text and view (long texts)"
    );
    describe_counter!(
        WINDOWS_CAPPED,
        "Text views longer than --max-windows windows (their middle was not read)"
    );
    describe_counter!(NATS_ERRORS, "Errors talking to NATS, by operation");
    describe_counter!(
        CONSUMER_REBINDS,
        "JetStream consumer bound again after it was lost"
    );
    describe_counter!(
        TOPOLOGY_DRIFT,
        "Topology settings found differing from this process's (left as they are)"
    );
    describe_gauge!(
        CONSUMER_PENDING,
        Unit::Count,
        "Requests in MODERATION not yet delivered to a moderator (consumer num_pending)"
    );
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        Unit::Count,
        "Requests delivered to moderators and not yet acked (consumer num_ack_pending)"
    );
    describe_gauge!(
        MODEL_INFO,
        "1, labelled with the running models' name, version and sha256 prefix"
    );
    describe_gauge!(
        INTERACTIVE_PENDING,
        Unit::Count,
        "Requests in MODERATION_INTERACTIVE not yet delivered to a moderator"
    );
    describe_counter!(LANE_REQUESTS, "Requests pulled, by lane");
    describe_histogram!(
        LANE_VERDICT_SECONDS,
        Unit::Seconds,
        "Stream publish to stored verdict, by lane"
    );
    describe_counter!(
        POLICY_VERDICTS,
        "Verdicts decided by a named policy, by policy and action"
    );
    describe_counter!(
        POLICY_FALLBACKS,
        "Requests not judged by the policy they named, by reason"
    );
    describe_gauge!(
        POLICY_INFO,
        "1, labelled with each policy's name and version"
    );
    describe_gauge!(
        POLICY_SOURCE,
        "1 for the source of the policies in force (builtin, file, bucket)"
    );
    describe_gauge!(
        POLICY_BUCKET_WATCHING,
        "1 while the moderator follows the fleet's policy bucket"
    );
    describe_histogram!(
        POLICY_VERDICT_SECONDS,
        Unit::Seconds,
        "From a request's sent_at_ms (the transport's clock) to its verdict, by policy"
    );
    describe_counter!(
        POLICY_RELOADS,
        "Policy reloads, by source and outcome (refused: the policies in force were kept)"
    );
    describe_counter!(
        REVIEW_ITEMS,
        "Messages queued for review (the REVIEW stream), by kind"
    );
    describe_counter!(
        REVIEW_ITEMS_LOST,
        "Review items not stored on their request's last delivery (the verdict stood)"
    );
    describe_counter!(
        MODEL_RELOADS,
        "Model reloads on SIGHUP, by outcome (applied, unchanged, refused: the models in force were kept)"
    );
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
            CONSUMER_REBINDS,
            TOPOLOGY_DRIFT,
            REVIEW_ITEMS_LOST,
        ],
        labelled: &[
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
        ],
        histograms: &[BATCH_SIZE, INFERENCE_SECONDS, QUEUE_SECONDS],
    }
    .register();
    for lane in LANES {
        let _ = metrics::histogram!(LANE_VERDICT_SECONDS, "lane" => *lane);
    }
}

/// The lane of a request pulled from `subject`.
pub(crate) fn lane_of(subject: &str) -> &'static str {
    let interactive = subject
        .rsplit('.')
        .next()
        .is_some_and(|last| last == offpath_protocol::subject::INTERACTIVE_LANE);
    if interactive { LANES[0] } else { LANES[1] }
}

/// Puts the series of every policy of `set` on `/metrics` ([`POLICY_VERDICTS`] at 0 for
/// each action, [`POLICY_INFO`] at 1), [`POLICY_FALLBACKS`] and [`POLICY_RELOADS`] at 0 for
/// each label value, [`POLICY_SOURCE`] for `in_force`; the [`POLICY_INFO`] of `replaced`
/// (the set before a reload) goes to 0.
pub(crate) fn policies(
    set: &crate::policies::PolicySet,
    replaced: Option<&crate::policies::PolicySet>,
    in_force: crate::policies::Source,
) {
    let info = |rules: &crate::policies::Rules| {
        metrics::gauge!(
            POLICY_INFO,
            "policy" => rules.name.clone(),
            "version" => rules.version.clone(),
        )
    };
    for rules in replaced.into_iter().flat_map(|old| old.policies()) {
        info(rules).set(0.0);
    }
    for rules in set.policies() {
        for action in POLICY_ACTIONS {
            metrics::counter!(POLICY_VERDICTS, "policy" => rules.name.clone(), "action" => *action)
                .increment(0);
        }
        let _ = metrics::histogram!(POLICY_VERDICT_SECONDS, "policy" => rules.name.clone());
        info(rules).set(1.0);
    }
    for fallback in crate::policies::Fallback::ALL {
        metrics::counter!(POLICY_FALLBACKS, "reason" => fallback.reason()).increment(0);
    }
    for source in crate::policies::Source::ALL {
        let value = if source == in_force { 1.0 } else { 0.0 };
        metrics::gauge!(POLICY_SOURCE, "source" => source.as_str()).set(value);
    }
    for source in [
        crate::policies::Source::File,
        crate::policies::Source::Bucket,
    ] {
        for outcome in ["applied", "refused"] {
            metrics::counter!(POLICY_RELOADS, "source" => source.as_str(), "outcome" => outcome)
                .increment(0);
        }
    }
}

/// Sets [`MODEL_INFO`] to `value` for `models` (`+`-joined names and versions, as verdicts
/// name them) described by `manifests`. The sha256 comes from each model's manifest,
/// which the pool checked against the files when it loaded them. A reload sets the
/// replaced models' series to 0.
pub(crate) fn model_info(
    models: &offpath_protocol::ModelRef,
    manifests: &[offpath_classifier::Manifest],
    value: f64,
) {
    let sha256 = manifests
        .iter()
        .map(|m| {
            m.sha256
                .get(&m.file)
                .map(|s| s.chars().take(12).collect())
                .unwrap_or_else(|| "unknown".to_string())
        })
        .collect::<Vec<String>>()
        .join("+");
    metrics::gauge!(
        MODEL_INFO,
        "name" => models.name.clone(),
        "version" => models.version.clone(),
        "sha256" => sha256,
    )
    .set(value);
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
