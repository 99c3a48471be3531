//! What `offpath up` keeps on this machine: the local nats-server (or cluster) started
//! with authorization and its logins, the JetStream data directory, the integration login's
//! file, and the local policy signing key.

use std::path::PathBuf;

use anyhow::Context;
use offpath_local::NatsServer;
use tracing::{info, warn};

use super::Stack;
use super::validate::transport_identity;
use crate::cli::UpArgs;
use crate::local_auth::{self, LocalLogins};
use crate::supervise::{self, LocalNats};

/// The NATS URLs, and the logins when the local server is started (now, with
/// authorization on) because no `--nats-url` was given.
pub(super) fn nats(
    args: &UpArgs,
    stack: &mut Stack,
) -> anyhow::Result<(Vec<String>, Option<LocalLogins>)> {
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
pub(super) fn local_policy_signer(args: &UpArgs) -> anyhow::Result<Option<String>> {
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
pub(super) fn stack_is_cluster(args: &UpArgs) -> bool {
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
