//! What the cluster fault test saw, its report, its diagnosis when something is missing,
//! and its checks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use offpath_protocol::subject::{DLQ_STREAM, MODERATION_STREAM, VERDICTS_STREAM};

use super::common::chat::Received;
use super::{ACK_WAIT, DURING, MESSAGES, RECOVERY, STALL, text};

/// What the clients saw: per tag the send time, per id the tag, delivery and verdicts.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) sent: HashMap<String, Instant>,
    pub(crate) id_of: HashMap<String, String>,
    pub(crate) delivered: HashMap<String, Instant>,
    pub(crate) verdicts: HashMap<String, Vec<Received>>,
    /// Dead letters by request id: their reasons.
    pub(crate) dead: HashMap<String, Vec<String>>,
    /// The next `MODERATION_DLQ` sequence to read.
    pub(crate) dlq_next: u64,
}

impl Seen {
    pub(crate) fn absorb(&mut self, alice: Vec<Received>, bob: Vec<Received>) {
        for (who, r) in alice
            .iter()
            .map(|r| ("alice", r))
            .chain(bob.iter().map(|r| ("bob", r)))
        {
            assert_ne!(
                r.frame["type"], "_close",
                "the gateway closed {who}'s connection: {}",
                r.frame
            );
        }
        for r in alice {
            let id = r.frame["id"].as_str().unwrap_or_default().to_string();
            match r.frame["type"].as_str() {
                Some("ack") => {
                    let tag = r.frame["client_msg_id"].as_str().unwrap_or_default();
                    self.id_of.insert(id, tag.to_string());
                }
                Some("verdict") => self.verdicts.entry(id).or_default().push(r),
                _ => {}
            }
        }
        for r in bob {
            if r.frame["type"] == "message" {
                let id = r.frame["id"].as_str().unwrap_or_default().to_string();
                self.delivered.entry(id).or_insert(r.at);
            }
        }
    }

    /// Reads the dead letters stored since the last call (they reach no chat client).
    pub(crate) async fn read_dead_letters(&mut self, js: &jetstream::Context) {
        let Ok(mut stream) = js.get_stream(DLQ_STREAM).await else {
            return;
        };
        let Ok(info) = stream.info().await else {
            return;
        };
        let last = info.state.last_sequence;
        while self.dlq_next <= last {
            let Ok(message) = stream.get_raw_message(self.dlq_next).await else {
                return;
            };
            self.dlq_next += 1;
            let letter: serde_json::Value =
                serde_json::from_slice(&message.payload).expect("dead letter JSON");
            let id = letter["id"].as_str().unwrap_or_default().to_string();
            let reason = letter["reason"].as_str().unwrap_or_default().to_string();
            self.dead.entry(id).or_default().push(reason);
        }
    }

    /// Whether `id` has a verdict or a dead letter.
    pub(crate) fn answered(&self, id: &str) -> bool {
        self.verdicts.contains_key(id) || self.dead.contains_key(id)
    }

    pub(crate) fn complete(&self) -> bool {
        self.id_of.len() == MESSAGES
            && self.id_of.keys().all(|id| self.answered(id))
            && self.id_of.keys().all(|id| self.delivered.contains_key(id))
    }

    /// Delivery latency of each id sent in `[from, from + DURING)` (all when `None`).
    pub(crate) fn delivery(&self, from: Option<Instant>) -> Vec<Duration> {
        let mut out: Vec<Duration> = self
            .id_of
            .iter()
            .filter_map(|(id, tag)| Some((self.sent[tag], *self.delivered.get(id)?)))
            .filter(|(sent, _)| from.is_none_or(|f| *sent >= f && *sent < f + DURING))
            .map(|(sent, at)| at - sent)
            .collect();
        out.sort();
        out
    }

    /// From `kill` to the first verdict for a message sent after it.
    pub(crate) fn verdicts_again(&self, kill: Instant) -> Option<Duration> {
        self.id_of
            .iter()
            .filter(|(_, tag)| self.sent[*tag] >= kill)
            .filter_map(|(id, _)| self.verdicts.get(id).map(|v| v[0].at))
            .min()
            .map(|at| at - kill)
    }
}

pub(crate) fn p99(sorted: &[Duration]) -> Duration {
    sorted
        .get((sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// How many dead letters per reason.
fn dead_reasons(seen: &Seen) -> std::collections::BTreeMap<&str, usize> {
    let mut reasons = std::collections::BTreeMap::new();
    for reason in seen.dead.values().flatten() {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    reasons
}

pub(crate) fn report(seen: &Seen, kills: &[(&str, usize, Instant)]) {
    let all = seen.delivery(None);
    eprintln!(
        "cluster: {} sent, {} acked, {} delivered, {} with a verdict, {} dead-lettered {:?}; \
         delivery p99 {:?}, max {:?}",
        seen.sent.len(),
        seen.id_of.len(),
        seen.delivered.len(),
        seen.verdicts.len(),
        seen.dead.len(),
        dead_reasons(seen),
        p99(&all),
        all.last().copied().unwrap_or_default()
    );
    for (what, node, at) in kills {
        let during = seen.delivery(Some(*at));
        eprintln!(
            "cluster: kill -9 {what} (node {node}): delivery p99 {:?} over {} messages in the \
             next {DURING:?}; verdicts flow again after {:?} (ack_wait {ACK_WAIT:?})",
            p99(&during),
            during.len(),
            seen.verdicts_again(*at)
        );
    }
}

/// What the moderators' consumer holds, and which messages lack a verdict.
pub(crate) async fn diagnose(seen: &Seen, js: &jetstream::Context) {
    let mut missing: Vec<usize> = seen
        .id_of
        .iter()
        .filter(|(id, _)| !seen.answered(id))
        .filter_map(|(_, tag)| tag[1..].parse().ok())
        .collect();
    missing.sort();
    eprintln!("cluster: no verdict for messages {missing:?}");
    // Does VERDICTS remember a verdict it does not hold? A probe with a missing verdict's
    // de-duplication key says whether the server would drop it as a duplicate.
    let id_of_tag: HashMap<&String, &String> = seen.id_of.iter().map(|(i, t)| (t, i)).collect();
    for n in missing.iter().take(3) {
        let tag = format!("c{n}");
        let id = id_of_tag[&tag];
        let key = format!("acme/{id}/{}", offpath_protocol::text_sha256(&text(*n)));
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload("probe".into())
            .message_id(key);
        let ack = match js.send_publish("offpath.verdict.acme.lobby", publish).await {
            Ok(ack) => ack.await.map(|a| a.duplicate).map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        eprintln!("cluster: a probe with message {n}'s verdict key: duplicate = {ack:?}");
    }
    if let Ok(stream) = js.get_stream(MODERATION_STREAM).await
        && let Ok(info) = stream
            .consumer_info(offpath_protocol::subject::MODERATOR_CONSUMER)
            .await
    {
        eprintln!(
            "cluster: consumer moderator: pending {}, ack pending {}, redelivered {}, \
             delivered {:?}, acked {:?}",
            info.num_pending,
            info.num_ack_pending,
            info.num_redelivered,
            info.delivered,
            info.ack_floor
        );
    }
    if let Ok(mut stream) = js.get_stream(VERDICTS_STREAM).await {
        if let Ok(info) = stream.info().await {
            eprintln!("cluster: VERDICTS holds {} verdicts", info.state.messages);
        }
        let mut names = stream.consumer_names();
        while let Some(Ok(name)) = names.next().await {
            if let Ok(info) = stream.consumer_info(&name).await {
                eprintln!(
                    "cluster: consumer {name} ({:?}): pending {}, ack pending {}, \
                     redelivered {}, delivered {}, ack floor {}",
                    info.config.ack_policy,
                    info.num_pending,
                    info.num_ack_pending,
                    info.num_redelivered,
                    info.delivered.stream_sequence,
                    info.ack_floor.stream_sequence
                );
            }
        }
    }
}

pub(crate) fn check(seen: &Seen, kills: &[(&str, usize, Instant)]) {
    assert_eq!(seen.id_of.len(), MESSAGES, "every message acked");
    let missing: Vec<&String> = seen
        .id_of
        .iter()
        .filter(|(id, _)| !seen.answered(id))
        .map(|(_, tag)| tag)
        .collect();
    assert!(
        missing.is_empty(),
        "no verdict or dead letter for {missing:?}"
    );
    for id in seen.id_of.keys() {
        let frames: Vec<_> = seen
            .verdicts
            .get(id)
            .into_iter()
            .flatten()
            .map(|r| &r.frame)
            .collect();
        let dead = seen.dead.get(id).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            frames.len() + dead.len(),
            1,
            "{id}: exactly one verdict or dead letter: {frames:?} {dead:?}"
        );
        if let Some(frame) = frames.first() {
            assert_ne!(frame["action"], "unmoderated", "{id}: {frame:?}");
        }
    }
    let undelivered = seen
        .id_of
        .keys()
        .filter(|id| !seen.delivered.contains_key(*id))
        .count();
    assert_eq!(undelivered, 0, "every message delivered to the room");
    let max = seen.delivery(None).last().copied().unwrap_or_default();
    assert!(max < STALL, "delivery stalled for {max:?}");
    for (what, node, at) in kills {
        let again = seen.verdicts_again(*at);
        assert!(
            again.is_some_and(|d| d < RECOVERY),
            "verdicts flow again {again:?} after killing the {what} (node {node}), not within \
             {RECOVERY:?}"
        );
    }
}
