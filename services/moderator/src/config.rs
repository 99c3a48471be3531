//! The moderator's configuration: flags with `OFFPATH_…` environment fallbacks.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Everything `offpath moderator` can be told.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Model directories (each with a model.toml) combined into the moderation policy.
    #[arg(long = "model", env = "OFFPATH_MODELS", value_delimiter = ',', default_values = defaults::MODELS)]
    pub models: Vec<PathBuf>,
    /// Policy file (TOML: named policies with their models, thresholds and actions, and
    /// which tenant and room uses which; `offpath policy check FILE` validates one).
    /// Without one, every label of every model counts at its manifest's thresholds.
    #[arg(long, env = "OFFPATH_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Operator public keys (`O…`, from `offpath policy keygen`) whose signed policies this
    /// moderator takes from the fleet's policy bucket (several: key rotation). Without one,
    /// the bucket is not followed: any NATS role can make the server write on its key, so
    /// only a signature says a value is the operator's.
    #[arg(long, env = "OFFPATH_POLICY_SIGNERS", value_delimiter = ',')]
    pub policy_signers: Vec<String>,
    /// ONNX Runtime shared library [default: $ORT_DYLIB_PATH, else .tools/lib/libonnxruntime.so].
    #[arg(long, env = "OFFPATH_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
    /// Inference threads, each with its own ONNX session.
    #[arg(long, env = "OFFPATH_INFERENCE_THREADS", default_value_t = defaults::INFERENCE_THREADS)]
    pub inference_threads: usize,
    /// Inference threads reserved for the interactive lane (hold rooms), each with its own
    /// ONNX session (memory for one more copy of the models): a request someone waits for
    /// runs at once instead of behind a bulk batch. 0: the lane shares the threads above.
    #[arg(long, env = "OFFPATH_INTERACTIVE_THREADS", default_value_t = defaults::INTERACTIVE_THREADS)]
    pub interactive_threads: usize,
    /// Threads one inference run may use inside ONNX Runtime.
    #[arg(long, env = "OFFPATH_INTRA_THREADS", default_value_t = defaults::INTRA_THREADS)]
    pub intra_threads: usize,
    /// Most requests collected into one batch.
    #[arg(long, env = "OFFPATH_MAX_BATCH", default_value_t = defaults::MAX_BATCH)]
    pub max_batch: usize,
    /// Most texts per model run inside a batch (length-grouped).
    #[arg(long, env = "OFFPATH_SUB_BATCH", default_value_t = defaults::SUB_BATCH)]
    pub sub_batch: usize,
    /// Most padded tokens (longest × count) per model run. Small on purpose: one long
    /// message must not pad a whole run (measured: 4096 → 512 doubled throughput and halved
    /// RSS with `offpath bench throughput`).
    #[arg(long, env = "OFFPATH_MAX_BATCH_TOKENS", default_value_t = defaults::MAX_BATCH_TOKENS)]
    pub max_batch_tokens: usize,
    /// Tokens per window when a text is longer than a model reads (256 for the insult
    /// model): short windows keep one insult from drowning in the model's mean over many
    /// harmless tokens, at the price of more false positives on long clean texts.
    #[arg(long, env = "OFFPATH_WINDOW_TOKENS", default_value_t = defaults::WINDOW_TOKENS)]
    pub window_tokens: usize,
    /// Most windows read of one long text: the first ones and the last; the default
    /// covers the largest request in English.
    #[arg(long, env = "OFFPATH_MAX_WINDOWS", default_value_t = defaults::MAX_WINDOWS)]
    pub max_windows: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, env = "OFFPATH_MAX_WAIT_MS", default_value_t = defaults::MAX_WAIT_MS)]
    pub max_wait_ms: u64,
    /// Requests held (pulled, not yet acked) by this process; must not exceed the
    /// consumer's max_ack_pending.
    #[arg(long, env = "OFFPATH_MAX_IN_FLIGHT", default_value_t = defaults::MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Deadline of one batch's inference; past it the run is terminated.
    #[arg(long, env = "OFFPATH_BATCH_DEADLINE_MS", default_value_t = defaults::BATCH_DEADLINE_MS)]
    pub batch_deadline_ms: u64,
    /// After terminating a run, how long to wait before abandoning its thread.
    #[arg(long, env = "OFFPATH_CANCEL_GRACE_MS", default_value_t = defaults::CANCEL_GRACE_MS)]
    pub cancel_grace_ms: u64,
    /// Redelivery delay of a request whose batch failed or hung.
    #[arg(long, env = "OFFPATH_NAK_DELAY_MS", default_value_t = defaults::NAK_DELAY_MS)]
    pub nak_delay_ms: u64,
    /// `/readyz` turns not ready when requests are in flight and no inference finished for
    /// this long.
    #[arg(long, env = "OFFPATH_STALL_AFTER_MS", default_value_t = defaults::STALL_AFTER_MS)]
    pub stall_after_ms: u64,
    /// How long the moderator keeps trying to (re-)bind its JetStream consumer, re-creating
    /// a deleted stream or consumer, before it gives up and exits with an error. Time
    /// disconnected from NATS counts too (binding fails meanwhile).
    #[arg(long, env = "OFFPATH_REBIND_GIVE_UP_MS", default_value_t = defaults::REBIND_GIVE_UP_MS)]
    pub rebind_give_up_ms: u64,
    /// Texts remembered for spam waves (identical short texts reuse one inference); 0 off.
    #[arg(long, env = "OFFPATH_CACHE_ENTRIES", default_value_t = defaults::CACHE_ENTRIES)]
    pub cache_entries: usize,
    /// How long a remembered assessment is reused.
    #[arg(long, env = "OFFPATH_CACHE_WINDOW_MS", default_value_t = defaults::CACHE_WINDOW_MS)]
    pub cache_window_ms: u64,
    /// Synchronous offpath.classify calls served at once; more are refused as overloaded.
    #[arg(long, env = "OFFPATH_CLASSIFY_CONCURRENCY", default_value_t = defaults::CLASSIFY_CONCURRENCY)]
    pub classify_concurrency: usize,
    /// Deadline of a synchronous offpath.classify call.
    #[arg(long, env = "OFFPATH_CLASSIFY_TIMEOUT_MS", default_value_t = defaults::CLASSIFY_TIMEOUT_MS)]
    pub classify_timeout_ms: u64,
    /// Largest accepted request payload, in bytes.
    #[arg(long, env = "OFFPATH_MAX_REQUEST_BYTES", default_value_t = defaults::MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Fault injection (tests and benchmarks only).
    #[command(flatten)]
    pub faults: Faults,
    /// Settings of the JetStream topology, used only to re-create what is missing (what
    /// exists is never changed: `offpath topology` owns it). Set by the launcher.
    #[arg(skip)]
    pub topology: offpath_protocol::topology::TopologyConfig,
}

/// The model directories a moderator loads by default, relative to the checkout (also the
/// default of the launcher's commands that read models: `doctor`, `policy`).
pub const DEFAULT_MODELS: [&str; 2] = defaults::MODELS;

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

/// The defaults: clap's `default_value_t` and [`Config::default`] both read these, so a
/// test's configuration and an operator's are the same unless one says otherwise.
pub(crate) mod defaults {
    /// Model directories, relative to the checkout.
    pub(crate) const MODELS: [&str; 2] = ["models/minilm-insult", "models/profanity"];
    /// `--inference-threads`.
    pub(crate) const INFERENCE_THREADS: usize = 2;
    /// `--interactive-threads`.
    pub(crate) const INTERACTIVE_THREADS: usize = 1;
    /// `--intra-threads`.
    pub(crate) const INTRA_THREADS: usize = 1;
    /// `--max-batch`.
    pub(crate) const MAX_BATCH: usize = 32;
    /// `--sub-batch`.
    pub(crate) const SUB_BATCH: usize = 16;
    /// `--max-batch-tokens`.
    pub(crate) const MAX_BATCH_TOKENS: usize = 512;
    /// `--window-tokens`.
    pub(crate) const WINDOW_TOKENS: usize = offpath_classifier::policy::DEFAULT_WINDOW_TOKENS;
    /// `--max-windows`.
    pub(crate) const MAX_WINDOWS: usize = offpath_classifier::policy::DEFAULT_MAX_WINDOWS;
    /// `--max-wait-ms`.
    pub(crate) const MAX_WAIT_MS: u64 = 5;
    /// `--max-in-flight`: a quarter of the topology's `max_ack_pending` (1024), so four
    /// moderators with the default fit under it.
    pub(crate) const MAX_IN_FLIGHT: usize = 256;
    /// `--batch-deadline-ms`.
    pub(crate) const BATCH_DEADLINE_MS: u64 = 10_000;
    /// `--cancel-grace-ms`.
    pub(crate) const CANCEL_GRACE_MS: u64 = 2_000;
    /// `--nak-delay-ms`.
    pub(crate) const NAK_DELAY_MS: u64 = 1_000;
    /// `--stall-after-ms`.
    pub(crate) const STALL_AFTER_MS: u64 = 30_000;
    /// `--rebind-give-up-ms`.
    pub(crate) const REBIND_GIVE_UP_MS: u64 = 120_000;
    /// `--cache-entries`.
    pub(crate) const CACHE_ENTRIES: usize = 10_000;
    /// `--cache-window-ms`.
    pub(crate) const CACHE_WINDOW_MS: u64 = 30_000;
    /// `--classify-concurrency`.
    pub(crate) const CLASSIFY_CONCURRENCY: usize = 64;
    /// `--classify-timeout-ms`.
    pub(crate) const CLASSIFY_TIMEOUT_MS: u64 = 5_000;
    /// `--max-request-bytes`.
    pub(crate) const MAX_REQUEST_BYTES: usize = offpath_protocol::DEFAULT_MAX_REQUEST_BYTES;
}

impl Default for Config {
    /// The documented defaults; no ONNX Runtime library (the launcher finds one). Reads
    /// neither the command line nor the environment.
    fn default() -> Self {
        Self {
            models: defaults::MODELS.iter().map(PathBuf::from).collect(),
            policies: None,
            policy_signers: Vec::new(),
            ort_library: None,
            inference_threads: defaults::INFERENCE_THREADS,
            interactive_threads: defaults::INTERACTIVE_THREADS,
            intra_threads: defaults::INTRA_THREADS,
            max_batch: defaults::MAX_BATCH,
            sub_batch: defaults::SUB_BATCH,
            max_batch_tokens: defaults::MAX_BATCH_TOKENS,
            window_tokens: defaults::WINDOW_TOKENS,
            max_windows: defaults::MAX_WINDOWS,
            max_wait_ms: defaults::MAX_WAIT_MS,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            batch_deadline_ms: defaults::BATCH_DEADLINE_MS,
            cancel_grace_ms: defaults::CANCEL_GRACE_MS,
            nak_delay_ms: defaults::NAK_DELAY_MS,
            stall_after_ms: defaults::STALL_AFTER_MS,
            rebind_give_up_ms: defaults::REBIND_GIVE_UP_MS,
            cache_entries: defaults::CACHE_ENTRIES,
            cache_window_ms: defaults::CACHE_WINDOW_MS,
            classify_concurrency: defaults::CLASSIFY_CONCURRENCY,
            classify_timeout_ms: defaults::CLASSIFY_TIMEOUT_MS,
            max_request_bytes: defaults::MAX_REQUEST_BYTES,
            faults: Faults::default(),
            topology: offpath_protocol::topology::TopologyConfig::default(),
        }
    }
}

impl Config {
    /// Problems that make the configuration unusable, on one line (the launcher exits with
    /// status 64 before it connects to anything). Checks what can be known before starting:
    /// each model directory has a `model.toml`, the ONNX Runtime library (when set) is a
    /// file, counts are at least 1, and `max_in_flight` fits under the topology's
    /// `max_ack_pending` (the consumer that exists may still differ: the moderator warns
    /// when it binds one with less).
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.models.is_empty() {
            problems.push("--model: no model directory given".to_string());
        }
        for dir in &self.models {
            if !dir.join("model.toml").is_file() {
                problems.push(format!("--model {}: no model.toml there", dir.display()));
            }
        }
        if let Some(path) = &self.policies
            && let Err(err) = self.load_policies(path)
        {
            problems.push(format!("--policies: {err}"));
        }
        if let Err(err) = self.signers() {
            problems.push(format!("--policy-signers: {err}"));
        }
        if let Some(ort) = &self.ort_library
            && !ort.is_file()
        {
            problems.push(format!("--ort-library {}: no such file", ort.display()));
        }
        for (name, value) in [
            ("--inference-threads", self.inference_threads),
            ("--intra-threads", self.intra_threads),
            ("--max-batch", self.max_batch),
            ("--sub-batch", self.sub_batch),
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--window-tokens", self.window_tokens),
            ("--max-windows", self.max_windows),
            ("--max-in-flight", self.max_in_flight),
            ("--classify-concurrency", self.classify_concurrency),
            ("--max-request-bytes", self.max_request_bytes),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        for (name, value) in [
            ("--batch-deadline-ms", self.batch_deadline_ms),
            ("--stall-after-ms", self.stall_after_ms),
            ("--rebind-give-up-ms", self.rebind_give_up_ms),
            ("--classify-timeout-ms", self.classify_timeout_ms),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        let max_ack_pending = self.topology.max_ack_pending;
        if max_ack_pending > 0
            && i64::try_from(self.max_in_flight).unwrap_or(i64::MAX) > max_ack_pending
        {
            problems.push(format!(
                "--max-in-flight {} exceeds the consumer's max_ack_pending ({max_ack_pending})",
                self.max_in_flight
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn load_policies(
        &self,
        path: &std::path::Path,
    ) -> Result<crate::PolicySet, crate::ModeratorError> {
        Ok(crate::PolicySet::load(path, &self.manifests()?)?)
    }

    pub(crate) fn manifests(
        &self,
    ) -> Result<Vec<offpath_classifier::Manifest>, crate::ModeratorError> {
        self.models
            .iter()
            .map(|dir| Ok(offpath_classifier::Manifest::load(dir)?))
            .collect()
    }

    /// The keys whose signed bucket values this moderator trusts.
    pub(crate) fn signers(
        &self,
    ) -> Result<
        offpath_protocol::policy_signature::Signers,
        offpath_protocol::policy_signature::KeyError,
    > {
        offpath_protocol::policy_signature::Signers::parse(&self.policy_signers)
    }

    pub(crate) fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The models of the checkout, with every other setting at its default.
    fn valid() -> Config {
        Config {
            models: defaults::MODELS
                .iter()
                .map(|m| checkout().join(m))
                .collect(),
            ..Config::default()
        }
    }

    /// An empty command line gives exactly `Config::default()`: clap and `Default` read
    /// the same constants. (Assumes no `OFFPATH_…` moderator variable is set in the test's
    /// environment, which is what it compares against.)
    #[test]
    fn clap_defaults_are_the_default() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let parsed = Wrapper::try_parse_from(["moderator"])
            .expect("parses")
            .config;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }

    /// The defaults with the checkout's models are valid.
    #[test]
    fn defaults_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    /// A missing model directory, a missing runtime library, a zero count and an in-flight
    /// bound above the consumer's max_ack_pending are each named, on one line.
    #[test]
    fn bad_settings_are_named() {
        let config = Config {
            models: vec![PathBuf::from("/nonexistent")],
            ort_library: Some(PathBuf::from("/nonexistent/libonnxruntime.so")),
            inference_threads: 0,
            max_in_flight: 5000,
            ..valid()
        };
        let problems = config.validate().unwrap_err();
        for expected in [
            "--model /nonexistent: no model.toml there",
            "--ort-library /nonexistent/libonnxruntime.so: no such file",
            "--inference-threads must be at least 1",
            "--max-in-flight 5000 exceeds the consumer's max_ack_pending (1024)",
        ] {
            assert!(
                problems.contains(expected),
                "{expected:?} not in {problems:?}"
            );
        }
        assert!(!problems.contains('\n'), "{problems}");
        let fits = Config {
            max_in_flight: 1024,
            ..valid()
        };
        assert_eq!(fits.validate(), Ok(()));
    }
}
