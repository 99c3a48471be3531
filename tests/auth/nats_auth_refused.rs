//! With NATS authorization on, only `offpath topology` may create streams and consumers. A
//! moderator that finds the topology missing is refused the create: it must neither crash
//! nor spin, but log, count and retry until the topology is there. On `main` there were no
//! login flags (`offpath moderator --nats-user` was a usage error).

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use common::chat;
use offpath_harness::secure;
use offpath_harness::{NatsServer, http, scrape, topology};
use offpath_protocol::permissions::Role;

const BIND_ERRORS: &str = "offpath_moderator_nats_errors_total";

/// A moderator refused the topology create stays up and unready, counts its failed binds
/// (a few, not a spin), and becomes ready once the topology user has put the streams in
/// place.
#[tokio::test]
async fn moderator_waits_for_the_topology_it_may_not_create() {
    let nats = secure::start(NatsServer::builder(), &[Role::Topology, Role::Moderator])
        .unwrap_or_else(|err| panic!("cannot start nats-server: {err}"));
    let password = &nats.credentials(&Role::Moderator).password;
    let mut moderator = chat::spawn_moderator(
        &nats.server.url(),
        &["--nats-user", "moderator", "--inference-threads=1"],
        &[("OFFPATH_NATS_PASSWORD", password)],
    );
    let ops = moderator.ops;
    let bound_failed = |status: u16, body: &str| {
        status == 200 && scrape::metric(body, BIND_ERRORS, r#"operation="bind""#) >= 1.0
    };
    http::wait_until(ops, "/metrics", Duration::from_secs(60), bound_failed)
        .await
        .expect("a refused bind is counted");
    assert!(moderator.exited().is_none(), "the moderator exited");
    let (status, _) = http::get(ops, "/readyz").await.expect("readyz answers");
    assert_ne!(status, 200, "ready without a topology");

    let admin = nats
        .credentials(&Role::Topology)
        .connect(&nats.server.url())
        .await
        .expect("topology connects");
    offpath_protocol::topology::apply(&jetstream::new(admin), &topology::small())
        .await
        .expect("the topology user creates the streams");
    moderator
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("ready once the topology exists");
    let (_, metrics) = http::get(ops, "/metrics").await.expect("metrics");
    let failures = scrape::metric(&metrics, BIND_ERRORS, r#"operation="bind""#);
    assert!(failures < 30.0, "{failures} bind attempts: a spin");
}
