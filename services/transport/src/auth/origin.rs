//! Which web pages may open a socket. A browser sends `Origin` with every websocket
//! handshake and lets any page connect anywhere, with the user's cookies and network: the
//! server has to refuse foreign pages itself (cross-site websocket hijacking).
//!
//! The rule: a request with an `Origin` header must match `--allowed-origins`, or, when
//! that list is empty, be same-origin (the origin's `host[:port]` equals the `Host` header,
//! default ports ignored) on a `Host` the gateway knows as its own: a loopback name
//! (`localhost`, `127.x`, `[::1]`) or one of `--public-hosts`. Same-origin alone is not
//! enough: a DNS-rebinding page (`http://rebind.evil:8080`, its name re-pointed at the
//! gateway's address) sends `Origin` and `Host` both `rebind.evil:8080`. A request without
//! `Origin` is not from a browser page and is allowed: such a client chooses its own
//! headers anyway, so only its credentials count.

use axum::http::{HeaderMap, header};

/// Why a request's origin is refused (HTTP 403, counted as
/// `offpath_transport_disconnects_total{reason="origin"}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OriginError {
    /// The origin is not in the allow-list.
    #[error("origin {0:?} is not allowed to open a socket here")]
    NotAllowed(String),
    /// No allow-list, and the page is from another host.
    #[error("origin {0:?} is not this host; list it in --allowed-origins")]
    CrossSite(String),
    /// No allow-list, and the request's `Host` is not a name of this gateway.
    #[error("host {0:?} is not loopback nor in --public-hosts (DNS rebinding?)")]
    UnknownHost(String),
}

/// Checks the request's `Origin` against `allowed`, or against its `Host` when `allowed` is
/// empty, a `Host` that must be loopback or in `hosts` (see the module's rule).
pub(crate) fn check(
    headers: &HeaderMap,
    allowed: &[String],
    hosts: &[String],
) -> Result<(), OriginError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let shown = origin.trim().trim_end_matches('/');
    if !allowed.is_empty() {
        return if allowed.iter().any(|a| normalize(a) == normalize(shown)) {
            Ok(())
        } else {
            Err(OriginError::NotAllowed(origin))
        };
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    match shown.split_once("://") {
        Some((scheme, authority)) if same_host(scheme, authority, host) => {
            if known_host(host, hosts) {
                Ok(())
            } else {
                Err(OriginError::UnknownHost(host.to_string()))
            }
        }
        // `null` (sandboxed frames, file: pages) and anything unparsable land here too.
        _ => Err(OriginError::CrossSite(origin)),
    }
}

/// Whether `host` (a `Host` header: `name[:port]`, `[v6][:port]`) is a loopback name or one
/// of `hosts` (names without a port, any case).
fn known_host(host: &str, hosts: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(addr, _)| addr),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
    .to_ascii_lowercase();
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
    loopback || hosts.iter().any(|h| h.eq_ignore_ascii_case(&name))
}

/// An origin as compared: lower case, without a trailing `/`.
pub(crate) fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether an origin's `authority` (`host[:port]`) names the `Host` the request came to,
/// with the scheme's default port dropped from both.
fn same_host(scheme: &str, authority: &str, host: &str) -> bool {
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => return false,
    };
    let strip = |h: &str| {
        let h = h.to_ascii_lowercase();
        h.strip_suffix(default_port)
            .map(str::to_string)
            .unwrap_or(h)
    };
    !host.is_empty() && strip(authority) == strip(host)
}

/// Problems with a `--public-hosts` entry: a host name or address, without scheme or port.
pub(crate) fn invalid_host(entry: &str) -> Option<String> {
    let bad = entry.is_empty() || entry.contains([':', '/', '?', '#', ' ', '[', ']']);
    bad.then(|| format!("--public-hosts {entry:?} is not a host name (no scheme, no port)"))
}

/// Problems with an `--allowed-origins` entry: each must be `scheme://host[:port]`.
pub(crate) fn invalid_entry(entry: &str) -> Option<String> {
    let ok = entry.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && !rest.is_empty()
            && !rest.trim_end_matches('/').contains(['/', '?', '#', ' '])
    });
    (!ok).then(|| format!("--allowed-origins {entry:?} is not scheme://host[:port]"))
}
