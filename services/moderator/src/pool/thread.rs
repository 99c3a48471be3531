//! The inference threads themselves: starting a generation's threads (or one
//! replacement), loading the models on each, and the loop that serves a queue's batches
//! (faults injected, panics caught, the thread's priority lowered).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offpath_classifier::{Model, policy::Policy};
use offpath_protocol::ModelRef;
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::{BatchError, Generation, Job, Loaded, Queue, Spawner, ThreadSpec, Threads, models_of};
use crate::metrics as m;

impl Spawner {
    /// Loads the model directories into a new generation of threads (not yet in force) and
    /// waits until every thread has loaded; refused unless every thread loaded the same
    /// models, and `expected` when given (files that change while threads load them would
    /// otherwise give one generation two models under one name). On an error the threads
    /// that did load exit. Blocks while the models load.
    pub(crate) fn load(
        &self,
        expected: Option<&ModelRef>,
    ) -> Result<Arc<Generation>, crate::ModeratorError> {
        let (shared, reserved) = (self.shared_threads, self.reserved_threads);
        let queues = [Queue::new(shared), Queue::new(reserved)];
        let kinds = std::iter::repeat_n(Threads::Shared, shared)
            .chain(std::iter::repeat_n(Threads::Reserved, reserved));
        let mut loaded: Option<ModelRef> = expected.cloned();
        for kind in kinds {
            let queue = &queues[usize::from(kind == Threads::Reserved)];
            let ready = self.start_thread(&queue.receiver, &queue.live, kind)?;
            let models = ready.recv().map_err(|_| {
                crate::ModeratorError::Thread("inference thread died at start".into())
            })??;
            match &loaded {
                Some(first) if *first != models => {
                    return Err(crate::ModeratorError::Thread(format!(
                        "an inference thread loaded {}@{}, not {}@{} (model files changed \
                         while they were loaded?)",
                        models.name, models.version, first.name, first.version
                    )));
                }
                Some(_) => {}
                None => loaded = Some(models),
            }
        }
        let [shared, reserved] = queues;
        Ok(Arc::new(Generation {
            shared,
            reserved,
            models: Arc::new(loaded.unwrap_or_else(|| models_of(&[]))),
        }))
    }

    /// Starts a thread that loads its models and then serves `queue`; reports the load on
    /// the returned channel (a replacement does not wait: loading takes a second, and the
    /// watchdog runs on a tokio worker that must not block).
    pub(super) fn start_thread(
        &self,
        queue: &Arc<Mutex<mpsc::Receiver<Job>>>,
        live: &Arc<AtomicUsize>,
        threads: Threads,
    ) -> Result<std::sync::mpsc::Receiver<Loaded>, crate::ModeratorError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spec = self.spec.clone();
        let queue = Arc::clone(queue);
        let live = Arc::clone(live);
        // With threads reserved for the interactive lane, the shared ones yield the CPU to
        // them: on a busy host a hold room's batch then runs nearly as fast as on an idle
        // one (the bulk threads lose nothing while the reserved ones are idle).
        let yields = threads == Threads::Shared && self.reserved_threads > 0;
        std::thread::Builder::new()
            .name(format!("offpath-infer-{index}"))
            .spawn(move || {
                // Before the models load: ONNX Runtime's own threads, made with the
                // session, inherit the priority.
                if yields {
                    lower_priority(index);
                }
                match load_policy(&spec) {
                    Ok(policy) => {
                        let models = Arc::new(model_ref(&policy));
                        live.fetch_add(1, Ordering::Relaxed);
                        let _ = ready_tx.send(Ok((*models).clone()));
                        if serve(index, policy, &models, &spec, &queue) == Exit::Closed {
                            live.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    Err(err) => {
                        error!("inference thread {index} could not load its models: {err}");
                        metrics::gauge!(m::INFERENCE_THREADS).decrement(1.0);
                        let _ = ready_tx.send(Err(err));
                    }
                }
            })
            .map_err(|e| crate::ModeratorError::Thread(e.to_string()))?;
        metrics::gauge!(m::INFERENCE_THREADS).increment(1.0);
        Ok(ready_rx)
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
    // SAFETY: gettid(2), getpriority(2) and setpriority(2) are plain system calls on the
    // calling thread's id; no memory is passed or shared. getpriority returns the nice
    // value itself (-20..=19; -1 is a valid value, and it cannot fail for our own id).
    let result = unsafe {
        let tid = libc::gettid() as libc::id_t;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (nice + SHARED_NICE).min(19))
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

fn model_ref(policy: &Policy) -> ModelRef {
    let (names, versions): (Vec<_>, Vec<_>) = policy
        .model_name()
        .split('+')
        .map(|m| {
            let (n, v) = m.split_once('@').unwrap_or((m, ""));
            (n.to_string(), v.to_string())
        })
        .unzip();
    ModelRef {
        name: names.join("+"),
        version: versions.join("+"),
    }
}

/// Why a thread's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Its queue closed (its generation was replaced, or the pool shut down).
    Closed,
    /// The watchdog gave up on it (and counted it gone) while it was stuck in a job.
    Abandoned,
}

/// The thread's loop: one job at a time until the queue closes or the job was abandoned.
fn serve(
    index: usize,
    mut policy: Policy,
    models: &Arc<ModelRef>,
    spec: &ThreadSpec,
    queue: &Mutex<mpsc::Receiver<Job>>,
) -> Exit {
    loop {
        let job = {
            let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.blocking_recv()
        };
        let Some(mut job) = job else {
            // The generation was replaced (a model reload) or the pool shut down.
            metrics::gauge!(m::INFERENCE_THREADS).decrement(1.0);
            return Exit::Closed;
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
            Ok(Ok(assessments)) => Ok((assessments, Arc::clone(models))),
            Ok(Err(err)) => Err(BatchError::Failed(err.to_string())),
            Err(panic) => Err(BatchError::Panicked(panic_message(&panic))),
        };
        let _ = job.reply.send(reply);
        if job.abandoned.load(Ordering::Relaxed) {
            return Exit::Abandoned;
        }
    }
}

/// Counts what the policy read beyond one look per text (normalised views, extra windows,
/// windows read to locate spans).
fn count_views(stats: offpath_classifier::policy::ViewStats) {
    let counts = [
        (m::NORMALISED, stats.normalised),
        (m::EXTRA_WINDOWS, stats.extra_windows),
        (m::WINDOWS_CAPPED, stats.capped),
        (m::SPAN_WINDOWS, stats.span_windows),
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
