//! The wire contract against a real nats-server: subjects land in the right streams, the
//! shared consumer delivers, duplicates are dropped, the topology is idempotent.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, message::PublishMessage};
use futures::StreamExt;
use offpath_harness::{testing, topology, verdicts};
use offpath_protocol::subject::{
    DLQ_STREAM, MODERATION_STREAM, MODERATOR_CONSUMER, VERDICTS_STREAM, request_subject,
    verdict_subject,
};
use offpath_protocol::topology::{Retention, TopologyConfig, apply, ensure};
use offpath_protocol::{
    Action, Limits, ModerationRequest, Verdict, decode_request, decode_versioned, encode,
};

fn request(id: &str) -> ModerationRequest {
    verdicts::request(id, "you are wonderful", 1_764_000_000_000)
}

async fn publish_request(js: &jetstream::Context, req: &ModerationRequest) -> bool {
    let publish = PublishMessage::build()
        .payload(encode(req).into())
        .message_id(&req.id);
    let ack = js
        .send_publish(request_subject(&req.tenant), publish)
        .await
        .expect("publish");
    ack.await.expect("stored").duplicate
}

/// A request reaches MODERATION and the durable consumer; a verdict reaches VERDICTS; the
/// same Nats-Msg-Id published twice is stored once.
#[tokio::test]
async fn request_and_verdict_land_in_their_streams() {
    let server = testing::nats();
    let js = jetstream::new(testing::connect(&server).await);
    ensure(&js, &topology::small()).await.expect("topology");

    let req = request("msg-1");
    assert!(!publish_request(&js, &req).await, "first publish is new");
    assert!(
        publish_request(&js, &req).await,
        "re-publish is a duplicate"
    );
    let mut moderation = js.get_stream(MODERATION_STREAM).await.expect("stream");
    assert_eq!(moderation.info().await.expect("info").state.messages, 1);

    let consumer: PullConsumer = moderation
        .get_consumer(MODERATOR_CONSUMER)
        .await
        .expect("durable consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .messages()
        .await
        .expect("fetch");
    let message = tokio::time::timeout(Duration::from_secs(5), batch.next())
        .await
        .expect("delivered in time")
        .expect("one message")
        .expect("no error");
    let decoded =
        decode_request(&message.subject, &message.payload, &Limits::default()).expect("decodes");
    assert_eq!(decoded, req);

    let verdict = verdicts::sample(&decoded.id, Action::Allow, 0.02);
    let subject = verdict_subject(&verdict.tenant, &verdict.room);
    assert_eq!(subject, "offpath.verdict.acme.lobby");
    let publish = PublishMessage::build()
        .payload(encode(&verdict).into())
        .message_id(&verdict.id);
    js.send_publish(subject.clone(), publish)
        .await
        .expect("publish")
        .await
        .expect("stored");
    message.double_ack().await.expect("ack");

    let verdicts = js.get_stream(VERDICTS_STREAM).await.expect("stream");
    let stored = verdicts
        .get_last_raw_message_by_subject(&subject)
        .await
        .expect("stored");
    let back: Verdict = decode_versioned(&stored.payload, 64 * 1024).expect("decodes");
    assert_eq!(back, verdict);
    // Work-queue retention: the acked request is gone.
    assert_eq!(moderation.info().await.expect("info").state.messages, 0);
}

/// Running the topology twice, and from two tasks at once, leaves one stream of each and
/// one consumer, with the documented settings.
#[tokio::test]
async fn topology_is_idempotent_and_concurrent_safe() {
    let server = testing::nats();
    let js = jetstream::new(testing::connect(&server).await);
    let config = topology::small();
    ensure(&js, &config).await.expect("first run");
    ensure(&js, &config).await.expect("second run");
    let (a, b) = tokio::join!(ensure(&js, &config), ensure(&js, &config));
    a.expect("concurrent run a");
    b.expect("concurrent run b");

    let fresh = testing::nats();
    let js2 = jetstream::new(testing::connect(&fresh).await);
    let (a, b) = tokio::join!(ensure(&js2, &config), ensure(&js2, &config));
    a.expect("concurrent first run a");
    b.expect("concurrent first run b");

    for js in [&js, &js2] {
        let names: Vec<String> = js.stream_names().map(|n| n.expect("name")).collect().await;
        let mut names = names;
        names.sort();
        assert_eq!(
            names,
            [
                "AUDIT",
                MODERATION_STREAM,
                DLQ_STREAM,
                "MODERATION_INTERACTIVE",
                "REVIEW",
                "SENDERS",
                VERDICTS_STREAM
            ]
        );
        let mut stream = js.get_stream(MODERATION_STREAM).await.expect("stream");
        let info = stream.info().await.expect("info").clone();
        assert_eq!(
            info.config.retention,
            jetstream::stream::RetentionPolicy::WorkQueue
        );
        assert_eq!(info.config.discard, jetstream::stream::DiscardPolicy::New);
        assert_eq!(info.config.duplicate_window, config.duplicate_window);
        assert_eq!(info.config.subjects, ["offpath.req.*"]);
        let consumers: Vec<String> = stream
            .consumer_names()
            .map(|n| n.expect("name"))
            .collect()
            .await;
        assert_eq!(consumers, [MODERATOR_CONSUMER]);
        let consumer = stream
            .consumer_info(MODERATOR_CONSUMER)
            .await
            .expect("consumer");
        assert_eq!(consumer.config.ack_wait, config.ack_wait);
        assert_eq!(consumer.config.max_deliver, config.max_deliver);
        assert_eq!(consumer.config.max_ack_pending, config.max_ack_pending);
        assert!(
            consumer.config.backoff.is_empty(),
            "backoff would override ack_wait"
        );
    }
}

/// `apply` (`offpath topology`) changes the settings of an existing stream and consumer.
#[tokio::test]
async fn topology_apply_updates_changed_settings() {
    let server = testing::nats();
    let js = jetstream::new(testing::connect(&server).await);
    ensure(&js, &topology::small()).await.expect("first run");
    let small = topology::small();
    let changed = TopologyConfig {
        verdicts: Retention {
            max_age: Duration::from_secs(7200),
            ..small.verdicts
        },
        max_ack_pending: 256,
        ..small
    };
    apply(&js, &changed).await.expect("update");
    let mut verdicts = js.get_stream(VERDICTS_STREAM).await.expect("stream");
    assert_eq!(
        verdicts.info().await.expect("info").config.max_age,
        Duration::from_secs(7200)
    );
    let moderation = js.get_stream(MODERATION_STREAM).await.expect("stream");
    let consumer = moderation
        .consumer_info(MODERATOR_CONSUMER)
        .await
        .expect("consumer");
    assert_eq!(consumer.config.max_ack_pending, 256);
}

/// `ensure` (what every service runs) never lowers what an operator set with
/// `offpath topology`: larger limits survive a process started with the defaults, the
/// differences are reported, and a deleted stream or consumer is re-created.
#[tokio::test]
async fn ensure_never_downgrades_and_recreates_what_is_missing() {
    let server = testing::nats();
    let js = jetstream::new(testing::connect(&server).await);
    let small = topology::small();
    let raised = TopologyConfig {
        requests: Retention {
            max_bytes: 2 * topology::STREAM_BYTES,
            ..small.requests
        },
        verdicts: Retention {
            max_age: Duration::from_secs(48 * 3600),
            ..small.verdicts
        },
        max_ack_pending: 4096,
        ..small
    };
    apply(&js, &raised).await.expect("operator's topology");
    let drift = ensure(&js, &topology::small())
        .await
        .expect("a service's ensure");
    let mut settings: Vec<&str> = drift.iter().map(|d| d.setting).collect();
    settings.sort();
    // Each request lane's stream and consumer, and VERDICTS.
    assert_eq!(
        settings,
        [
            "max_ack_pending",
            "max_ack_pending",
            "max_age",
            "max_bytes",
            "max_bytes"
        ],
        "{drift:?}"
    );

    let mut moderation = js.get_stream(MODERATION_STREAM).await.expect("stream");
    assert_eq!(
        moderation.info().await.expect("info").config.max_bytes,
        raised.requests.max_bytes,
        "not lowered"
    );
    let mut verdicts = js.get_stream(VERDICTS_STREAM).await.expect("stream");
    assert_eq!(
        verdicts.info().await.expect("info").config.max_age,
        raised.verdicts.max_age,
        "not lowered"
    );
    let consumer = moderation
        .consumer_info(MODERATOR_CONSUMER)
        .await
        .expect("consumer");
    assert_eq!(consumer.config.max_ack_pending, 4096, "not lowered");

    js.delete_stream(VERDICTS_STREAM).await.expect("delete");
    moderation
        .delete_consumer(MODERATOR_CONSUMER)
        .await
        .expect("delete consumer");
    let drift = ensure(&js, &raised).await.expect("re-create");
    assert!(drift.is_empty(), "{drift:?}");
    js.get_stream(VERDICTS_STREAM).await.expect("re-created");
    moderation
        .consumer_info(MODERATOR_CONSUMER)
        .await
        .expect("re-created consumer");
}
