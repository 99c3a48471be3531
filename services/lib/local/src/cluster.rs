//! A local NATS cluster: several `nats-server` children joined by routes, JetStream on
//! each with its own store and `server_name`.
//!
//! Every node gets a client port and a route port chosen free at start (bind port 0,
//! release) and kept for its whole life, so a node killed with SIGKILL comes back with
//! [`NatsCluster::restart`] on the same ports and the same store, and rejoins the cluster
//! as the same server. [`NatsCluster::wait_for_meta_leader`] waits until JetStream has
//! elected its meta leader (until then stream requests fail);
//! [`NatsCluster::stream_leader`] tells which node leads a stream. Dropping the handle kills
//! every node and removes what the cluster created.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::nats::{Builder, Error, NatsServer};

/// The cluster's name in each node's `cluster` block.
pub const CLUSTER_NAME: &str = "offpath";
/// How long JetStream may take to elect a meta leader after the nodes start.
const META_LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the meta leader and stream leaders are asked for.
const POLL: Duration = Duration::from_millis(100);

/// Why a cluster question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A node could not be started or stopped.
    #[error("node {node}: {source}")]
    Node {
        /// The node's index.
        node: usize,
        /// What the node said.
        source: Error,
    },
    /// JetStream had no meta leader in time.
    #[error("JetStream elected no meta leader within {0:?}")]
    NoMetaLeader(Duration),
    /// A stream had no leader in time, or its info could not be read.
    #[error("stream {stream} has no leader: {detail}")]
    NoStreamLeader {
        /// The stream.
        stream: String,
        /// The last answer (or error).
        detail: String,
    },
    /// No free port could be reserved.
    #[error("reserving a free port: {0}")]
    Port(#[from] std::io::Error),
}

/// Options for a cluster; [`NatsCluster::start`] uses the defaults.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    size: usize,
    binary: Option<PathBuf>,
    extra_config: String,
    die_with_parent: bool,
    store_root: Option<PathBuf>,
    max_file_store: Option<u64>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            size: 3,
            binary: None,
            extra_config: String::new(),
            die_with_parent: false,
            store_root: None,
            max_file_store: Some(crate::nats::TEST_MAX_FILE_STORE),
        }
    }
}

impl ClusterBuilder {
    /// Number of nodes (default 3: the smallest cluster that survives losing one).
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Run this `nats-server` binary on every node instead of searching for one.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Add this text to each node's configuration, e.g. an `authorization` block.
    pub fn extra_config(mut self, text: impl Into<String>) -> Self {
        self.extra_config = text.into();
        self
    }

    /// Tie every node to the starting thread (see [`Builder::die_with_parent`]).
    pub fn die_with_parent(mut self, enabled: bool) -> Self {
        self.die_with_parent = enabled;
        self
    }

    /// Keep node `i`'s store (and config) in `<root>/node-<i>` instead of a temporary
    /// directory.
    pub fn store_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.store_root = Some(root.into());
        self
    }

    /// Each node's JetStream storage limit (see [`Builder::max_file_store`]).
    pub fn max_file_store(mut self, bytes: Option<u64>) -> Self {
        self.max_file_store = bytes;
        self
    }

    /// Start every node; returns once each accepts clients (see
    /// [`NatsCluster::wait_for_meta_leader`] for JetStream).
    pub fn start(self) -> Result<NatsCluster, ClusterError> {
        let client_ports = free_ports(self.size)?;
        let route_ports = free_ports(self.size)?;
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let mut nodes = Vec::with_capacity(self.size);
        let mut names = Vec::with_capacity(self.size);
        for node in 0..self.size {
            let name = node_name(node);
            let config = node_config(&name, route_ports[node], &routes, &self.extra_config);
            let mut builder = Builder::default()
                .port(client_ports[node])
                .config(config)
                .max_file_store(self.max_file_store)
                .die_with_parent(self.die_with_parent);
            if let Some(binary) = &self.binary {
                builder = builder.binary(binary);
            }
            if let Some(root) = &self.store_root {
                let dir = root.join(format!("node-{node}"));
                builder = builder.store_dir(dir.join("jetstream")).config_dir(dir);
            }
            nodes.push(
                builder
                    .start()
                    .map_err(|source| ClusterError::Node { node, source })?,
            );
            names.push(name);
        }
        Ok(NatsCluster { nodes, names })
    }
}

/// A running local cluster of `nats-server` processes.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    names: Vec<String>,
}

impl NatsCluster {
    /// Three nodes with JetStream, no authorization.
    pub fn start() -> Result<Self, ClusterError> {
        ClusterBuilder::default().start()
    }

    /// Options for a cluster that differs from the default.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// Node `i`'s `server_name` (`n0`, `n1`, …).
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The client URL of every node, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The node whose `server_name` is `name`.
    pub fn index_of_name(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The node whose client port is `port` (e.g. from a client's `server_info()`).
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// Kill node `i` at once (SIGKILL), like a crash.
    pub fn kill(&mut self, i: usize) -> Result<(), ClusterError> {
        self.nodes[i]
            .kill()
            .map_err(|source| ClusterError::Node { node: i, source })
    }

    /// Start node `i` again on its ports and store; it rejoins the cluster.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.nodes[i]
            .restart()
            .map_err(|source| ClusterError::Node { node: i, source })
    }

    /// Whether node `i`'s process is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Waits until JetStream has a meta leader (see [`wait_for_meta_leader`]).
    pub async fn wait_for_meta_leader(
        &self,
        client: &async_nats::Client,
    ) -> Result<(), ClusterError> {
        wait_for_meta_leader(client).await
    }

    /// The nodes, to be watched one by one (e.g. by `offpath up`'s supervisor).
    pub fn into_nodes(self) -> Vec<NatsServer> {
        self.nodes
    }

    /// The index of the node leading `stream`, asked through `js`; waits (up to `wait`)
    /// while the stream has no leader, e.g. during an election.
    pub async fn stream_leader(
        &self,
        js: &async_nats::jetstream::Context,
        stream: &str,
        wait: Duration,
    ) -> Result<usize, ClusterError> {
        let deadline = Instant::now() + wait;
        loop {
            let detail = match js.get_stream(stream).await {
                Ok(mut handle) => match handle.info().await {
                    Ok(info) => {
                        let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
                        match leader.as_deref().and_then(|l| self.index_of_name(l)) {
                            Some(i) => return Ok(i),
                            None => format!("cluster info {:?}", info.cluster),
                        }
                    }
                    Err(err) => err.to_string(),
                },
                Err(err) => err.to_string(),
            };
            if Instant::now() > deadline {
                return Err(ClusterError::NoStreamLeader {
                    stream: stream.into(),
                    detail,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Waits until JetStream answers `$JS.API.INFO` through `client`: a meta leader is
/// elected (until then a cluster refuses stream requests) and the client's account has
/// JetStream.
pub async fn wait_for_meta_leader(client: &async_nats::Client) -> Result<(), ClusterError> {
    let deadline = Instant::now() + META_LEADER_TIMEOUT;
    while Instant::now() < deadline {
        let answer =
            tokio::time::timeout(POLL * 10, client.request("$JS.API.INFO", "".into())).await;
        if let Ok(Ok(message)) = answer
            && let Ok(info) = serde_json::from_slice::<serde_json::Value>(&message.payload)
            && info.get("error").is_none()
        {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    Err(ClusterError::NoMetaLeader(META_LEADER_TIMEOUT))
}

/// `n0`, `n1`, …
pub fn node_name(i: usize) -> String {
    format!("n{i}")
}

/// One node's configuration: its name, its route listener, every node's route (a node
/// skips its own), and `extra`.
fn node_config(name: &str, route_port: u16, routes: &[String], extra: &str) -> String {
    format!(
        "server_name: \"{name}\"\ncluster {{\n  name: \"{CLUSTER_NAME}\"\n  \
         listen: \"127.0.0.1:{route_port}\"\n  routes: [{}]\n}}\n{extra}\n",
        routes.join(", ")
    )
}

/// `n` distinct ports that were free a moment ago (bound to port 0 together, released).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each node's config names it, listens for routes and lists every route.
    #[test]
    fn node_config_has_name_listen_and_routes() {
        let routes = vec!["\"nats-route://127.0.0.1:1\"".to_string()];
        let text = node_config("n1", 7, &routes, "# extra");
        assert!(text.contains("server_name: \"n1\""));
        assert!(text.contains("listen: \"127.0.0.1:7\""));
        assert!(text.contains("routes: [\"nats-route://127.0.0.1:1\"]"));
        assert!(text.ends_with("# extra\n"));
    }

    /// Free ports are distinct.
    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(6).expect("ports");
        let unique: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), 6);
    }
}
