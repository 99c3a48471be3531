//! Command-line and environment configuration (`--flag`, else `OFFPATH_…`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// given) with the JetStream topology in place, until SIGINT or SIGTERM.
    Up(UpArgs),
    /// Run an inference worker: pull requests, classify them in batches, publish verdicts.
    Moderator(ModeratorArgs),
    /// Create or update the JetStream streams and the moderator consumer, then exit.
    Topology(NatsArgs),
    /// Report where nats-server and the ONNX Runtime library were found; fails when either
    /// is missing.
    Doctor,
}

/// Logging options.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter in `tracing` syntax, e.g. `info,offpath=debug`.
    #[arg(long, env = "OFFPATH_LOG", default_value = "info", global = true)]
    pub log_filter: String,
    /// Write logs as JSON lines instead of text.
    #[arg(long, env = "OFFPATH_LOG_JSON", global = true)]
    pub log_json: bool,
}

/// Where NATS is.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "OFFPATH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// JetStream stream replicas (1 on one machine, 3 in a cluster).
    #[arg(long, env = "OFFPATH_STREAM_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
}

/// Options of `offpath moderator`.
#[derive(Debug, Args)]
pub struct ModeratorArgs {
    /// Where NATS is.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The moderator's own settings.
    #[command(flatten)]
    pub moderator: offpath_moderator::Config,
}

/// Options of `offpath up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// NATS server URL(s); when absent a local nats-server is started.
    #[arg(long, env = "OFFPATH_NATS_URL")]
    pub nats_url: Option<String>,
    /// Port of the local nats-server (0: any free port, printed at start).
    #[arg(long, env = "OFFPATH_LOCAL_NATS_PORT", default_value_t = 0)]
    pub local_nats_port: u16,
    /// JetStream store of the local nats-server [default: .tools/state/jetstream in the
    /// checkout].
    #[arg(long, env = "OFFPATH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The moderator's settings.
    #[command(flatten)]
    pub moderator: offpath_moderator::Config,
}

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
