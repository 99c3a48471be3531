//! The moderator's configuration: flags with `OFFPATH_…` environment fallbacks.

use std::path::PathBuf;

use clap::Args;

mod cache;
mod classify;
mod inference;
mod intake;

pub use cache::CacheConfig;
pub use classify::ClassifyConfig;
pub use inference::InferenceConfig;
pub use intake::IntakeConfig;

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
    /// Inference threads and batches.
    #[command(flatten)]
    pub inference: InferenceConfig,
    /// What this process takes from the consumer.
    #[command(flatten)]
    pub intake: IntakeConfig,
    /// Synchronous classify calls.
    #[command(flatten)]
    pub classify: ClassifyConfig,
    /// The spam-wave cache.
    #[command(flatten)]
    pub cache: CacheConfig,
    /// When automatic blocks become flags.
    #[command(flatten)]
    pub brake: crate::BrakeConfig,
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
    /// `--sender-capacity`: 20,000 senders active within the hour, at most ~65 MiB.
    pub(crate) const SENDER_CAPACITY: usize = 20_000;
    pub(crate) const CAMPAIGN_CAPACITY: usize = 20_000;
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
            inference: InferenceConfig::default(),
            intake: IntakeConfig::default(),
            classify: ClassifyConfig::default(),
            cache: CacheConfig::default(),
            brake: crate::BrakeConfig::default(),
            faults: Faults::default(),
            topology: offpath_protocol::topology::TopologyConfig::default(),
        }
    }
}

impl Config {
    /// Every problem that makes the configuration unusable, each naming its flag (the
    /// launcher prints each and exits with status 64 before it connects to anything). Checks what can be known before starting:
    /// each model directory has a `model.toml`, the ONNX Runtime library (when set) is a
    /// file, counts are at least 1, and `max_in_flight` fits under the topology's
    /// `max_ack_pending` (the consumer that exists may still differ: the moderator warns
    /// when it binds one with less).
    pub fn validate(&self) -> Result<(), Vec<String>> {
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
        self.inference.validate(&mut problems);
        self.intake.validate(&mut problems);
        for (name, zero) in [
            (
                "--classify-concurrency",
                self.classify.classify_concurrency == 0,
            ),
            (
                "--classify-timeout-ms",
                self.classify.classify_timeout.is_zero(),
            ),
        ] {
            if zero {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        let max_ack_pending = self.topology.max_ack_pending;
        let in_flight = self.intake.max_in_flight;
        if max_ack_pending > 0 && i64::try_from(in_flight).unwrap_or(i64::MAX) > max_ack_pending {
            problems.push(format!(
                "--max-in-flight {in_flight} exceeds the consumer's max_ack_pending ({max_ack_pending})"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
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
            inference: InferenceConfig {
                inference_threads: 0,
                ..valid().inference
            },
            intake: IntakeConfig {
                max_in_flight: 5000,
                ..valid().intake
            },
            ..valid()
        };
        let problems = config.validate().unwrap_err().join("; ");
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
            intake: IntakeConfig {
                max_in_flight: 1024,
                ..valid().intake
            },
            ..valid()
        };
        assert_eq!(fits.validate(), Ok(()));
    }
}
