//! Inference on dedicated OS threads, never on tokio's: each thread owns its models
//! (ONNX sessions need `&mut`), takes one batch at a time from a bounded queue and answers
//! on a oneshot. A watchdog terminates a run past its deadline (`RunOptions::terminate`)
//! and, when the thread still does not answer, abandons it and starts a replacement.
//!
//! The threads of one set of loaded models form a *generation*. A model reload loads a new
//! generation beside the running one and then switches new batches to it; the old
//! generation's threads finish the batches they hold and exit once its queues are empty
//! and no batch refers to it any more (its queues close with the last reference).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use offpath_classifier::{Assessment, RunOptions, SessionConfig};
use offpath_protocol::ModelRef;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::config::Config;
use crate::metrics as m;

mod thread;

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

/// A batch's assessments and the models of the thread that made them.
type Reply = Result<(Vec<Assessment>, Arc<ModelRef>), BatchError>;

/// The models `manifests` describe, in their order, as verdicts name them: names and
/// versions joined by `+` (`minilm-insult+profanity`, `2+1.9.1`).
pub(crate) fn models_of(manifests: &[offpath_classifier::Manifest]) -> ModelRef {
    let join = |part: fn(&offpath_classifier::Manifest) -> &str| {
        manifests.iter().map(part).collect::<Vec<_>>().join("+")
    };
    ModelRef {
        name: join(|m| &m.name),
        version: join(|m| &m.version),
    }
}

/// A thread's model load: the policy's (names, versions), or why it failed.
type Loaded = Result<ModelRef, crate::ModeratorError>;

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
    /// Threads serving it now (a thread whose replacement could not load is missing).
    live: Arc<AtomicUsize>,
}

impl Queue {
    fn new(threads: usize) -> Self {
        let (jobs, receiver) = mpsc::channel(threads.max(1));
        Self {
            jobs,
            receiver: Arc::new(Mutex::new(receiver)),
            live: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One set of loaded models: its threads' queues and what verdicts call it. Made by
/// [`Pool::load`], put in force by [`Pool::install`].
pub(crate) struct Generation {
    shared: Queue,
    reserved: Queue,
    models: Arc<ModelRef>,
}

impl Generation {
    fn queue(&self, threads: Threads) -> &Queue {
        match threads {
            Threads::Shared => &self.shared,
            Threads::Reserved => &self.reserved,
        }
    }
}

/// The inference threads of the generation in force.
pub(crate) struct Pool {
    current: RwLock<Arc<Generation>>,
    spawner: Spawner,
    deadline: Duration,
    grace: Duration,
}

/// What starting a generation's threads, or one replacement, takes.
struct Spawner {
    shared_threads: usize,
    reserved_threads: usize,
    spec: ThreadSpec,
    next_index: AtomicUsize,
}

impl Pool {
    /// Loads the models on `config.inference.inference_threads` shared threads and
    /// `config.inference.interactive_threads` reserved ones; fails if any thread cannot. Blocks while
    /// the models load.
    pub(crate) fn start(config: &Config) -> Result<Self, crate::ModeratorError> {
        let spec = ThreadSpec {
            models: config.models.clone(),
            session: SessionConfig {
                intra_threads: config.inference.intra_threads,
                ..SessionConfig::default()
            },
            sub_batch: config.inference.sub_batch,
            max_batch_tokens: config.inference.max_batch_tokens,
            window_tokens: config.inference.window_tokens,
            max_windows: config.inference.max_windows,
            faults: config.faults.clone(),
        };
        let spawner = Spawner {
            shared_threads: config.inference.inference_threads.max(1),
            reserved_threads: config.inference.interactive_threads,
            spec,
            next_index: AtomicUsize::new(0),
        };
        let first = spawner.load(None)?;
        Ok(Self {
            current: RwLock::new(first),
            spawner,
            deadline: config.inference.batch_deadline.get(),
            grace: config.inference.cancel_grace.get(),
        })
    }

    /// The models of the generation in force.
    pub(crate) fn models(&self) -> Arc<ModelRef> {
        Arc::clone(&self.generation().models)
    }

    fn generation(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `next` in force: batches formed from now on run on it. The generation it
    /// replaces is dropped once no running batch holds it; its threads finish those batches
    /// and exit.
    pub(crate) fn install(&self, next: Arc<Generation>) {
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|p| p.into_inner()),
            next,
        );
        drop(old);
    }

    /// Loads the model directories into a new generation of threads, not yet in force
    /// ([`Spawner::load`]).
    pub(crate) fn load(
        &self,
        expected: Option<&ModelRef>,
    ) -> Result<Arc<Generation>, crate::ModeratorError> {
        self.spawner.load(expected)
    }

    /// Runs one batch on one of `threads` of the generation in force (the shared ones when
    /// no reserved thread is left), under the watchdog; the assessments come with the
    /// models of the thread that made them.
    pub(crate) async fn run(&self, texts: Vec<String>, threads: Threads) -> Reply {
        let generation = self.generation();
        let threads = match threads {
            Threads::Reserved if generation.reserved.live.load(Ordering::Relaxed) == 0 => {
                Threads::Shared
            }
            threads => threads,
        };
        self.run_on(&generation, texts, threads).await
    }

    async fn run_on(&self, generation: &Generation, texts: Vec<String>, threads: Threads) -> Reply {
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
        let queue = generation.queue(threads);
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
                queue.live.fetch_sub(1, Ordering::Relaxed);
                // The replacement loads what the directories hold now: its verdicts name
                // the models it loaded (see `serve`), whatever this generation's are.
                let replacement = self
                    .spawner
                    .start_thread(&queue.receiver, &queue.live, threads);
                if let Err(err) = replacement {
                    error!("could not replace the inference thread: {err}");
                }
                Err(BatchError::Hung)
            }
        }
    }
}
