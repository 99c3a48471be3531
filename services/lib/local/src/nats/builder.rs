//! [`Builder`]: the options a local server starts with, and starting it.

use std::path::PathBuf;

use super::{CONFIG_FILE, Error, NatsServer, Store, TEST_MAX_FILE_STORE};
use crate::locate::find_binary;

/// Options for starting a local server; [`NatsServer::start`] uses the defaults.
#[derive(Debug, Clone)]
pub struct Builder {
    binary: Option<PathBuf>,
    host: String,
    port: Option<u16>,
    store_dir: Option<PathBuf>,
    jetstream: bool,
    die_with_parent: bool,
    config: Option<String>,
    config_dir: Option<PathBuf>,
    max_file_store: Option<u64>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            binary: None,
            host: "127.0.0.1".into(),
            port: None,
            store_dir: None,
            jetstream: true,
            die_with_parent: false,
            config: None,
            config_dir: None,
            max_file_store: Some(TEST_MAX_FILE_STORE),
        }
    }
}

impl Builder {
    /// Use this binary instead of searching for one.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Listen on this port (default: a random free port chosen by the server).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Keep the JetStream store in this directory (default: a temporary directory).
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// Enable or disable JetStream (default: enabled).
    pub fn jetstream(mut self, enabled: bool) -> Self {
        self.jetstream = enabled;
        self
    }

    /// Tie the server to the thread that starts (and restarts) it (default: off): it gets
    /// SIGKILL when that thread exits, and runs in its own process group so a terminal's
    /// Ctrl-C reaches only the parent, which stops it in its turn. Start such a server from
    /// a thread that lives as long as the parent (the main thread), never from
    /// `spawn_blocking`: those threads exit when idle. See [`set_die_with_parent`].
    pub fn die_with_parent(mut self, enabled: bool) -> Self {
        self.die_with_parent = enabled;
        self
    }

    /// Run with this configuration file text (`-c`), e.g. an authorization block; written
    /// 0600 into the server's private working directory. Flags still set the address,
    /// port and JetStream store.
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Write the [`config`](Self::config) file into this directory (default: the server's
    /// private working directory, removed with it), e.g. beside a kept JetStream store.
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }

    /// The JetStream file storage the server accounts for (`jetstream { max_file_store }`);
    /// `None` keeps nats-server's own limit, 75% of the disk that was free at its start.
    ///
    /// Default: [`TEST_MAX_FILE_STORE`]. nats-server refuses a stream whose `max_bytes`
    /// does not fit its limit ("insufficient storage resources", 10047), so with its own
    /// limit a test passes or fails by how full the machine's disk is (seen in CI: every
    /// test that made 3 × 1 GiB streams failed on a disk with a few GiB free). The limit is
    /// bookkeeping only: files grow with what is written. The launcher passes `None`, so an
    /// operator's local server never promises more than the disk holds.
    pub fn max_file_store(mut self, bytes: Option<u64>) -> Self {
        self.max_file_store = bytes;
        self
    }

    /// The configuration text the server runs with: the caller's, plus the storage limit.
    fn config_text(&self) -> Option<String> {
        let limit = self
            .max_file_store
            .filter(|_| self.jetstream)
            .map(|bytes| format!("jetstream {{\n  max_file_store: {bytes}\n}}\n"));
        match (&self.config, limit) {
            (None, None) => None,
            (config, limit) => Some(format!(
                "{}\n{}",
                config.as_deref().unwrap_or_default(),
                limit.unwrap_or_default()
            )),
        }
    }

    /// Start the server and wait until it accepts connections.
    pub fn start(self) -> Result<NatsServer, Error> {
        let config_text = self.config_text();
        let binary = match self.binary {
            Some(path) => path,
            None => find_binary()?,
        };
        let work = tempfile::Builder::new().prefix("offpath-nats-").tempdir()?;
        let store = match self.store_dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                Store::Dir(dir)
            }
            None => Store::Temp(tempfile::Builder::new().prefix("offpath-js-").tempdir()?),
        };
        let config = match config_text {
            Some(text) => {
                let dir = self.config_dir.as_deref().unwrap_or(work.path());
                std::fs::create_dir_all(dir)?;
                Some(crate::private_file::write_private(
                    &dir.join(CONFIG_FILE),
                    &text,
                )?)
            }
            None => None,
        };
        let mut server = NatsServer {
            binary,
            config,
            host: self.host,
            port: self.port,
            jetstream: self.jetstream,
            die_with_parent: self.die_with_parent,
            store,
            work,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }
}
