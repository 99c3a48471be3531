//! The NATS a throughput pipeline runs on, and waiting for its moderators to pull.

use std::time::Duration;

use anyhow::bail;
use async_nats::jetstream;
use offpath_local::NatsServer;
use offpath_local::cluster::NatsCluster;

/// Waits until the moderator processes have loaded their models and are pulling (at least
/// one waiting pull request each).
pub(super) async fn wait_until_pulling(
    js: &jetstream::Context,
    moderators: usize,
) -> anyhow::Result<()> {
    let stream = js
        .get_stream(offpath_protocol::subject::MODERATION_STREAM)
        .await?;
    for _ in 0..600 {
        let info = stream
            .consumer_info(offpath_protocol::subject::MODERATOR_CONSUMER)
            .await?;
        if info.num_waiting >= moderators {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the moderators never all started pulling")
}

/// The NATS a pipeline runs on: one server, or a local cluster. Held so that it stops
/// (its processes are killed on drop) when the pipeline does.
pub(super) enum Nats {
    Single(#[allow(dead_code)] NatsServer),
    Cluster(NatsCluster),
}

impl Nats {
    /// One server for `replicas` ≤ 1, else a cluster of `replicas` nodes; and the URL(s)
    /// to give clients.
    pub(super) async fn start(replicas: usize) -> anyhow::Result<(Self, String)> {
        if replicas <= 1 {
            let server = tokio::task::spawn_blocking(NatsServer::start).await??;
            let url = server.url();
            return Ok((Self::Single(server), url));
        }
        let cluster =
            tokio::task::spawn_blocking(move || NatsCluster::builder().size(replicas).start())
                .await??;
        let url = cluster.urls().join(",");
        Ok((Self::Cluster(cluster), url))
    }
}
