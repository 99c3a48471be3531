//! The reviewers' console (issue 17), end to end: two users chat through a real gateway, a
//! real moderator flags an insult into the review queue, a reviewer removes it in the
//! console's API and it disappears from both chat pages; the decision is in the audit
//! trail and on the console's metrics.

use crate::common;
mod hostile;

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
    "default = \"chat\"\n[policies.chat]\nlabels.harassment = { action = \"flag\" }\n";
const TOKEN: &str = "rita-secret-token";

/// `offpath review` as a child process, with reviewer `rita` ([`TOKEN`]).
struct Console {
    addr: SocketAddr,
    _process: Proc,
    _dir: tempfile::TempDir,
}

impl Console {
    async fn start(server: &offpath_harness::NatsServer) -> Self {
        Self::start_with(server, &[]).await
    }

    /// With `flags` (its limits).
    async fn start_with(server: &offpath_harness::NatsServer, flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (process, addr) = chat::review_console_with(server, dir.path(), TOKEN, flags).await;
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
    // A retry (the answer was lost, a double click): answered, audited once (below).
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
    // Every series is there and described, as promtool wants it.
    scrape::promtool_check(&metrics);
    for reason in ["malformed", "note_too_long", "unknown_item", "e2e_restore"] {
        let series = format!("offpath_review_decisions_refused_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&series), "{series} from the start");
    }
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

/// A mild message the model allows, which a member finds creepy.
const CREEPY: &str = "i have your old photos saved";

/// The `reported` answer to a report of `id`, or the error frame instead.
async fn report(client: &mut chat::ChatClient, frame: Value) -> Value {
    client.send(frame).await;
    client
        .expect(WAIT, |f| f["type"] == "reported" || f["type"] == "error")
        .await
        .frame
}

/// Messages ever stored in `stream` (its last sequence: `MODERATION` forgets acked ones).
async fn stored(server: &offpath_harness::NatsServer, stream: &str) -> u64 {
    let js = jetstream::new(testing::connect(server).await);
    let mut stream = js.get_stream(stream).await.expect("stream");
    stream.info().await.expect("info").state.last_sequence
}

/// A member reports a message the model allowed: the report is checked against what the
/// room showed, queued for the reviewers (first in the console, with the messages before it
/// as context) without a second verdict, answered `reported` (once per member), and a
/// reviewer's removal takes the message off both pages. Bad reports get typed errors.
#[tokio::test]
async fn a_member_reports_a_message_and_a_reviewer_removes_it() {
    let server = chat::nats_with_topology().await;
    let _moderator = chat::moderator(&server, &[]).await;
    let transport = Transport::start(&server, chat::transport_config()).await;
    let console = Console::start(&server).await;
    let (mut alice, mut bob) = transport.alice_and_bob("lobby").await;
    let mut carol = transport.client("carol").await;

    let hello = alice.post("lobby", "hello everyone", "c1").await;
    let id = alice.post("lobby", CREEPY, "c2").await;
    bob.expect(WAIT, is("message", Some(&id))).await;
    let verdict = alice.expect(WAIT_MODEL, is("verdict", Some(&id))).await;
    assert_eq!(verdict.frame["action"], "allow", "{}", verdict.frame);

    let with_text = report(
        &mut bob,
        serde_json::json!({"type": "report", "room": "lobby", "id": id, "reason": "creepy",
            "text": "words alice never said"}),
    )
    .await;
    assert_eq!(
        with_text["code"], "invalid_report",
        "no text where the gateway has it"
    );
    let reported = report(
        &mut bob,
        serde_json::json!({"type": "report", "room": "lobby", "id": id, "reason": "creepy"}),
    )
    .await;
    assert_eq!(reported["type"], "reported", "{reported}");
    assert_eq!(reported["id"], id.as_str());
    let again = serde_json::json!({"type": "report", "room": "lobby", "id": id});
    assert_eq!(report(&mut bob, again).await["type"], "reported");
    let refused = |id: &str| serde_json::json!({"type": "report", "room": "lobby", "id": id});
    let own = report(&mut alice, refused(&id)).await;
    assert_eq!(
        own["code"], "invalid_report",
        "not one's own message: {own}"
    );
    assert_eq!(
        report(&mut bob, refused("gw.nope")).await["code"],
        "unknown_message"
    );
    assert_eq!(
        report(&mut carol, refused(&id)).await["code"],
        "not_a_member"
    );
    assert_eq!(
        report(&mut bob, refused("a b")).await["code"],
        "invalid_frame"
    );

    let queued = console.queue_until("/api/queue", |e| !e.is_empty()).await;
    assert_eq!(queued.len(), 1, "one report, once: {queued:?}");
    let item = &queued[0]["item"];
    assert_eq!(item["kind"], "report");
    assert_eq!(
        item["verdict"]["id"],
        id.as_str(),
        "the item names the reported message"
    );
    assert_eq!(item["verdict"]["sender"], "alice");
    assert_eq!(
        item["text"], CREEPY,
        "the text the room showed, not the reporter's"
    );
    assert_eq!(item["report"]["reporter"], "bob");
    assert_eq!(item["report"]["reason"], "creepy");
    assert_eq!(item["report"]["text_source"], "gateway");
    assert_eq!(item["context"][0]["id"], hello.as_str());
    assert_eq!(item["context"][0]["text"], "hello everyone");
    assert_eq!(
        stored(&server, offpath_protocol::subject::VERDICTS_STREAM).await,
        2,
        "a report publishes no verdict of its own"
    );

    let key = queued[0]["key"].as_str().expect("key");
    // A reviewer of another tenant neither sees nor decides acme's report.
    let sam = Some(chat::GLOBEX_REVIEWER_TOKEN);
    let (status, theirs) = console.call("GET", "/api/queue", sam, "").await;
    assert_eq!((status, theirs.as_str()), (200, "[]"), "globex's reviewer");
    let dismiss = serde_json::json!({ "key": key, "decision": "dismiss" });
    let (status, _) = console
        .call("POST", "/api/decide", sam, &dismiss.to_string())
        .await;
    assert_eq!(status, 404, "not globex's item");
    let decide = serde_json::json!({ "key": key, "decision": "remove", "note": "grooming" });
    let (status, body) = console
        .call("POST", "/api/decide", Some(TOKEN), &decide.to_string())
        .await;
    assert_eq!(status, 200, "{body}");
    for page in [&mut alice, &mut bob] {
        let retract = page.expect(WAIT, is("retract", Some(&id))).await.frame;
        assert_eq!(retract["reason"], "removed");
    }
    // A console started now is ready only once it has read REVIEW and AUDIT: the decided
    // report is not shown open.
    let restarted = Console::start(&server).await;
    let (status, open) = restarted.call("GET", "/api/queue", Some(TOKEN), "").await;
    assert_eq!(
        (status, open.as_str()),
        (200, "[]"),
        "decided, per the audit trail"
    );
    let all = "/api/queue?status=all&limit=0";
    let (status, none) = restarted.call("GET", all, Some(TOKEN), "").await;
    assert_eq!((status, none.as_str()), (200, "[]"), "limit=0: no item");
    let gone = serde_json::json!({"type": "report", "room": "lobby", "id": id});
    assert_eq!(report(&mut bob, gone).await["code"], "unknown_message");
    let metrics = transport.metrics().await;
    assert_eq!(
        scrape::value(
            &metrics,
            "offpath_transport_reports_total{source=\"gateway\"}"
        ),
        1.0
    );
    transport.stop().await;
}

/// HMAC-SHA256 of `text` under `key`, in hex: an end-to-end-encrypted client's franking
/// commitment.
fn commitment(key: &[u8], text: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(text.as_bytes());
    let bytes = mac.finalize().into_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An end-to-end-encrypted room: ciphertext is relayed with its commitment and never sent
/// for moderation; a report carries the plaintext, checked against the commitment when
/// there is one (`franked`), the reporter's word when not (`reporter`); a reviewer can
/// remove such a message but not restore it.
#[tokio::test]
async fn e2e_rooms_are_moderated_only_through_reports() {
    let server = chat::nats_with_topology().await;
    let _moderator = chat::moderator(&server, &[]).await;
    let config = offpath_transport::Config {
        moderation: offpath_transport::ModerationConfig {
            room_policy: vec!["dm-*=e2e".parse().expect("rule")],
            ..chat::transport_config().moderation
        },
        ..chat::transport_config()
    };
    let transport = Transport::start(&server, config).await;
    let console = Console::start(&server).await;
    let (mut alice, mut bob) = transport.alice_and_bob("dm-ab").await;
    let mut carol = transport.joined("carol", "dm-ab").await;

    let key = [7u8; 32];
    let hex_key: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let sealed = commitment(&key, INSULT);
    alice
        .send(
            serde_json::json!({"type": "send", "room": "dm-ab", "text": "q8Jx0ciphertext==",
            "client_msg_id": "c1", "commitment": sealed}),
        )
        .await;
    let message = bob.expect(WAIT, |f| f["type"] == "message").await.frame;
    assert_eq!(message["text"], "q8Jx0ciphertext==");
    assert_eq!(message["commitment"], sealed.as_str());
    let id = message["id"].as_str().expect("id").to_string();
    let plain = alice.post("dm-ab", "c2VjcmV0", "c2").await;
    bob.expect(WAIT, is("message", Some(&plain))).await;

    let base = serde_json::json!({"type": "report", "room": "dm-ab", "id": id, "reason": "abuse"});
    let with = |fields: Value| {
        let mut frame = base.clone();
        frame
            .as_object_mut()
            .expect("object")
            .extend(fields.as_object().expect("object").clone());
        frame
    };
    let no_text = report(&mut bob, base.clone()).await;
    assert_eq!(no_text["code"], "invalid_report", "{no_text}");
    // Carol puts words in alice's mouth: queued, but as a mismatch, never as proven.
    let forged = with(serde_json::json!({"text": "alice is a liar", "key": hex_key}));
    assert_eq!(report(&mut carol, forged).await["type"], "reported");
    let opened = with(serde_json::json!({"text": INSULT, "key": hex_key}));
    assert_eq!(report(&mut bob, opened).await["type"], "reported");
    let unsealed = serde_json::json!({"type": "report", "room": "dm-ab", "id": plain,
        "text": "send me your password"});
    assert_eq!(report(&mut bob, unsealed).await["type"], "reported");

    let queued = console
        .queue_until("/api/queue?kind=report", |e| e.len() == 3)
        .await;
    let by_id = |id: &str, reporter: &str| {
        queued
            .iter()
            .find(|e| {
                e["item"]["verdict"]["id"] == id && e["item"]["report"]["reporter"] == reporter
            })
            .unwrap_or_else(|| panic!("no item for {id} by {reporter}: {queued:?}"))
    };
    let mismatch = by_id(&id, "carol");
    assert_eq!(mismatch["item"]["report"]["text_source"], "mismatch");
    assert_eq!(mismatch["item"]["text"], "alice is a liar");
    let franked = by_id(&id, "bob");
    assert_eq!(franked["item"]["text"], INSULT);
    assert_eq!(franked["item"]["report"]["text_source"], "franked");
    assert!(
        franked["item"].get("context").is_none(),
        "no plaintext context in e2e rooms"
    );
    assert!(
        franked["item"]["verdict"]["scores"]["insult"]
            .as_f64()
            .expect("scored")
            > 0.5,
        "the reported plaintext was classified: {franked}"
    );
    assert_eq!(
        by_id(&plain, "bob")["item"]["report"]["text_source"],
        "reporter"
    );
    let lanes = (
        stored(&server, offpath_protocol::subject::MODERATION_STREAM).await,
        stored(&server, offpath_protocol::subject::INTERACTIVE_STREAM).await,
    );
    assert_eq!(
        lanes,
        (0, 3),
        "only the three reports went to moderation, on the interactive lane; never the ciphertext"
    );
    assert!(
        alice
            .drain(Duration::from_millis(200))
            .await
            .iter()
            .all(|r| r.frame["type"] != "verdict")
    );

    let key = franked["key"].as_str().expect("key");
    let restore = serde_json::json!({ "key": key, "decision": "restore" });
    let (status, body) = console
        .call("POST", "/api/decide", Some(TOKEN), &restore.to_string())
        .await;
    assert_eq!(
        status, 400,
        "the server cannot restore what it never read: {body}"
    );
    let (_, console_metrics) = console.call("GET", "/metrics", None, "").await;
    let refused = "offpath_review_decisions_refused_total{reason=\"e2e_restore\"}";
    assert_eq!(scrape::value(&console_metrics, refused), 1.0);
    let remove = serde_json::json!({ "key": key, "decision": "remove" });
    let (status, body) = console
        .call("POST", "/api/decide", Some(TOKEN), &remove.to_string())
        .await;
    assert_eq!(status, 200, "{body}");
    for page in [&mut alice, &mut bob] {
        let retract = page.expect(WAIT, is("retract", Some(&id))).await.frame;
        assert_eq!(retract["reason"], "removed");
    }
    let metrics = transport.metrics().await;
    assert_eq!(
        scrape::value(&metrics, "offpath_transport_e2e_messages_total"),
        2.0
    );
    assert_eq!(
        scrape::value(
            &metrics,
            "offpath_transport_reports_total{source=\"franked\"}"
        ),
        1.0
    );
    transport.stop().await;
}
