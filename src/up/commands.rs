//! The command lines of `offpath up`'s children, spelled out flag by flag (no config type of
//! the services renders itself as flags).

use std::net::SocketAddr;

use crate::cli::UpArgs;

/// The command line of a moderator child.
pub(super) fn moderator_command(args: &UpArgs, url: &str, ops: SocketAddr) -> Vec<String> {
    let mut flags = vec![
        "moderator".to_string(),
        format!("--metrics-addr={ops}"),
        format!("--nats-url={url}"),
    ];
    flags.extend(args.streams.flags());
    flags.extend(args.moderator_flags());
    flags
}

/// The command line of the transport child.
pub(super) fn transport_command(
    args: &UpArgs,
    url: &str,
    listen: SocketAddr,
    ops: SocketAddr,
) -> Vec<String> {
    let mut flags = vec![
        "transport".to_string(),
        format!("--listen-addr={listen}"),
        format!("--metrics-addr={ops}"),
        format!("--nats-url={url}"),
    ];
    flags.extend(args.streams.flags());
    flags.extend(args.transport_flags());
    // A local stack is for development: `?user=` identity unless given token keys.
    let dev = "--insecure-dev-identity";
    if !offpath_transport::wants_tokens(&flags) && !flags.iter().any(|f| f.starts_with(dev)) {
        flags.push(dev.to_string());
    }
    flags
}
