//! Metric names, declared once, and their descriptions (`promtool check metrics` needs one
//! for every metric).

/// Requests finished, by `outcome` (`verdict`, `expired`, `dead_letter`, `retried`).
pub const REQUESTS: &str = "offpath_moderator_requests_total";
/// Requests per inference batch.
pub const BATCH_SIZE: &str = "offpath_moderator_batch_size";
/// Time in inference per batch.
pub const INFERENCE_SECONDS: &str = "offpath_moderator_inference_seconds";
/// From stream publish to the start of inference.
pub const QUEUE_SECONDS: &str = "offpath_moderator_queue_seconds";
/// Dead letters published, by `reason`.
pub const DEAD_LETTERS: &str = "offpath_moderator_dead_letters_total";
/// Runs terminated by the watchdog.
pub const INFERENCE_CANCELLED: &str = "offpath_moderator_inference_cancelled_total";
/// Inference threads abandoned and replaced.
pub const THREADS_REPLACED: &str = "offpath_moderator_threads_replaced_total";
/// Inference threads alive.
pub const INFERENCE_THREADS: &str = "offpath_moderator_inference_threads";
/// Batches that failed, by `reason` (before bisection or retry).
pub const BATCH_FAILURES: &str = "offpath_moderator_batch_failures_total";
/// Unix time of the last batch that completed inference.
pub const LAST_PROGRESS: &str = "offpath_moderator_last_progress_timestamp_seconds";
/// Requests answered from the spam-wave cache.
pub const CACHE_HITS: &str = "offpath_moderator_cache_hits_total";
/// Errors talking to NATS, by `operation`.
pub const NATS_ERRORS: &str = "offpath_moderator_nats_errors_total";
/// Times the JetStream consumer was bound again after it was lost (deleted, or its stream).
pub const CONSUMER_REBINDS: &str = "offpath_moderator_consumer_rebinds_total";
/// Settings of existing streams or consumers that differ from this process's topology.
pub const TOPOLOGY_DRIFT: &str = "offpath_moderator_topology_drift_total";

/// Registers the description of every metric with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests finished, by outcome");
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
    describe_counter!(NATS_ERRORS, "Errors talking to NATS, by operation");
    describe_counter!(
        CONSUMER_REBINDS,
        "JetStream consumer bound again after it was lost"
    );
    describe_counter!(
        TOPOLOGY_DRIFT,
        "Topology settings found differing from this process's (left as they are)"
    );
    // Rendered from the start (as 0), not only after the first loss.
    metrics::counter!(CONSUMER_REBINDS).increment(0);
    metrics::counter!(TOPOLOGY_DRIFT).increment(0);
}
