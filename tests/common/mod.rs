//! Helpers shared by the integration tests: a real nats-server per test and a client.

#![allow(dead_code)] // each test binary uses a different subset

pub mod chat;

use offpath_nats_local::NatsServer;

/// Starts a real nats-server (random port, JetStream in a temp dir); panics with the
/// install command when the binary is missing.
pub fn nats() -> NatsServer {
    NatsServer::start().unwrap_or_else(|err| panic!("cannot start nats-server: {err}"))
}

/// Connects a client to `server`.
pub async fn connect(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url())
        .await
        .expect("connect to the test nats-server")
}
