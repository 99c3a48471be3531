//! `offpath moderator`, `offpath transport` and `offpath topology`: connect to NATS, check
//! the server, put the JetStream topology in place, hand over to the service crate.

use std::time::Duration;

use anyhow::Context;
use async_nats::ServerAddr;
use async_nats::connection::State;
use offpath_protocol::permissions::Role;
use offpath_protocol::topology::{self, TopologyConfig};
use tracing::{info, warn};

use offpath_ops::cli::Usage;

use crate::cli::{ModeratorArgs, NatsArgs, NatsAuthArgs, TransportArgs};

/// How long the transport waits for NATS at start before serving chat without it.
const TRANSPORT_NATS_WAIT: Duration = Duration::from_secs(5);

/// `offpath review`: the reviewers' console, until SIGTERM or Ctrl-C.
pub(crate) async fn review(args: crate::cli::ReviewArgs) -> anyhow::Result<()> {
    let reviewers =
        offpath_review::Reviewers::load(&args.reviewers).map_err(|e| Usage(e.to_string()))?;
    server_addrs(&args.nats.nats_url)?;
    args.nats.auth.check()?;
    let nats = &args.nats;
    let client = connect(
        &nats.nats_url,
        &nats.auth,
        "offpath-review",
        &Role::Reviewer,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| {
            format!(
                "binding the review address {} (--listen-addr)",
                args.listen_addr
            )
        })?;
    offpath_review::run(
        &args.console,
        client,
        reviewers,
        listener,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// `offpath topology`: creates the streams and the consumer, or updates them to the given
/// settings. The one command that changes settings of what exists.
pub(crate) async fn topology(args: NatsArgs) -> anyhow::Result<()> {
    let client = connect(
        &args.nats_url,
        &args.auth,
        "offpath-topology",
        &Role::Topology,
    )
    .await?;
    // A cluster that has just started elects JetStream's meta leader first; a JetStream
    // request before that goes unanswered and times out after 10 s (issue 27: compose starts
    // `offpath topology` beside three fresh nodes). Wait for it, bounded, and say so.
    // Said only when JetStream is slow to answer: a single server answers at once, and
    // stderr then holds nothing but the outcome.
    let answered = offpath_local::cluster::wait_for_meta_leader(&client);
    tokio::pin!(answered);
    let answered = match tokio::time::timeout(std::time::Duration::from_secs(1), &mut answered)
        .await
    {
        Ok(answered) => answered,
        Err(_) => {
            info!(
                "waiting for JetStream to answer (a new cluster elects its meta leader first; 30 s at most)"
            );
            answered.await
        }
    };
    answered.context("JetStream did not answer: is it enabled on the server (-js), and has the cluster a quorum?")?;
    topology::apply(
        &async_nats::jetstream::new(client.clone()),
        &args.streams.topology(),
    )
    .await?;
    info!(
        streams =
            "MODERATION, MODERATION_INTERACTIVE, VERDICTS, MODERATION_DLQ, REVIEW, AUDIT, SENDERS",
        consumer = "MODERATION/moderator",
        bucket = offpath_protocol::subject::POLICY_BUCKET,
        "JetStream topology applied"
    );
    client
        .flush()
        .await
        .context("flushing the NATS connection")?;
    Ok(())
}

/// `offpath moderator`: topology (what is missing), then the moderator until SIGINT or
/// SIGTERM.
pub(crate) async fn moderator(args: ModeratorArgs) -> anyhow::Result<()> {
    let config = moderator_config(&args)?;
    let nats = &args.nats;
    let client = connect(
        &nats.nats_url,
        &nats.auth,
        "offpath-moderator",
        &Role::Moderator,
    )
    .await?;
    if let Err(err) = ensure_topology(&client, &config.topology).await {
        // With NATS authorization on, only `offpath topology` may create streams: the
        // moderator's binding retries (counted in `nats_errors_total{operation="bind"}`)
        // until the topology is there.
        warn!(
            "JetStream topology not in place ({}); `offpath topology` creates it, the moderator retries",
            offpath_ops::cli::one_line(&err)
        );
    }
    let listener = bind_metrics(args.metrics_addr).await?;
    offpath_moderator::run(config, client, listener, shutdown_signal()).await?;
    Ok(())
}

/// The moderator's settings as it will run with them (model directories found in the
/// checkout, the ONNX Runtime library found, the topology of the stream flags), checked:
/// a bad one is a usage error. Connects to nothing.
pub(crate) fn moderator_config(args: &ModeratorArgs) -> anyhow::Result<offpath_moderator::Config> {
    let mut config = args.moderator.clone();
    offpath_local::locate::complete_model_paths(&mut config.models, &mut config.ort_library)?;
    config.topology = args.nats.streams.topology();
    config.validate().map_err(Usage::problems)?;
    server_addrs(&args.nats.nats_url)?;
    args.nats.auth.check()?;
    Ok(config)
}

/// The transport's settings, checked: a bad one is a usage error. Connects to nothing.
pub(crate) fn transport_config(args: &TransportArgs) -> anyhow::Result<offpath_transport::Config> {
    args.transport.validate().map_err(Usage::problems)?;
    // Also what `offpath up` checks before starting its children (the dev identity's kind).
    let kind = match args.transport.identity.insecure_dev_identity {
        true => offpath_transport::QueryUser::KIND,
        false => offpath_transport::Tokens::KIND,
    };
    offpath_transport::check_listener(&args.transport, kind, args.listen_addr)
        .map_err(|err| Usage(err.to_string()))?;
    server_addrs(&args.nats.nats_url)?;
    args.nats.auth.check()?;
    distinct_addrs(&[
        ("--listen-addr", args.listen_addr),
        ("--metrics-addr", args.metrics_addr),
    ])?;
    let mut config = args.transport.clone();
    config.topology = args.nats.streams.topology();
    Ok(config)
}

/// Refuses two listeners on one fixed address (port 0 picks a free port for each).
pub(crate) fn distinct_addrs(addrs: &[(&str, std::net::SocketAddr)]) -> anyhow::Result<()> {
    for (i, (name, addr)) in addrs.iter().enumerate() {
        if let Some((other, _)) = addrs[..i]
            .iter()
            .find(|(_, earlier)| addr.port() != 0 && earlier == addr)
        {
            return Err(Usage(format!("{other} and {name} are both {addr}")).into());
        }
    }
    Ok(())
}

/// `offpath transport`: the chat gateway until SIGINT or SIGTERM. NATS may be down at
/// start: chat works, requests wait in the outbox.
pub(crate) async fn transport(args: TransportArgs) -> anyhow::Result<()> {
    let config = transport_config(&args)?;
    let secret = std::env::var(offpath_transport::SECRET_ENV).ok();
    let auth = offpath_transport::authenticator(&config, secret.as_deref())
        .map_err(|err| Usage(err.to_string()))?;
    let client = transport_client(&args, &config).await?;
    let public = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("binding {} (--listen-addr)", args.listen_addr))?;
    let operator = bind_metrics(args.metrics_addr).await?;
    offpath_transport::run(
        config,
        client,
        offpath_transport::Listeners { public, operator },
        auth,
        shutdown_signal(),
    )
    .await
    .map_err(|err| match err {
        // Settings `run` refuses (the dev identity on a network listener): exit 64.
        offpath_transport::TransportError::Config(problems) => Usage::problems(problems).into(),
        other => anyhow::Error::from(other),
    })?;
    Ok(())
}

/// The transport's NATS client, connecting in the background. Given
/// [`TRANSPORT_NATS_WAIT`] to connect: then the server is checked and the topology put in
/// place (within the same wait); else the transport serves without NATS for now.
async fn transport_client(
    args: &TransportArgs,
    config: &offpath_transport::Config,
) -> anyhow::Result<async_nats::Client> {
    let servers = server_addrs(&args.nats.nats_url)?;
    let role = Role::Transport {
        tenant: config.tenant.clone(),
        instance: None,
    };
    let client = args
        .nats
        .auth
        .options("offpath-transport", &role.inbox_prefix())
        .await?
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {}", args.nats.nats_url.join(",")))?;
    let connected = async {
        while client.connection_state() != State::Connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(TRANSPORT_NATS_WAIT, connected)
        .await
        .is_err()
    {
        warn!("NATS not reachable within 5 s; serving anyway, requests wait");
    } else {
        // Connected: the server has introduced itself. A server met only later (after a
        // reconnect) is not checked here.
        check_server(&client)?;
        match tokio::time::timeout(
            TRANSPORT_NATS_WAIT,
            ensure_topology(&client, &config.topology),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(
                "JetStream topology not in place ({}); serving anyway",
                offpath_ops::cli::one_line(&err)
            ),
            Err(_) => warn!("JetStream topology not in place within 5 s; serving anyway"),
        }
    }
    Ok(client)
}

/// Creates what is missing of the topology; logs (and keeps) each setting of what exists
/// that differs from `config`: only `offpath topology` changes settings.
pub(crate) async fn ensure_topology(
    client: &async_nats::Client,
    config: &TopologyConfig,
) -> anyhow::Result<()> {
    let drift = topology::ensure(&async_nats::jetstream::new(client.clone()), config).await?;
    for difference in &drift {
        warn!("JetStream topology differs: {difference}; `offpath topology` changes settings");
    }
    info!(
        streams =
            "MODERATION, MODERATION_INTERACTIVE, VERDICTS, MODERATION_DLQ, REVIEW, AUDIT, SENDERS",
        consumer = "MODERATION/moderator",
        differences = drift.len(),
        "JetStream topology in place"
    );
    Ok(())
}

/// Parses NATS URLs; a bad one is a usage error.
pub(crate) fn server_addrs(urls: &[String]) -> anyhow::Result<Vec<ServerAddr>> {
    if urls.is_empty() {
        return Err(Usage("--nats-url: no URL given".into()).into());
    }
    urls.iter()
        .map(|url| {
            url.trim()
                .parse::<ServerAddr>()
                .map_err(|err| Usage(format!("--nats-url {url:?} is not a NATS URL: {err}")).into())
        })
        .collect()
}

/// Connects to any of `urls` as `role` (its inbox prefix, `auth`'s login) and checks the
/// server's version.
pub(crate) async fn connect(
    urls: &[String],
    auth: &NatsAuthArgs,
    name: &str,
    role: &Role,
) -> anyhow::Result<async_nats::Client> {
    let options = auth.options(name, &role.inbox_prefix()).await?;
    connect_with(options, urls).await
}

/// Connects to any of `urls` with `options` and checks the server's version.
pub(crate) async fn connect_with(
    options: async_nats::ConnectOptions,
    urls: &[String],
) -> anyhow::Result<async_nats::Client> {
    let servers = server_addrs(urls)?;
    let client = options
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {}", urls.join(",")))?;
    check_server(&client)?;
    Ok(client)
}

/// Refuses a nats-server older than the oldest supported one.
fn check_server(client: &async_nats::Client) -> anyhow::Result<()> {
    let info = client.server_info();
    topology::check_server_version(&info.version)
        .with_context(|| format!("NATS at {}:{}", info.host, info.port))
}

async fn bind_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr} (--metrics-addr)"))?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    Ok(listener)
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
