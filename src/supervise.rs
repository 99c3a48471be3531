//! Keeping `offpath up`'s children running: a child that exits on its own (a crash, a
//! kill, a non-zero exit because it gave up) is started again with the same flags and
//! addresses, after a delay that doubles from 1 s to 30 s while it keeps failing and starts
//! over once it has stayed up for a minute. The other children keep running meanwhile.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Context;
use offpath_local::{NatsCluster, NatsServer};
use tracing::{info, warn};

use offpath_local::Proc;

/// Delay before the first restart, and after a child that had stayed up.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// Longest delay between restarts.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A child up this long counts as healthy: its next restart waits [`FIRST_DELAY`] again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The restart schedule of one child: when it started, how long the last wait was, when
/// the next start is due. Pure bookkeeping: no processes, so tests drive it with instants.
#[derive(Debug)]
pub(crate) struct Restarts {
    started: Instant,
    delay: Option<Duration>,
    due: Option<Instant>,
    count: u64,
}

impl Restarts {
    /// A child started at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            started: now,
            delay: None,
            due: None,
            count: 0,
        }
    }

    /// The child exited at `now`: schedules its restart and returns the delay.
    pub(crate) fn exited(&mut self, now: Instant) -> Duration {
        let delay = match self.delay {
            Some(previous) if now.duration_since(self.started) < STABLE_AFTER => {
                (previous * 2).min(MAX_DELAY)
            }
            _ => FIRST_DELAY,
        };
        self.delay = Some(delay);
        self.due = Some(now + delay);
        delay
    }

    /// Whether a restart is scheduled and due at `now`.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.due.is_some_and(|due| now >= due)
    }

    /// A restart attempt at `now`: counts it; a failed attempt is rescheduled with
    /// [`exited`](Self::exited).
    pub(crate) fn restarted(&mut self, now: Instant) -> u64 {
        self.started = now;
        self.due = None;
        self.count += 1;
        self.count
    }
}

/// A service child (`offpath moderator`, `offpath transport`) that is restarted when it
/// exits.
#[derive(Debug)]
pub(crate) struct Supervised {
    /// Name for logs, e.g. `moderator-1`.
    pub name: String,
    /// Where its `/readyz` answers (the same after a restart).
    pub ops: SocketAddr,
    args: Vec<String>,
    env: ChildEnv,
    proc: Option<Proc>,
    restarts: Restarts,
}

/// Environment changes of a child (`None` removes an inherited variable); it may hold a
/// password, so `Debug` shows only the names.
#[derive(Clone, Default)]
pub(crate) struct ChildEnv(pub Vec<(String, Option<String>)>);

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(key, _)| key))
            .finish()
    }
}

impl Supervised {
    /// Starts `offpath <args>` (from the main thread: the child dies with the thread that
    /// spawns it).
    pub(crate) fn start(
        name: &str,
        args: Vec<String>,
        env: ChildEnv,
        ops: SocketAddr,
    ) -> anyhow::Result<Self> {
        let proc = Proc::spawn_with_env(name, &args, &env.0, ops)?;
        Ok(Self {
            name: name.to_string(),
            ops,
            args,
            env,
            proc: Some(proc),
            restarts: Restarts::new(Instant::now()),
        })
    }

    /// Waits until `/readyz` answers 200; fails when the process exits first.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        match self.proc.as_mut() {
            Some(proc) => proc.wait_ready(timeout).await,
            None => anyhow::bail!("{} is not running", self.name),
        }
    }

    /// Notices an exit (and schedules the restart) or restarts when due.
    pub(crate) fn check(&mut self, now: Instant) {
        if let Some(status) = self.proc.as_mut().and_then(Proc::exited) {
            self.proc = None;
            self.schedule(now, &status.to_string());
        }
        if self.proc.is_none() && self.restarts.due(now) {
            let restarts = self.restarts.restarted(now);
            match Proc::spawn_with_env(&self.name, &self.args, &self.env.0, self.ops) {
                Ok(proc) => {
                    info!(name = %self.name, pid = proc.pid(), restarts, "restarted");
                    self.proc = Some(proc);
                }
                Err(err) => self.schedule(now, &format!("{err:#}")),
            }
        }
    }

    fn schedule(&mut self, now: Instant, why: &str) {
        let delay = self.restarts.exited(now);
        warn!(
            name = %self.name,
            status = why,
            restarts = self.restarts.count,
            "process exited; restarting it in {delay:?}, the others keep running"
        );
    }

    /// SIGTERM, then SIGKILL after `grace`; `None` when it was not running.
    pub(crate) async fn stop(self, grace: Duration) -> Option<anyhow::Result<ExitStatus>> {
        match self.proc {
            Some(proc) => Some(proc.stop(grace).await),
            None => None,
        }
    }
}

/// The local nats-server of `offpath up`, restarted on the same port and store when it
/// dies (the services reconnect by themselves).
#[derive(Debug)]
pub(crate) struct LocalNats {
    /// The server.
    pub server: NatsServer,
    restarts: Restarts,
    running: bool,
}

impl LocalNats {
    /// Watches `server`.
    pub(crate) fn new(server: NatsServer) -> Self {
        Self {
            server,
            restarts: Restarts::new(Instant::now()),
            running: true,
        }
    }

    /// Notices an exit (and schedules the restart) or restarts when due. A restart blocks
    /// this thread until the server accepts connections (well under a second; at most the
    /// server crate's ready timeout): it must run on the main thread, which the server dies
    /// with.
    pub(crate) fn check(&mut self, now: Instant) {
        if self.running && !self.server.is_running() {
            self.running = false;
            let delay = self.restarts.exited(now);
            warn!(
                restarts = self.restarts.count,
                "the local nats-server exited; restarting it on port {} in {delay:?}",
                self.server.port()
            );
        }
        if !self.running && self.restarts.due(now) {
            let restarts = self.restarts.restarted(now);
            match self.server.restart() {
                Ok(()) => {
                    info!(url = %self.server.url(), restarts, "local nats-server restarted");
                    self.running = true;
                }
                Err(err) => {
                    let delay = self.restarts.exited(Instant::now());
                    warn!(
                        restarts,
                        "restarting the local nats-server: {err}; again in {delay:?}"
                    );
                }
            }
        }
    }
}

/// Starts `offpath up`'s local cluster of `size` nodes on this (the main) thread, each tied
/// to it and running with `authorization` (the generated users); node `i` keeps its store
/// and config in `<data_dir>/cluster/node-<i>` (a temporary directory without one).
pub(crate) fn start_local_cluster(
    size: usize,
    data_dir: Option<PathBuf>,
    authorization: &str,
) -> anyhow::Result<Vec<NatsServer>> {
    let mut builder = NatsCluster::builder()
        .size(size)
        .die_with_parent(true)
        // nats-server's own storage limit (a share of the free disk), not the test kit's.
        .max_file_store(None)
        .extra_config(authorization);
    if let Some(dir) = data_dir {
        builder = builder.store_root(dir.join("cluster"));
    }
    let cluster = builder
        .start()
        .context("starting the local nats-server cluster")?;
    info!(
        urls = %cluster.urls().join(","),
        binary = %cluster.node(0).binary().display(),
        "local nats-server cluster of {size} started with authorization; JetStream elects a leader"
    );
    Ok(cluster.into_nodes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delays double from 1 s up to 30 s while a child keeps failing, and start over at
    /// 1 s once it stayed up for a minute; a restart is due only after its delay.
    #[test]
    fn backoff_doubles_caps_and_resets() {
        let t0 = Instant::now();
        let mut restarts = Restarts::new(t0);
        let mut now = t0 + Duration::from_secs(5);
        let mut delays = Vec::new();
        for _ in 0..7 {
            let delay = restarts.exited(now);
            assert!(!restarts.due(now + delay - Duration::from_millis(1)));
            now += delay;
            assert!(restarts.due(now));
            restarts.restarted(now);
            delays.push(delay.as_secs());
            now += Duration::from_secs(2); // crashes again shortly after starting
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(restarts.count, 7);
        now += STABLE_AFTER;
        assert_eq!(restarts.exited(now), FIRST_DELAY);
    }
}
