//! Metric names and the label values the code can produce, declared once. A leaf: it
//! imports nothing of the moderator.

/// The dead-letter reason of a report whose review item could not be stored.
pub(crate) const REVIEW_UNAVAILABLE: &str = "review_unavailable";

/// Requests finished, by `outcome` (one of [`OUTCOMES`]).
pub(crate) const REQUESTS: &str = "offpath_moderator_requests_total";
/// Every `outcome` of [`REQUESTS`]: settled from the stream (`verdict`, `expired`, `cached`, `ruled`: a text rule decided,
/// `dead_letter`, `retried`), answered to a synchronous call (`direct`) or refused to one
/// (`overloaded`, `timeout`, `unavailable`; `bad_reply`: its reply subject is not an inbox,
/// so answering it would publish a verdict wherever the caller pointed).
pub(crate) const OUTCOMES: &[&str] = &[
    "verdict",
    "expired",
    "cached",
    "ruled",
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
/// Short windows read to locate where a flagged text's category scored highest (a
/// verdict's `span`); they change no score.
pub(crate) const SPAN_WINDOWS: &str = "offpath_moderator_span_windows_total";
/// Messages a policy's text rule decided without the models, by `policy`, `rule`, `action`.
pub(crate) const RULE_HITS: &str = "offpath_moderator_rule_hits_total";
/// Messages a shadow rule matched (counted, not acted on), by `policy`, `rule`, `action`.
pub(crate) const RULE_SHADOW_HITS: &str = "offpath_moderator_rule_shadow_hits_total";
/// Sender events (`SENDERS`), by `outcome` (one of [`SENDER_OUTCOMES`]).
pub(crate) const SENDER_EVENTS: &str = "offpath_moderator_sender_events_total";
/// Every `outcome` of [`SENDER_EVENTS`]: this process's own, `published` (stored), `failed`
/// (not stored), `dropped` (the outbox was full); read from the stream, `folded` (another
/// moderator's, counted), `seen` (counted already: an echo, a redelivery), `stale` (older
/// than the window), `malformed` (skipped).
pub(crate) const SENDER_OUTCOMES: &[&str] = &[
    "published",
    "failed",
    "dropped",
    "folded",
    "seen",
    "stale",
    "malformed",
];
/// Senders in this moderator's book.
pub(crate) const SENDERS_TRACKED: &str = "offpath_moderator_senders_tracked";
/// Senders evicted from a full book before their hour was over.
pub(crate) const SENDER_EVICTIONS: &str = "offpath_moderator_sender_evictions_total";
/// Times a tenant's brake engaged (automatic blocks became flags).
pub(crate) const BRAKE_ENGAGED: &str = "offpath_moderator_brake_engagements_total";
/// Automatic blocks the brake held as flags for a person.
pub(crate) const BRAKE_HELD: &str = "offpath_moderator_brake_held_total";
/// Verdicts of tenants past the brake's tenant bound (not braked).
pub(crate) const BRAKE_UNTRACKED: &str = "offpath_moderator_brake_untracked_total";
/// Messages dropped from a full campaign index before their window was over.
pub(crate) const CAMPAIGN_EVICTIONS: &str = "offpath_moderator_campaign_evictions_total";
/// Messages that had a near-duplicate in their tenant's last ten minutes.
pub(crate) const NEAR_DUPLICATES: &str = "offpath_moderator_near_duplicates_total";
/// When this moderator last read an event from `SENDERS` (its own echo included), seconds
/// since the epoch: a reader that stopped (the stream gone, a stalled consumer) stays put.
pub(crate) const SENDER_LAST_READ: &str = "offpath_moderator_sender_last_read_timestamp_seconds";
/// 1 once this moderator has read the last hour of `SENDERS` after its start.
pub(crate) const SENDER_STATE_CAUGHT_UP: &str = "offpath_moderator_sender_state_caught_up";
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
    "follow_senders",
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
/// Flagged and blocked verdicts by the `category` (label) that decided them and `action`:
/// which harm the moderator acts on, e.g. a wave of `spam` flags or `threat` flags.
pub(crate) const VERDICT_CATEGORIES: &str = "offpath_moderator_verdict_categories_total";
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
pub(crate) const REVIEW_KINDS: &[&str] = &[
    offpath_protocol::ReviewKind::Flag.as_str(),
    offpath_protocol::ReviewKind::Block.as_str(),
    offpath_protocol::ReviewKind::Report.as_str(),
];
/// Every verdict `action` a policy produces (`unmoderated` verdicts are decided by no policy).
pub(crate) const POLICY_ACTIONS: &[&str] = &["allow", "flag", "block"];

/// The lane of a request pulled from `subject`.
pub(crate) fn lane_of(subject: &str) -> &'static str {
    let interactive = subject
        .rsplit('.')
        .next()
        .is_some_and(|last| last == offpath_protocol::subject::INTERACTIVE_LANE);
    if interactive { LANES[0] } else { LANES[1] }
}
