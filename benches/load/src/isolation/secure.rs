//! The `decoupled-secure` scenario's NATS: the generated authorization (a user per role,
//! the transport pinned to its consumer) and TLS with a throwaway CA, as a deployment
//! following `docs/security.md` runs it. The services log in through the same flags an
//! operator gives them (`--nats-user`, `--nats-password-file`, `--nats-tls-ca`), so the
//! figures include TLS on every NATS connection and the server's permission checks.

use anyhow::Context;
use offpath_local::NatsServer;
use offpath_local::secure::{self, Credentials};
use offpath_local::tls::TestPki;
use offpath_protocol::permissions::Role;

/// The transport's tenant in every scenario.
pub(super) const TENANT: &str = "bench";
/// The transport's instance in the secure scenario (its credential names its consumer).
pub(super) const INSTANCE: &str = "bench";

/// Each role's login and the CA its clients trust; the files live as long as this.
pub(super) struct Logins {
    pki: TestPki,
    credentials: Vec<(Role, Credentials)>,
}

/// The transport's role in the secure scenario.
pub(super) fn transport_role() -> Role {
    Role::Transport {
        tenant: TENANT.into(),
        instance: Some(INSTANCE.into()),
    }
}

/// Starts nats-server with authorization and TLS on (blocking: call from a blocking task).
pub(super) fn start() -> anyhow::Result<(NatsServer, Logins)> {
    let pki = TestPki::new().context("making a throwaway CA")?;
    let roles = [Role::Topology, Role::Moderator, transport_role()];
    let secured = secure::start_with(NatsServer::builder(), &roles, &pki.server_block(false))
        .context("starting nats-server with authorization and TLS")?;
    let logins = Logins {
        pki,
        credentials: secured.credentials,
    };
    Ok((secured.server, logins))
}

/// A nats-server for a scenario: secured when `secure`, else open (as before).
pub(super) async fn start_for(secure: bool) -> anyhow::Result<(NatsServer, Option<Logins>)> {
    if secure {
        let (nats, logins) = tokio::task::spawn_blocking(start).await??;
        return Ok((nats, Some(logins)));
    }
    let nats = tokio::task::spawn_blocking(NatsServer::start)
        .await?
        .context("starting nats-server")?;
    Ok((nats, None))
}

/// A client that may put the topology in place: `topology` over TLS, or anonymous.
pub(super) async fn admin(
    logins: Option<&Logins>,
    url: &str,
) -> anyhow::Result<async_nats::Client> {
    match logins {
        Some(logins) => logins.admin(url).await,
        None => Ok(async_nats::connect(url).await?),
    }
}

impl Logins {
    fn credentials(&self, role: &Role) -> anyhow::Result<&Credentials> {
        self.credentials
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, c)| c)
            .with_context(|| format!("no login for {}", role.user()))
    }

    /// The login flags of a service of `role`; its password goes into a 0600 file.
    pub(super) fn flags(&self, role: &Role) -> anyhow::Result<Vec<String>> {
        let credentials = self.credentials(role)?;
        let file = self
            .pki
            .dir()
            .join(format!("{}.password", credentials.user));
        std::fs::write(&file, &credentials.password).context("writing a password file")?;
        Ok(vec![
            format!("--nats-user={}", credentials.user),
            format!("--nats-password-file={}", file.display()),
            format!("--nats-tls-ca={}", self.pki.ca().display()),
        ])
    }

    /// A client logged in as `topology` over TLS (to put the topology in place).
    pub(super) async fn admin(&self, url: &str) -> anyhow::Result<async_nats::Client> {
        let client = self
            .credentials(&Role::Topology)?
            .options()
            .add_root_certificates(self.pki.ca())
            .require_tls(true)
            .connect(url)
            .await
            .context("connecting as topology over TLS")?;
        Ok(client)
    }
}
