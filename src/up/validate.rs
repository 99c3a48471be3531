//! What `offpath up` refuses before anything starts: its own flags, and each child's command
//! line parsed as the child will parse it.

use anyhow::Context;
use clap::Parser;

use super::{moderator_command, transport_command};
use crate::cli::{Cli, Command, UpArgs, Usage};
use crate::services;

/// Refuses, before anything starts, what is sure to fail: `up`'s own flags, and each
/// child's command line parsed and checked as the child will (with the same environment,
/// which children inherit). A child can still fail later on what only it can see.
pub(super) fn validate(args: &UpArgs) -> anyhow::Result<()> {
    if args.moderators == 0 {
        return Err(Usage("--moderators must be at least 1".into()).into());
    }
    validate_cluster(args)?;
    if let Some(reviewers) = &args.reviewers {
        // Checked now, so a bad file stops `up` before anything starts.
        offpath_review::Reviewers::load(reviewers).map_err(|e| Usage(e.to_string()))?;
    }
    if args.nats_url.is_empty() {
        let auth = &args.auth;
        if auth.nats_user.is_some()
            || auth.nats_password_file.is_some()
            || auth.nats_creds.is_some()
            || auth.nats_tls_ca.is_some()
            || auth.nats_tls_cert.is_some()
            || auth.nats_tls_required
        {
            let problem = "NATS login and TLS flags need --nats-url: the local nats-server \
                           makes its own users";
            return Err(Usage(problem.into()).into());
        }
    } else {
        services::server_addrs(&args.nats_url)?;
        args.auth.check()?;
    }
    if let Some(dir) = &args.data_dir
        && dir.exists()
        && !dir.is_dir()
    {
        let problem = format!("--data-dir {}: not a directory", dir.display());
        return Err(Usage(problem).into());
    }
    services::distinct_addrs(&[
        ("--listen-addr", args.listen_addr),
        ("--transport-metrics-addr", args.transport_metrics_addr),
        ("--moderator-metrics-addr", args.moderator_metrics_addr),
    ])?;
    // The local server's port is not known yet; any URL parses the same.
    let url = if args.nats_url.is_empty() {
        "nats://127.0.0.1:4222".to_string()
    } else {
        args.nats_url.join(",")
    };
    let moderator = moderator_command(args, &url, args.moderator_metrics_addr);
    if let Command::Moderator(child) = parse_child("moderator", &moderator)? {
        services::moderator_config(&child).context("moderator")?;
    }
    let transport = transport_command(args, &url, args.listen_addr, args.transport_metrics_addr);
    if let Command::Transport(child) = parse_child("transport", &transport)? {
        services::transport_config(&child).context("transport")?;
    }
    Ok(())
}

/// `--nats-cluster`: local servers only, a size that survives losing a node, replicas
/// that fit it.
fn validate_cluster(args: &UpArgs) -> anyhow::Result<()> {
    let n = args.nats_cluster;
    let problem = if n == 1 {
        return Ok(());
    } else if !args.nats_url.is_empty() {
        "--nats-cluster starts local servers: it does not go with --nats-url".to_string()
    } else if n == 2 {
        "--nats-cluster=2 stops JetStream when one node dies (no majority): use 3".to_string()
    } else if args.local_nats_port != 0 {
        "--local-nats-port is for one local server; a cluster picks free ports".to_string()
    } else if args.streams.replicas > n {
        format!(
            "--replicas={} exceeds --nats-cluster={n}",
            args.streams.replicas
        )
    } else {
        return Ok(());
    };
    Err(Usage(problem).into())
}

/// The transport child's tenant and instance (empty: not chosen), as it will parse them.
pub(super) fn transport_identity(args: &UpArgs) -> anyhow::Result<(String, String)> {
    let url = "nats://127.0.0.1:4222";
    let flags = transport_command(args, url, args.listen_addr, args.transport_metrics_addr);
    match parse_child("transport", &flags)? {
        Command::Transport(child) => Ok((child.transport.tenant, child.transport.instance)),
        _ => Err(Usage("transport: not a transport command line".into()).into()),
    }
}

/// A child's command line as the child will parse it; a usage error names the child.
fn parse_child(name: &str, flags: &[String]) -> anyhow::Result<Command> {
    let argv = std::iter::once("offpath").chain(flags.iter().map(String::as_str));
    match Cli::try_parse_from(argv) {
        Ok(cli) => Ok(cli.command),
        Err(err) => {
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let problem = first.strip_prefix("error: ").unwrap_or(first);
            Err(Usage(format!("{name}: {problem}")).into())
        }
    }
}
