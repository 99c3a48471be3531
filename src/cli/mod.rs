//! Command-line and environment configuration (`--flag`, else `OFFPATH_…`).

pub(crate) mod policy;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use offpath_protocol::topology::TopologyConfig;

pub(crate) use crate::nats_auth::NatsAuthArgs;
pub(crate) use offpath_ops::cli::{LogArgs, Usage};

/// Default address of the chat gateway (`/ws` and the chat page).
const LISTEN_ADDR: &str = "127.0.0.1:8080";
/// Default address of the transport's /metrics, /healthz and /readyz.
const TRANSPORT_METRICS_ADDR: &str = "127.0.0.1:9465";
/// Default address of the moderator's /metrics, /healthz and /readyz.
const MODERATOR_METRICS_ADDR: &str = "127.0.0.1:9464";
/// `offpath review`'s default address (the console, its API and its metrics).
const REVIEW_ADDR: &str = "127.0.0.1:8090";
/// JetStream allows at most 5 replicas of a stream.
const MAX_REPLICAS: u64 = 5;

/// Moderation off the critical path of chat.
#[derive(Debug, Parser)]
#[command(name = "offpath", version, about)]
pub(crate) struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once at start and moved into the service: the transport's many limits make its
// variant large, and boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole pipeline on this machine: a local nats-server (unless --nats-url is
    /// given) with the JetStream topology in place, a transport and moderators as separate
    /// processes, until SIGINT or SIGTERM.
    Up(UpArgs),
    /// Run the websocket chat gateway: fan out at once, moderate off the send path.
    Transport(TransportArgs),
    /// Run an inference worker: pull requests, classify them in batches, publish verdicts.
    Moderator(ModeratorArgs),
    /// Create or update the JetStream streams and the moderator consumer, then exit.
    Topology(NatsArgs),
    /// Load scenarios against a local nats-server: runs the `offpath-bench` binary beside
    /// this one with the arguments that follow (`offpath bench --help` lists them).
    Bench(BenchArgs),
    /// Report what this host needs for its role (`--role up|moderator|transport`) and where
    /// it was found: nats-server, the ONNX Runtime library, the models; fails naming the
    /// first thing missing.
    Doctor(crate::tools::DoctorArgs),
    /// Print the nats-server `authorization` block of a deployment (users `topology`,
    /// `moderator`, `transport-<tenant>` with their permissions; passwords read by
    /// nats-server from `$OFFPATH_NATS_PASSWORD_<USER>`).
    NatsAuth(crate::nats_auth::NatsAuthCommand),
    /// Moderation policies: `offpath policy check FILE` validates a policy file against the
    /// models (exit 64 with every problem listed); `offpath policy push FILE` also puts it
    /// in the bucket every moderator follows.
    Policy(policy::PolicyCommand),
    /// Run the reviewers' console: the review queue (members' reports first, flagged
    /// messages, and blocked ones where the policy asks), one-key decisions published as human verdicts that every
    /// transport applies, and the audit trail (`/`, `/api/…`, `/metrics` on one address).
    Review(ReviewArgs),
}

/// Options of `offpath review`.
#[derive(Debug, Args)]
pub(crate) struct ReviewArgs {
    /// Where NATS is (logs in as the `reviewer` user when NATS has users).
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address of the console, its JSON API and /metrics, /healthz, /readyz.
    #[arg(long, env = "OFFPATH_REVIEW_ADDR", default_value = REVIEW_ADDR)]
    pub listen_addr: std::net::SocketAddr,
    /// Reviewers file (TOML, `[reviewers] name = "<sha256 of the token>"`).
    #[arg(long, env = "OFFPATH_REVIEWERS")]
    pub reviewers: PathBuf,
    /// The console's limits against hostile clients.
    #[command(flatten)]
    pub console: offpath_review::Config,
}

/// Where NATS is.
#[derive(Debug, Args)]
pub(crate) struct NatsArgs {
    /// NATS server URL(s): comma-separated or the flag repeated (several servers of one
    /// cluster; the client connects to any that answers).
    #[arg(
        long,
        env = "OFFPATH_NATS_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: Vec<String>,
    /// How to log in to NATS.
    #[command(flatten)]
    pub auth: NatsAuthArgs,
    /// Settings of the JetStream streams.
    #[command(flatten)]
    pub streams: StreamArgs,
}

/// Settings of the JetStream streams: used to create what is missing (every service), and
/// to create or update (`offpath topology` only).
#[derive(Debug, Clone, Args)]
pub(crate) struct StreamArgs {
    /// JetStream stream replicas (1 on one machine, 3 in a cluster; at most 5).
    #[arg(
        long,
        env = "OFFPATH_STREAM_REPLICAS",
        default_value_t = 1,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_REPLICAS)
    )]
    pub replicas: usize,
    /// Storage reserved per stream, in bytes: each of MODERATION, VERDICTS, MODERATION_DLQ,
    /// REVIEW and AUDIT (the interactive lane gets an eighth of MODERATION's).
    #[arg(
        long,
        env = "OFFPATH_STREAM_MAX_BYTES",
        default_value_t = 1024 * 1024 * 1024,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub stream_max_bytes: i64,
}

impl StreamArgs {
    /// The topology these settings describe; everything else is the documented default.
    pub(crate) fn topology(&self) -> TopologyConfig {
        TopologyConfig {
            replicas: self.replicas,
            ..TopologyConfig::default()
        }
        .with_stream_max_bytes(self.stream_max_bytes)
    }

    /// The same settings as flags for a child process.
    pub(crate) fn flags(&self) -> [String; 2] {
        [
            format!("--replicas={}", self.replicas),
            format!("--stream-max-bytes={}", self.stream_max_bytes),
        ]
    }
}

/// Options of `offpath moderator`.
#[derive(Debug, Args)]
pub(crate) struct ModeratorArgs {
    /// Where NATS is.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OFFPATH_MODERATOR_METRICS_ADDR", default_value = MODERATOR_METRICS_ADDR)]
    pub metrics_addr: std::net::SocketAddr,
    /// The moderator's own settings.
    #[command(flatten)]
    pub moderator: offpath_moderator::Config,
}

/// Options of `offpath transport`.
#[derive(Debug, Args)]
pub(crate) struct TransportArgs {
    /// Where NATS is.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address of the websocket endpoint `/ws` and the chat page `/`.
    #[arg(long, env = "OFFPATH_LISTEN_ADDR", default_value = LISTEN_ADDR)]
    pub listen_addr: std::net::SocketAddr,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OFFPATH_TRANSPORT_METRICS_ADDR", default_value = TRANSPORT_METRICS_ADDR)]
    pub metrics_addr: std::net::SocketAddr,
    /// The gateway's own settings.
    #[command(flatten)]
    pub transport: offpath_transport::Config,
}

/// `offpath bench <scenario> [options]`: passed through unparsed to `offpath-bench`, which
/// owns the scenarios' options (and their `OFFPATH_BENCH_…` variables).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(crate) struct BenchArgs {
    /// The scenario (`throughput`, `isolation`, `scale`) and its options.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
}

/// Options of `offpath up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// NATS server URL(s), comma-separated or the flag repeated; when absent a local
    /// nats-server is started.
    #[arg(long, env = "OFFPATH_NATS_URL", value_delimiter = ',')]
    pub nats_url: Vec<String>,
    /// How the launcher and every child log in to the NATS of --nats-url (one identity for
    /// all; without --nats-url the local server gets one generated user per role instead).
    #[command(flatten)]
    pub auth: NatsAuthArgs,
    /// Settings of the JetStream streams (created when missing, never changed: that is
    /// `offpath topology`'s job), passed on to the children.
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Port of the local nats-server (0: any free port, printed at start).
    #[arg(long, env = "OFFPATH_LOCAL_NATS_PORT", default_value_t = 0)]
    pub local_nats_port: u16,
    /// Local nats-server processes: 1, or a cluster of 3 to 5 joined by routes (JetStream
    /// on each; the streams get as many replicas unless --replicas says otherwise, so a
    /// node can be killed to watch the pipeline carry on). Needs no --nats-url.
    #[arg(
        long,
        env = "OFFPATH_NATS_CLUSTER",
        default_value_t = 1,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_REPLICAS)
    )]
    pub nats_cluster: usize,
    /// JetStream store of the local nats-server [default: .tools/state/jetstream in the
    /// checkout; a cluster's node `i` keeps its store in `cluster/node-<i>` below it].
    #[arg(long, env = "OFFPATH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the chat gateway (`/ws`, and a chat page at `/`); port 0 picks one.
    #[arg(long, env = "OFFPATH_LISTEN_ADDR", default_value = LISTEN_ADDR)]
    pub listen_addr: std::net::SocketAddr,
    /// Address of the transport's /metrics, /healthz, /readyz; port 0 picks one.
    #[arg(
        long,
        env = "OFFPATH_TRANSPORT_METRICS_ADDR",
        default_value = TRANSPORT_METRICS_ADDR
    )]
    pub transport_metrics_addr: std::net::SocketAddr,
    /// Address of the (first) moderator's /metrics, /healthz, /readyz; port 0 picks one,
    /// as it does for every further moderator.
    #[arg(
        long,
        alias = "metrics-addr",
        env = "OFFPATH_MODERATOR_METRICS_ADDR",
        default_value = MODERATOR_METRICS_ADDR
    )]
    pub moderator_metrics_addr: std::net::SocketAddr,
    /// Moderator processes to start (at least 1).
    #[arg(long, env = "OFFPATH_MODERATORS", default_value_t = 1)]
    pub moderators: usize,
    /// Flags passed to every moderator process, e.g. `--moderator-arg=--inference-threads=1`
    /// (repeat for more; one value may hold several, whitespace-separated, without quoting).
    #[arg(long, env = "OFFPATH_MODERATOR_ARGS", allow_hyphen_values = true)]
    pub moderator_arg: Vec<String>,
    /// Flags passed to the transport process, e.g.
    /// `--transport-arg=--room-policy=kids=hold:fail_closed` (repeat for more; one value may
    /// hold several, whitespace-separated, without quoting).
    #[arg(long, env = "OFFPATH_TRANSPORT_ARGS", allow_hyphen_values = true)]
    pub transport_arg: Vec<String>,
    /// Also run the reviewers' console (`offpath review`) with this reviewers file (TOML,
    /// `[reviewers] name = "<sha256 of the token>"`), logged in to the local nats-server as
    /// its own `reviewer` user.
    #[arg(long, env = "OFFPATH_REVIEWERS")]
    pub reviewers: Option<PathBuf>,
    /// Address of the reviewers' console (with --reviewers); port 0 picks one.
    #[arg(long, env = "OFFPATH_REVIEW_ADDR", default_value = REVIEW_ADDR)]
    pub review_addr: std::net::SocketAddr,
}

impl UpArgs {
    /// The flags passed through to every moderator, one per element.
    pub(crate) fn moderator_flags(&self) -> Vec<String> {
        split_flags(&self.moderator_arg)
    }

    /// The flags passed through to the transport, one per element.
    pub(crate) fn transport_flags(&self) -> Vec<String> {
        split_flags(&self.transport_arg)
    }
}

/// Pass-through values split on whitespace: an environment variable holds one string, and
/// commas cannot separate flags whose values are comma-separated lists themselves
/// (`--model=a,b`, `--room-policy=x=hold,y=post`).
fn split_flags(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|value| value.split_whitespace())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests;
