//! offpath's services as separate OS processes (the `offpath` binary with a subcommand),
//! so one can be stopped, killed or frozen on its own: `offpath up`, the load scenarios and
//! the tests use it.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// A service running as a child process, with its operator port (`/readyz`).
#[derive(Debug)]
pub struct Proc {
    /// Name for logs, e.g. `moderator-1`.
    pub name: String,
    /// Where its `/metrics`, `/healthz` and `/readyz` answer.
    pub ops: SocketAddr,
    child: Child,
}

/// Only the transport verifies client tokens: no other child gets its HS256 secret.
fn scrub_secrets(command: &mut Command, args: &[String]) {
    if args.first().is_none_or(|a| a != "transport") {
        command.env_remove("OFFPATH_TOKEN_HS256_SECRET");
    }
}

impl Proc {
    /// Starts `offpath <args>` as a child that dies with the calling thread and runs in its
    /// own process group (a terminal's Ctrl-C reaches only the launcher, which stops its
    /// children in order); its log goes to this process's stderr. Call it from the main
    /// thread: see [`crate::set_die_with_parent`].
    pub fn spawn(name: &str, args: &[String], ops: SocketAddr) -> anyhow::Result<Self> {
        Self::spawn_with_env(name, args, &[], ops)
    }

    /// [`spawn`](Self::spawn) with environment changes: `(name, Some(value))` sets a
    /// variable, `(name, None)` removes an inherited one (how a child gets its NATS password
    /// without it appearing on its command line).
    pub fn spawn_with_env(
        name: &str,
        args: &[String],
        env: &[(String, Option<String>)],
        ops: SocketAddr,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the offpath executable")?;
        let mut command = Command::new(exe);
        command.args(args).process_group(0);
        scrub_secrets(&mut command, args);
        for (key, value) in env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        crate::set_die_with_parent(&mut command);
        Self::start(name, command, ops)
    }

    /// Starts `command` (stdin and stdout closed) as the process called `name`.
    pub fn start(name: &str, mut command: Command, ops: SocketAddr) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the {name} process"))?;
        Ok(Self {
            name: name.to_string(),
            ops,
            child,
        })
    }

    /// Starts `<exe> <args>` (the `offpath` binary) with its log discarded, under
    /// `nice -n <nice>` when `nice` is above 0, pinned to `cpus` (a `taskset` list such as
    /// `1` or `0-2`) when given.
    pub fn spawn_nice(
        name: &str,
        exe: &std::path::Path,
        args: &[String],
        ops: SocketAddr,
        nice: u32,
        cpus: Option<&str>,
    ) -> anyhow::Result<Self> {
        // Both wrappers exec the next program: the process id stays the service's own.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(cpus) = cpus {
            argv.extend(["taskset".into(), "-c".into(), cpus.into()]);
        }
        if nice > 0 {
            argv.extend(["nice".into(), format!("-n{nice}").into()]);
        }
        argv.push(exe.into());
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .args(args)
            .env("OFFPATH_LOG", "warn")
            .stderr(Stdio::null());
        Self::start(name, command, ops)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `/readyz` answers 200 from this process (its [`offpath_ops::PID_HEADER`]:
    /// another process answering on the port is not its readiness); fails when the process
    /// exits first or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let pid = self.pid().to_string();
        let mut stranger = None;
        loop {
            if let Some(status) = self.exited() {
                bail!("{} exited before it was ready ({status})", self.name);
            }
            let readyz = crate::http::Request::new("GET", "/readyz");
            if let Ok(answer) = readyz.send(self.ops).await {
                let from = answer.header(offpath_ops::PID_HEADER).map(str::to_string);
                match from {
                    // Another process answers on this port: not our child's readiness.
                    Some(other) if other != pid => stranger = Some(other),
                    None if answer.status != 0 => stranger = Some("unknown".into()),
                    _ if answer.status == 200 => return Ok(()),
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                match stranger {
                    Some(other) => bail!(
                        "{} not ready after {timeout:?}: {} is answered by another process \
                         (pid {other}), not by {} (pid {pid})",
                        self.name,
                        self.ops,
                        self.name
                    ),
                    None => bail!("{} not ready after {timeout:?}", self.name),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        self::signal(self.pid(), signal)
    }

    /// Kills the process at once (SIGKILL), like a crash, and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        self.child.kill().context("SIGKILL")?;
        self.child.wait().context("waiting for the killed process")
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        // A frozen process cannot act on SIGTERM.
        let _ = self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(name = %self.name, "did not stop within {grace:?}; killing it");
        self.kill()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Never leave a child behind (a panic or an early return in the launcher).
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).with_context(|| format!("process id {pid}"))?;
    nix::sys::signal::kill(Pid::from_raw(raw), signal)
        .with_context(|| format!("sending {signal} to process {pid}"))
}

/// Pins every thread of process `pid` (and the threads it starts later) to `cpus`, a
/// `taskset` list such as `1` or `0-2`.
pub fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} {pid} failed");
    }
    Ok(())
}

/// `addr`, or when its port is 0 the same host with a port that is free now.
pub fn concrete_addr(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    Ok(listener.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moderator child (anything but the transport) is spawned without the transport's
    /// HS256 secret in its environment; the transport keeps it.
    #[test]
    fn only_the_transport_inherits_the_token_secret() {
        let removed = |sub: &str| {
            let mut command = Command::new("true");
            scrub_secrets(&mut command, &[sub.to_string()]);
            command
                .get_envs()
                .any(|(k, v)| k == "OFFPATH_TOKEN_HS256_SECRET" && v.is_none())
        };
        assert!(removed("moderator"));
        assert!(!removed("transport"));
    }
}
