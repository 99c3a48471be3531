//! `offpath up` and `offpath topology`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use offpath_nats_local::NatsServer;
use offpath_protocol::topology::{self, TopologyConfig};
use tracing::{info, warn};

use crate::cli::{ModeratorArgs, NatsArgs, TransportArgs, UpArgs, Usage};
use crate::launch::{self, Proc};
use crate::tools;

/// How long `offpath up` waits for each process to become ready (models load first).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a process gets to stop after SIGTERM (the transport flushes its outbox).
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Runs the pipeline on this machine until SIGINT or SIGTERM: nats-server (unless a URL is
/// given), then moderators and a transport as child processes.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut local = None;
    let url = match args.nats_url.clone() {
        Some(url) => url,
        None => {
            let server = start_local_nats(args.local_nats_port, args.data_dir.clone()).await?;
            let url = server.url();
            local = Some(server);
            url
        }
    };
    apply_topology(NatsArgs {
        nats_url: url.clone(),
        replicas: 1,
    })
    .await?;
    let mut moderators = Vec::new();
    for n in 0..args.moderators {
        let addr = if n == 0 {
            args.moderator_metrics_addr
        } else {
            SocketAddr::new(args.moderator_metrics_addr.ip(), 0)
        };
        let ops = launch::concrete_addr(addr)?;
        let mut flags = vec![
            "moderator".to_string(),
            format!("--nats-url={url}"),
            format!("--metrics-addr={ops}"),
        ];
        flags.extend(args.moderator_arg.iter().cloned());
        moderators.push(Proc::spawn(&format!("moderator-{}", n + 1), &flags, ops)?);
    }
    let listen = launch::concrete_addr(args.listen_addr)?;
    let ops = launch::concrete_addr(args.transport_metrics_addr)?;
    let mut flags = vec![
        "transport".to_string(),
        format!("--nats-url={url}"),
        format!("--listen-addr={listen}"),
        format!("--metrics-addr={ops}"),
    ];
    flags.extend(args.transport_arg.iter().cloned());
    let mut transport = Proc::spawn("transport", &flags, ops)?;
    transport.wait_ready(READY_TIMEOUT).await?;
    for moderator in &mut moderators {
        moderator.wait_ready(READY_TIMEOUT).await?;
    }
    let moderator_ops: Vec<String> = moderators.iter().map(|m| m.ops.to_string()).collect();
    info!(
        %url,
        chat = %format!("http://{listen}/"),
        websocket = %format!("ws://{listen}/ws?user=<name>"),
        transport_metrics = %format!("http://{ops}/metrics"),
        moderator_metrics = %moderator_ops.join(","),
        "offpath is up; Ctrl-C stops"
    );
    let mut children: Vec<Proc> = moderators;
    children.push(transport);
    let outcome = tokio::select! {
        () = shutdown_signal() => Ok(()),
        () = watch_local(&mut local) => Err(anyhow::anyhow!("the local nats-server exited")),
        () = report_exits(&mut children) => Ok(()),
    };
    info!("shutting down");
    // The transport first (it flushes its outbox while NATS is still there), then the
    // moderators, then NATS.
    while let Some(child) = children.pop() {
        let name = child.name.clone();
        match child.stop(STOP_GRACE).await {
            Ok(status) => info!(name, %status, "stopped"),
            Err(err) => warn!(name, "stopping: {err:#}"),
        }
    }
    if let Some(mut server) = local {
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .context("stopping nats-server")??;
    }
    outcome
}

/// Logs each child that exits on its own (the others keep running: a stopped moderator
/// must not take chat down); completes when none is left.
async fn report_exits(children: &mut [Proc]) {
    let mut reported = vec![false; children.len()];
    loop {
        for (child, reported) in children.iter_mut().zip(reported.iter_mut()) {
            if !*reported && let Some(status) = child.exited() {
                warn!(name = %child.name, %status, "process exited; the others keep running");
                *reported = true;
            }
        }
        if reported.iter().all(|r| *r) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `offpath transport`: the chat gateway until SIGINT or SIGTERM. NATS may be down at
/// start: chat works, requests wait in the outbox.
pub async fn transport(args: TransportArgs) -> anyhow::Result<()> {
    args.transport.validate().map_err(Usage)?;
    let topology = apply_topology(NatsArgs {
        nats_url: args.nats.nats_url.clone(),
        replicas: args.nats.replicas,
    });
    match tokio::time::timeout(Duration::from_secs(5), topology).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!("JetStream topology not applied ({err:#}); serving anyway"),
        Err(_) => warn!("NATS not reachable within 5 s; serving anyway, requests wait"),
    }
    let client = async_nats::ConnectOptions::new()
        .name("offpath-transport")
        .retry_on_initial_connect()
        .connect(&args.nats.nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {}", args.nats.nats_url))?;
    let public = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("binding {} (--listen-addr)", args.listen_addr))?;
    let operator = bind_metrics(args.metrics_addr).await?;
    offpath_transport::run(
        args.transport,
        client,
        offpath_transport::Listeners { public, operator },
        std::sync::Arc::new(offpath_transport::QueryUser),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// `offpath moderator`: topology, then the moderator until SIGINT or SIGTERM.
pub async fn moderator(args: ModeratorArgs) -> anyhow::Result<()> {
    apply_topology(NatsArgs {
        nats_url: args.nats.nats_url.clone(),
        replicas: args.nats.replicas,
    })
    .await?;
    let config = tools::complete_moderator_config(args.moderator)?;
    let client = connect(&args.nats.nats_url, "offpath-moderator").await?;
    let listener = bind_metrics(args.metrics_addr).await?;
    offpath_moderator::run(config, client, listener, shutdown_signal()).await?;
    Ok(())
}

async fn bind_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr} (--metrics-addr)"))?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    Ok(listener)
}

async fn connect(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// Creates or updates the JetStream topology at `args.nats_url`.
pub async fn apply_topology(args: NatsArgs) -> anyhow::Result<()> {
    let client = connect(&args.nats_url, "offpath-topology").await?;
    let config = TopologyConfig {
        replicas: args.replicas,
        ..TopologyConfig::default()
    };
    topology::ensure(&async_nats::jetstream::new(client.clone()), &config).await?;
    info!(
        streams = "MODERATION, VERDICTS, MODERATION_DLQ",
        consumer = "MODERATION/moderator",
        "JetStream topology in place"
    );
    client
        .flush()
        .await
        .context("flushing the NATS connection")?;
    Ok(())
}

async fn start_local_nats(port: u16, data_dir: Option<PathBuf>) -> anyhow::Result<NatsServer> {
    let data_dir = data_dir.or_else(|| {
        offpath_nats_local::find_project_tool("").map(|tools| tools.join("state/jetstream"))
    });
    let mut builder = NatsServer::builder();
    if port != 0 {
        builder = builder.port(port);
    }
    match &data_dir {
        Some(dir) => builder = builder.store_dir(dir),
        None => warn!("no .tools/ folder and no --data-dir: JetStream data is temporary"),
    }
    let server = tokio::task::spawn_blocking(move || builder.start())
        .await
        .context("starting nats-server")?
        .context("starting the local nats-server")?;
    info!(
        url = %server.url(),
        binary = %server.binary().display(),
        store = %server.store_dir().display(),
        "local nats-server started"
    );
    Ok(server)
}

/// Completes when the local server (if any) has exited; never when there is none.
async fn watch_local(local: &mut Option<NatsServer>) {
    let Some(server) = local.as_mut() else {
        return std::future::pending().await;
    };
    while server.is_running() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            warn!("cannot listen for SIGTERM: {err}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
