//! Options of the load scenarios (`offpath-bench …`, reached as `offpath bench …`):
//! `--flag`, else `OFFPATH_BENCH_…`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub(crate) use offpath_ops::cli::{LogArgs, Usage};

/// offpath's load scenarios (also run as `offpath bench …`).
#[derive(Debug, Parser)]
#[command(name = "offpath-bench", version)]
pub(crate) struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// The scenario to run.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The load scenarios.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// End-to-end verdicts/s and latency through NATS and a moderator process, against raw
    /// in-process inference of the same models in the same run.
    // Boxed: the moderator's settings make it several times larger than the other variant.
    Throughput(Box<BenchArgs>),
    /// Chat delivery latency with moderation decoupled, inline (the coupled baseline) and
    /// off, with healthy, slow and hung moderators; writes bench-results/isolation.*.
    Isolation(IsolationArgs),
    /// Verdicts/s with N moderator processes sharing one consumer, for each N of a list,
    /// and the efficiency against one.
    Scale(Box<ScaleArgs>),
    /// A hold room's publish → verdict latency beside bulk chat at a multiple of the
    /// moderator's capacity: alone, without lanes, with the interactive lane.
    Lanes(Box<LanesArgs>),
    /// A hold room's publish → verdict latency and hold deadlines met, alone and beside one
    /// sender of long, expensive texts at the send rate a transport allows, without and
    /// with `--send-cost-bytes` charging (issue 26).
    Cost(Box<CostArgs>),
    /// Judgement on a labelled set of chat lines (default: models/eval/everyday-chat-2.tsv)
    /// through a moderator process: aimed insults caught, innocent lines flagged, per kind,
    /// ROC-AUC; with profanity as a signal and as if it acted (issue 29).
    Quality(Box<QualityArgs>),
}

/// Options of `offpath bench quality`.
#[derive(Debug, Args)]
pub(crate) struct QualityArgs {
    /// The labelled set: a TSV file with a header and `label<TAB>kind<TAB>text` lines
    /// (label 1: harmful, aimed at someone; 0: innocent).
    #[arg(
        long,
        env = "OFFPATH_BENCH_SET",
        default_value = "models/eval/everyday-chat-2.tsv"
    )]
    pub set: PathBuf,
    /// The moderator's settings (`--policies` included), the timeout.
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// Options of `offpath bench cost`.
#[derive(Debug, Args)]
pub(crate) struct CostArgs {
    /// The hold room's requests per second (its members' ordinary chat lines).
    #[arg(long, env = "OFFPATH_BENCH_HOLD_RATE", default_value_t = 4.0)]
    pub hold_rate: f64,
    /// Seconds the hold room sends per run.
    #[arg(long, env = "OFFPATH_BENCH_DURATION_S", default_value_t = 20.0)]
    pub duration_s: f64,
    /// The transport's `--rate-per-second` (messages a connection may send per second).
    #[arg(long, env = "OFFPATH_BENCH_SEND_RATE", default_value_t = 10.0)]
    pub send_rate: f64,
    /// The transport's `--send-cost-bytes` in the charged run.
    #[arg(long, env = "OFFPATH_BENCH_SEND_COST_BYTES", default_value_t = 64)]
    pub send_cost_bytes: usize,
    /// Bytes of each expensive text (the transport's `--max-text-bytes`).
    #[arg(long, env = "OFFPATH_BENCH_ATTACK_BYTES", default_value_t = 4096)]
    pub attack_bytes: usize,
    /// The hold rooms' deadline (the transport's `--hold-deadline-ms`): a verdict later
    /// than this is a message the room's failure policy decided instead.
    #[arg(long, env = "OFFPATH_BENCH_DEADLINE_MS", default_value_t = 3000)]
    pub deadline_ms: u64,
    /// The moderator's settings, the timeout.
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// Options of `offpath bench lanes`.
#[derive(Debug, Args)]
pub(crate) struct LanesArgs {
    /// Bulk chat rate as a multiple of the moderator's measured capacity.
    #[arg(long, env = "OFFPATH_BENCH_OVERLOAD", default_value_t = 3.0)]
    pub overload: f64,
    /// The hold room's requests per second.
    #[arg(long, env = "OFFPATH_BENCH_HOLD_RATE", default_value_t = 5.0)]
    pub hold_rate: f64,
    /// Seconds the hold room (and the bulk flood) send per run.
    #[arg(long, env = "OFFPATH_BENCH_DURATION_S", default_value_t = 10.0)]
    pub duration_s: f64,
    /// Requests of the capacity measurement (`--messages`), the moderator's settings, the
    /// timeout.
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// Options of `offpath bench scale`.
#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// Moderator counts to measure, comma-separated (e.g. `1,2,4,8` on a larger machine).
    #[arg(
        long,
        env = "OFFPATH_BENCH_MODERATORS",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    pub moderators: Vec<usize>,
    /// Stream replicas to measure, comma-separated: 1 is one nats-server, 3 a local 3-node
    /// cluster with every stream on all three (at most 5).
    #[arg(
        long,
        env = "OFFPATH_BENCH_REPLICAS",
        value_delimiter = ',',
        default_value = "1,3",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5)
    )]
    pub replicas: Vec<usize>,
    /// Requests per count, the moderators' settings (`--inference-threads` applies to each
    /// process), the timeout.
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// Options of `offpath bench isolation`.
#[derive(Debug, Args)]
pub(crate) struct IsolationArgs {
    /// Websocket clients.
    #[arg(long, env = "OFFPATH_BENCH_CONNECTIONS", default_value_t = 500)]
    pub connections: usize,
    /// Rooms (client i joins room i % rooms).
    #[arg(long, env = "OFFPATH_BENCH_ROOMS", default_value_t = 50)]
    pub rooms: usize,
    /// Messages per second, all clients together, sent open loop.
    #[arg(long, env = "OFFPATH_BENCH_RATE", default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of recorded sending per scenario.
    #[arg(long, env = "OFFPATH_BENCH_DURATION_S", default_value_t = 20)]
    pub duration_s: u64,
    /// Seconds of unrecorded traffic before each scenario's recorded run.
    #[arg(long, env = "OFFPATH_BENCH_WARMUP_S", default_value_t = 2)]
    pub warmup_s: u64,
    /// Scenarios to run, comma-separated; `decoupled-secure` (not in the default list) is
    /// `decoupled` with NATS authorization and TLS on.
    #[arg(
        long,
        env = "OFFPATH_BENCH_SCENARIOS",
        default_value = "none,decoupled,decoupled-slow,decoupled-hung,inline,inline-slow,inline-hung"
    )]
    pub scenarios: String,
    /// How long an inline send waits for its verdict before it is delivered unmoderated.
    #[arg(long, env = "OFFPATH_BENCH_INLINE_TIMEOUT_MS", default_value_t = 2000)]
    pub inline_timeout_ms: u64,
    /// What the -slow scenarios add to every batch, ms.
    #[arg(long, env = "OFFPATH_BENCH_SLOW_MS", default_value_t = 500)]
    pub slow_ms: u64,
    /// Moderator processes.
    #[arg(long, env = "OFFPATH_BENCH_MODERATORS", default_value_t = 1)]
    pub moderators: usize,
    /// Inference threads per moderator.
    #[arg(long, env = "OFFPATH_BENCH_INFERENCE_THREADS", default_value_t = 1)]
    pub inference_threads: usize,
    /// Niceness of the moderator processes: on one machine they stand in for separate
    /// inference hardware, so chat keeps CPU priority (0 to share equally).
    #[arg(long, env = "OFFPATH_BENCH_MODERATOR_NICE", default_value_t = 19)]
    pub moderator_nice: u32,
    /// Pin the chat side (transport, this generator) and the moderation side (moderators,
    /// nats-server) to separate halves of the CPUs, standing in for separate hardware.
    #[arg(long, env = "OFFPATH_BENCH_PIN")]
    pub pin: bool,
    /// After sending, how long decoupled scenarios may take to finish their verdicts.
    #[arg(long, env = "OFFPATH_BENCH_SETTLE_S", default_value_t = 30)]
    pub settle_s: u64,
    /// Where the report goes.
    #[arg(long, env = "OFFPATH_BENCH_OUT", default_value = "bench-results")]
    pub out: PathBuf,
}

/// Options of `offpath bench throughput`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Requests to publish.
    #[arg(long, env = "OFFPATH_BENCH_MESSAGES", default_value_t = 20_000)]
    pub messages: usize,
    /// Messages for the raw in-process measurement.
    #[arg(long, env = "OFFPATH_BENCH_RAW_MESSAGES", default_value_t = 4_000)]
    pub raw_messages: usize,
    /// Give up after this many seconds.
    #[arg(long, env = "OFFPATH_BENCH_TIMEOUT_S", default_value_t = 600)]
    pub timeout_s: u64,
    /// Seconds of each paced run (at 50% and 90% of the measured capacity).
    #[arg(long, env = "OFFPATH_BENCH_PACED_S", default_value_t = 20.0)]
    pub paced_s: f64,
    /// The moderator's settings (used for the raw measurement and the moderator process).
    #[command(flatten)]
    pub moderator: offpath_moderator::Config,
}

impl BenchArgs {
    /// The moderator settings as flags for the child process. (No config type of the
    /// services turns itself into flags; `offpath up` passes flags through instead.)
    pub(crate) fn moderator_flags(&self) -> Vec<String> {
        let m = &self.moderator;
        let (inference, intake) = (&m.inference, &m.intake);
        let models: Vec<String> = m.models.iter().map(|p| p.display().to_string()).collect();
        let mut flags = vec![
            format!("--model={}", models.join(",")),
            format!("--inference-threads={}", inference.inference_threads),
            format!("--interactive-threads={}", inference.interactive_threads),
            format!("--intra-threads={}", inference.intra_threads),
            format!("--max-batch={}", inference.max_batch),
            format!("--sub-batch={}", inference.sub_batch),
            format!("--max-batch-tokens={}", inference.max_batch_tokens),
            format!("--max-wait-ms={}", inference.max_wait),
            format!("--max-in-flight={}", intake.max_in_flight),
            format!("--brake-factor={}", m.brake.brake_factor),
            format!("--brake-min-blocks={}", m.brake.brake_min_blocks),
            "--metrics-addr=127.0.0.1:0".to_string(),
        ];
        if let Some(ort) = &m.ort_library {
            flags.push(format!("--ort-library={}", ort.display()));
        }
        if let Some(policies) = &m.policies {
            flags.push(format!("--policies={}", policies.display()));
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Arguments without an `OFFPATH_…` variable, on purpose: clap's own `--help` and
    /// `--version`, and the `help` subcommand's positional.
    const WITHOUT_ENV: [&str; 2] = ["help", "version"];

    /// Every flag of every scenario has an `OFFPATH_…` environment fallback, the scenarios'
    /// own in `OFFPATH_BENCH_…` (as the README says), and no two flags of one scenario
    /// share a variable.
    #[test]
    fn every_flag_has_its_own_variable() {
        let mut cli = Cli::command();
        cli.build();
        for scenario in cli.get_subcommands().filter(|c| c.get_name() != "help") {
            let name = scenario.get_name();
            let mut seen = std::collections::HashMap::new();
            for arg in scenario.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_positional() || WITHOUT_ENV.contains(&id) {
                    continue;
                }
                let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
                assert!(env.starts_with("OFFPATH_"), "{name} --{id}: {env:?}");
                assert!(
                    seen.insert(env.to_string(), id.to_string()).is_none(),
                    "{name}: {env} used twice"
                );
            }
        }
        let env = |name: &str, id: &str| {
            let scenario = cli.find_subcommand(name).expect("scenario");
            let arg = scenario.get_arguments().find(|a| a.get_id() == id);
            arg.and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
        };
        assert_eq!(
            env("isolation", "connections").as_deref(),
            Some("OFFPATH_BENCH_CONNECTIONS")
        );
        assert_eq!(
            env("throughput", "messages").as_deref(),
            Some("OFFPATH_BENCH_MESSAGES")
        );
    }
}
