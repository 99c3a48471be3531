//! Metric names, declared once, and their descriptions (`promtool check metrics` needs one
//! for every metric).

/// Open websocket connections.
pub const CONNECTIONS: &str = "offpath_transport_connections";
/// Connections refused or closed by the gateway, by `reason` (`max_connections`,
/// `slow_client`, `frame_too_large`, `shutdown`).
pub const DISCONNECTS: &str = "offpath_transport_disconnects_total";
/// Messages accepted from clients.
pub const MESSAGES: &str = "offpath_transport_messages_total";
/// Frames refused with an error frame, by `code`.
pub const FRAME_ERRORS: &str = "offpath_transport_frame_errors_total";
/// From a `send` frame read to its message queued to every member of the room.
pub const FANOUT_SECONDS: &str = "offpath_transport_fanout_seconds";
/// Moderation requests waiting in the outbox or awaiting JetStream's acknowledgement.
pub const OUTBOX_DEPTH: &str = "offpath_transport_outbox_depth";
/// Moderation requests shed, by `reason` (`full`, `shutdown`).
pub const OUTBOX_SHED: &str = "offpath_transport_outbox_shed_total";
/// Moderation requests stored in the MODERATION stream.
pub const OUTBOX_PUBLISHED: &str = "offpath_transport_outbox_published_total";
/// Verdicts applied, by `action`.
pub const VERDICTS: &str = "offpath_transport_verdicts_total";
/// Verdicts received but not applied, by `reason` (`duplicate`, `malformed`,
/// `other_tenant`).
pub const VERDICTS_IGNORED: &str = "offpath_transport_verdicts_ignored_total";
/// From a message's acceptance to its verdict applied.
pub const VERDICT_LAG_SECONDS: &str = "offpath_transport_verdict_lag_seconds";
/// Clients disconnected because their send queue was full.
pub const SLOW_CLIENTS: &str = "offpath_transport_slow_clients_total";
/// Messages in `hold` rooms waiting for a verdict.
pub const HELD: &str = "offpath_transport_held_messages";
/// Held messages settled, by `outcome` (`allowed`, `blocked`, `deadline_delivered`,
/// `deadline_dropped`, `shed_delivered`, `shed_dropped`).
pub const HOLD_SETTLED: &str = "offpath_transport_hold_settled_total";
/// Unmoderated messages retracted by a fail-closed room.
pub const FAIL_CLOSED_RETRACTS: &str = "offpath_transport_fail_closed_retracts_total";
/// Errors talking to NATS, by `operation`.
pub const NATS_ERRORS: &str = "offpath_transport_nats_errors_total";
/// 1 while the verdict consumer is bound and pulling, else 0.
pub const VERDICTS_BOUND: &str = "offpath_transport_verdict_consumer_bound";
/// Times this gateway found its verdict consumer already pulled by another process (two
/// gateways with the same `--instance` split the verdicts between them).
pub const VERDICTS_SHARED: &str = "offpath_transport_verdict_consumer_shared_total";
/// Settings of existing streams that differ from this process's (left as they are).
pub const TOPOLOGY_DRIFT: &str = "offpath_transport_topology_drift_total";

/// Registers the description of every metric with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open websocket connections");
    describe_counter!(
        DISCONNECTS,
        "Connections refused or closed by the gateway, by reason"
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
    describe_gauge!(HELD, "Messages in hold rooms waiting for a verdict");
    describe_counter!(HOLD_SETTLED, "Held messages settled, by outcome");
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
}
