//! Command-line and environment configuration (`--flag`, else `OFFPATH_…`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use offpath_protocol::topology::TopologyConfig;

/// Moderation off the critical path of chat.
#[derive(Debug, Parser)]
#[command(name = "offpath", version, about)]
pub struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Load scenarios against a local nats-server.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Report where nats-server and the ONNX Runtime library were found; fails when either
    /// is missing.
    Doctor,
}

/// Logging options.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter in `tracing` syntax, e.g. `info,offpath=debug`.
    #[arg(
        long,
        env = "OFFPATH_LOG",
        default_value = "info,async_nats=warn",
        global = true
    )]
    pub log_filter: String,
    /// Write logs as JSON lines instead of text.
    #[arg(long, env = "OFFPATH_LOG_JSON", global = true)]
    pub log_json: bool,
}

/// Where NATS is.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// NATS server URL(s): comma-separated or the flag repeated (several servers of one
    /// cluster; the client connects to any that answers).
    #[arg(
        long,
        env = "OFFPATH_NATS_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: Vec<String>,
    /// Settings of the JetStream streams.
    #[command(flatten)]
    pub streams: StreamArgs,
}

/// Settings of the JetStream streams: used to create what is missing (every service), and
/// to create or update (`offpath topology` only).
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// JetStream stream replicas (1 on one machine, 3 in a cluster).
    #[arg(long, env = "OFFPATH_STREAM_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Storage reserved per stream, in bytes (three streams).
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
    pub fn topology(&self) -> TopologyConfig {
        TopologyConfig {
            replicas: self.replicas,
            request_max_bytes: self.stream_max_bytes,
            verdict_max_bytes: self.stream_max_bytes,
            dlq_max_bytes: self.stream_max_bytes,
            ..TopologyConfig::default()
        }
    }

    /// The same settings as flags for a child process.
    pub fn flags(&self) -> [String; 2] {
        [
            format!("--replicas={}", self.replicas),
            format!("--stream-max-bytes={}", self.stream_max_bytes),
        ]
    }
}

/// Options of `offpath moderator`.
#[derive(Debug, Args)]
pub struct ModeratorArgs {
    /// Where NATS is.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OFFPATH_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: std::net::SocketAddr,
    /// The moderator's own settings.
    #[command(flatten)]
    pub moderator: offpath_moderator::Config,
}

/// The load scenarios.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// End-to-end verdicts/s and latency through NATS and a moderator process, against raw
    /// in-process inference of the same models in the same run.
    // Boxed: the moderator's settings make it several times larger than the other variant.
    Throughput(Box<BenchArgs>),
    /// Chat delivery latency with moderation decoupled, inline (the coupled baseline) and
    /// off, with healthy, slow and hung moderators; writes bench-results/isolation.*.
    Isolation(IsolationArgs),
}

/// Options of `offpath bench isolation`.
#[derive(Debug, Args)]
pub struct IsolationArgs {
    /// Websocket clients.
    #[arg(long, default_value_t = 500)]
    pub connections: usize,
    /// Rooms (client i joins room i % rooms).
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    /// Messages per second, all clients together, sent open loop.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of recorded sending per scenario.
    #[arg(long, default_value_t = 20)]
    pub duration_s: u64,
    /// Seconds of unrecorded traffic before each scenario's recorded run.
    #[arg(long, default_value_t = 2)]
    pub warmup_s: u64,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        default_value = "none,decoupled,decoupled-slow,decoupled-hung,inline,inline-slow,inline-hung"
    )]
    pub scenarios: String,
    /// How long an inline send waits for its verdict before it is delivered unmoderated.
    #[arg(long, default_value_t = 2000)]
    pub inline_timeout_ms: u64,
    /// What the -slow scenarios add to every batch, ms.
    #[arg(long, default_value_t = 500)]
    pub slow_ms: u64,
    /// Moderator processes.
    #[arg(long, default_value_t = 1)]
    pub moderators: usize,
    /// Inference threads per moderator.
    #[arg(long, default_value_t = 1)]
    pub inference_threads: usize,
    /// Niceness of the moderator processes: on one machine they stand in for separate
    /// inference hardware, so chat keeps CPU priority (0 to share equally).
    #[arg(long, default_value_t = 19)]
    pub moderator_nice: u32,
    /// Pin the chat side (transport, this generator) and the moderation side (moderators,
    /// nats-server) to separate halves of the CPUs, standing in for separate hardware.
    #[arg(long)]
    pub pin: bool,
    /// After sending, how long decoupled scenarios may take to finish their verdicts.
    #[arg(long, default_value_t = 30)]
    pub settle_s: u64,
    /// Where the report goes.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// Options of `offpath bench throughput`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Requests to publish.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Messages for the raw in-process measurement.
    #[arg(long, default_value_t = 4_000)]
    pub raw_messages: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    /// The moderator's settings (used for the raw measurement and the moderator process).
    #[command(flatten)]
    pub moderator: offpath_moderator::Config,
}

impl BenchArgs {
    /// The moderator settings as flags for the child process.
    pub fn moderator_flags(&self) -> Vec<String> {
        let m = &self.moderator;
        let models: Vec<String> = m.models.iter().map(|p| p.display().to_string()).collect();
        let mut flags = vec![
            format!("--model={}", models.join(",")),
            format!("--inference-threads={}", m.inference_threads),
            format!("--intra-threads={}", m.intra_threads),
            format!("--max-batch={}", m.max_batch),
            format!("--sub-batch={}", m.sub_batch),
            format!("--max-batch-tokens={}", m.max_batch_tokens),
            format!("--max-wait-ms={}", m.max_wait_ms),
            format!("--max-in-flight={}", m.max_in_flight),
            "--metrics-addr=127.0.0.1:0".to_string(),
        ];
        if let Some(ort) = &m.ort_library {
            flags.push(format!("--ort-library={}", ort.display()));
        }
        flags
    }
}

/// Options of `offpath transport`.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// Where NATS is.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address of the websocket endpoint `/ws` and the chat page `/`.
    #[arg(long, env = "OFFPATH_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: std::net::SocketAddr,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OFFPATH_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    pub metrics_addr: std::net::SocketAddr,
    /// The gateway's own settings.
    #[command(flatten)]
    pub transport: offpath_transport::Config,
}

/// Options of `offpath up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// NATS server URL(s), comma-separated or the flag repeated; when absent a local
    /// nats-server is started.
    #[arg(long, env = "OFFPATH_NATS_URL", value_delimiter = ',')]
    pub nats_url: Vec<String>,
    /// Settings of the JetStream streams (created when missing, never changed: that is
    /// `offpath topology`'s job), passed on to the children.
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Port of the local nats-server (0: any free port, printed at start).
    #[arg(long, env = "OFFPATH_LOCAL_NATS_PORT", default_value_t = 0)]
    pub local_nats_port: u16,
    /// JetStream store of the local nats-server [default: .tools/state/jetstream in the
    /// checkout].
    #[arg(long, env = "OFFPATH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the chat gateway (`/ws`, and a chat page at `/`); port 0 picks one.
    #[arg(long, env = "OFFPATH_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: std::net::SocketAddr,
    /// Address of the transport's /metrics, /healthz, /readyz; port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:9465")]
    pub transport_metrics_addr: std::net::SocketAddr,
    /// Address of the (first) moderator's /metrics, /healthz, /readyz; port 0 picks one,
    /// as it does for every further moderator.
    #[arg(long, alias = "metrics-addr", default_value = "127.0.0.1:9464")]
    pub moderator_metrics_addr: std::net::SocketAddr,
    /// Moderator processes to start.
    #[arg(long, env = "OFFPATH_MODERATORS", default_value_t = 1)]
    pub moderators: usize,
    /// A flag passed to every moderator process, e.g. `--moderator-arg=--inference-threads=1`
    /// (repeat for more).
    #[arg(long, allow_hyphen_values = true)]
    pub moderator_arg: Vec<String>,
    /// A flag passed to the transport process, e.g.
    /// `--transport-arg=--room-policy=kids=hold:fail_closed` (repeat for more).
    #[arg(long, allow_hyphen_values = true)]
    pub transport_arg: Vec<String>,
}

/// A configuration error: the process exits with status 64 (EX_USAGE).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Installs the global `tracing` subscriber.
pub fn init_tracing(args: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A closed stderr must not crash the service: tracing-subscriber would report the
    // failed write with `eprintln!`, which panics on a closed stderr.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology_urls(args: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(["offpath", "topology"].iter().chain(args)).expect("parses");
        match cli.command {
            Command::Topology(nats) => nats.nats_url,
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Several NATS URLs are accepted comma-separated and as a repeated flag.
    #[test]
    fn nats_urls_comma_separated_or_repeated() {
        let both = ["nats://a:4222", "nats://b:4222"];
        assert_eq!(
            topology_urls(&["--nats-url", "nats://a:4222,nats://b:4222"]),
            both
        );
        assert_eq!(
            topology_urls(&["--nats-url", "nats://a:4222", "--nats-url", "nats://b:4222"]),
            both
        );
        let cli = Cli::try_parse_from(["offpath", "up", "--nats-url=nats://a:4222,nats://b:4222"])
            .expect("parses");
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.nats_url, both);
    }

    /// `--stream-max-bytes` and `--replicas` become the topology's settings.
    #[test]
    fn stream_flags_become_the_topology() {
        let cli = Cli::try_parse_from([
            "offpath",
            "up",
            "--replicas=3",
            "--stream-max-bytes=104857600",
        ])
        .expect("parses");
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        let topology = up.streams.topology();
        assert_eq!(topology.replicas, 3);
        assert_eq!(topology.request_max_bytes, 104_857_600);
        assert_eq!(topology.verdict_max_bytes, 104_857_600);
        assert_eq!(topology.dlq_max_bytes, 104_857_600);
        assert!(Cli::try_parse_from(["offpath", "topology", "--stream-max-bytes=0"]).is_err());
    }
}
