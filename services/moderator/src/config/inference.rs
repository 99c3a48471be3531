//! Inference: the threads and their ONNX sessions, how batches are formed, and how long one may run.

use clap::Args;
use offpath_ops::cli::Millis;

use super::defaults;

/// Inference: the threads and their ONNX sessions, how batches are formed, and how long one may run.
#[derive(Debug, Clone, Args)]
pub struct InferenceConfig {
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
    #[arg(long = "max-wait-ms", env = "OFFPATH_MAX_WAIT_MS", default_value_t = Millis::new(defaults::MAX_WAIT_MS))]
    pub max_wait: Millis,
    /// Deadline of one batch's inference; past it the run is terminated.
    #[arg(long = "batch-deadline-ms", env = "OFFPATH_BATCH_DEADLINE_MS", default_value_t = Millis::new(defaults::BATCH_DEADLINE_MS))]
    pub batch_deadline: Millis,
    /// After terminating a run, how long to wait before abandoning its thread.
    #[arg(long = "cancel-grace-ms", env = "OFFPATH_CANCEL_GRACE_MS", default_value_t = Millis::new(defaults::CANCEL_GRACE_MS))]
    pub cancel_grace: Millis,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            inference_threads: defaults::INFERENCE_THREADS,
            interactive_threads: defaults::INTERACTIVE_THREADS,
            intra_threads: defaults::INTRA_THREADS,
            max_batch: defaults::MAX_BATCH,
            sub_batch: defaults::SUB_BATCH,
            max_batch_tokens: defaults::MAX_BATCH_TOKENS,
            window_tokens: defaults::WINDOW_TOKENS,
            max_windows: defaults::MAX_WINDOWS,
            max_wait: Millis::new(defaults::MAX_WAIT_MS),
            batch_deadline: Millis::new(defaults::BATCH_DEADLINE_MS),
            cancel_grace: Millis::new(defaults::CANCEL_GRACE_MS),
        }
    }
}

impl InferenceConfig {
    /// Counts and deadlines that must be at least 1.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        for (name, value) in [
            ("--inference-threads", self.inference_threads),
            ("--intra-threads", self.intra_threads),
            ("--max-batch", self.max_batch),
            ("--sub-batch", self.sub_batch),
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--window-tokens", self.window_tokens),
            ("--max-windows", self.max_windows),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if self.batch_deadline.is_zero() {
            problems.push("--batch-deadline-ms must be at least 1".into());
        }
    }
}
