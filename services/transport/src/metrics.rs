//! Metric names, declared once, with the label values the code can produce and their
//! descriptions (`promtool check metrics` needs one for every metric). [`register`] puts
//! every series on `/metrics` at start (counters at 0, histograms without a sample): the
//! exporter renders a series only once it is touched, and `increase()` over a series that
//! appears with its first event misses that event.

use offpath_ops::{Prometheus, Series, Spec};

use crate::auth::{self, AuthError};
use crate::frames::Close;
use crate::frames::ErrorCode;

/// The transport's recorder: buckets set here, in one place (`offpath_build_info` and the
/// `process_*` figures are added by `offpath-ops`).
pub(crate) static PROMETHEUS: Prometheus = Prometheus::new(Spec {
    // Fan-out is microseconds, verdict lag is milliseconds to seconds: one wide ladder.
    seconds: &[
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ],
    buckets: &[],
    describe,
    register,
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("OFFPATH_COMMIT"),
});

/// Open websocket connections.
pub(crate) const CONNECTIONS: &str = "offpath_transport_connections";
/// Open TCP connections on the public port, from accept to close (websockets, requests
/// being read, handshakes).
pub(crate) const SOCKETS: &str = "offpath_transport_sockets";
/// Sockets closed by the gateway before they became a websocket, by `reason` (one of
/// [`SOCKET_REASONS`]).
pub(crate) const SOCKETS_CLOSED: &str = "offpath_transport_sockets_closed_total";
/// Every `reason` of [`SOCKETS_CLOSED`]: past `--max-sockets` or the address's share
/// (twice `--max-connections-per-ip`), headers not read within
/// `--header-timeout-ms`, no upgrade within `--handshake-timeout-ms`.
pub(crate) const SOCKET_REASONS: &[&str] = &[
    "max_sockets",
    "max_sockets_per_ip",
    "header_timeout",
    "handshake_timeout",
];
/// Failed `accept` calls on the public port (e.g. out of file descriptors).
pub(crate) const ACCEPT_ERRORS: &str = "offpath_transport_accept_errors_total";
/// Client frames refused for the per-connection frame rate (`--frame-rate-per-second`).
pub(crate) const FRAMES_LIMITED: &str = "offpath_transport_frames_limited_total";
/// Connections refused or closed by the gateway, by `reason` (one of
/// [`DISCONNECT_REASONS`]).
pub(crate) const DISCONNECTS: &str = "offpath_transport_disconnects_total";
/// Upgrade requests (and the page's `POST /ws/check`, which asks what the upgrade would
/// answer) refused for their credentials, by `reason` (every [`AuthError::REASONS`]); each
/// is also a `disconnects_total{reason="unauthenticated"}`.
pub(crate) const AUTH_REFUSALS: &str = "offpath_transport_auth_refusals_total";
/// 1 for the authenticator this gateway runs, by `authenticator` (`token` or
/// `insecure_dev`), 0 for the other.
pub(crate) const IDENTITY_INFO: &str = "offpath_transport_identity_info";
/// Why a message was not kept for reports (the `reason` of [`REPORT_WINDOW_FULL`]): the
/// window's total budget, or its sender's share.
pub(crate) const NOT_KEPT_REASONS: [&str; 2] = ["budget", "sender"];
/// Why a report was refused (the `reason` of [`REPORTS_REFUSED`]).
pub(crate) const REPORT_REFUSALS: [&str; 3] = ["reporter_quota", "gateway_quota", "reporters_full"];
/// Every `reason` of [`DISCONNECTS`]. A client's own close ([`Close::GONE`]) is not counted.
pub(crate) const DISCONNECT_REASONS: &[&str] = &[
    "unauthenticated",
    "origin",
    auth::TOKEN_EXPIRED.reason,
    Close::FULL.reason,
    Close::SLOW.reason,
    Close::SHUTDOWN.reason,
    Close::PER_IP.reason,
    Close::PER_USER.reason,
    Close::IDLE.reason,
    Close::FLOOD.reason,
];
/// Messages accepted from clients.
pub(crate) const MESSAGES: &str = "offpath_transport_messages_total";
/// Frames refused with an error frame, by `code` (every [`ErrorCode`]).
pub(crate) const FRAME_ERRORS: &str = "offpath_transport_frame_errors_total";
/// From a `send` frame read to its message queued to every member of the room.
pub(crate) const FANOUT_SECONDS: &str = "offpath_transport_fanout_seconds";
/// Moderation requests waiting in the outbox or awaiting JetStream's acknowledgement.
pub(crate) const OUTBOX_DEPTH: &str = "offpath_transport_outbox_depth";
/// Moderation requests shed, by `reason` (one of [`SHED_REASONS`]).
pub(crate) const OUTBOX_SHED: &str = "offpath_transport_outbox_shed_total";
/// Every `reason` of [`OUTBOX_SHED`]: the outbox was full, or closed by shutdown.
pub(crate) const SHED_REASONS: &[&str] = &["full", "shutdown"];
/// Moderation requests stored in the MODERATION stream.
pub(crate) const OUTBOX_PUBLISHED: &str = "offpath_transport_outbox_published_total";
/// Verdicts applied, by `action` (one of [`ACTIONS`]).
pub(crate) const VERDICTS: &str = "offpath_transport_verdicts_total";
/// Every `action` of [`VERDICTS`] (`offpath_protocol::Action::as_str`).
pub(crate) const ACTIONS: &[&str] = &["allow", "flag", "block", "unmoderated"];
/// Verdicts received but not applied, by `reason` (one of [`IGNORED_REASONS`]).
pub(crate) const VERDICTS_IGNORED: &str = "offpath_transport_verdicts_ignored_total";
/// Every `reason` of [`VERDICTS_IGNORED`].
pub(crate) const IGNORED_REASONS: &[&str] = &[
    "duplicate",
    "malformed",
    "other_tenant",
    "not_ours",
    "restore_without_text",
    "restore_untracked",
];
/// Human verdicts (a reviewer's decision) applied, by `decision` (`remove`, `restore`).
pub(crate) const HUMAN_VERDICTS: &str = "offpath_transport_human_verdicts_total";
/// Members' reports queued for the reviewers, by `source` of the reported text (one of
/// [`REPORT_SOURCES`]); refused reports are `frame_errors_total` with their code.
pub(crate) const REPORTS: &str = "offpath_transport_reports_total";
/// Every `source` of [`REPORTS`] ([`offpath_protocol::TextSource`]).
pub(crate) const REPORT_SOURCES: &[&str] = &["gateway", "franked", "reporter", "mismatch"];
/// Members' reports refused before they were queued, by `reason`: the reporter's quota
/// (`--reports-per-minute`), the gateway's (`--gateway-reports-per-minute`), or too many
/// reporters draining theirs at once.
pub(crate) const REPORTS_REFUSED: &str = "offpath_transport_reports_refused_total";
/// Messages not kept for members' reports and review context, by `reason`: the gateway's
/// budget for them (256 MiB) is spent (`budget`), or their sender's share of it (1 MiB,
/// `sender`).
pub(crate) const REPORT_WINDOW_FULL: &str = "offpath_transport_report_window_full_total";
/// Messages of end-to-end-encrypted (`e2e`) rooms relayed, never sent for moderation.
pub(crate) const E2E_MESSAGES: &str = "offpath_transport_e2e_messages_total";
/// From a message's acceptance to its verdict applied.
pub(crate) const VERDICT_LAG_SECONDS: &str = "offpath_transport_verdict_lag_seconds";
/// Clients disconnected because their send queue was full.
pub(crate) const SLOW_CLIENTS: &str = "offpath_transport_slow_clients_total";
/// Messages in `hold` rooms waiting for a verdict.
pub(crate) const HELD: &str = "offpath_transport_held_messages";
/// Held messages settled, by `outcome` (one of [`HOLD_OUTCOMES`]).
pub(crate) const HOLD_SETTLED: &str = "offpath_transport_hold_settled_total";
/// Every `outcome` of [`HOLD_SETTLED`]: by the verdict's action, by the hold deadline, or
/// without a verdict (shed, classify failed) — delivered or dropped by the room's policy.
pub(crate) const HOLD_OUTCOMES: &[&str] = &[
    "allowed",
    "flagged",
    "blocked",
    "removed",
    "restored",
    "deadline_delivered",
    "deadline_dropped",
    "unmoderated_delivered",
    "unmoderated_dropped",
];
/// Unmoderated messages retracted by a fail-closed room.
pub(crate) const FAIL_CLOSED_RETRACTS: &str = "offpath_transport_fail_closed_retracts_total";
/// Errors talking to NATS, by `operation` (one of [`NATS_OPERATIONS`]).
pub(crate) const NATS_ERRORS: &str = "offpath_transport_nats_errors_total";
/// Every `operation` of [`NATS_ERRORS`].
pub(crate) const NATS_OPERATIONS: &[&str] =
    &["classify", "publish", "verdicts", "ack", "ack_queue_full"];
/// 1 while the verdict consumer is bound and pulling, else 0.
pub(crate) const VERDICTS_BOUND: &str = "offpath_transport_verdict_consumer_bound";
/// Times this gateway found its verdict consumer already pulled by another process (two
/// gateways with the same `--instance` split the verdicts between them).
pub(crate) const VERDICTS_SHARED: &str = "offpath_transport_verdict_consumer_shared_total";
/// Settings of existing streams that differ from this process's (left as they are), by
/// `setting` (one of [`DRIFT_SETTINGS`]).
pub(crate) const TOPOLOGY_DRIFT: &str = "offpath_transport_topology_drift_total";
/// Every `setting` of [`TOPOLOGY_DRIFT`].
pub(crate) use offpath_protocol::topology::DRIFT_SETTINGS;
/// Unix time of the last verdict applied from the `VERDICTS` consumer; 0 until the first.
pub(crate) const LAST_VERDICT: &str = "offpath_transport_last_verdict_timestamp_seconds";
/// Verdicts refused because they are not bound to the message they name (a forgery, or a
/// verdict for another text under the same id), by `reason` (one of [`REFUSED_REASONS`]).
pub(crate) const VERDICTS_REFUSED: &str = "offpath_transport_verdicts_refused_total";
/// Every `reason` of [`VERDICTS_REFUSED`]: the verdict's `text_sha256` is not the digest of
/// the text this gateway sent, or it has none.
pub(crate) const REFUSED_REASONS: &[&str] = &["digest_mismatch", "missing_digest"];

/// Registers the description of every metric with the installed recorder.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open websocket connections");
    describe_gauge!(SOCKETS, "Open TCP connections on the public port");
    describe_counter!(
        SOCKETS_CLOSED,
        "Sockets closed by the gateway before a websocket upgrade, by reason"
    );
    describe_counter!(ACCEPT_ERRORS, "Failed accepts on the public port");
    describe_counter!(
        FRAMES_LIMITED,
        "Client frames refused for the per-connection frame rate"
    );
    describe_counter!(
        DISCONNECTS,
        "Connections refused or closed by the gateway, by reason"
    );
    describe_counter!(
        AUTH_REFUSALS,
        "Upgrade requests and page checks refused for their credentials, by reason"
    );
    describe_gauge!(
        IDENTITY_INFO,
        "1 for the client authenticator this gateway runs (token or insecure_dev)"
    );
    describe_counter!(MESSAGES, "Messages accepted from clients");
    describe_counter!(
        FRAME_ERRORS,
        "Client frames refused with an error frame, by code"
    );
    describe_histogram!(
        FANOUT_SECONDS,
        Unit::Seconds,
        "Send frame read to message queued to every room member"
    );
    describe_gauge!(
        OUTBOX_DEPTH,
        "Moderation requests not yet stored in JetStream"
    );
    describe_counter!(OUTBOX_SHED, "Moderation requests shed, by reason");
    describe_counter!(OUTBOX_PUBLISHED, "Moderation requests stored in JetStream");
    describe_counter!(VERDICTS, "Verdicts applied, by action");
    describe_counter!(
        VERDICTS_IGNORED,
        "Verdicts received and not applied, by reason"
    );
    describe_histogram!(
        VERDICT_LAG_SECONDS,
        Unit::Seconds,
        "Message accepted to its verdict applied"
    );
    describe_counter!(SLOW_CLIENTS, "Clients disconnected for a full send queue");
    describe_verdicts();
}

/// The descriptions of the verdict side's metrics: holds, NATS, the consumer.
fn describe_verdicts() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(HELD, "Messages in hold rooms waiting for a verdict");
    describe_counter!(HOLD_SETTLED, "Held messages settled, by outcome");
    describe_counter!(
        HUMAN_VERDICTS,
        "Human verdicts (a reviewer's remove or restore) applied, by decision"
    );
    describe_counter!(
        REPORTS,
        "Members' reports queued for review, by source of the reported text"
    );
    describe_counter!(
        REPORTS_REFUSED,
        "Members' reports refused by the reporter's or the gateway's quota"
    );
    describe_counter!(
        REPORT_WINDOW_FULL,
        "Messages not kept for reports and review context: the budget or the sender's share is spent"
    );
    describe_counter!(
        E2E_MESSAGES,
        "Messages of end-to-end-encrypted rooms relayed without moderation"
    );
    describe_counter!(
        FAIL_CLOSED_RETRACTS,
        "Unmoderated messages retracted by fail-closed rooms"
    );
    describe_counter!(NATS_ERRORS, "Errors talking to NATS, by operation");
    describe_gauge!(
        VERDICTS_BOUND,
        "1 while the verdict consumer is bound and pulling"
    );
    describe_counter!(
        VERDICTS_SHARED,
        "Binds that found the verdict consumer pulled by another process"
    );
    describe_counter!(
        TOPOLOGY_DRIFT,
        "Settings of existing streams that differ from this process's, left alone"
    );
    describe_gauge!(
        LAST_VERDICT,
        Unit::Seconds,
        "Unix time of the last verdict applied from VERDICTS (0 until the first)"
    );
    describe_counter!(
        VERDICTS_REFUSED,
        "Verdicts refused as not bound to the text sent (forged or for another text), by reason"
    );
}

/// Puts every series on `/metrics` now, at 0 (counters with each label value the code can
/// produce), so that the first event is an increase rather than a new series.
pub(crate) fn register() {
    let codes = ErrorCode::ALL.map(ErrorCode::as_str);
    Series {
        counters: &[
            MESSAGES,
            OUTBOX_PUBLISHED,
            SLOW_CLIENTS,
            FAIL_CLOSED_RETRACTS,
            VERDICTS_SHARED,
            ACCEPT_ERRORS,
            FRAMES_LIMITED,
            E2E_MESSAGES,
        ],
        labelled: &[
            (DISCONNECTS, "reason", DISCONNECT_REASONS),
            (SOCKETS_CLOSED, "reason", SOCKET_REASONS),
            (AUTH_REFUSALS, "reason", AuthError::REASONS),
            (FRAME_ERRORS, "code", &codes),
            (OUTBOX_SHED, "reason", SHED_REASONS),
            (VERDICTS, "action", ACTIONS),
            (VERDICTS_IGNORED, "reason", IGNORED_REASONS),
            (HOLD_SETTLED, "outcome", HOLD_OUTCOMES),
            (HUMAN_VERDICTS, "decision", &["remove", "restore"]),
            (REPORTS, "source", REPORT_SOURCES),
            (REPORT_WINDOW_FULL, "reason", &NOT_KEPT_REASONS),
            (REPORTS_REFUSED, "reason", &REPORT_REFUSALS),
            (NATS_ERRORS, "operation", NATS_OPERATIONS),
            (TOPOLOGY_DRIFT, "setting", DRIFT_SETTINGS),
            (VERDICTS_REFUSED, "reason", REFUSED_REASONS),
        ],
        gauges: &[
            CONNECTIONS,
            SOCKETS,
            OUTBOX_DEPTH,
            HELD,
            VERDICTS_BOUND,
            LAST_VERDICT,
        ],
        histograms: &[FANOUT_SECONDS, VERDICT_LAG_SECONDS],
    }
    .register();
}

#[cfg(test)]
mod tests {
    use offpath_protocol::Action;

    use super::ACTIONS;

    /// Every verdict action is registered up front.
    #[test]
    fn actions_cover_every_action() {
        for action in [
            Action::Allow,
            Action::Flag,
            Action::Block,
            Action::Unmoderated,
        ] {
            assert!(ACTIONS.contains(&action.as_str()), "{action:?}");
        }
    }
}
