//! The reviewers' console (issue 17), end to end: two users chat through a real gateway, a
//! real moderator flags an insult into the review queue, a reviewer removes it in the
//! console's API and it disappears from both chat pages; the decision is in the audit
//! trail and on the console's metrics.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use common::chat::{self, Transport, is};
use offpath_harness::{Proc, http, scrape, testing};
use offpath_protocol::subject::AUDIT_STREAM;
use offpath_protocol::{AuditEntry, ReviewDecision};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
/// Room for a moderator process to start and load its models.
const WAIT_MODEL: Duration = Duration::from_secs(90);
const INSULT: &str = "you are a stupid worthless idiot";
/// Insults are flagged (kept, queued for review), not blocked.
const FLAGGING: &str =
    "default = \"chat\"\n[policies.chat]\nlabels.insult = { action = \"flag\" }\n";
const TOKEN: &str = "rita-secret-token";

/// `offpath review` as a child process, with reviewer `rita` ([`TOKEN`]).
struct Console {
    addr: SocketAddr,
    _process: Proc,
    _dir: tempfile::TempDir,
}

impl Console {
    async fn start(server: &offpath_harness::NatsServer) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (process, addr) = chat::review_console(server, dir.path(), TOKEN).await;
        Self {
            addr,
            _process: process,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut headers = vec!["Content-Type: application/json"];
        headers.extend(auth.as_deref());
        http::send(self.addr, method, path, &headers, body)
            .await
            .expect("the console answers")
    }

    /// The queue's entries at `path` once `done` holds for them.
    async fn queue_until(&self, path: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.call("GET", path, Some(TOKEN), "").await;
            assert_eq!(status, 200, "{body}");
            let entries: Vec<Value> = serde_json::from_str(&body).expect("a JSON list");
            if done(&entries) {
                return entries;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue never as expected: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_reviewer_removes_a_flagged_message_from_both_chat_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, FLAGGING).expect("write policies");
    let server = chat::nats_with_topology().await;
    let flag = format!("--policies={}", policies.display());
    let _moderator = chat::moderator(&server, &[&flag]).await;
    let transport = Transport::start(&server, chat::transport_config()).await;
    let console = Console::start(&server).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;

    let id = alice.post("lobby", INSULT, "c1").await;
    bob.expect(WAIT, is("message", Some(&id))).await;
    let verdict = alice
        .expect(WAIT_MODEL, is("verdict", Some(&id)))
        .await
        .frame;
    assert_eq!(verdict["action"], "flag", "{verdict}");

    let (status, _) = console.call("GET", "/api/queue", None, "").await;
    assert_eq!(status, 401, "no token, no queue");
    let (status, _) = console.call("GET", "/api/queue", Some("guess"), "").await;
    assert_eq!(status, 401, "a wrong token, no queue");
    let queued = console.queue_until("/api/queue", |e| !e.is_empty()).await;
    assert_eq!(queued.len(), 1);
    let entry = &queued[0];
    assert_eq!(entry["item"]["text"], INSULT);
    assert_eq!(entry["item"]["verdict"]["id"], id.as_str());
    assert_eq!(entry["item"]["kind"], "flag");
    let key = entry["key"].as_str().expect("key");

    let decide = serde_json::json!({ "key": key, "decision": "remove", "note": "an insult" });
    let (status, body) = console
        .call("POST", "/api/decide", Some(TOKEN), &decide.to_string())
        .await;
    assert_eq!(status, 200, "{body}");
    let retract = bob.expect(WAIT, is("retract", Some(&id))).await.frame;
    assert_eq!(retract["reason"], "removed");
    let told = alice.expect(WAIT, is("retract", Some(&id))).await.frame;
    assert_eq!(told["reason"], "removed", "the sender's page too");

    let open = console.queue_until("/api/queue", <[Value]>::is_empty).await;
    assert!(open.is_empty());
    let decided = console
        .queue_until("/api/queue?status=decided", |e| e.len() == 1)
        .await;
    assert_eq!(decided[0]["decisions"][0]["reviewer"], "rita");

    let js = jetstream::new(testing::connect(&server).await);
    let mut audit = js.get_stream(AUDIT_STREAM).await.expect("AUDIT");
    assert_eq!(audit.info().await.expect("info").state.messages, 1);
    let raw = audit.get_raw_message(1).await.expect("entry");
    let entry: AuditEntry = serde_json::from_slice(&raw.payload).expect("an AuditEntry");
    assert_eq!(entry.review.reviewer, "rita");
    assert_eq!(entry.review.decision, ReviewDecision::Remove);
    assert_eq!(entry.review.note.as_deref(), Some("an insult"));
    assert_eq!(entry.item.verdict.id, id);

    let (_, metrics) = console.call("GET", "/metrics", None, "").await;
    assert_eq!(
        scrape::value(
            &metrics,
            "offpath_review_decisions_total{decision=\"remove\"}"
        ),
        1.0
    );
    assert!(scrape::value(&metrics, "offpath_review_auth_failures_total") >= 2.0);
    let (status, bad) = console
        .call("POST", "/api/decide", Some(TOKEN), "{\"key\": 3}")
        .await;
    assert_eq!(status, 400, "{bad}");
    let unknown = serde_json::json!({ "key": "nope", "decision": "dismiss" });
    let (status, _) = console
        .call("POST", "/api/decide", Some(TOKEN), &unknown.to_string())
        .await;
    assert_eq!(status, 404);
    transport.stop().await;
}
