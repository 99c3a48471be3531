//! The moderator's configuration: flags with `OFFPATH_…` environment fallbacks.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Everything `offpath moderator` can be told.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Model directories (each with a model.toml) combined into the moderation policy.
    #[arg(long = "model", env = "OFFPATH_MODELS", value_delimiter = ',', default_values = ["models/minilm-insult", "models/profanity"])]
    pub models: Vec<PathBuf>,
    /// ONNX Runtime shared library [default: $ORT_DYLIB_PATH, else .tools/lib/libonnxruntime.so].
    #[arg(long, env = "OFFPATH_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
    /// Inference threads, each with its own ONNX session.
    #[arg(long, env = "OFFPATH_INFERENCE_THREADS", default_value_t = 2)]
    pub inference_threads: usize,
    /// Threads one inference run may use inside ONNX Runtime.
    #[arg(long, env = "OFFPATH_INTRA_THREADS", default_value_t = 1)]
    pub intra_threads: usize,
    /// Most requests collected into one batch.
    #[arg(long, env = "OFFPATH_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// Most texts per model run inside a batch (length-grouped).
    #[arg(long, env = "OFFPATH_SUB_BATCH", default_value_t = 16)]
    pub sub_batch: usize,
    /// Most padded tokens (longest × count) per model run. Small on purpose: one long
    /// message must not pad a whole run (measured: 4096 → 512 doubled throughput and halved
    /// RSS with `offpath bench throughput`).
    #[arg(long, env = "OFFPATH_MAX_BATCH_TOKENS", default_value_t = 512)]
    pub max_batch_tokens: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, env = "OFFPATH_MAX_WAIT_MS", default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Requests held (pulled, not yet acked) by this process; must not exceed the
    /// consumer's max_ack_pending.
    #[arg(long, env = "OFFPATH_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// Deadline of one batch's inference; past it the run is terminated.
    #[arg(long, env = "OFFPATH_BATCH_DEADLINE_MS", default_value_t = 10_000)]
    pub batch_deadline_ms: u64,
    /// After terminating a run, how long to wait before abandoning its thread.
    #[arg(long, env = "OFFPATH_CANCEL_GRACE_MS", default_value_t = 2_000)]
    pub cancel_grace_ms: u64,
    /// Redelivery delay of a request whose batch failed or hung.
    #[arg(long, env = "OFFPATH_NAK_DELAY_MS", default_value_t = 1_000)]
    pub nak_delay_ms: u64,
    /// `/readyz` turns not ready when requests are in flight and no inference finished for
    /// this long.
    #[arg(long, env = "OFFPATH_STALL_AFTER_MS", default_value_t = 30_000)]
    pub stall_after_ms: u64,
    /// How long the moderator keeps trying to (re-)bind its JetStream consumer, re-creating
    /// a deleted stream or consumer, before it gives up and exits with an error. Time
    /// disconnected from NATS counts too (binding fails meanwhile).
    #[arg(long, env = "OFFPATH_REBIND_GIVE_UP_MS", default_value_t = 120_000)]
    pub rebind_give_up_ms: u64,
    /// Texts remembered for spam waves (identical short texts reuse one inference); 0 off.
    #[arg(long, env = "OFFPATH_CACHE_ENTRIES", default_value_t = 10_000)]
    pub cache_entries: usize,
    /// How long a remembered assessment is reused.
    #[arg(long, env = "OFFPATH_CACHE_WINDOW_MS", default_value_t = 30_000)]
    pub cache_window_ms: u64,
    /// Synchronous offpath.classify calls served at once; more are refused as overloaded.
    #[arg(long, env = "OFFPATH_CLASSIFY_CONCURRENCY", default_value_t = 64)]
    pub classify_concurrency: usize,
    /// Deadline of a synchronous offpath.classify call.
    #[arg(long, env = "OFFPATH_CLASSIFY_TIMEOUT_MS", default_value_t = 5_000)]
    pub classify_timeout_ms: u64,
    /// Largest accepted request payload, in bytes.
    #[arg(long, env = "OFFPATH_MAX_REQUEST_BYTES", default_value_t = offpath_protocol::DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Fault injection (tests and benchmarks only).
    #[command(flatten)]
    pub faults: Faults,
    /// Settings of the JetStream topology, used only to re-create what is missing (what
    /// exists is never changed: `offpath topology` owns it). Set by the launcher.
    #[arg(skip)]
    pub topology: offpath_protocol::topology::TopologyConfig,
}

/// Fault injection, off by default. Never enable in production.
#[derive(Debug, Clone, Default, Args)]
pub struct Faults {
    /// Extra delay added to every batch, in milliseconds.
    #[arg(
        long = "fault-batch-delay-ms",
        env = "OFFPATH_FAULT_BATCH_DELAY_MS",
        default_value_t = 0
    )]
    pub batch_delay_ms: u64,
    /// Inference thread (by start order, from 0) that hangs on every batch it takes.
    #[arg(long = "fault-hang-thread", env = "OFFPATH_FAULT_HANG_THREAD")]
    pub hang_thread: Option<usize>,
    /// A batch containing a text with this marker panics the inference thread.
    #[arg(long = "fault-panic-marker", env = "OFFPATH_FAULT_PANIC_MARKER")]
    pub panic_marker: Option<String>,
}

impl Config {
    /// The defaults, with these model directories and ONNX Runtime library.
    pub fn new(models: Vec<PathBuf>, ort_library: PathBuf) -> Self {
        Self {
            models,
            ort_library: Some(ort_library),
            inference_threads: 2,
            intra_threads: 1,
            max_batch: 32,
            sub_batch: 16,
            max_batch_tokens: 512,
            max_wait_ms: 5,
            max_in_flight: 256,
            batch_deadline_ms: 10_000,
            cancel_grace_ms: 2_000,
            nak_delay_ms: 1_000,
            stall_after_ms: 30_000,
            rebind_give_up_ms: 120_000,
            cache_entries: 10_000,
            cache_window_ms: 30_000,
            classify_concurrency: 64,
            classify_timeout_ms: 5_000,
            max_request_bytes: offpath_protocol::DEFAULT_MAX_REQUEST_BYTES,
            faults: Faults::default(),
            topology: offpath_protocol::topology::TopologyConfig::default(),
        }
    }

    pub(crate) fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}
