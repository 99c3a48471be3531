//! `offpath up`: nats-server (unless a URL is given), the JetStream topology, moderators
//! and a transport as child processes, kept running until SIGINT or SIGTERM.
//!
//! Children never outlive the launcher: the signal listeners exist before the first child,
//! every start-up phase also waits for them, and on a signal whatever was started is
//! stopped in order (transport, moderators, nats-server). Each child gets SIGKILL from the
//! kernel if the launcher dies without stopping them (PR_SET_PDEATHSIG), which fires when
//! the *thread* that spawned it exits: every child is spawned from the main thread, where
//! this future runs (`block_on`), never from `spawn_blocking`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use offpath_local::NatsServer;
use offpath_protocol::permissions::Role;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};

use crate::cli::UpArgs;
use crate::local_auth::{self, LocalLogins};
use crate::services;
use crate::supervise::{self, LocalNats, Supervised};

mod validate;
use validate::{transport_identity, validate};

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
    let (urls, logins) = nats(args, stack)?;
    stack.url = urls.join(",");
    let (moderator_env, transport_env, review_env) = match &logins {
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
    if let Some(signer) = local_policy_signer(args)? {
        moderator_env
            .0
            .push(("OFFPATH_POLICY_SIGNERS".into(), Some(signer)));
    }
    let topology = args.streams.topology();
    let ensured = signals.or_signal(async {
        let client = topology_client(args, &urls, logins.as_ref()).await?;
        if stack_is_cluster(args) {
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
    });
    let Some(ensured) = ensured.await else {
        return Ok(false);
    };
    ensured?;
    for n in 0..args.moderators {
        let addr = if n == 0 {
            args.moderator_metrics_addr
        } else {
            SocketAddr::new(args.moderator_metrics_addr.ip(), 0)
        };
        let ops = offpath_local::process::concrete_addr(addr)?;
        let flags = moderator_command(args, &stack.url, ops);
        let name = format!("moderator-{}", n + 1);
        let env = moderator_env.clone();
        stack
            .moderators
            .push(Supervised::start(&name, flags, env, ops)?);
    }
    let listen = offpath_local::process::concrete_addr(args.listen_addr)?;
    let ops = offpath_local::process::concrete_addr(args.transport_metrics_addr)?;
    let flags = transport_command(args, &stack.url, listen, ops);
    stack.dev_identity = flags
        .iter()
        .any(|f| f == "--insecure-dev-identity" || f.starts_with("--insecure-dev-identity="));
    stack.listen = Some(listen);
    let transport =
        stack
            .transport
            .insert(Supervised::start("transport", flags, transport_env, ops)?);
    // A child that exits before it is ready is a start-up failure (bad flags, missing
    // models), not something to restart.
    let Some(ready) = signals.or_signal(transport.wait_ready(READY_TIMEOUT)).await else {
        return Ok(false);
    };
    ready?;
    for moderator in &mut stack.moderators {
        let Some(ready) = signals.or_signal(moderator.wait_ready(READY_TIMEOUT)).await else {
            return Ok(false);
        };
        ready?;
    }
    if let Some(reviewers) = &args.reviewers {
        let listen = offpath_local::process::concrete_addr(args.review_addr)?;
        let mut flags = vec![
            "review".to_string(),
            format!("--listen-addr={listen}"),
            format!("--nats-url={}", stack.url),
            format!("--reviewers={}", reviewers.display()),
        ];
        flags.extend(args.streams.flags());
        let review = stack
            .review
            .insert(Supervised::start("review", flags, review_env, listen)?);
        let Some(ready) = signals.or_signal(review.wait_ready(READY_TIMEOUT)).await else {
            return Ok(false);
        };
        ready?;
    }
    Ok(true)
}

/// The NATS URLs, and the logins when the local server is started (now, with
/// authorization on) because no `--nats-url` was given.
fn nats(args: &UpArgs, stack: &mut Stack) -> anyhow::Result<(Vec<String>, Option<LocalLogins>)> {
    if !args.nats_url.is_empty() {
        return Ok((args.nats_url.clone(), None));
    }
    let (tenant, instance) = transport_identity(args)?;
    let logins = local_auth::logins(&tenant, &instance, args.reviewers.is_some())?;
    // Blocks this (main) thread until the server accepts connections, usually well under a
    // second: a signal meanwhile is kept by its listener and acted on next.
    let data_dir = local_data_dir(args.data_dir.clone());
    let servers = match stack_is_cluster(args) {
        true => supervise::start_local_cluster(args.nats_cluster, data_dir, &logins.config)?,
        false => vec![start_local_nats(args.local_nats_port, data_dir, &logins)?],
    };
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    stack.local = servers.into_iter().map(LocalNats::new).collect();
    // Other integrations of the tenant log in with this file (README, "Integrating"); the
    // passwords change at every start, so it is written at every start.
    stack.integration = match local_data_dir(args.data_dir.clone()) {
        Some(dir) => Some(local_auth::write_integration_file(&dir, &urls, &logins)?),
        None => {
            warn!("no data directory: the integration login is not written anywhere");
            None
        }
    };
    Ok((urls, Some(logins)))
}

/// The public key the stack's moderators trust for pushed policies, unless
/// `OFFPATH_POLICY_SIGNERS` already names keys (the children inherit it): the local
/// signing key `policy-signing.nk` in the data directory, made on first start.
fn local_policy_signer(args: &UpArgs) -> anyhow::Result<Option<String>> {
    if std::env::var_os("OFFPATH_POLICY_SIGNERS").is_some_and(|v| !v.is_empty()) {
        return Ok(None);
    }
    let Some(dir) = local_data_dir(args.data_dir.clone()) else {
        warn!("no data directory: no policy signing key, `offpath policy push` cannot be used");
        return Ok(None);
    };
    let (path, key) = crate::policy::local_signing_key(&dir)?;
    info!(
        key = %path.display(),
        signer = %key.public_key(),
        "policy signing key: `offpath policy push FILE --signing-key {}`",
        path.display()
    );
    Ok(Some(key.public_key()))
}

/// Whether `offpath up` runs a local cluster rather than one local server.
fn stack_is_cluster(args: &UpArgs) -> bool {
    args.nats_url.is_empty() && args.nats_cluster > 1
}

/// The local JetStream store: `--data-dir`, else `.tools/state/jetstream`.
fn local_data_dir(data_dir: Option<PathBuf>) -> Option<PathBuf> {
    let data_dir = data_dir.or_else(|| {
        offpath_local::find_project_tool("").map(|tools| tools.join("state/jetstream"))
    });
    if data_dir.is_none() {
        warn!("no .tools/ folder and no --data-dir: JetStream data is temporary");
    }
    data_dir
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

/// The command line of a moderator child.
fn moderator_command(args: &UpArgs, url: &str, ops: SocketAddr) -> Vec<String> {
    let mut flags = vec![
        "moderator".to_string(),
        format!("--metrics-addr={ops}"),
        format!("--nats-url={url}"),
    ];
    flags.extend(args.streams.flags());
    flags.extend(args.moderator_flags());
    flags
}

/// The command line of the transport child.
fn transport_command(args: &UpArgs, url: &str, listen: SocketAddr, ops: SocketAddr) -> Vec<String> {
    let mut flags = vec![
        "transport".to_string(),
        format!("--listen-addr={listen}"),
        format!("--metrics-addr={ops}"),
        format!("--nats-url={url}"),
    ];
    flags.extend(args.streams.flags());
    flags.extend(args.transport_flags());
    // A local stack is for development: `?user=` identity unless given token keys.
    let dev = "--insecure-dev-identity";
    if !offpath_transport::wants_tokens(&flags) && !flags.iter().any(|f| f.starts_with(dev)) {
        flags.push(dev.to_string());
    }
    flags
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

/// Starts the local nats-server on this (the main) thread, tied to it.
fn start_local_nats(
    port: u16,
    data_dir: Option<PathBuf>,
    logins: &LocalLogins,
) -> anyhow::Result<NatsServer> {
    let mut builder = NatsServer::builder()
        .die_with_parent(true)
        // nats-server's own storage limit (a share of the free disk), not the test kit's.
        .max_file_store(None)
        .config(logins.config.clone());
    if port != 0 {
        builder = builder.port(port);
    }
    // The config (0600, with the passwords) beside the store: an operator (or a test) logs
    // in as `topology` with the password it holds.
    if let Some(dir) = &data_dir {
        builder = builder.store_dir(dir).config_dir(dir);
    }
    let server = builder.start().context("starting the local nats-server")?;
    info!(
        url = %server.url(),
        binary = %server.binary().display(),
        store = %server.store_dir().display(),
        "local nats-server started with authorization (users topology, moderator, {}, {}{})",
        logins.transport.user,
        logins.integration.user,
        if logins.reviewer.is_some() { ", reviewer" } else { "" }
    );
    Ok(server)
}
