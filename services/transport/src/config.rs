//! The transport's settings: one struct, flags with `OFFPATH_…` environment fallbacks.

mod room_policy;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub(crate) use room_policy::PolicyCache;
pub use room_policy::{Failure, ModerationRule, RoomPolicy, RoomRule};

/// The transport's settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Tenant this gateway serves: the `<tenant>` token of the subjects it publishes and
    /// subscribes to.
    #[arg(long, env = "OFFPATH_TENANT", default_value = defaults::TENANT)]
    pub tenant: String,
    /// Name of this gateway instance: prefixes the message ids it assigns and names its
    /// durable verdict consumer (`transport-<tenant>-<instance>`). Every process needs its own: two
    /// gateways with one name split the verdicts between them. The default is new at every
    /// start (`<host>-<pid>-<random>`); set a stable name per process (e.g. the pod name)
    /// so a restarted gateway resumes its consumer and catches up on verdicts.
    /// (Empty here means that default, chosen when the gateway starts.)
    #[arg(
        long,
        env = "OFFPATH_INSTANCE",
        default_value = "",
        hide_default_value = true
    )]
    pub instance: String,
    /// Trust `?user=<name>` as the user's identity: anyone can connect as anyone. For local
    /// development only (`offpath up` sets it unless given token keys); logged as a warning
    /// at start. Without it the gateway needs token keys.
    #[arg(long, env = "OFFPATH_INSECURE_DEV_IDENTITY")]
    pub insecure_dev_identity: bool,
    /// Allow `--insecure-dev-identity` on a listener that is not a loopback address (the
    /// gateway refuses to start otherwise): everyone who can reach the port can then be
    /// anyone. For a throwaway network you control, never a shared one.
    #[arg(long, env = "OFFPATH_INSECURE_DEV_IDENTITY_ON_NETWORK")]
    pub insecure_dev_identity_on_network: bool,
    /// Files each holding an HS256 secret that verifies client tokens (at least 32 bytes;
    /// trailing whitespace ignored); comma-separated, several at once while rotating. The
    /// secret may also come in the `OFFPATH_TOKEN_HS256_SECRET` variable (never a flag:
    /// `ps` shows flags).
    #[arg(long, env = "OFFPATH_TOKEN_HS256_FILE", value_delimiter = ',')]
    pub token_hs256_file: Vec<PathBuf>,
    /// PEM files each holding a public key that verifies client tokens: Ed25519 (EdDSA) or
    /// RSA (RS256); comma-separated, several at once while rotating.
    #[arg(long, env = "OFFPATH_TOKEN_PUBLIC_KEY_FILE", value_delimiter = ',')]
    pub token_public_key_file: Vec<PathBuf>,
    /// The `iss` a client token must carry; unchecked when unset.
    #[arg(long, env = "OFFPATH_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,
    /// The `aud` a client token must carry (one of its values). Required with
    /// `--token-public-key-file` (an identity provider's key signs tokens for other apps
    /// too); optional with HS256 secrets, which should then be dedicated to this gateway.
    #[arg(long, env = "OFFPATH_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
    /// Longest a session may stay open, in seconds, whatever its token's `exp` says: the
    /// connection is closed at the earlier of the two. Unset: the token's `exp` alone.
    #[arg(long, env = "OFFPATH_TOKEN_MAX_LIFETIME_SECS")]
    pub token_max_lifetime_secs: Option<u64>,
    /// Clock skew allowed when checking a token's `exp` and `nbf`, in seconds; a connection
    /// is closed this long after its token's `exp`.
    #[arg(long, env = "OFFPATH_TOKEN_LEEWAY_SECS", default_value_t = defaults::TOKEN_LEEWAY_SECS)]
    pub token_leeway_secs: u64,
    /// Web pages allowed to open a socket, as browsers send them in `Origin`
    /// (`https://chat.example.com`), comma-separated. Empty: only pages of the host the
    /// request came to (same-origin). Requests without `Origin` (not from a browser page)
    /// are not affected.
    #[arg(long, env = "OFFPATH_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Host names (no port) this gateway is reached by, comma-separated: with an empty
    /// `--allowed-origins`, a page is same-origin only when the request's `Host` is one of
    /// these or a loopback name (`localhost`, `127.x`, `[::1]`), so a DNS-rebinding page
    /// (`rebind.evil` resolving to this gateway) is refused.
    #[arg(long, env = "OFFPATH_PUBLIC_HOSTS", value_delimiter = ',')]
    pub public_hosts: Vec<String>,
    /// Longest message text accepted, in bytes.
    #[arg(long, env = "OFFPATH_MAX_TEXT_BYTES", default_value_t = defaults::MAX_TEXT_BYTES)]
    pub max_text_bytes: usize,
    /// Largest websocket message read at all, in bytes; a larger one closes the connection
    /// with code 1009. Larger than `max_text_bytes` so an oversized text gets an error frame.
    #[arg(long, env = "OFFPATH_MAX_FRAME_BYTES", default_value_t = defaults::MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// Messages per second one connection may send (token bucket refill rate).
    #[arg(long, env = "OFFPATH_RATE_PER_SECOND", default_value_t = defaults::RATE_PER_SECOND)]
    pub rate_per_second: f64,
    /// Burst of messages one connection may send at once (token bucket size).
    #[arg(long, env = "OFFPATH_RATE_BURST", default_value_t = defaults::RATE_BURST)]
    pub rate_burst: f64,
    /// A `send` takes one token of `--rate-per-second` per this many bytes of its text (at
    /// least one; 0: one token whatever the length). A text's inference work grows with its
    /// length (a 4 KiB text of two-letter words reads as ~98 windows, a chat line as one), so
    /// a sender at the allowed rate costs the moderators about what a sender of one-line
    /// messages at that rate does, whatever it sends (`offpath bench cost`). The bucket may
    /// go into debt by one long text: it is sent at once, the next waits for the refill.
    #[arg(long, env = "OFFPATH_SEND_COST_BYTES", default_value_t = defaults::SEND_COST_BYTES)]
    pub send_cost_bytes: usize,
    /// Rooms one connection may be in at once.
    #[arg(long, env = "OFFPATH_MAX_ROOMS_PER_CONNECTION", default_value_t = defaults::MAX_ROOMS_PER_CONNECTION)]
    pub max_rooms_per_connection: usize,
    /// Open websocket connections this gateway accepts; one more gets an error frame and
    /// close code 1013 (try again later).
    #[arg(long, env = "OFFPATH_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Open TCP connections on the public port, counted from accept to close (half-sent
    /// requests and websockets alike); past it a new socket is closed at once (counted as
    /// `max_sockets`). Keep it below the process's file-descriptor limit (`ulimit -n`)
    /// minus what NATS and the operator port need.
    #[arg(long, env = "OFFPATH_MAX_SOCKETS", default_value_t = defaults::MAX_SOCKETS)]
    pub max_sockets: usize,
    /// Open websocket connections one client address may hold; one more gets an error frame
    /// and close code 1013. Without `--client-ip-header`, an address may also hold at most
    /// twice this many TCP sockets (websockets and handshakes); more are closed at once.
    #[arg(long, env = "OFFPATH_MAX_CONNECTIONS_PER_IP", default_value_t = defaults::MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Open websocket connections one user may hold; one more gets an error frame and
    /// close code 1013.
    #[arg(long, env = "OFFPATH_MAX_CONNECTIONS_PER_USER", default_value_t = defaults::MAX_CONNECTIONS_PER_USER)]
    pub max_connections_per_user: usize,
    /// Header that carries the client's address when a proxy is in front (e.g.
    /// `X-Forwarded-For`; its last address, the one the proxy added, is used). Set it only
    /// behind a proxy that sets it: otherwise any client can claim any address. Unset: the
    /// socket's peer address.
    #[arg(long, env = "OFFPATH_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// Time a client has to send a request's headers; a slower one is disconnected
    /// (counted as `header_timeout`).
    #[arg(long, env = "OFFPATH_HEADER_TIMEOUT_MS", default_value_t = defaults::HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: u64,
    /// Time from accept to a websocket upgrade (or the end of plain HTTP requests on one
    /// connection); past it the connection is closed (counted as `handshake_timeout`).
    #[arg(long, env = "OFFPATH_HANDSHAKE_TIMEOUT_MS", default_value_t = defaults::HANDSHAKE_TIMEOUT_MS)]
    pub handshake_timeout_ms: u64,
    /// Interval between the gateway's websocket pings.
    #[arg(long, env = "OFFPATH_PING_INTERVAL_MS", default_value_t = defaults::PING_INTERVAL_MS)]
    pub ping_interval_ms: u64,
    /// A websocket that sends no frame at all (pongs included) for this long is closed
    /// (1001 `idle_timeout`). Longer than `--ping-interval-ms`, so a live client's pongs
    /// keep it open.
    #[arg(long, env = "OFFPATH_IDLE_TIMEOUT_MS", default_value_t = defaults::IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,
    /// Frames of any kind (join, leave, send, invalid, binary, ping, pong) one connection
    /// may send per second (token bucket refill rate; never below `--rate-per-second`);
    /// `send` frames also take a token of `--rate-per-second`.
    #[arg(long, env = "OFFPATH_FRAME_RATE_PER_SECOND", default_value_t = defaults::FRAME_RATE_PER_SECOND)]
    pub frame_rate_per_second: f64,
    /// Burst of frames one connection may send at once (token bucket size; never below
    /// `--rate-burst`).
    #[arg(long, env = "OFFPATH_FRAME_BURST", default_value_t = defaults::FRAME_BURST)]
    pub frame_burst: f64,
    /// Frames refused in a row for the frame rate after which the connection is closed
    /// (1008 `flood`). Only the first of a run gets an error frame.
    #[arg(long, env = "OFFPATH_FLOOD_CLOSE_AFTER", default_value_t = defaults::FLOOD_CLOSE_AFTER)]
    pub flood_close_after: u32,
    /// Frames queued for one connection; a client that falls this far behind is
    /// disconnected (close code 1008) instead of slowing its rooms down.
    #[arg(long, env = "OFFPATH_SEND_QUEUE", default_value_t = defaults::SEND_QUEUE)]
    pub send_queue: usize,
    /// Moderation requests held while NATS is slow or down; past it requests are shed
    /// (counted) and the room's failure policy applies.
    #[arg(long, env = "OFFPATH_OUTBOX_CAPACITY", default_value_t = defaults::OUTBOX_CAPACITY)]
    pub outbox_capacity: usize,
    /// JetStream publishes awaiting their acknowledgement at once (pipelining).
    #[arg(long, env = "OFFPATH_OUTBOX_IN_FLIGHT", default_value_t = defaults::OUTBOX_IN_FLIGHT)]
    pub outbox_in_flight: usize,
    /// How long shutdown spends flushing the outbox to NATS.
    #[arg(long, env = "OFFPATH_FLUSH_GRACE_MS", default_value_t = defaults::FLUSH_GRACE_MS)]
    pub flush_grace_ms: u64,
    /// How long a message in a `hold` room waits for its verdict before the room's failure
    /// policy decides. Only a `hold:fail_closed` room's request carries it to the moderator
    /// as `deadline_ms` (past it the message was dropped, so a verdict is of no use); every
    /// other message stays visible and is classified however late the moderator is.
    #[arg(long, env = "OFFPATH_HOLD_DEADLINE_MS", default_value_t = defaults::HOLD_DEADLINE_MS)]
    pub hold_deadline_ms: u64,
    /// How long a delivered message is remembered for its verdict (retraction needs it).
    #[arg(long, env = "OFFPATH_TRACK_FOR_MS", default_value_t = defaults::TRACK_FOR_MS)]
    pub track_for_ms: u64,
    /// Most messages remembered for their verdicts; the oldest are forgotten first.
    #[arg(long, env = "OFFPATH_MAX_TRACKED", default_value_t = defaults::MAX_TRACKED)]
    pub max_tracked: usize,
    /// How many of each room's latest delivered messages members can report (the gateway
    /// keeps them, at most 64 KiB of text per room, while the room has members here).
    #[arg(long, env = "OFFPATH_REPORT_WINDOW", default_value_t = defaults::REPORT_WINDOW)]
    pub report_window: usize,
    /// How many messages shown before a message go with its moderation request, as context
    /// for a reviewer should it reach the review queue (0: none; at most 10).
    #[arg(long, env = "OFFPATH_REVIEW_CONTEXT", default_value_t = defaults::REVIEW_CONTEXT,
        value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u8).range(0..=10), usize::from))]
    pub review_context: usize,
    /// Reports one member may queue per minute, all their connections to this gateway
    /// together (a token bucket; past it `rate_limited`): what one account can put in
    /// front of the reviewers.
    #[arg(long, env = "OFFPATH_REPORTS_PER_MINUTE", default_value_t = defaults::REPORTS_PER_MINUTE)]
    pub reports_per_minute: f64,
    /// Reports one member may queue at once before `--reports-per-minute` applies.
    #[arg(long, env = "OFFPATH_REPORT_BURST", default_value_t = defaults::REPORT_BURST)]
    pub report_burst: f64,
    /// Reports this gateway queues per minute from all members together (its tenant's
    /// share of the review queue, per gateway).
    #[arg(long, env = "OFFPATH_GATEWAY_REPORTS_PER_MINUTE", default_value_t = defaults::GATEWAY_REPORTS_PER_MINUTE)]
    pub gateway_reports_per_minute: f64,
    /// Reports this gateway queues at once before `--gateway-reports-per-minute` applies.
    #[arg(long, env = "OFFPATH_GATEWAY_REPORT_BURST", default_value_t = defaults::GATEWAY_REPORT_BURST)]
    pub gateway_report_burst: f64,
    /// How messages are moderated: `decoupled` (offpath: deliver now, verdicts later),
    /// `inline` (the coupled baseline of the load scenarios: each send awaits the
    /// moderator's `offpath.classify` before fan-out) or `off` (no moderation: the floor).
    #[arg(long, env = "OFFPATH_MODERATION", value_enum, default_value_t = defaults::MODERATION)]
    pub moderation: Moderation,
    /// `--moderation inline` only: how long a send waits for its verdict before it is
    /// delivered unmoderated (fail-open).
    #[arg(long, env = "OFFPATH_INLINE_TIMEOUT_MS", default_value_t = defaults::INLINE_TIMEOUT_MS)]
    pub inline_timeout_ms: u64,
    /// Policy of rooms not named in `--room-policy`.
    #[arg(
        long,
        env = "OFFPATH_DEFAULT_ROOM_POLICY",
        default_value_t = defaults::ROOM_POLICY
    )]
    pub default_room_policy: RoomPolicy,
    /// Per-room policies, `room=mode:failure`, comma-separated, e.g.
    /// `kids=hold:fail_closed,lobby=post:fail_open,dm-*=e2e`. A name ending in `*` is a
    /// prefix. Modes: `post`, `hold`, `e2e` (end-to-end encrypted: never moderated, only
    /// reported).
    #[arg(long, env = "OFFPATH_ROOM_POLICY", value_delimiter = ',')]
    pub room_policy: Vec<RoomRule>,
    /// The moderation policy each room's requests name, `room=policy`, comma-separated (a
    /// name in the moderators' policy file; a room ending in `*` is a prefix), e.g.
    /// `kids*=strict`. Rooms without a rule name none: the moderators' policy file then
    /// chooses by tenant and room.
    #[arg(long, env = "OFFPATH_MODERATION_POLICY", value_delimiter = ',')]
    pub moderation_policy: Vec<ModerationRule>,
    /// Settings of the JetStream topology, used only to re-create what is missing (what
    /// exists is never changed: `offpath topology` owns it). Set by the launcher.
    #[arg(skip)]
    pub topology: offpath_protocol::topology::TopologyConfig,
}

/// The defaults: clap's `default_value_t` and [`Config::default`] both read these.
pub(crate) mod defaults;

impl Default for Config {
    /// The documented defaults (the instance name is chosen at start). Reads neither the
    /// command line nor the environment.
    fn default() -> Self {
        Self {
            tenant: defaults::TENANT.to_string(),
            instance: String::new(),
            insecure_dev_identity: false,
            insecure_dev_identity_on_network: false,
            token_hs256_file: Vec::new(),
            token_public_key_file: Vec::new(),
            token_issuer: None,
            token_audience: None,
            token_max_lifetime_secs: None,
            token_leeway_secs: defaults::TOKEN_LEEWAY_SECS,
            allowed_origins: Vec::new(),
            public_hosts: Vec::new(),
            max_text_bytes: defaults::MAX_TEXT_BYTES,
            max_frame_bytes: defaults::MAX_FRAME_BYTES,
            rate_per_second: defaults::RATE_PER_SECOND,
            rate_burst: defaults::RATE_BURST,
            send_cost_bytes: defaults::SEND_COST_BYTES,
            max_rooms_per_connection: defaults::MAX_ROOMS_PER_CONNECTION,
            max_connections: defaults::MAX_CONNECTIONS,
            max_sockets: defaults::MAX_SOCKETS,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            max_connections_per_user: defaults::MAX_CONNECTIONS_PER_USER,
            client_ip_header: None,
            header_timeout_ms: defaults::HEADER_TIMEOUT_MS,
            handshake_timeout_ms: defaults::HANDSHAKE_TIMEOUT_MS,
            ping_interval_ms: defaults::PING_INTERVAL_MS,
            idle_timeout_ms: defaults::IDLE_TIMEOUT_MS,
            frame_rate_per_second: defaults::FRAME_RATE_PER_SECOND,
            frame_burst: defaults::FRAME_BURST,
            flood_close_after: defaults::FLOOD_CLOSE_AFTER,
            send_queue: defaults::SEND_QUEUE,
            outbox_capacity: defaults::OUTBOX_CAPACITY,
            outbox_in_flight: defaults::OUTBOX_IN_FLIGHT,
            flush_grace_ms: defaults::FLUSH_GRACE_MS,
            hold_deadline_ms: defaults::HOLD_DEADLINE_MS,
            track_for_ms: defaults::TRACK_FOR_MS,
            max_tracked: defaults::MAX_TRACKED,
            report_window: defaults::REPORT_WINDOW,
            review_context: defaults::REVIEW_CONTEXT,
            reports_per_minute: defaults::REPORTS_PER_MINUTE,
            report_burst: defaults::REPORT_BURST,
            gateway_reports_per_minute: defaults::GATEWAY_REPORTS_PER_MINUTE,
            gateway_report_burst: defaults::GATEWAY_REPORT_BURST,
            moderation: defaults::MODERATION,
            inline_timeout_ms: defaults::INLINE_TIMEOUT_MS,
            default_room_policy: defaults::ROOM_POLICY,
            room_policy: Vec::new(),
            moderation_policy: Vec::new(),
            topology: offpath_protocol::topology::TopologyConfig::default(),
        }
    }
}

impl Config {
    /// The policy of `room`: the first matching rule, else the default.
    pub(crate) fn policy_of(&self, room: &str) -> RoomPolicy {
        self.room_policy
            .iter()
            .find(|rule| room_policy::matches(&rule.room, room))
            .map_or(self.default_room_policy, |rule| rule.policy)
    }

    /// The moderation policy `room`'s requests name: the first matching rule, else none
    /// (the moderators' policy file then chooses by tenant and room).
    pub(crate) fn moderation_policy_of(&self, room: &str) -> Option<&str> {
        self.moderation_policy
            .iter()
            .find(|rule| room_policy::matches(&rule.room, room))
            .map(|rule| rule.policy.as_str())
    }

    /// Problems that make the configuration unusable (the launcher exits with status 64).
    pub fn validate(&self) -> Result<(), String> {
        use offpath_protocol::subject::is_valid_token;
        let mut problems = Vec::new();
        if !is_valid_token(&self.tenant) {
            problems.push(format!(
                "--tenant {:?} is not a valid subject token",
                self.tenant
            ));
        }
        if !self.instance.is_empty()
            && (!is_valid_token(&self.instance) || self.instance.len() > 32)
        {
            problems.push(format!(
                "--instance {:?} must be 1-32 bytes of A-Z a-z 0-9 _ : @ = + ~ -",
                self.instance
            ));
        }
        crate::auth::validate_settings(self, &mut problems);
        if !(self.rate_per_second > 0.0 && self.rate_burst >= 1.0) {
            problems.push("--rate-per-second must be > 0 and --rate-burst >= 1".into());
        }
        if !(self.reports_per_minute > 0.0 && self.report_burst >= 1.0) {
            problems.push("--reports-per-minute must be > 0 and --report-burst >= 1".into());
        }
        if !(self.gateway_reports_per_minute > 0.0 && self.gateway_report_burst >= 1.0) {
            problems.push(
                "--gateway-reports-per-minute must be > 0 and --gateway-report-burst >= 1".into(),
            );
        }
        if self.max_frame_bytes < self.max_text_bytes + 1024 {
            problems.push("--max-frame-bytes must exceed --max-text-bytes by 1 KiB".into());
        }
        for (name, value) in [
            ("--send-queue", self.send_queue),
            ("--outbox-capacity", self.outbox_capacity),
            ("--outbox-in-flight", self.outbox_in_flight),
            ("--max-connections", self.max_connections),
            ("--max-rooms-per-connection", self.max_rooms_per_connection),
            ("--max-tracked", self.max_tracked),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        self.validate_client_limits(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The limits on what one client may hold or send (sockets, timeouts, frame rate).
    fn validate_client_limits(&self, problems: &mut Vec<String>) {
        for (name, value) in [
            ("--max-sockets", self.max_sockets),
            ("--max-connections-per-ip", self.max_connections_per_ip),
            ("--max-connections-per-user", self.max_connections_per_user),
            ("--header-timeout-ms", self.header_timeout_ms as usize),
            ("--ping-interval-ms", self.ping_interval_ms as usize),
            ("--flood-close-after", self.flood_close_after as usize),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if self.handshake_timeout_ms < self.header_timeout_ms {
            problems.push("--handshake-timeout-ms must be at least --header-timeout-ms".into());
        }
        if self.idle_timeout_ms <= self.ping_interval_ms {
            problems.push("--idle-timeout-ms must exceed --ping-interval-ms".into());
        }
        if !(self.frame_rate_per_second > 0.0 && self.frame_burst >= 1.0) {
            problems.push("--frame-rate-per-second must be > 0 and --frame-burst >= 1".into());
        }
        if let Some(header) = &self.client_ip_header
            && axum::http::HeaderName::try_from(header.as_str()).is_err()
        {
            problems.push(format!(
                "--client-ip-header {header:?} is not a header name"
            ));
        }
    }

    pub(crate) fn hold_deadline(&self) -> Duration {
        Duration::from_millis(self.hold_deadline_ms)
    }
}

/// A name no other gateway has: host name (up to 16 bytes of token characters), process
/// id and 16 random bits (two gateways in one process, as in tests, differ too).
pub(crate) fn default_instance() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let mut host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(16)
        .collect();
    if host.is_empty() {
        host.push_str("gateway");
    }
    // RandomState is seeded from the OS's randomness per process and per instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    let random = hasher.finish() as u16;
    format!("{host}-{:x}-{random:04x}", std::process::id())
}

/// How the gateway moderates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Moderation {
    /// Deliver at once; requests go through the outbox; verdicts are applied when they come.
    Decoupled,
    /// Comparison mode, not for production: each send awaits a synchronous classify call
    /// before fan-out, as chat servers' spam-checker hooks do.
    Inline,
    /// No moderation at all.
    Off,
}

#[cfg(test)]
mod tests;
