//! The console's limits against hostile clients: flags with `OFFPATH_REVIEW_…` environment
//! fallbacks (the console's own prefix: `offpath up` starts it beside a transport whose
//! `OFFPATH_MAX_SOCKETS` means something else).

use std::time::Duration;

use clap::Args;
use clap::builder::RangedU64ValueParser;

/// hyper's smallest read buffer: a smaller `--max-header-bytes` would make it panic.
const MIN_HEADER_BYTES: u64 = 8192;

/// The console's settings besides its address and reviewers.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Time a client has to send a request's headers (ms); a slower one is disconnected
    /// (counted as `header_timeout`).
    #[arg(
        long = "header-timeout-ms",
        value_name = "MS",
        env = "OFFPATH_REVIEW_HEADER_TIMEOUT_MS",
        default_value = "5000",
        value_parser = millis
    )]
    pub header_timeout: Duration,
    /// Time from accept to the end of a connection's one request (ms): a client that sends
    /// its body or reads the answer too slowly is disconnected (counted as
    /// `request_timeout`).
    #[arg(
        long = "request-timeout-ms",
        value_name = "MS",
        env = "OFFPATH_REVIEW_REQUEST_TIMEOUT_MS",
        default_value = "30000",
        value_parser = millis
    )]
    pub request_timeout: Duration,
    /// Open TCP connections on the console's port, from accept to close; past it a new one
    /// is closed at once (counted as `max_sockets`). Keep it below the process's
    /// file-descriptor limit (`ulimit -n`) minus what NATS and logs need.
    #[arg(
        long,
        env = "OFFPATH_REVIEW_MAX_SOCKETS",
        default_value = "256",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_sockets: usize,
    /// Open TCP connections one client address (IPv6: its /64) may hold; past it a new one
    /// is closed at once (counted as `max_sockets_per_ip`), so one host cannot fill
    /// `--max-sockets` and `/readyz` stays reachable from elsewhere.
    #[arg(
        long,
        env = "OFFPATH_REVIEW_MAX_SOCKETS_PER_IP",
        default_value = "32",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_sockets_per_ip: usize,
    /// Largest request line and headers, in bytes (at least 8192); a larger one is answered
    /// 431 and closed (counted as `header_too_large`).
    #[arg(
        long,
        env = "OFFPATH_REVIEW_MAX_HEADER_BYTES",
        default_value = "16384",
        value_parser = RangedU64ValueParser::<usize>::new().range(MIN_HEADER_BYTES..)
    )]
    pub max_header_bytes: usize,
    /// Largest request body, in bytes (a decision is a key, a word and a note of at most
    /// 2,000 characters); a larger one is answered 413 (counted as `body_too_large`).
    #[arg(
        long,
        env = "OFFPATH_REVIEW_MAX_BODY_BYTES",
        default_value = "16384",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_body_bytes: usize,
    /// Failed logins (a wrong or missing token) one client address may make in a row;
    /// then it is answered 429 without its token being checked (counted as
    /// `auth_throttled`) until its allowance refills.
    #[arg(
        long,
        env = "OFFPATH_REVIEW_AUTH_FAILURE_BURST",
        default_value = "10",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub auth_failure_burst: u32,
    /// How fast an address's allowance of failed logins refills, per minute.
    #[arg(
        long,
        env = "OFFPATH_REVIEW_AUTH_FAILURES_PER_MINUTE",
        default_value = "6",
        value_parser = positive
    )]
    pub auth_failures_per_minute: f64,
    /// Senders per tenant whose recent verdicts (blocks, flags, decisions: not allows) the
    /// console keeps to show beside their items, read from every verdict published; the
    /// senders first seen longest ago are forgotten first. 0 turns it off (the console then
    /// does not read verdicts at all).
    #[arg(long, env = "OFFPATH_REVIEW_SENDER_RECORDS", default_value = "50000")]
    pub sender_records: usize,
}

/// A duration given in milliseconds, at least 1.
fn millis(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (ms)".into()),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(err) => Err(format!("not a number of milliseconds: {err}")),
    }
}

/// A finite number above 0.
fn positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        Ok(_) => Err("must be a number above 0".into()),
        Err(err) => Err(format!("not a number: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    /// The defaults parse; limits that would disable a defence or make hyper panic are
    /// refused.
    #[test]
    fn flags_parse_and_refuse_what_cannot_work() {
        let config = Cli::try_parse_from(["console"]).expect("defaults").config;
        assert_eq!(config.header_timeout, Duration::from_secs(5));
        assert_eq!(config.max_header_bytes, 16384);
        let config = Cli::try_parse_from(["console", "--request-timeout-ms=250"])
            .expect("a timeout")
            .config;
        assert_eq!(config.request_timeout, Duration::from_millis(250));
        for bad in [
            "--max-header-bytes=8191",
            "--max-sockets=0",
            "--header-timeout-ms=0",
            "--auth-failures-per-minute=0",
            "--auth-failures-per-minute=NaN",
            "--auth-failure-burst=0",
        ] {
            assert!(Cli::try_parse_from(["console", bad]).is_err(), "{bad}");
        }
    }
}
