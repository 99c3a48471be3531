//! What one client, one address, one user and the whole gateway may hold or send: sockets, connections, rates, timeouts and queues. Each limit refuses or closes with a counted reason; none waits on the moderators.

use super::defaults;
use clap::Args;
use offpath_ops::cli::Millis;

/// What one client, one address, one user and the whole gateway may hold or send: sockets, connections, rates, timeouts and queues. Each limit refuses or closes with a counted reason; none waits on the moderators.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
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
    #[arg(long = "header-timeout-ms", env = "OFFPATH_HEADER_TIMEOUT_MS", default_value_t = Millis::new(defaults::HEADER_TIMEOUT_MS))]
    pub header_timeout: Millis,
    /// Time from accept to a websocket upgrade (or the end of plain HTTP requests on one
    /// connection); past it the connection is closed (counted as `handshake_timeout`).
    #[arg(long = "handshake-timeout-ms", env = "OFFPATH_HANDSHAKE_TIMEOUT_MS", default_value_t = Millis::new(defaults::HANDSHAKE_TIMEOUT_MS))]
    pub handshake_timeout: Millis,
    /// Interval between the gateway's websocket pings.
    #[arg(long = "ping-interval-ms", env = "OFFPATH_PING_INTERVAL_MS", default_value_t = Millis::new(defaults::PING_INTERVAL_MS))]
    pub ping_interval: Millis,
    /// A websocket that sends no frame at all (pongs included) for this long is closed
    /// (1001 `idle_timeout`). Longer than `--ping-interval-ms`, so a live client's pongs
    /// keep it open.
    #[arg(long = "idle-timeout-ms", env = "OFFPATH_IDLE_TIMEOUT_MS", default_value_t = Millis::new(defaults::IDLE_TIMEOUT_MS))]
    pub idle_timeout: Millis,
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
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
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
            header_timeout: Millis::new(defaults::HEADER_TIMEOUT_MS),
            handshake_timeout: Millis::new(defaults::HANDSHAKE_TIMEOUT_MS),
            ping_interval: Millis::new(defaults::PING_INTERVAL_MS),
            idle_timeout: Millis::new(defaults::IDLE_TIMEOUT_MS),
            frame_rate_per_second: defaults::FRAME_RATE_PER_SECOND,
            frame_burst: defaults::FRAME_BURST,
            flood_close_after: defaults::FLOOD_CLOSE_AFTER,
            send_queue: defaults::SEND_QUEUE,
        }
    }
}

impl LimitsConfig {
    /// The limits on what one client may hold or send (sockets, timeouts, rates, queues).
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        for (name, value) in [
            ("--send-queue", self.send_queue),
            ("--max-connections", self.max_connections),
            ("--max-rooms-per-connection", self.max_rooms_per_connection),
            ("--max-sockets", self.max_sockets),
            ("--max-connections-per-ip", self.max_connections_per_ip),
            ("--max-connections-per-user", self.max_connections_per_user),
            ("--flood-close-after", self.flood_close_after as usize),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        for (name, value) in [
            ("--header-timeout-ms", self.header_timeout),
            ("--ping-interval-ms", self.ping_interval),
        ] {
            if value.is_zero() {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if self.handshake_timeout < self.header_timeout {
            problems.push("--handshake-timeout-ms must be at least --header-timeout-ms".into());
        }
        if self.idle_timeout <= self.ping_interval {
            problems.push("--idle-timeout-ms must exceed --ping-interval-ms".into());
        }
        if !(self.rate_per_second > 0.0 && self.rate_burst >= 1.0) {
            problems.push("--rate-per-second must be > 0 and --rate-burst >= 1".into());
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
}
