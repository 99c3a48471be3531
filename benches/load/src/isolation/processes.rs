//! The processes of one scenario: nats-server (with the secure scenario's logins), the
//! moderators and the transport as children of the benchmark, pinned to their share of the
//! CPUs with `--pin`, started and waited for until ready.

use std::net::SocketAddr;
use std::time::Duration;

use offpath_local::NatsServer;
use offpath_local::process::{self as launch, Proc};
use offpath_protocol::permissions::Role;
use offpath_protocol::topology::{TopologyConfig, ensure};

use super::cpus::CpuSplit;
use super::{Scenario, secure};
use crate::cli::IsolationArgs;
use crate::stack;

/// The processes of one scenario.
pub(super) struct Stack {
    _nats: NatsServer,
    /// The secure scenario's logins (their files live as long as the stack).
    _logins: Option<secure::Logins>,
    pub(super) transport: Proc,
    pub(super) moderators: Vec<Proc>,
}

/// Starts the scenario's processes; returns them and the transport's public address.
pub(super) async fn start_stack(
    args: &IsolationArgs,
    scenario: Scenario,
) -> anyhow::Result<(Stack, SocketAddr)> {
    let cpus = if args.pin {
        CpuSplit::of_this_machine()
    } else {
        None
    };
    let (nats, logins) = secure::start_for(scenario.secure).await?;
    let login = |role: &Role| match &logins {
        Some(logins) => logins.flags(role),
        None => Ok(Vec::new()),
    };
    if let Some(cpus) = &cpus {
        if let Some(pid) = nats.pid() {
            launch::pin(pid, &cpus.rest)?;
        }
        launch::pin(std::process::id(), &cpus.chat)?;
    }
    let client = secure::admin(logins.as_ref(), &nats.url()).await?;
    ensure(
        &async_nats::jetstream::new(client),
        &TopologyConfig::default(),
    )
    .await?;
    let moderator_login = login(&Role::Moderator)?;
    let mut moderators =
        start_moderators(args, scenario, &nats.url(), &moderator_login, cpus.as_ref())?;
    let public = launch::concrete_addr("127.0.0.1:0".parse()?)?;
    let ops = launch::concrete_addr("127.0.0.1:0".parse()?)?;
    let mut flags = transport_command(args, scenario, &nats.url(), public, ops);
    flags.extend(login(&secure::transport_role())?);
    if scenario.secure {
        flags.push(format!("--instance={}", secure::INSTANCE));
    }
    let mut transport = stack::spawn_nice(
        "transport",
        &flags,
        ops,
        0,
        cpus.as_ref().map(|c| c.chat.as_str()),
    )?;
    transport.wait_ready(Duration::from_secs(60)).await?;
    for moderator in &mut moderators {
        moderator.wait_ready(Duration::from_secs(120)).await?;
    }
    Ok((
        Stack {
            _nats: nats,
            _logins: logins,
            transport,
            moderators,
        },
        public,
    ))
}

/// The scenario's moderator processes (none when moderation is off), started, not yet ready.
fn start_moderators(
    args: &IsolationArgs,
    scenario: Scenario,
    url: &str,
    login: &[String],
    cpus: Option<&CpuSplit>,
) -> anyhow::Result<Vec<Proc>> {
    if scenario.moderation == "off" {
        return Ok(Vec::new());
    }
    (0..args.moderators)
        .map(|n| {
            let ops = launch::concrete_addr("127.0.0.1:0".parse()?)?;
            let mut flags = moderator_command(args, scenario, url, ops);
            flags.extend_from_slice(login);
            stack::spawn_nice(
                &format!("moderator-{n}"),
                &flags,
                ops,
                args.moderator_nice,
                cpus.map(|c| c.rest.as_str()),
            )
        })
        .collect()
}

/// The command line of a moderator child. Flags are spelled out here as `offpath up`
/// spells out its own: no config type of the services renders itself as flags.
fn moderator_command(
    args: &IsolationArgs,
    scenario: Scenario,
    url: &str,
    ops: SocketAddr,
) -> Vec<String> {
    let mut flags = vec![
        "moderator".to_string(),
        format!("--nats-url={url}"),
        format!("--metrics-addr={ops}"),
        format!("--inference-threads={}", args.inference_threads),
    ];
    if scenario.fault == Some("slow") {
        flags.push(format!("--fault-batch-delay-ms={}", args.slow_ms));
    }
    flags
}

/// The command line of the transport child: the scenario's moderation mode, room for every
/// client, and rate limits well above the generator's per-client rate.
fn transport_command(
    args: &IsolationArgs,
    scenario: Scenario,
    url: &str,
    public: SocketAddr,
    ops: SocketAddr,
) -> Vec<String> {
    vec![
        "transport".to_string(),
        format!("--nats-url={url}"),
        format!("--listen-addr={public}"),
        format!("--metrics-addr={ops}"),
        format!("--tenant={}", secure::TENANT),
        format!("--moderation={}", scenario.moderation),
        format!("--inline-timeout-ms={}", args.inline_timeout_ms),
        format!("--max-connections={}", args.connections + 16),
        // Every generated client connects from loopback: one address.
        format!("--max-connections-per-ip={}", args.connections + 16),
        "--rate-per-second=1000".to_string(),
        "--rate-burst=1000".to_string(),
        // Generated clients connect as `?user=u<i>`: the benchmark measures moderation,
        // not token verification.
        "--insecure-dev-identity".to_string(),
    ]
}
