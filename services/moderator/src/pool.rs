//! Inference on dedicated OS threads, never on tokio's: each thread owns its models
//! (ONNX sessions need `&mut`), takes one batch at a time from a bounded queue and answers
//! on a oneshot. A watchdog terminates a run past its deadline (`RunOptions::terminate`)
//! and, when the thread still does not answer, abandons it and starts a replacement.
//!
//! The threads of one set of loaded models form a *generation*. A model reload loads a new
//! generation beside the running one and then switches new batches to it; the old
//! generation's threads finish the batches they hold and exit once its queues are empty
//! and no batch refers to it any more (its queues close with the last reference).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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

/// The models a generation runs, as verdicts name them: names and versions joined by `+`
/// (`minilm-insult+profanity`, `2+1.9.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Models {
    pub(crate) name: String,
    pub(crate) version: String,
}
/// A thread's model load: the policy's (names, versions), or why it failed.
type Loaded = Result<Models, crate::ModeratorError>;

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

/// One set of loaded models: its threads' queues and what verdicts call it.
struct Generation {
    shared: Queue,
    reserved: Queue,
    models: Arc<Models>,
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
    shared_threads: usize,
    reserved_threads: usize,
    spec: ThreadSpec,
    next_index: Arc<AtomicUsize>,
    deadline: Duration,
    grace: Duration,
}

impl Pool {
    /// Loads the models on `config.inference_threads` shared threads and
    /// `config.interactive_threads` reserved ones; fails if any thread cannot. Blocks while
    /// the models load.
    pub(crate) fn start(config: &Config) -> Result<Self, crate::ModeratorError> {
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
        let placeholder = Generation {
            shared: Queue::new(1),
            reserved: Queue::new(1),
            models: Arc::new(Models {
                name: String::new(),
                version: String::new(),
            }),
        };
        let pool = Self {
            current: RwLock::new(Arc::new(placeholder)),
            shared_threads: config.inference_threads.max(1),
            reserved_threads: config.interactive_threads,
            spec,
            next_index: Arc::new(AtomicUsize::new(0)),
            deadline: Duration::from_millis(config.batch_deadline_ms),
            grace: Duration::from_millis(config.cancel_grace_ms),
        };
        let first = pool.load()?;
        *pool.current.write().unwrap_or_else(|p| p.into_inner()) = first;
        Ok(pool)
    }

    /// The models of the generation in force.
    pub(crate) fn models(&self) -> Arc<Models> {
        Arc::clone(&self.generation().models)
    }

    fn generation(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Loads the model directories again into a new generation of threads and puts it in
    /// force; returns its models. On an error nothing changes (the new generation's
    /// threads that did load exit). Blocks while the models load.
    pub(crate) fn reload(&self) -> Result<Arc<Models>, crate::ModeratorError> {
        let next = self.load()?;
        let models = Arc::clone(&next.models);
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|p| p.into_inner()),
            next,
        );
        // Dropped here unless batches still hold it: its threads finish those and exit.
        drop(old);
        Ok(models)
    }

    /// Starts a generation's threads and waits until every one has loaded its models.
    fn load(&self) -> Result<Arc<Generation>, crate::ModeratorError> {
        let (shared, reserved) = (self.shared_threads, self.reserved_threads);
        let generation = Generation {
            shared: Queue::new(shared),
            reserved: Queue::new(reserved),
            models: Arc::new(Models {
                name: String::new(),
                version: String::new(),
            }),
        };
        let kinds = std::iter::repeat_n(Threads::Shared, shared)
            .chain(std::iter::repeat_n(Threads::Reserved, reserved));
        let mut loaded = None;
        for kind in kinds {
            let ready = self.start_thread(&generation.queue(kind).receiver, kind)?;
            let models = ready.recv().map_err(|_| {
                crate::ModeratorError::Thread("inference thread died at start".into())
            })??;
            loaded = Some(models);
        }
        let models = loaded.unwrap_or(Models {
            name: String::new(),
            version: String::new(),
        });
        Ok(Arc::new(Generation {
            models: Arc::new(models),
            ..generation
        }))
    }

    /// Starts a thread that loads its models and then serves `queue`; reports the load on
    /// the returned channel (a replacement does not wait: loading takes a second, and the
    /// watchdog runs on a tokio worker that must not block).
    fn start_thread(
        &self,
        queue: &Arc<Mutex<mpsc::Receiver<Job>>>,
        threads: Threads,
    ) -> Result<std::sync::mpsc::Receiver<Loaded>, crate::ModeratorError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spec = self.spec.clone();
        let queue = Arc::clone(queue);
        // With threads reserved for the interactive lane, the shared ones yield the CPU to
        // them: on a busy host a hold room's batch then runs nearly as fast as on an idle
        // one (the bulk threads lose nothing while the reserved ones are idle).
        let yields = threads == Threads::Shared && self.reserved_threads > 0;
        std::thread::Builder::new()
            .name(format!("offpath-infer-{index}"))
            .spawn(move || match load_policy(&spec) {
                Ok(policy) => {
                    if yields {
                        lower_priority(index);
                    }
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

    /// Runs one batch on one of `threads` of the generation in force, under the watchdog;
    /// the assessments come with the models that made them.
    pub(crate) async fn run(
        &self,
        texts: Vec<String>,
        threads: Threads,
    ) -> Result<(Vec<Assessment>, Arc<Models>), BatchError> {
        let generation = self.generation();
        let models = Arc::clone(&generation.models);
        self.run_on(&generation, texts, threads)
            .await
            .map(|assessments| (assessments, models))
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
                if let Err(err) = self.start_thread(&queue.receiver, threads) {
                    error!("could not replace the inference thread: {err}");
                }
                Err(BatchError::Hung)
            }
        }
    }
}

/// How much lower a shared inference thread's CPU priority is than a reserved one's, as a
/// nice increment: at +5 the scheduler gives a reserved thread about three times a shared
/// thread's share of a contended core.
const SHARED_NICE: libc::c_int = 5;

/// Lowers the calling thread's CPU priority by [`SHARED_NICE`] (on Linux, nice applies to
/// the thread; lowering needs no privilege). A failure is logged: the thread still serves.
#[allow(unsafe_code)]
fn lower_priority(index: usize) {
    // SAFETY: gettid(2) and setpriority(2) are plain system calls on the calling thread's
    // id; no memory is passed or shared.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, SHARED_NICE)
    };
    if result != 0 {
        let err = std::io::Error::last_os_error();
        warn!("inference thread {index}: could not lower its CPU priority: {err}");
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

fn model_ref(policy: &Policy) -> Models {
    let (names, versions): (Vec<_>, Vec<_>) = policy
        .model_name()
        .split('+')
        .map(|m| {
            let (n, v) = m.split_once('@').unwrap_or((m, ""));
            (n.to_string(), v.to_string())
        })
        .unzip();
    Models {
        name: names.join("+"),
        version: versions.join("+"),
    }
}

/// The thread's loop: one job at a time until the queue closes or the job was abandoned.
fn serve(index: usize, mut policy: Policy, spec: &ThreadSpec, queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.blocking_recv()
        };
        let Some(mut job) = job else {
            // The generation was replaced (a model reload) or the pool shut down.
            metrics::gauge!(m::INFERENCE_THREADS).decrement(1.0);
            return;
        };
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
