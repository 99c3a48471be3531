//! `offpath up`: nats-server (unless a URL is given), the JetStream topology, moderators
//! and a transport as child processes, kept running until SIGINT or SIGTERM.
//!
//! Children never outlive the launcher: the signal listeners exist before the first child,
//! every start-up phase also waits for them, and on a signal whatever was started is
//! stopped in order (transport, moderators, nats-server). Each child gets SIGKILL from the
//! kernel if the launcher dies without stopping them (PR_SET_PDEATHSIG), which fires when
//! the *thread* that spawned it exits: every child is spawned from the main thread, where
//! this future runs (`block_on`), never from `spawn_blocking`.
//!
//! The start-up phases are here; the local nats-server, its logins and the data directory
//! are in `local`, the children's command lines in `commands`, the checks of the arguments
//! in `validate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use offpath_protocol::permissions::Role;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};

use crate::cli::UpArgs;
use crate::local_auth::{self, LocalLogins};
use crate::services;
use crate::supervise::{ChildEnv, LocalNats, Supervised};

mod commands;
mod local;
mod validate;

use commands::{moderator_command, transport_command};
use validate::validate;

/// How long `offpath up` waits for each process to become ready (models load first).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a process gets to stop after SIGTERM (the transport flushes its outbox).
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How often exited children are looked for.
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);

/// Runs the pipeline on this machine until SIGINT or SIGTERM. A signal during start-up
/// stops what was started and exits 0, like one afterwards; a start-up failure stops what
/// was started and is returned.
pub(crate) async fn run(mut args: UpArgs) -> anyhow::Result<()> {
    validate(&args)?;
    if args.nats_cluster > 1 && args.streams.replicas == 1 {
        args.streams.replicas = args.nats_cluster;
    }
    // Then, before any child exists: a signal that came before the listeners would kill
    // the launcher with the default action and orphan the children.
    let mut signals = Signals::install()?;
    let mut stack = Stack::default();
    let outcome = match start(&args, &mut stack, &mut signals).await {
        Ok(true) => {
            announce(&stack);
            stack.supervise(&mut signals).await;
            Ok(())
        }
        Ok(false) => {
            info!("signal during start-up");
            Ok(())
        }
        Err(err) => Err(err),
    };
    info!("shutting down");
    stack.stop().await;
    outcome
}

/// SIGINT and SIGTERM, listened for once for the whole run.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// Completes on the next SIGINT or SIGTERM (or one that came since the last call).
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    /// `work`'s output, or `None` when a signal comes first.
    async fn or_signal<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            () = self.recv() => None,
            output = work => Some(output),
        }
    }
}

/// What `offpath up` started; stopped in reverse order of dependence.
#[derive(Default)]
struct Stack {
    /// The local nats-server, or each node of the local cluster.
    local: Vec<LocalNats>,
    url: String,
    moderators: Vec<Supervised>,
    transport: Option<Supervised>,
    /// The reviewers' console (with --reviewers).
    review: Option<Supervised>,
    listen: Option<SocketAddr>,
    /// Whether the transport runs the development identity (`?user=`) rather than tokens.
    dev_identity: bool,
    /// The integration login's file, when the local server runs with one.
    integration: Option<PathBuf>,
}
/// Starts everything, phase by phase; `Ok(false)` when a signal interrupted it.
async fn start(args: &UpArgs, stack: &mut Stack, signals: &mut Signals) -> anyhow::Result<bool> {
    let (urls, logins) = local::nats(args, stack)?;
    stack.url = urls.join(",");
    let (moderator_env, transport_env, review_env) = child_envs(args, logins.as_ref())?;
    let topology = ensure_topology(args, &urls, logins.as_ref());
    let Some(ensured) = signals.or_signal(topology).await else {
        return Ok(false);
    };
    ensured?;
    start_moderators(args, stack, &moderator_env)?;
    let transport = start_transport(args, stack, transport_env)?;
    // A child that exits before it is ready is a start-up failure (bad flags, missing
    // models), not something to restart.
    if !ready(signals, transport).await? {
        return Ok(false);
    }
    for moderator in &mut stack.moderators {
        if !ready(signals, moderator).await? {
            return Ok(false);
        }
    }
    if let Some(reviewers) = &args.reviewers {
        let review = start_review(args, stack, reviewers, review_env)?;
        if !ready(signals, review).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Waits until `child` is ready; `Ok(false)` when a signal comes first.
async fn ready(signals: &mut Signals, child: &mut Supervised) -> anyhow::Result<bool> {
    match signals.or_signal(child.wait_ready(READY_TIMEOUT)).await {
        Some(ready) => ready.map(|()| true),
        None => Ok(false),
    }
}

/// The environments of the moderators, the transport and the review console: each its own
/// login on the local server, else `up`'s login flags; the moderators also trust the local
/// policy signing key ([`local::local_policy_signer`]).
fn child_envs(
    args: &UpArgs,
    logins: Option<&LocalLogins>,
) -> anyhow::Result<(ChildEnv, ChildEnv, ChildEnv)> {
    let (moderator_env, transport_env, review_env) = match logins {
        Some(logins) => (
            logins.moderator_env(),
            logins.transport_env(),
            logins.reviewer_env(),
        ),
        None => (
            local_auth::shared_env(&args.auth),
            local_auth::shared_env(&args.auth),
            local_auth::shared_env(&args.auth),
        ),
    };
    let mut moderator_env = moderator_env;
    if let Some(signer) = local::local_policy_signer(args)? {
        moderator_env
            .0
            .push(("OFFPATH_POLICY_SIGNERS".into(), Some(signer)));
    }
    Ok((moderator_env, transport_env, review_env))
}

/// The topology step: the streams and consumers (after a cluster's meta leader is elected),
/// and the fleet's policy bucket.
async fn ensure_topology(
    args: &UpArgs,
    urls: &[String],
    logins: Option<&LocalLogins>,
) -> anyhow::Result<()> {
    let topology = args.streams.topology();
    let client = topology_client(args, urls, logins).await?;
    if local::stack_is_cluster(args) {
        offpath_local::cluster::wait_for_meta_leader(&client).await?;
    }
    services::ensure_topology(&client, &topology).await?;
    // The fleet's policy bucket (`offpath policy push`): only the topology user may
    // create it, which the launcher logs in as here.
    // Not fatal: the pipeline runs without it (policies then come from files only).
    let js = async_nats::jetstream::new(client.clone());
    if let Err(err) = offpath_protocol::topology::ensure_policy_bucket(&js, &topology).await {
        tracing::warn!(
            "the policy bucket is not in place, `offpath policy push` cannot work: {err}"
        );
    }
    client.flush().await.context("flushing the NATS connection")
}

/// Starts `--moderators` moderators (the first on `--moderator-metrics-addr`, the others on
/// a free port of its address); not yet ready.
fn start_moderators(args: &UpArgs, stack: &mut Stack, env: &ChildEnv) -> anyhow::Result<()> {
    for n in 0..args.moderators {
        let addr = if n == 0 {
            args.moderator_metrics_addr
        } else {
            SocketAddr::new(args.moderator_metrics_addr.ip(), 0)
        };
        let ops = offpath_local::process::concrete_addr(addr)?;
        let flags = moderator_command(args, &stack.url, ops);
        let name = format!("moderator-{}", n + 1);
        stack
            .moderators
            .push(Supervised::start(&name, flags, env.clone(), ops)?);
    }
    Ok(())
}

/// Starts the transport; not yet ready.
fn start_transport<'a>(
    args: &UpArgs,
    stack: &'a mut Stack,
    env: ChildEnv,
) -> anyhow::Result<&'a mut Supervised> {
    let listen = offpath_local::process::concrete_addr(args.listen_addr)?;
    let ops = offpath_local::process::concrete_addr(args.transport_metrics_addr)?;
    let flags = transport_command(args, &stack.url, listen, ops);
    stack.dev_identity = flags
        .iter()
        .any(|f| f == "--insecure-dev-identity" || f.starts_with("--insecure-dev-identity="));
    stack.listen = Some(listen);
    let transport = Supervised::start("transport", flags, env, ops)?;
    Ok(stack.transport.insert(transport))
}

/// Starts the reviewers' console with the `reviewers` file; not yet ready.
fn start_review<'a>(
    args: &UpArgs,
    stack: &'a mut Stack,
    reviewers: &Path,
    env: ChildEnv,
) -> anyhow::Result<&'a mut Supervised> {
    let listen = offpath_local::process::concrete_addr(args.review_addr)?;
    let mut flags = vec![
        "review".to_string(),
        format!("--listen-addr={listen}"),
        format!("--nats-url={}", stack.url),
        format!("--reviewers={}", reviewers.display()),
    ];
    flags.extend(args.streams.flags());
    let review = Supervised::start("review", flags, env, listen)?;
    Ok(stack.review.insert(review))
}

/// The launcher's own client for the topology step: as `topology` on the local server,
/// else with `up`'s login flags.
async fn topology_client(
    args: &UpArgs,
    urls: &[String],
    logins: Option<&LocalLogins>,
) -> anyhow::Result<async_nats::Client> {
    match logins {
        Some(logins) => {
            let options = logins.topology.options().name("offpath-up");
            services::connect_with(options, urls).await
        }
        None => services::connect(urls, &args.auth, "offpath-up", &Role::Topology).await,
    }
}
fn announce(stack: &Stack) {
    // Every operator address as the URL to open, as the transport's (comma-separated).
    let moderator_metrics: Vec<String> = stack
        .moderators
        .iter()
        .map(|m| format!("http://{}/metrics", m.ops))
        .collect();
    let listen = stack.listen.map(|a| a.to_string()).unwrap_or_default();
    let transport_ops = stack
        .transport
        .as_ref()
        .map(|t| t.ops.to_string())
        .unwrap_or_default();
    info!(
        url = %stack.url,
        chat = %format!("http://{listen}/"),
        websocket = %if stack.dev_identity {
            format!("ws://{listen}/ws?user=<name>")
        } else {
            format!("ws://{listen}/ws?access_token=<token>")
        },
        transport_metrics = %format!("http://{transport_ops}/metrics"),
        moderator_metrics = %moderator_metrics.join(","),
        review = %stack.review.as_ref().map(|r| format!("http://{}/", r.ops)).unwrap_or_default(),
        integration = %stack.integration.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        "offpath is up; Ctrl-C stops"
    );
}

impl Stack {
    /// Restarts children (and the local nats-server) that exit, until a signal.
    async fn supervise(&mut self, signals: &mut Signals) {
        let mut tick = tokio::time::interval(SUPERVISE_EVERY);
        while signals.or_signal(tick.tick()).await.is_some() {
            let now = Instant::now();
            for local in &mut self.local {
                local.check(now);
            }
            let children = self.moderators.iter_mut().chain(self.transport.as_mut());
            for child in children.chain(self.review.as_mut()) {
                child.check(now);
            }
        }
    }

    /// The transport first (it flushes its outbox while NATS is still there), then the
    /// moderators, then NATS.
    async fn stop(&mut self) {
        if let Some(review) = self.review.take() {
            stopped(&review.name.clone(), review.stop(STOP_GRACE).await);
        }
        if let Some(transport) = self.transport.take() {
            stopped(&transport.name.clone(), transport.stop(STOP_GRACE).await);
        }
        let moderators = std::mem::take(&mut self.moderators)
            .into_iter()
            .map(|m| async move {
                let name = m.name.clone();
                (name, m.stop(STOP_GRACE).await)
            });
        for (name, outcome) in futures::future::join_all(moderators).await {
            stopped(&name, outcome);
        }
        for mut local in std::mem::take(&mut self.local) {
            match local.server.stop() {
                Ok(()) => info!(url = %local.server.url(), "local nats-server stopped"),
                Err(err) => warn!("stopping the local nats-server: {err}"),
            }
        }
    }
}

fn stopped(name: &str, outcome: Option<anyhow::Result<std::process::ExitStatus>>) {
    match outcome {
        Some(Ok(status)) => info!(name, %status, "stopped"),
        Some(Err(err)) => warn!(name, "stopping: {}", offpath_ops::cli::one_line(&err)),
        None => {}
    }
}
