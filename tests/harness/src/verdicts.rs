//! Verdicts and dead letters as a test sees them on NATS: subscribe before publishing,
//! then collect what arrives by id; and the requests and verdicts a test publishes itself.
//!
//! Test helpers: they panic with a clear message on a NATS error or a payload that is not
//! the protocol's JSON.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::{Client, Subscriber, jetstream};
use futures::StreamExt;
use offpath_protocol::subject::{DLQ_PREFIX, VERDICT_PREFIX, verdict_subject};
use offpath_protocol::{
    Action, DeadLetter, ModelRef, ModerationRequest, PROTOCOL_VERSION, Verdict, encode,
};

/// Subscribes to every verdict of `tenant` (`offpath.verdict.<tenant>.>`).
pub async fn subscribe(client: &Client, tenant: &str) -> Subscriber {
    client
        .subscribe(format!("{VERDICT_PREFIX}.{tenant}.>"))
        .await
        .expect("subscribe to verdicts")
}

/// Subscribes to every dead letter (`offpath.dlq.>`).
pub async fn subscribe_dead_letters(client: &Client) -> Subscriber {
    client
        .subscribe(format!("{DLQ_PREFIX}.>"))
        .await
        .expect("subscribe to dead letters")
}

/// Collects verdicts (by id, de-duplicated) until `n` distinct ids or the timeout.
pub async fn collect(
    sub: &mut Subscriber,
    n: usize,
    timeout: Duration,
) -> HashMap<String, Verdict> {
    let mut seen = HashMap::new();
    let _ = tokio::time::timeout(timeout, async {
        while seen.len() < n {
            let Some(message) = sub.next().await else {
                break;
            };
            let verdict: Verdict = serde_json::from_slice(&message.payload).expect("verdict JSON");
            seen.insert(verdict.id.clone(), verdict);
        }
    })
    .await;
    seen
}

/// Collects dead letters until `n` or the timeout.
pub async fn dead_letters(sub: &mut Subscriber, n: usize, timeout: Duration) -> Vec<DeadLetter> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        while seen.len() < n {
            let Some(message) = sub.next().await else {
                break;
            };
            seen.push(serde_json::from_slice(&message.payload).expect("dead letter JSON"));
        }
    })
    .await;
    seen
}

/// A request `id` from alice in `acme`'s `lobby`, sent at `sent_at_ms`, with no deadline,
/// priority or policy.
pub fn request(id: &str, text: &str, sent_at_ms: u64) -> ModerationRequest {
    ModerationRequest {
        v: PROTOCOL_VERSION,
        id: id.into(),
        tenant: "acme".into(),
        room: "lobby".into(),
        sender: "alice".into(),
        text: text.into(),
        sent_at_ms,
        deadline_ms: None,
        priority: None,
        policy: None,
        report: None,
        context: Vec::new(),
        mentions: Vec::new(),
        account_created_ms: None,
    }
}

/// A verdict for message `id` of alice in `acme`'s `lobby`, as a moderator would publish
/// it: `action`, with `insult` as the only score.
pub fn sample(id: &str, action: Action, insult: f32) -> Verdict {
    Verdict {
        v: PROTOCOL_VERSION,
        id: id.into(),
        tenant: "acme".into(),
        room: "lobby".into(),
        sender: "alice".into(),
        action,
        scores: [("insult".to_string(), insult)].into(),
        model: ModelRef {
            name: "test".into(),
            version: "1".into(),
        },
        queued_ms: 1,
        inference_ms: 1,
        reason: None,
        text_sha256: None,
        policy: None,
        review: None,
        category: None,
        span: None,
        rule: None,
        campaign: None,
        counts: None,
    }
}

/// Publishes `verdict` on its subject and waits until `VERDICTS` has stored it.
pub async fn publish(js: &jetstream::Context, verdict: &Verdict) {
    js.publish(
        verdict_subject(&verdict.tenant, &verdict.room),
        encode(verdict).into(),
    )
    .await
    .expect("publish verdict")
    .await
    .expect("verdict stored");
}
