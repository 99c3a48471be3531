//! The gateway's reasons to close a connection: a websocket close code and the reason sent
//! in the close frame (also the `reason` label of the disconnect metric). A leaf: peers,
//! the hub, caps and metrics all name them.

/// Why the gateway closes a connection: a websocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    /// Websocket close code.
    pub(crate) code: u16,
    /// Reason sent in the close frame, also the `reason` metric label.
    pub(crate) reason: &'static str,
}

impl Close {
    /// The client's send queue was full (close code 1008, policy violation).
    pub(crate) const SLOW: Close = Close {
        code: 1008,
        reason: "slow_client",
    };
    /// The gateway is shutting down (1001, going away).
    pub(crate) const SHUTDOWN: Close = Close {
        code: 1001,
        reason: "shutdown",
    };
    /// The connection limit was reached (1013, try again later).
    pub(crate) const FULL: Close = Close {
        code: 1013,
        reason: "max_connections",
    };
    /// The client's address holds `--max-connections-per-ip` already (1013).
    pub(crate) const PER_IP: Close = Close {
        code: 1013,
        reason: "max_connections_per_ip",
    };
    /// The user holds `--max-connections-per-user` already (1013).
    pub(crate) const PER_USER: Close = Close {
        code: 1013,
        reason: "max_connections_per_user",
    };
    /// No frame from the client for `--idle-timeout-ms` (1001, going away).
    pub(crate) const IDLE: Close = Close {
        code: 1001,
        reason: "idle_timeout",
    };
    /// The client kept sending past its frame rate (1008, policy violation).
    pub(crate) const FLOOD: Close = Close {
        code: 1008,
        reason: "flood",
    };
    /// The client closed or the socket failed: nothing to tell it.
    pub(crate) const GONE: Close = Close {
        code: 1000,
        reason: "closed",
    };
}
