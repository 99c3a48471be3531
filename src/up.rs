//! `offpath up` and `offpath topology`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use offpath_nats_local::NatsServer;
use offpath_protocol::topology::{self, TopologyConfig};
use tracing::{info, warn};

use crate::cli::{ModeratorArgs, NatsArgs, UpArgs};
use crate::tools;

/// Runs the pipeline on this machine until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut local = None;
    let url = match args.nats_url {
        Some(url) => url,
        None => {
            let server = start_local_nats(args.local_nats_port, args.data_dir).await?;
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
    match tools::find_onnxruntime() {
        Ok(path) => info!(path = %path.display(), "ONNX Runtime library found"),
        Err(err) => warn!("{err:#}"),
    }
    info!(%url, "offpath is up; publish requests on offpath.req.<tenant>; Ctrl-C stops");
    let outcome = tokio::select! {
        () = shutdown_signal() => Ok(()),
        () = watch_local(&mut local) => Err(anyhow::anyhow!("the local nats-server exited")),
    };
    info!("shutting down");
    if let Some(mut server) = local {
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .context("stopping nats-server")??;
    }
    outcome
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
