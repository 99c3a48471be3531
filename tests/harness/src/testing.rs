//! Shortcuts for tests, which panic with a clear message instead of returning errors: a
//! nats-server, a client, a topology in place, the moderator's NATS micro service.

use std::time::Duration;

use async_nats::{Client, jetstream};
use offpath_protocol::topology::{TopologyConfig, ensure};

use crate::NatsServer;

/// How often, and how many times, a micro service request is tried before giving up.
const SERVICE_POLL: Duration = Duration::from_millis(50);
/// 60 s: a moderator serves `offpath.classify` once its models are loaded, which a debug build
/// on a busy 2-core machine has been seen to take past 10 s (CI: classify_never_answers_outside_an_inbox).
const SERVICE_TRIES: usize = 1200;

/// Starts a real nats-server (random port, JetStream in a temp dir); panics with the
/// install command when the binary is missing.
pub fn nats() -> NatsServer {
    NatsServer::start().unwrap_or_else(|err| panic!("cannot start nats-server: {err}"))
}

/// Connects a client to `server`.
pub async fn connect(server: &NatsServer) -> Client {
    async_nats::connect(server.url())
        .await
        .expect("connect to the test nats-server")
}

/// A nats-server with `topology` in place, and a client connected to it.
pub async fn nats_with(topology: &TopologyConfig) -> (NatsServer, Client) {
    let server = nats();
    let client = connect(&server).await;
    ensure(&jetstream::new(client.clone()), topology)
        .await
        .expect("topology");
    (server, client)
}

/// Waits until the micro service `name` answers `$SRV.PING` (60 s at most).
pub async fn wait_for_service(client: &Client, name: &str) {
    service_request(client, "PING", name).await;
}

/// The `$SRV.STATS` figures of the first endpoint of micro service `name` (its `data`),
/// waiting for the service to answer (60 s at most).
pub async fn service_stats(client: &Client, name: &str) -> serde_json::Value {
    let answer = service_request(client, "STATS", name).await;
    let stats: serde_json::Value = serde_json::from_slice(&answer.payload).expect("stats JSON");
    stats["endpoints"][0]["data"].clone()
}

/// `$SRV.<verb>.<name>`, tried until it is answered.
async fn service_request(client: &Client, verb: &str, name: &str) -> async_nats::Message {
    for _ in 0..SERVICE_TRIES {
        if let Ok(answer) = client
            .request(format!("$SRV.{verb}.{name}"), "".into())
            .await
        {
            return answer;
        }
        tokio::time::sleep(SERVICE_POLL).await;
    }
    panic!("the micro service {name} never answered $SRV.{verb}");
}
