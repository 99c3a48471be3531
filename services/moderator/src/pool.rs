//! Inference on dedicated OS threads, never on tokio's: each thread owns its models
//! (ONNX sessions need `&mut`), takes one batch at a time from a bounded queue and answers
//! on a oneshot. A watchdog terminates a run past its deadline (`RunOptions::terminate`)
//! and, when the thread still does not answer, abandons it and starts a replacement.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use offpath_classifier::{Assessment, Model, RunOptions, SessionConfig, policy::Policy};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::config::Config;
use crate::metrics as m;

/// Why a batch produced no assessments.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum BatchError {
    /// The models returned an error.
    #[error("inference failed: {0}")]
    Failed(String),
    /// Pre/post-processing or inference panicked (caught).
    #[error("inference panicked: {0}")]
    Panicked(String),
    /// The run passed its deadline and was terminated (the thread survived).
    #[error("inference passed its deadline and was cancelled")]
    Cancelled,
    /// The run passed its deadline and the thread did not come back: it was replaced.
    #[error("inference hung; its thread was abandoned and replaced")]
    Hung,
    /// The pool is shutting down.
    #[error("inference pool closed")]
    Closed,
}

impl BatchError {
    /// Stable label for metrics and dead letters.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            BatchError::Failed(_) => "inference_failed",
            BatchError::Panicked(_) => "inference_panicked",
            BatchError::Cancelled => "inference_cancelled",
            BatchError::Hung => "inference_hung",
            BatchError::Closed => "shutdown",
        }
    }
}

type Reply = Result<Vec<Assessment>, BatchError>;
/// A thread's model load: the policy's (names, versions), or why it failed.
type Loaded = Result<(String, String), crate::ModeratorError>;

struct Job {
    texts: Vec<String>,
    run_options: Arc<RunOptions>,
    abandoned: Arc<AtomicBool>,
    started: Option<oneshot::Sender<()>>,
    reply: oneshot::Sender<Reply>,
}

/// What a new inference thread needs.
#[derive(Clone)]
struct ThreadSpec {
    models: Vec<PathBuf>,
    session: SessionConfig,
    sub_batch: usize,
    max_batch_tokens: usize,
    window_tokens: usize,
    max_windows: usize,
    faults: crate::config::Faults,
}

/// Which of the pool's threads run a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// The `--inference-threads`, for every lane.
    Shared,
    /// The `--interactive-threads`, for the interactive lane only.
    Reserved,
}

/// A queue of jobs and the threads' end of it. Bounded to its thread count: at most one
/// batch waits per thread, so the batcher feels backpressure instead of queueing batches
/// whose requests then age.
struct Queue {
    jobs: mpsc::Sender<Job>,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
}

impl Queue {
    fn new(threads: usize) -> Self {
        let (jobs, receiver) = mpsc::channel(threads.max(1));
        Self {
            jobs,
            receiver: Arc::new(Mutex::new(receiver)),
        }
    }
}

/// The inference threads and their queues.
pub(crate) struct Pool {
    shared: Queue,
    reserved: Queue,
    spec: ThreadSpec,
    next_index: Arc<AtomicUsize>,
    deadline: Duration,
    grace: Duration,
    model_name: String,
    model_version: String,
}

impl Pool {
    /// Loads the models on `config.inference_threads` shared threads and
    /// `config.interactive_threads` reserved ones; fails if any thread cannot.
    pub(crate) fn start(config: &Config) -> Result<Self, crate::ModeratorError> {
        let threads = config.inference_threads.max(1);
        let reserved = config.interactive_threads;
        let spec = ThreadSpec {
            models: config.models.clone(),
            session: SessionConfig {
                intra_threads: config.intra_threads,
                ..SessionConfig::default()
            },
            sub_batch: config.sub_batch,
            max_batch_tokens: config.max_batch_tokens,
            window_tokens: config.window_tokens,
            max_windows: config.max_windows,
            faults: config.faults.clone(),
        };
        let mut pool = Self {
            shared: Queue::new(threads),
            reserved: Queue::new(reserved),
            spec,
            next_index: Arc::new(AtomicUsize::new(0)),
            deadline: Duration::from_millis(config.batch_deadline_ms),
            grace: Duration::from_millis(config.cancel_grace_ms),
            model_name: String::new(),
            model_version: String::new(),
        };
        let kinds = std::iter::repeat_n(Threads::Shared, threads)
            .chain(std::iter::repeat_n(Threads::Reserved, reserved));
        for kind in kinds {
            let (name, version) = pool.spawn_thread(kind)?;
            pool.model_name = name;
            pool.model_version = version;
        }
        Ok(pool)
    }

    /// The policy's model names and versions (`a+b`, `1+1.9.1`).
    pub(crate) fn model(&self) -> (&str, &str) {
        (&self.model_name, &self.model_version)
    }

    fn queue(&self, threads: Threads) -> &Queue {
        match threads {
            Threads::Shared => &self.shared,
            Threads::Reserved => &self.reserved,
        }
    }

    /// Starts one thread and waits until its models are loaded.
    fn spawn_thread(&self, threads: Threads) -> Result<(String, String), crate::ModeratorError> {
        let ready_rx = self.start_thread(threads)?;
        ready_rx
            .recv()
            .map_err(|_| crate::ModeratorError::Thread("inference thread died at start".into()))?
    }

    /// Starts a thread that loads its models and then serves; reports the load on the
    /// returned channel (a replacement does not wait: loading takes a second, and the
    /// watchdog runs on a tokio worker that must not block).
    fn start_thread(
        &self,
        threads: Threads,
    ) -> Result<std::sync::mpsc::Receiver<Loaded>, crate::ModeratorError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spec = self.spec.clone();
        let queue = Arc::clone(&self.queue(threads).receiver);
        std::thread::Builder::new()
            .name(format!("offpath-infer-{index}"))
            .spawn(move || match load_policy(&spec) {
                Ok(policy) => {
                    let _ = ready_tx.send(Ok(model_ref(&policy)));
                    serve(index, policy, &spec, &queue);
                }
                Err(err) => {
                    error!("inference thread {index} could not load its models: {err}");
                    metrics::gauge!(m::INFERENCE_THREADS).decrement(1.0);
                    let _ = ready_tx.send(Err(err));
                }
            })
            .map_err(|e| crate::ModeratorError::Thread(e.to_string()))?;
        metrics::gauge!(m::INFERENCE_THREADS).increment(1.0);
        Ok(ready_rx)
    }

    /// Runs one batch on one of `threads` under the watchdog.
    pub(crate) async fn run(&self, texts: Vec<String>, threads: Threads) -> Reply {
        let run_options = RunOptions::new()
            .map(Arc::new)
            .map_err(|e| BatchError::Failed(format!("run options: {e}")))?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = oneshot::channel();
        let (reply_tx, mut reply_rx) = oneshot::channel();
        let job = Job {
            texts,
            run_options: Arc::clone(&run_options),
            abandoned: Arc::clone(&abandoned),
            started: Some(started_tx),
            reply: reply_tx,
        };
        let queue = self.queue(threads);
        queue.jobs.send(job).await.map_err(|_| BatchError::Closed)?;
        // The deadline covers the run, not the wait for a free thread.
        started_rx.await.map_err(|_| BatchError::Closed)?;
        let started = Instant::now();
        if let Ok(reply) = tokio::time::timeout(self.deadline, &mut reply_rx).await {
            return reply.unwrap_or(Err(BatchError::Closed));
        }
        warn!(deadline = ?self.deadline, "inference past its deadline: terminating the run");
        metrics::counter!(m::INFERENCE_CANCELLED).increment(1);
        let _ = run_options.terminate();
        match tokio::time::timeout(self.grace, &mut reply_rx).await {
            Ok(Ok(_)) => Err(BatchError::Cancelled),
            _ => {
                abandoned.store(true, Ordering::Relaxed);
                error!(stuck_for = ?started.elapsed(), "inference thread did not return: replacing it");
                metrics::counter!(m::THREADS_REPLACED).increment(1);
                metrics::gauge!(m::INFERENCE_THREADS).decrement(1.0);
                if let Err(err) = self.start_thread(threads) {
                    error!("could not replace the inference thread: {err}");
                }
                Err(BatchError::Hung)
            }
        }
    }
}

fn load_policy(spec: &ThreadSpec) -> Result<Policy, crate::ModeratorError> {
    let models = spec
        .models
        .iter()
        .map(|dir| Model::load(dir, &spec.session))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy::new(models, spec.sub_batch, spec.max_batch_tokens)
        .with_window_tokens(spec.window_tokens)
        .with_max_windows(spec.max_windows))
}

fn model_ref(policy: &Policy) -> (String, String) {
    let (names, versions): (Vec<_>, Vec<_>) = policy
        .model_name()
        .split('+')
        .map(|m| {
            let (n, v) = m.split_once('@').unwrap_or((m, ""));
            (n.to_string(), v.to_string())
        })
        .unzip();
    (names.join("+"), versions.join("+"))
}

/// The thread's loop: one job at a time until the queue closes or the job was abandoned.
fn serve(index: usize, mut policy: Policy, spec: &ThreadSpec, queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.blocking_recv()
        };
        let Some(mut job) = job else { return };
        if let Some(started) = job.started.take() {
            let _ = started.send(());
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            inject_faults(index, spec, &job);
            let refs: Vec<&str> = job.texts.iter().map(String::as_str).collect();
            let assessed = policy.assess(&refs, Some(&job.run_options));
            count_views(policy.last_stats());
            assessed
        }));
        let reply = match outcome {
            Ok(Ok(assessments)) => Ok(assessments),
            Ok(Err(err)) => Err(BatchError::Failed(err.to_string())),
            Err(panic) => Err(BatchError::Panicked(panic_message(&panic))),
        };
        let _ = job.reply.send(reply);
        if job.abandoned.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// Counts what the policy read beyond one look per text (normalised views, extra windows).
fn count_views(stats: offpath_classifier::policy::ViewStats) {
    let counts = [
        (m::NORMALISED, stats.normalised),
        (m::EXTRA_WINDOWS, stats.extra_windows),
        (m::WINDOWS_CAPPED, stats.capped),
    ];
    for (name, count) in counts {
        if count > 0 {
            metrics::counter!(name).increment(count as u64);
        }
    }
}

fn inject_faults(index: usize, spec: &ThreadSpec, job: &Job) {
    let faults = &spec.faults;
    if faults.batch_delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(faults.batch_delay_ms));
    }
    if faults.hang_thread == Some(index) {
        // A hang no terminate() can reach (not inside ONNX Runtime): only abandonment ends it.
        while !job.abandoned.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if let Some(marker) = &faults.panic_marker
        && job.texts.iter().any(|t| t.contains(marker.as_str()))
    {
        panic!("injected fault: panic marker in batch");
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}
