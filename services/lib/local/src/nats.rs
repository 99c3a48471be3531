//! A local `nats-server` as a child process.
//!
//! Three users share it: the launcher, which starts a local server when no NATS URL is
//! given (`offpath up`), the load scenarios, and the integration tests (through
//! `offpath-harness`), which start one real server per test on a random port with
//! JetStream in a temporary directory. A server can be killed and restarted on the same
//! port and store, which outage tests need; dropping the handle kills the process and
//! removes what it created.
//!
//! The binary is looked up in this order: an explicit path, `$OFFPATH_NATS_SERVER`, the
//! project's bootstrap folder (`.tools/bin/nats-server`, searched upwards from the current
//! directory and from the running executable), `$PATH`, then `/usr/sbin/nats-server`
//! (Debian's package).

mod builder;

pub use builder::Builder;

use crate::locate::BOOTSTRAP_HINT;
use crate::set_die_with_parent;

use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Name of the configuration file written for [`Builder::config`].
pub const CONFIG_FILE: &str = "nats-server.conf";
/// How long a starting server may take to accept TCP connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the process is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// JetStream file storage a server started for tests may account for (see
/// [`Builder::max_file_store`]): far more than any test writes, so that what a test may
/// reserve (`max_bytes` of its streams) never depends on the free disk of the machine.
pub const TEST_MAX_FILE_STORE: u64 = 256 * 1024 * 1024 * 1024;

/// Why a local server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `nats-server` binary was found in any of the searched places.
    #[error("nats-server not found (searched: {searched}); {hint}", hint = BOOTSTRAP_HINT)]
    NotFound {
        /// The places that were searched, in order.
        searched: String,
    },
    /// The process could not be spawned.
    #[error("could not start {binary}: {source}")]
    Spawn {
        /// The binary that was started.
        binary: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The process exited before it was ready.
    #[error("nats-server exited with {status} before it was ready; log tail:\n{log}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its log.
        log: String,
    },
    /// The process did not accept connections in time.
    #[error("nats-server did not become ready within {timeout:?}; log tail:\n{log}")]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// The last lines of its log.
        log: String,
    },
    /// A file-system operation on the server's directories failed.
    #[error("nats-server working directory: {0}")]
    Io(#[from] io::Error),
}

/// Where the JetStream store lives.
#[derive(Debug)]
enum Store {
    /// Removed when the server handle is dropped.
    Temp(tempfile::TempDir),
    /// Kept: owned by the caller.
    Dir(PathBuf),
}

impl Store {
    fn path(&self) -> &Path {
        match self {
            Store::Temp(dir) => dir.path(),
            Store::Dir(dir) => dir,
        }
    }
}

/// A running (or stopped, restartable) local `nats-server`.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    /// The configuration file, when the server runs with one.
    config: Option<PathBuf>,
    host: String,
    /// `None` until the first start has picked a port; then fixed, so restarts reuse it.
    port: Option<u16>,
    jetstream: bool,
    die_with_parent: bool,
    store: Store,
    /// Holds the log and the ports file; removed on drop.
    work: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Start a server on a random port with JetStream in a temporary directory.
    pub fn start() -> Result<Self, Error> {
        Builder::default().start()
    }

    /// Options for a server that differs from the default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The client URL, `nats://host:port`.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port())
    }

    /// The port the server listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(0)
    }

    /// The JetStream store directory (kept across restarts).
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// The binary this server runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kill the process at once (SIGKILL), like a crash. Idempotent.
    pub fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.take() {
            // An already-exited child makes `kill` fail with InvalidInput: that is fine.
            let _ = child.kill();
            child.wait()?;
        }
        Ok(())
    }

    /// Stop the process gracefully (SIGTERM, then SIGKILL after a grace period). Idempotent.
    pub fn stop(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // std has no SIGTERM. If it fails the fallback below still ends the process.
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait()?;
        Ok(())
    }

    /// Start the process again on the same port and store (after [`kill`](Self::kill) or
    /// [`stop`](Self::stop)); a running server is killed first.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill()?;
        self.spawn()
    }

    fn log_path(&self) -> PathBuf {
        self.work.path().join("nats-server.log")
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let port_arg = self
            .port
            .map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut cmd = Command::new(&self.binary);
        // The gateway's token secret is no business of the NATS server's.
        cmd.env_remove("OFFPATH_TOKEN_HS256_SECRET");
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args(["-a", &self.host, "-p", &port_arg])
            .arg("--ports_file_dir")
            .arg(self.work.path())
            .arg("-l")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.jetstream {
            cmd.arg("-js").arg("-sd").arg(self.store.path());
        }
        if self.die_with_parent {
            set_die_with_parent(&mut cmd);
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id();
        self.child = Some(child);
        match self.wait_ready(pid) {
            Ok(()) => Ok(()),
            Err(err) => {
                let _ = self.kill();
                Err(err)
            }
        }
    }

    /// Wait until *our* process has written its ports file (so a port taken by another
    /// server is not mistaken for ours) and the port accepts TCP.
    fn wait_ready(&mut self, pid: u32) -> Result<(), Error> {
        // nats-server names the file after its executable (`<basename>_<pid>.ports`): a
        // binary installed as `nats-server-2.9` writes `nats-server-2.9_<pid>.ports`.
        let name = self
            .binary
            .file_name()
            .map_or("nats-server".into(), |n| n.to_string_lossy().into_owned());
        let ports_file = self.work.path().join(format!("{name}_{pid}.ports"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(Error::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            if let Some(port) = read_client_port(&ports_file)
                && self.accepts(port)
            {
                self.port = Some(port);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    timeout: READY_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn accepts(&self, port: u16) -> bool {
        let Ok(ip) = self.host.parse() else {
            return false;
        };
        TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_millis(200)).is_ok()
    }

    /// The last ~4 KiB of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Reads the client port from nats-server's ports file:
/// `{"nats":["nats://127.0.0.1:PORT"],...}` (`tls://` when the server has TLS on).
fn read_client_port(path: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(path).ok()?;
    let clients = &text[text.find("\"nats\"")?..];
    let start = clients.find("://")? + "://".len();
    let url = &clients[start..];
    let end = url.find('"')?;
    url[..end].rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ports file's client URL is parsed into a port; garbage gives none.
    #[test]
    fn parses_ports_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.ports");
        std::fs::write(
            &path,
            r#"{"nats":["nats://127.0.0.1:41234"],"monitoring":[]}"#,
        )
        .expect("write");
        assert_eq!(read_client_port(&path), Some(41234));
        std::fs::write(&path, "{").expect("write");
        assert_eq!(read_client_port(&path), None);
        assert_eq!(read_client_port(&dir.path().join("missing")), None);
    }
}
