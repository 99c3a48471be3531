//! A local nats-server with offpath's authorization on, and each role's credentials.
//!
//! [`local_authorization`] draws a random password per role and renders the
//! `authorization` block of [`offpath_protocol::permissions`]; [`start`] runs a server with
//! it. `offpath up` uses both for its local server; the tests use them to try what each
//! credential may and may not do.

use std::io;
use std::path::Path;

use offpath_protocol::permissions::{Password, Role, authorization_block};

use crate::nats::{Builder, Error, NatsServer};

/// How one role logs in: user, password and the inbox prefix its permissions allow.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The NATS user name.
    pub user: String,
    /// The password (redacted in `Debug`).
    pub password: String,
    /// The inbox prefix the client must use.
    pub inbox_prefix: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl Credentials {
    /// Connect options that log in as this role with its inbox prefix.
    pub fn options(&self) -> async_nats::ConnectOptions {
        async_nats::ConnectOptions::with_user_and_password(self.user.clone(), self.password.clone())
            .custom_inbox_prefix(&self.inbox_prefix)
    }

    /// Connects to `url` as this role.
    pub async fn connect(&self, url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.options().connect(url).await
    }
}

/// 32 hex characters (128 bits) from the operating system's random source.
pub fn random_password() -> io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random password per role and the config text that grants each role its permissions.
pub fn local_authorization(roles: &[Role]) -> io::Result<(String, Vec<(Role, Credentials)>)> {
    let mut users = Vec::with_capacity(roles.len());
    let mut credentials = Vec::with_capacity(roles.len());
    for role in roles {
        let password = random_password()?;
        users.push((role.clone(), Password::Literal(password.clone())));
        credentials.push((
            role.clone(),
            Credentials {
                user: role.user(),
                password,
                inbox_prefix: role.inbox_prefix(),
            },
        ));
    }
    let config = authorization_block(&users)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    Ok((config, credentials))
}

/// A local server with authorization on, and the credentials of its roles.
#[derive(Debug)]
pub struct SecuredNats {
    /// The server.
    pub server: NatsServer,
    /// Each role's credentials, in the order given to [`start`].
    pub credentials: Vec<(Role, Credentials)>,
}

impl SecuredNats {
    /// The credentials of `role`.
    ///
    /// # Panics
    /// When the server was not started with that role (a test's mistake).
    pub fn credentials(&self, role: &Role) -> &Credentials {
        self.credentials
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, c)| c)
            .unwrap_or_else(|| panic!("no credentials for {role:?}"))
    }
}

/// Starts `builder`'s server with authorization for `roles` (nothing else may connect).
pub fn start(builder: Builder, roles: &[Role]) -> Result<SecuredNats, Error> {
    start_with(builder, roles, "")
}

/// [`start`] with more configuration text, e.g. a `tls { }` block
/// ([`crate::tls::TestPki::server_block`]).
pub fn start_with(builder: Builder, roles: &[Role], extra: &str) -> Result<SecuredNats, Error> {
    let (config, credentials) = local_authorization(roles)?;
    let server = builder.config(format!("{config}{extra}")).start()?;
    Ok(SecuredNats {
        server,
        credentials,
    })
}

/// The password of `user` in a config text written by [`local_authorization`] (how a
/// test, or an operator of `offpath up`, logs in to the local server: the file is 0600).
pub fn password_in_config(config: &str, user: &str) -> Option<String> {
    let at = config.find(&format!("user: \"{user}\""))?;
    let rest = &config[at..];
    let start = rest.find("password: \"")? + "password: \"".len();
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].to_string())
}

/// Logs in to the local server of `offpath up` whose store is `data_dir`, as `role`.
pub fn up_credentials(data_dir: &Path, role: &Role) -> io::Result<Credentials> {
    let config = std::fs::read_to_string(data_dir.join(crate::nats::CONFIG_FILE))?;
    let password = password_in_config(&config, &role.user()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("no user {}", role.user()))
    })?;
    Ok(Credentials {
        user: role.user(),
        password,
        inbox_prefix: role.inbox_prefix(),
    })
}
