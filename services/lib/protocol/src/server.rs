//! Which nats-server versions offpath supports, and the check every process makes after
//! connecting.

/// Oldest nats-server offpath supports: Debian 12's package (2.9.10) and newer. Older
/// servers lack JetStream features the topology relies on.
pub const MIN_NATS_SERVER: (u64, u64, u64) = (2, 9, 0);

/// Why a server is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerVersionError {
    /// Older than [`MIN_NATS_SERVER`].
    #[error(
        "nats-server {0} is older than the oldest supported version {min}; upgrade it",
        min = format_version(MIN_NATS_SERVER)
    )]
    TooOld(String),
    /// The version string could not be read.
    #[error("nats-server reported an unreadable version {0:?}")]
    Unreadable(String),
}

fn format_version((major, minor, patch): (u64, u64, u64)) -> String {
    format!("{major}.{minor}.{patch}")
}

/// Checks a server's reported version (`ServerInfo::version`, e.g. `2.9.10` or
/// `2.12.0-beta.1`) against [`MIN_NATS_SERVER`].
pub fn check_server_version(version: &str) -> Result<(), ServerVersionError> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(str::parse::<u64>);
    let parsed = match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), patch) => {
            (major, minor, patch.and_then(Result::ok).unwrap_or(0))
        }
        _ => return Err(ServerVersionError::Unreadable(version.to_string())),
    };
    if parsed < MIN_NATS_SERVER {
        return Err(ServerVersionError::TooOld(version.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12's 2.9.10 and every newer server pass; older ones and garbage are refused.
    #[test]
    fn server_versions() {
        for ok in [
            "2.9.10",
            "2.9.0",
            "2.10.25",
            "2.15.1",
            "v2.12.0-beta.1",
            "3.0",
        ] {
            assert_eq!(check_server_version(ok), Ok(()), "{ok}");
        }
        for old in ["2.8.4", "2.2.0", "1.4.1"] {
            assert!(matches!(
                check_server_version(old),
                Err(ServerVersionError::TooOld(_))
            ));
        }
        for bad in ["", "x.y", "2"] {
            assert!(matches!(
                check_server_version(bad),
                Err(ServerVersionError::Unreadable(_))
            ));
        }
    }
}
