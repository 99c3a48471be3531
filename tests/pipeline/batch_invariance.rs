//! A verdict depends on its text alone (issue 15, section 1), end to end: a real
//! nats-server and a real moderator (real models) score a text the same, within 1e-4,
//! whether it arrives alone or inside a burst of a few hundred distinct texts.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use common::chat;
use offpath_harness::{Proc, http, scrape, testing, verdicts};
use offpath_protocol::subject::request_subject;
use offpath_protocol::{Verdict, encode, now_ms};

/// Largest allowed |score alone − score in the burst|, per label.
const TOLERANCE: f32 = 1e-4;
/// Room for the moderator to score the burst on a loaded two-core machine.
const WAIT: Duration = Duration::from_secs(60);
/// Texts scored alone, then again inside the burst: an insult, a borderline jab, banter.
const PROBES: [&str; 4] = [
    "you are a stupid worthless idiot",
    "honestly your last comment was kind of dumb",
    "lol you suck at this game, gg though",
    "thanks for the help yesterday, see you at the standup",
];
const BURST: usize = 300;

/// `offpath moderator` with the default batch settings (2 inference threads, batches of
/// 32, runs of 16 under 512 padded tokens) and no spam-wave cache: with the cache on, the
/// burst's copies of a probe would reuse the first assessment and prove nothing.
async fn moderator(server: &offpath_harness::NatsServer) -> (Proc, std::net::SocketAddr) {
    let mut moderator = chat::spawn_moderator(&server.url(), &["--cache-entries=0"], &[]);
    let ops = moderator.ops;
    moderator
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("the moderator is ready");
    (moderator, ops)
}

/// Distinct texts of 1 to ~90 words (so runs are padded), deterministic.
fn neighbour(i: usize) -> String {
    const WORDS: [&str; 12] = [
        "the", "match", "was", "great", "you", "idiot", "really", "think", "about", "that",
        "never", "again",
    ];
    let len = 1 + (i * 37) % 90;
    let words: Vec<&str> = (0..len)
        .map(|k| WORDS[(i * 7 + k * 5) % WORDS.len()])
        .collect();
    format!("#{i} {}", words.join(" "))
}

async fn publish(
    js: &jetstream::Context,
    id: &str,
    text: &str,
) -> jetstream::context::PublishAckFuture {
    let request = verdicts::request(id, text, now_ms());
    let publish = PublishMessage::build()
        .payload(encode(&request).into())
        .message_id(request.dedup_key());
    js.send_publish(request_subject(&request.tenant), publish)
        .await
        .expect("publish request")
}

fn scores(verdicts: &HashMap<String, Verdict>, id: &str) -> BTreeMap<String, f32> {
    let verdict = verdicts
        .get(id)
        .unwrap_or_else(|| panic!("no verdict for {id}"));
    assert!(verdict.reason.is_none(), "{id} unmoderated: {verdict:?}");
    verdict.scores.clone()
}

/// Each probe is scored alone, then twice inside a burst of 300 distinct texts published
/// at once (so the moderator batches and pads it with neighbours): every label's score of
/// every copy equals the alone score within 1e-4.
#[tokio::test]
async fn a_text_scores_the_same_alone_and_in_a_burst() {
    let server = chat::nats_with_topology().await;
    let client = testing::connect(&server).await;
    let js = jetstream::new(client.clone());
    let mut sub = verdicts::subscribe(&client, "acme").await;
    let (_moderator, ops) = moderator(&server).await;

    let mut seen = HashMap::new();
    for (p, text) in PROBES.iter().enumerate() {
        let id = format!("alone-{p}");
        publish(&js, &id, text).await.await.expect("stored");
        seen.extend(verdicts::collect(&mut sub, 1, WAIT).await);
        assert!(seen.contains_key(&id), "no verdict for {id} alone");
    }

    let mut acks = Vec::new();
    for i in 0..BURST {
        // Copies of the probes at two places in the burst, among different neighbours.
        let (id, text) = match (i % 150).checked_sub(60) {
            Some(p) if p < PROBES.len() => (format!("burst-{p}-{}", i / 150), PROBES[p].into()),
            _ => (format!("n-{i}"), neighbour(i)),
        };
        acks.push(publish(&js, &id, &text).await);
    }
    for ack in acks {
        ack.await.expect("stored");
    }
    seen.extend(verdicts::collect(&mut sub, BURST, WAIT).await);

    let metrics = http::get(ops, "/metrics").await.expect("GET /metrics").1;
    let batched = scrape::metric(&metrics, "offpath_moderator_batch_size_sum", "")
        / scrape::metric(&metrics, "offpath_moderator_batch_size_count", "");
    assert!(
        batched > 4.0,
        "the burst was not batched: {batched:.1} requests per batch"
    );

    let mut worst = (0.0_f32, String::new());
    for p in 0..PROBES.len() {
        let alone = scores(&seen, &format!("alone-{p}"));
        for copy in 0..2 {
            let id = format!("burst-{p}-{copy}");
            let burst = scores(&seen, &id);
            assert_eq!(
                alone.keys().collect::<Vec<_>>(),
                burst.keys().collect::<Vec<_>>()
            );
            for (label, score) in &alone {
                let delta = (burst[label] - score).abs();
                if delta > worst.0 {
                    worst = (
                        delta,
                        format!("{id} {label}: alone {score}, burst {}", burst[label]),
                    );
                }
            }
        }
    }
    eprintln!(
        "mean batch {batched:.1}; max |alone - burst| = {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= TOLERANCE,
        "a score moved with its batch: {}",
        worst.1
    );
}
