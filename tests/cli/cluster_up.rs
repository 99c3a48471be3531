//! `offpath up --nats-cluster 3`: three local nats-server nodes with the generated users,
//! the streams with three replicas, every child given all three URLs; a node killed with
//! SIGKILL is restarted, and chat is moderated meanwhile.

use crate::common;

use std::time::{Duration, Instant};

use common::chat::{ChatClient, is};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use offpath_harness::secure::up_credentials;
use offpath_protocol::permissions::Role;
use offpath_protocol::subject::MODERATION_STREAM;

/// Kills the launcher (its children die with it) when the test ends.
/// The pid of the process whose command line contains `needle`, if any.
fn pid_with(needle: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let line = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&line)
                .contains(needle)
                .then_some(pid)
        })
        .next()
}

/// The cluster's streams are R3, a killed node comes back under the same store, and a
/// message sent while it is down is moderated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_three_node_cluster_and_restarts_a_killed_node() {
    let data = tempfile::tempdir().expect("tempdir");
    let launched = common::start_up(
        data.path(),
        &["--nats-cluster=3", "--moderator-arg=--inference-threads=1"],
    );
    let field = |name: &str| {
        launched.fields[name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (urls, chat) = (field("url"), field("chat"));
    assert_eq!(urls.split(',').count(), 3, "three URLs: {urls}");

    let node0 = data.path().join("cluster/node-0");
    let topology = up_credentials(&node0, &Role::Topology).expect("the topology login");
    let client = topology
        .options()
        .connect(
            urls.split(',')
                .map(|u| u.parse().expect("a URL"))
                .collect::<Vec<async_nats::ServerAddr>>(),
        )
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let info = js
        .get_stream(MODERATION_STREAM)
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone();
    assert_eq!(info.config.num_replicas, 3, "MODERATION is R3");

    let store = format!("{}/", data.path().join("cluster/node-1").display());
    let pid = pid_with(&store).expect("node 1 runs");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 node 1");

    let addr = chat
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("chat address");
    let mut alice = ChatClient::connect(addr, "alice").await;
    alice.join("lobby").await;
    let id = alice
        .post("lobby", "you are a stupid worthless idiot", "c1")
        .await;
    alice
        .expect(Duration::from_secs(30), is("verdict", Some(&id)))
        .await;

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match pid_with(&store) {
            Some(again) if again != pid => break,
            _ if Instant::now() > deadline => panic!("node 1 was not restarted"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
