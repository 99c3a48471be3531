//! The defaults: clap's `default_value_t` and [`Config::default`] both read these, so a
//! test's configuration and an operator's are the same unless one says otherwise.

use super::{Failure, Moderation, RoomPolicy};

/// `--tenant`.
pub(crate) const TENANT: &str = "default";
/// `--token-leeway-secs`: enough for ordinary clock skew, short next to a token's life.
pub(crate) const TOKEN_LEEWAY_SECS: u64 = 30;
/// `--max-text-bytes`.
pub(crate) const MAX_TEXT_BYTES: usize = 4096;
/// `--max-frame-bytes`: room for the largest text escaped as JSON (a 4 KiB text of
/// quotes is 8 KiB on the wire) and small enough that thousands of half-sent frames do not
/// add up to gigabytes (2 MiB per connection did, in the outside probe: 300 sockets, +510 MiB).
pub(crate) const MAX_FRAME_BYTES: usize = 64 * 1024;
/// `--rate-per-second`.
pub(crate) const RATE_PER_SECOND: f64 = 10.0;
/// `--rate-burst`.
pub(crate) const RATE_BURST: f64 = 20.0;
/// `--send-cost-bytes`: a `send` takes one token of the send rate per this many bytes of
/// text (at least one).
pub(crate) const SEND_COST_BYTES: usize = 64;
/// `--max-rooms-per-connection`.
pub(crate) const MAX_ROOMS_PER_CONNECTION: usize = 32;
/// `--max-connections`.
pub(crate) const MAX_CONNECTIONS: usize = 10_000;
/// `--max-sockets`: the connections plus room for page loads and handshakes.
pub(crate) const MAX_SOCKETS: usize = 12_000;
/// `--max-connections-per-ip`: a household or office behind one NAT.
pub(crate) const MAX_CONNECTIONS_PER_IP: usize = 64;
/// `--max-connections-per-user`: a few devices and tabs.
pub(crate) const MAX_CONNECTIONS_PER_USER: usize = 16;
/// `--header-timeout-ms`.
pub(crate) const HEADER_TIMEOUT_MS: u64 = 10_000;
/// `--handshake-timeout-ms`.
pub(crate) const HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// `--ping-interval-ms`.
pub(crate) const PING_INTERVAL_MS: u64 = 20_000;
/// `--idle-timeout-ms`: three missed pings.
pub(crate) const IDLE_TIMEOUT_MS: u64 = 60_000;
/// `--frame-rate-per-second`.
pub(crate) const FRAME_RATE_PER_SECOND: f64 = 50.0;
/// `--frame-burst`.
pub(crate) const FRAME_BURST: f64 = 100.0;
/// `--flood-close-after`.
pub(crate) const FLOOD_CLOSE_AFTER: u32 = 100;
/// `--send-queue`.
pub(crate) const SEND_QUEUE: usize = 256;
/// `--outbox-capacity`.
pub(crate) const OUTBOX_CAPACITY: usize = 10_000;
/// `--outbox-in-flight`.
pub(crate) const OUTBOX_IN_FLIGHT: usize = 256;
/// `--flush-grace-ms`.
pub(crate) const FLUSH_GRACE_MS: u64 = 5_000;
/// `--hold-deadline-ms`.
pub(crate) const HOLD_DEADLINE_MS: u64 = 3_000;
/// `--track-for-ms`.
pub(crate) const TRACK_FOR_MS: u64 = 600_000;
/// `--max-tracked`.
pub(crate) const MAX_TRACKED: usize = 200_000;
/// `--moderation`.
pub(crate) const MODERATION: Moderation = Moderation::Decoupled;
/// `--inline-timeout-ms`.
pub(crate) const INLINE_TIMEOUT_MS: u64 = 2_000;
/// `--default-room-policy`: `post:fail_open`.
pub(crate) const ROOM_POLICY: RoomPolicy = RoomPolicy {
    hold: false,
    e2e: false,
    failure: Failure::Open,
};
/// `--report-window`.
pub(crate) const REPORT_WINDOW: usize = 100;
/// `--review-context`.
pub(crate) const REVIEW_CONTEXT: usize = 3;
/// `--reports-per-minute`: one reporter's reports, all its connections together.
pub(crate) const REPORTS_PER_MINUTE: f64 = 6.0;
/// `--report-burst`.
pub(crate) const REPORT_BURST: f64 = 10.0;
/// `--gateway-reports-per-minute`: every reporter of this gateway together.
pub(crate) const GATEWAY_REPORTS_PER_MINUTE: f64 = 600.0;
/// `--gateway-report-burst`.
pub(crate) const GATEWAY_REPORT_BURST: f64 = 100.0;
