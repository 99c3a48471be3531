//! `offpath up` as a process supervisor: children never outlive it, and a child that dies
//! is started again. Process trees are read from /proc (Linux).

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Child;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `offpath up` on port 0 everywhere with a temporary store; its JSON log read on a thread.
struct Up {
    child: Child,
    /// Every child pid seen, so that a failing test still kills them.
    seen: BTreeSet<u32>,
    up_rx: mpsc::Receiver<()>,
    /// The log so far (the reader thread may outlive the launcher: orphaned children
    /// would hold its stderr open).
    log: Arc<Mutex<Vec<String>>>,
    _data: tempfile::TempDir,
}

impl Up {
    fn start() -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut child = common::up(data.path(), &["--moderator-arg=--inference-threads=1"])
            .spawn()
            .expect("spawn offpath up");
        let stderr = child.stderr.take().expect("stderr");
        let (up_tx, up_rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("offpath is up") {
                    let _ = up_tx.send(());
                }
                lines.lock().expect("log").push(line);
            }
        });
        Self {
            child,
            seen: BTreeSet::new(),
            up_rx,
            log,
            _data: data,
        }
    }

    /// [`Up::start`], then waits until it says it is up.
    fn ready() -> Self {
        let mut up = Self::start();
        up.wait_up();
        up
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The current children (pid, command line), remembered in `seen`.
    fn children(&mut self) -> Vec<(u32, Vec<String>)> {
        let children = children_of(self.pid());
        self.seen.extend(children.iter().map(|(pid, _)| *pid));
        children
    }

    fn wait_up(&mut self) {
        self.up_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("offpath up reported it is up");
        self.children();
    }

    /// Waits for the launcher to exit; returns its exit code and log.
    fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "offpath up did not exit");
            self.children();
            std::thread::sleep(Duration::from_millis(10));
        };
        // Let the reader catch up with the last lines.
        std::thread::sleep(Duration::from_millis(200));
        let log = self.log.lock().expect("log").join("\n");
        (status.code(), log)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.seen {
            signal(*pid, Signal::SIGKILL);
        }
    }
}

fn signal(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

/// (pid, command line) of every live process whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<(u32, Vec<String>)> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, state)) = stat(pid)
            && ppid == parent
            && state != 'Z'
        {
            children.push((pid, cmdline(pid)));
        }
    }
    children
}

/// Parent pid and state from /proc/<pid>/stat: `pid (comm) state ppid …`.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((fields.next()?.parse().ok()?, state))
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is still a live process (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, state)| state != 'Z')
}

/// Waits until none of `pids` is alive; panics naming the survivors.
fn assert_all_gone(pids: &BTreeSet<u32>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<(u32, Vec<String>)> = pids
            .iter()
            .filter(|pid| alive(**pid))
            .map(|pid| (*pid, cmdline(*pid)))
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "children outlived offpath up: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_service(cmdline: &[String], service: &str) -> bool {
    cmdline.get(1).is_some_and(|arg| arg == service)
}

fn is_nats_server(cmdline: &[String]) -> bool {
    cmdline
        .first()
        .is_some_and(|arg| arg.ends_with("nats-server"))
}

/// The value of `--<name>=` in a command line.
fn flag(cmdline: &[String], name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    cmdline
        .iter()
        .find_map(|arg| arg.strip_prefix(&prefix).map(str::to_string))
}

/// The HTTP status of GET `path`, or 0 when nothing answers.
fn http_status(addr: SocketAddr, path: &str) -> u16 {
    offpath_harness::http::get_blocking(addr, path).map_or(0, |(status, _)| status)
}

/// SIGTERM while `offpath up` is still starting (its nats-server, moderator and transport
/// exist, the moderator is loading models) stops every child and exits 0.
#[test]
fn sigterm_during_start_up_leaves_no_child() {
    let mut up = Up::start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let children = up.children();
        let nats = children.iter().any(|(_, cmd)| is_nats_server(cmd));
        let moderator = children.iter().any(|(_, cmd)| is_service(cmd, "moderator"));
        let transport = children.iter().any(|(_, cmd)| is_service(cmd, "transport"));
        if nats && moderator && transport {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "children not started: {children:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(up.pid(), Signal::SIGTERM);
    let (code, log) = up.wait_exit(Duration::from_secs(60));
    assert!(
        !log.contains("offpath is up"),
        "the signal came after start-up, not during it; log:\n{log}"
    );
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(up.seen.len() >= 3, "children seen: {:?}", up.seen);
    assert_all_gone(&up.seen, Duration::from_secs(5));
}

/// SIGKILL of a ready `offpath up` takes every child along (they die with their parent).
#[test]
fn killed_launcher_takes_its_children_along() {
    let mut up = Up::ready();
    let children = up.children();
    assert_eq!(
        children.len(),
        3,
        "nats-server, moderator, transport: {children:?}"
    );
    signal(up.pid(), Signal::SIGKILL);
    let _ = up.child.wait();
    assert_all_gone(&up.seen, Duration::from_secs(5));
}

/// A moderator killed with SIGKILL is started again by `offpath up` on the same metrics
/// address, which turns ready again; the transport keeps running meanwhile.
#[test]
fn a_killed_moderator_is_restarted() {
    let mut up = Up::ready();
    let children = up.children();
    let find = |service: &str| {
        children
            .iter()
            .find(|(_, cmd)| is_service(cmd, service))
            .cloned()
            .unwrap_or_else(|| panic!("no {service} child: {children:?}"))
    };
    let (moderator, cmd) = find("moderator");
    let (transport, _) = find("transport");
    let ops: SocketAddr = flag(&cmd, "metrics-addr")
        .expect("--metrics-addr")
        .parse()
        .expect("address");
    assert_eq!(http_status(ops, "/readyz"), 200);
    signal(moderator, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        let again = up
            .children()
            .into_iter()
            .find(|(pid, cmd)| *pid != moderator && is_service(cmd, "moderator"));
        if let Some((pid, cmd)) = again
            && http_status(ops, "/readyz") == 200
        {
            assert_eq!(flag(&cmd, "metrics-addr"), Some(ops.to_string()));
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no ready moderator after the kill"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(alive(transport), "the transport kept running");
    signal(up.pid(), Signal::SIGTERM);
    let (code, log) = up.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(
        log.contains(r#""restarts":1"#),
        "restart counted; log:\n{log}"
    );
    assert!(!alive(restarted));
}

/// Issue 26: with a port of its stack held by another process that answers `/readyz` with
/// 200 (another stack's service), `offpath up` printed "offpath is up" although its child
/// had failed to bind. Now readiness must come from its own child (`x-offpath-pid`): the
/// child's bind failure ends the launcher with a non-zero status, and it never says it is
/// up.
#[test]
fn a_port_answered_by_another_process_is_not_readiness() {
    use std::io::{Read, Write};
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = squatter.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in squatter.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.0 200 OK\r\nx-offpath-pid: 1\r\nContent-Length: 6\r\n\r\nready\n",
            );
        }
    });
    let data = tempfile::tempdir().expect("tempdir");
    let mut command = std::process::Command::new(common::BIN);
    command
        .args(["--log-json", "up", "--listen-addr=127.0.0.1:0"])
        .arg(format!("--transport-metrics-addr=127.0.0.1:{port}"))
        .args([
            "--moderator-metrics-addr=127.0.0.1:0",
            "--moderator-arg=--inference-threads=1",
        ])
        .arg(format!(
            "--stream-max-bytes={}",
            offpath_harness::topology::STREAM_BYTES
        ))
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("OFFPATH_NATS_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    offpath_harness::set_die_with_parent(&mut command);
    let mut child = command.spawn().expect("spawn offpath up");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let kept_running = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let output = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!log.contains("offpath is up"), "{log}");
    assert!(
        !kept_running,
        "offpath up kept running without its transport: {log}"
    );
    assert!(
        !output.status.success(),
        "exited {:?}: {log}",
        output.status
    );
}

/// The README's integration example, run as written (issue 27): against `offpath up`, with
/// the login `up` writes (0600, named on its ready line), Python's nats-py classifies a
/// harmless text (allow) and an insult (block).
/// Then the same login tries what the docs let an attacker try: a classify call answered on
/// a verdict subject, and one for another tenant answered on its own inbox; neither is
/// answered (before the tenant check, the second was judged under the other tenant's
/// policy and answered).
#[test]
fn the_readme_integration_example_runs_against_up() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = tempfile::tempdir().expect("tempdir");
    let up = common::start_up(data.path(), &["--moderator-arg=--inference-threads=1"]);
    let login_path = data.path().join("integration.json");
    assert_eq!(
        up.fields["integration"].as_str(),
        Some(login_path.display().to_string().as_str()),
        "the ready line names the login: {}",
        up.fields
    );
    let mode = std::fs::metadata(&login_path)
        .expect("login")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let start = "<!-- integration-example -->\n```python\n";
    let example = readme
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once("```\n<!-- /integration-example -->"))
        .map(|(code, _)| code)
        .expect("the README holds the marked example");
    let nats_py = offpath_harness::find_project_tool("nats-py")
        .expect("no .tools/nats-py: run `scripts/bootstrap --nats-py`");
    let mut python = std::process::Command::new("python3")
        .args(["-c", example])
        .current_dir(root)
        .env("PYTHONPATH", &nats_py)
        .env("OFFPATH_INTEGRATION", &login_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(60);
    while python.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = python.kill();
    let out = python.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the example failed: {stdout}\n{stderr}"
    );
    let actions: Vec<&str> = stdout.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(actions, ["allow", "block"], "{stdout}");

    let login: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&login_path).expect("login")).expect("JSON");
    let field = |name: &str| login[name].as_str().expect(name).to_string();
    let tenant = field("tenant");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client =
            async_nats::ConnectOptions::with_user_and_password(field("user"), field("password"))
                .custom_inbox_prefix(field("inbox_prefix"))
                .connect(field("url").split(',').next().expect("url"))
                .await
                .expect("the integration logs in");
        let request = |tenant: &str, id: &str| {
            serde_json::json!({
                "v": 1, "id": id, "tenant": tenant, "room": "probe", "sender": "mallory",
                "text": "you are a stupid worthless idiot",
                "sent_at_ms": offpath_protocol::now_ms(),
            })
            .to_string()
        };
        // Answered on a verdict subject, it would be a verdict nobody asked for, stored in
        // VERDICTS (looked for below as the topology user).
        client
            .publish_with_reply(
                "offpath.classify",
                format!("offpath.verdict.{tenant}.probe"),
                request(&tenant, "redirected").into(),
            )
            .await
            .expect("publish");
        // Another tenant's call on this tenant's inbox: not answered.
        let other = tokio::time::timeout(
            Duration::from_secs(3),
            client.request("offpath.classify", request("globex", "other-tenant").into()),
        )
        .await;
        assert!(
            !matches!(other, Ok(Ok(_))),
            "another tenant's call was answered: {other:?}"
        );
        // The moderator serves calls meanwhile: the tenant's own is answered.
        let own = client
            .request("offpath.classify", request(&tenant, "own").into())
            .await
            .expect("the tenant's own call is answered");
        let verdict: serde_json::Value = serde_json::from_slice(&own.payload).expect("verdict");
        assert_eq!(verdict["id"], "own");
        let admin = offpath_harness::secure::up_credentials(
            data.path(),
            &offpath_protocol::permissions::Role::Topology,
        )
        .expect("topology login")
        .connect(field("url").split(',').next().expect("url"))
        .await
        .expect("topology logs in");
        let stored = async_nats::jetstream::new(admin)
            .get_stream("VERDICTS")
            .await
            .expect("VERDICTS")
            .get_last_raw_message_by_subject(&format!("offpath.verdict.{tenant}.probe"))
            .await;
        assert!(
            stored.is_err(),
            "an answer on the verdict subject: {stored:?}"
        );
    });
    drop(up);
}
