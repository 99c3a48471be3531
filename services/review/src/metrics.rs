//! The console's metrics (`offpath_review_*`), on its own `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use offpath_ops::{Prometheus, Series, Spec, public};
use offpath_protocol::ReviewDecision;

use crate::State;

/// Items nobody decided yet (escalated ones included).
pub(crate) const QUEUE_DEPTH: &str = "offpath_review_queue_depth";
/// Age of the oldest open item, seconds (0 when none is open).
pub(crate) const OLDEST_SECONDS: &str = "offpath_review_oldest_item_age_seconds";
/// Decisions made in this console, by `decision`.
pub(crate) const DECISIONS: &str = "offpath_review_decisions_total";
/// Decisions not stored (NATS refused the human verdict or the audit entry).
pub(crate) const DECISION_FAILURES: &str = "offpath_review_decision_failures_total";
/// Decisions refused, by `reason` (one of [`REFUSED_REASONS`]).
pub(crate) const DECISIONS_REFUSED: &str = "offpath_review_decisions_refused_total";
/// Every `reason` of [`DECISIONS_REFUSED`]: not the shape of a decision, a note over 2,000
/// characters, no such item (or another tenant's), a restore of an end-to-end-encrypted
/// message.
pub(crate) const REFUSED_REASONS: &[&str] =
    &["malformed", "note_too_long", "unknown_item", "e2e_restore"];
/// Decided items the console forgot to stay within its memory bound (they stay in AUDIT).
pub(crate) const FORGOTTEN: &str = "offpath_review_items_forgotten_total";
/// Members' reports that did not become an entry of their own, by `reason`
/// ([`crate::queue::DROP_REASONS`]): their first reporter's, their tenant's or the console's
/// bound on open report entries was reached. (A report of a message with an open report
/// entry joins it and is not counted here.)
pub(crate) const REPORTS_DROPPED: &str = "offpath_review_reports_dropped_total";
/// Requests without a valid reviewer token.
pub(crate) const AUTH_FAILURES: &str = "offpath_review_auth_failures_total";
/// Open TCP connections on the console's port, from accept to close.
pub(crate) const SOCKETS: &str = "offpath_review_sockets";
/// Sockets closed by the console before or while serving them, by `reason` (one of
/// [`SOCKET_REASONS`]).
pub(crate) const SOCKETS_CLOSED: &str = "offpath_review_sockets_closed_total";
/// Every `reason` of [`SOCKETS_CLOSED`]: past `--max-sockets` or `--max-sockets-per-ip`,
/// headers not read within `--header-timeout-ms` or larger than `--max-header-bytes`, the
/// request not done within `--request-timeout-ms`.
pub(crate) const SOCKET_REASONS: &[&str] = &[
    public::MAX_SOCKETS,
    public::MAX_SOCKETS_PER_IP,
    public::HEADER_TIMEOUT,
    public::HEADER_TOO_LARGE,
    REQUEST_TIMEOUT,
];
/// The `reason` of [`SOCKETS_CLOSED`] for `--request-timeout-ms`.
pub(crate) const REQUEST_TIMEOUT: &str = "request_timeout";
/// Failed `accept` calls on the console's port (e.g. out of file descriptors).
pub(crate) const ACCEPT_ERRORS: &str = "offpath_review_accept_errors_total";
/// Requests refused before their handler's work, by `reason` (one of
/// [`REQUEST_REASONS`]).
pub(crate) const REQUESTS_REFUSED: &str = "offpath_review_requests_refused_total";
/// `reason` of [`REQUESTS_REFUSED`]: the address failed too many logins (429).
pub(crate) const AUTH_THROTTLED: &str = "auth_throttled";
/// `reason` of [`REQUESTS_REFUSED`]: a body over `--max-body-bytes` (413).
pub(crate) const BODY_TOO_LARGE: &str = "body_too_large";
/// Every `reason` of [`REQUESTS_REFUSED`].
pub(crate) const REQUEST_REASONS: &[&str] = &[AUTH_THROTTLED, BODY_TOO_LARGE];
/// `REVIEW` or `AUDIT` could not be followed, or the verdicts' subscription was lost
/// (`VERDICTS`), by `stream`.
pub(crate) const NATS_ERRORS: &str = "offpath_review_nats_errors_total";
/// Messages of `REVIEW` or `AUDIT` that are not what they should be, by `stream`.
pub(crate) const MALFORMED: &str = "offpath_review_malformed_total";
/// Published verdicts the console read for senders' records, by `outcome`
/// ([`crate::senders::Seen`]: kept, allowed, refused).
pub(crate) const SENDER_VERDICTS: &str = "offpath_review_sender_verdicts_total";
/// Senders with a record of recent verdicts.
pub(crate) const SENDERS: &str = "offpath_review_senders";
/// Senders' records forgotten to stay within `--sender-records`.
pub(crate) const SENDERS_FORGOTTEN: &str = "offpath_review_senders_forgotten_total";

/// The console's recorder.
pub(crate) static PROMETHEUS: Prometheus = Prometheus::new(Spec {
    seconds: &[1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0],
    buckets: &[],
    describe,
    register,
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("OFFPATH_COMMIT"),
});

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(QUEUE_DEPTH, "Review items nobody decided yet");
    describe_gauge!(
        OLDEST_SECONDS,
        Unit::Seconds,
        "Age of the oldest open review item"
    );
    describe_counter!(DECISIONS, "Reviewer decisions, by decision");
    describe_counter!(DECISION_FAILURES, "Decisions not stored in NATS");
    describe_counter!(DECISIONS_REFUSED, "Decisions refused, by reason");
    describe_counter!(
        REPORTS_DROPPED,
        "Members' reports refused an entry of their own: reporter, tenant or console bound"
    );
    describe_counter!(
        FORGOTTEN,
        "Decided items forgotten to bound the console's memory (kept in AUDIT)"
    );
    describe_counter!(AUTH_FAILURES, "Requests without a valid reviewer token");
    describe_gauge!(SOCKETS, "Open TCP connections on the console's port");
    describe_counter!(
        SOCKETS_CLOSED,
        "Sockets closed by the console's limits, by reason"
    );
    describe_counter!(ACCEPT_ERRORS, "Failed accepts on the console's port");
    describe_counter!(
        REQUESTS_REFUSED,
        "Requests refused before their work (throttled logins, large bodies), by reason"
    );
    describe_counter!(
        NATS_ERRORS,
        "REVIEW, AUDIT or the verdicts' subscription could not be followed, by stream"
    );
    describe_counter!(
        MALFORMED,
        "Messages of REVIEW or AUDIT skipped as malformed, by stream"
    );
    describe_counter!(
        SENDER_VERDICTS,
        "Published verdicts read for senders' records, by outcome"
    );
    describe_gauge!(SENDERS, "Senders with a record of recent verdicts");
    describe_counter!(
        SENDERS_FORGOTTEN,
        "Senders' records forgotten to stay within --sender-records"
    );
}

const DECISION_LABELS: [&str; 4] = [
    ReviewDecision::Remove.as_str(),
    ReviewDecision::Restore.as_str(),
    ReviewDecision::Dismiss.as_str(),
    ReviewDecision::Escalate.as_str(),
];
const STREAMS: [&str; 2] = ["REVIEW", "AUDIT"];
/// What the console follows: the two streams and the verdicts' subscription.
const FOLLOWED: [&str; 3] = ["REVIEW", "AUDIT", "VERDICTS"];

fn register() {
    Series {
        counters: &[
            DECISION_FAILURES,
            AUTH_FAILURES,
            FORGOTTEN,
            ACCEPT_ERRORS,
            SENDERS_FORGOTTEN,
        ],
        labelled: &[
            (SOCKETS_CLOSED, "reason", SOCKET_REASONS),
            (REQUESTS_REFUSED, "reason", REQUEST_REASONS),
            (DECISIONS, "decision", &DECISION_LABELS[..]),
            (DECISIONS_REFUSED, "reason", REFUSED_REASONS),
            (NATS_ERRORS, "stream", &FOLLOWED[..]),
            (MALFORMED, "stream", &STREAMS[..]),
            (REPORTS_DROPPED, "reason", &crate::queue::DROP_REASONS[..]),
            (SENDER_VERDICTS, "outcome", &crate::senders::Seen::ALL[..]),
        ],
        gauges: &[QUEUE_DEPTH, OLDEST_SECONDS, SOCKETS, SENDERS],
        histograms: &[],
    }
    .register();
}

/// Sets the queue gauges every second.
pub(crate) async fn report(state: Arc<State>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let ((open, oldest), forgotten, dropped) = {
            let queue = state.queue();
            (queue.open(), queue.forgotten(), queue.dropped())
        };
        metrics::counter!(FORGOTTEN).absolute(forgotten);
        for (reason, count) in dropped {
            metrics::counter!(REPORTS_DROPPED, "reason" => reason).absolute(count);
        }
        let age = oldest.map_or(0, |at| offpath_protocol::now_ms().saturating_sub(at));
        let (senders, senders_forgotten) = {
            let senders = state.senders();
            (senders.len(), senders.forgotten())
        };
        metrics::gauge!(SENDERS).set(senders as f64);
        metrics::counter!(SENDERS_FORGOTTEN).absolute(senders_forgotten);
        metrics::gauge!(QUEUE_DEPTH).set(open as f64);
        metrics::gauge!(OLDEST_SECONDS).set(age as f64 / 1000.0);
    }
}
