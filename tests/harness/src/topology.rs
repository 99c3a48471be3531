//! The JetStream topology of tests: the documented one with small streams.

use offpath_protocol::topology::TopologyConfig;

/// Bytes each stream of a test topology may hold: small, because JetStream refuses a
/// stream whose `max_bytes` does not fit the server's storage (a share of the free disk),
/// and many test servers run at once.
pub const STREAM_BYTES: i64 = 64 * 1024 * 1024;

/// The documented topology with small streams (see [`STREAM_BYTES`]).
pub fn small() -> TopologyConfig {
    TopologyConfig::default().with_stream_max_bytes(STREAM_BYTES)
}
