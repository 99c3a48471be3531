//! `--moderation inline`: the coupled design, kept as the baseline the load scenarios
//! compare against. Before fan-out the connection awaits a synchronous `offpath.classify`
//! call to the moderators (timeout `--inline-timeout-ms`, then fail-open), exactly where
//! chat servers' spam-checker hooks sit. Everything else is the same gateway. Do not run
//! it in production: a slow or hung model stalls every socket that sends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use offpath_protocol::subject::CLASSIFY_SUBJECT;
use offpath_protocol::{Action, ModerationRequest, Span, Verdict, decode_versioned, encode};

use crate::frames::ServerFrame;
use crate::frames::message_frame;
use crate::hub::{Hub, Shown};
use crate::metrics as m;
use crate::peer::Peer;

/// Largest verdict read from a reply.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Accepts a send the coupled way: ack, await the verdict, then deliver unless blocked.
pub(crate) async fn accept(
    hub: &Arc<Hub>,
    client: &async_nats::Client,
    peer: &Arc<Peer>,
    room: &str,
    text: String,
    client_msg_id: Option<String>,
    received: Instant,
) {
    let mut policy = hub.policy(room);
    policy.hold = false;
    let request = hub.new_request(peer, room, text, client_msg_id, policy);
    let timeout = hub.config().moderation.inline_timeout.get();
    let call = client.request(CLASSIFY_SUBJECT, encode(&request).into());
    let (action, scores, reason, category, span) = match tokio::time::timeout(timeout, call).await {
        Err(_) => unmoderated("inline_timeout"),
        Ok(Err(err)) => {
            metrics::counter!(m::NATS_ERRORS, "operation" => "classify").increment(1);
            tracing::debug!("classify call failed: {err}");
            unmoderated("classify_unavailable")
        }
        Ok(Ok(reply)) => match reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
        {
            Some(code) => unmoderated(&format!("classify_{code}")),
            None => match decode_versioned::<Verdict>(&reply.payload, MAX_REPLY_BYTES) {
                Ok(verdict) => bound(&request, verdict),
                Err(_) => unmoderated("classify_malformed"),
            },
        },
    };
    metrics::counter!(m::VERDICTS, "action" => action.as_str()).increment(1);
    metrics::histogram!(m::VERDICT_LAG_SECONDS).record(received.elapsed().as_secs_f64());
    if action != Action::Block {
        hub.fan_out(room, &message_frame(&request));
        metrics::histogram!(m::FANOUT_SECONDS).record(received.elapsed().as_secs_f64());
        let (id, sent_at_ms) = (&request.id, request.sent_at_ms);
        hub.shown(room, Shown::new(id, &peer.user, &request.text, sent_at_ms));
    }
    let verdict = ServerFrame::Verdict {
        id: request.id,
        room: room.to_string(),
        action: action.as_str().to_string(),
        scores,
        reason,
        category,
        span,
    };
    peer.push(&verdict.encode());
}

/// A reply's action, scores, reason when unmoderated, the category that decided and where
/// in the text it did.
type Outcome = (
    Action,
    BTreeMap<String, f32>,
    Option<String>,
    Option<String>,
    Option<Span>,
);

/// The reply's decision when it judged this request's exact text; else it is refused
/// (counted, logged) and the message is unmoderated, as for any missing answer.
fn bound(request: &ModerationRequest, verdict: Verdict) -> Outcome {
    let refused = match verdict.text_sha256.as_deref() {
        None => Some("missing_digest"),
        Some(_) if verdict.id != request.id || !verdict.judged(&request.text) => {
            Some("digest_mismatch")
        }
        Some(_) => None,
    };
    match refused {
        None => (
            verdict.action,
            verdict.scores,
            verdict.reason,
            verdict.category,
            verdict.span.filter(|s| within(&request.text, s)),
        ),
        Some(reason) => {
            metrics::counter!(m::VERDICTS_REFUSED, "reason" => reason).increment(1);
            tracing::warn!(
                id = request.id,
                reason,
                "refused a classify reply for another text"
            );
            unmoderated("classify_refused")
        }
    }
}

fn unmoderated(reason: &str) -> Outcome {
    (
        Action::Unmoderated,
        BTreeMap::new(),
        Some(reason.to_string()),
        None,
        None,
    )
}

/// Whether `span` is a part of `text` on character boundaries with a score in [0, 1] (else
/// it is dropped: the page would slice nonsense, or print `null`).
fn within(text: &str, span: &Span) -> bool {
    let (start, end) = (span.start as usize, span.end as usize);
    start < end && text.get(start..end).is_some() && (0.0..=1.0).contains(&span.score)
}

#[cfg(test)]
mod tests {
    use offpath_protocol::{ModelRef, PROTOCOL_VERSION, text_sha256};

    use super::*;

    fn request() -> ModerationRequest {
        ModerationRequest {
            v: PROTOCOL_VERSION,
            id: "gw.1".into(),
            tenant: "acme".into(),
            room: "lobby".into(),
            sender: "alice".into(),
            text: "you idiot".into(),
            sent_at_ms: 1,
            deadline_ms: None,
            priority: None,
            policy: None,
            report: None,
            context: Vec::new(),
            mentions: Vec::new(),
            account_created_ms: None,
        }
    }

    fn reply(id: &str, text: Option<&str>) -> Verdict {
        Verdict {
            v: PROTOCOL_VERSION,
            id: id.into(),
            tenant: "acme".into(),
            room: "lobby".into(),
            sender: "alice".into(),
            action: Action::Allow,
            scores: BTreeMap::new(),
            model: ModelRef {
                name: "m".into(),
                version: "1".into(),
            },
            queued_ms: 0,
            inference_ms: 0,
            reason: None,
            text_sha256: text.map(text_sha256),
            policy: None,
            review: None,
            category: None,
            span: None,
            rule: None,
            campaign: None,
            counts: None,
        }
    }

    /// A classify reply counts only for this request's id and exact text; any other
    /// (another text, another id, no digest) leaves the message unmoderated.
    #[test]
    fn a_reply_for_another_text_or_id_is_refused() {
        let request = request();
        let (action, ..) = bound(&request, reply("gw.1", Some("you idiot")));
        assert_eq!(action, Action::Allow);
        for forged in [
            reply("gw.1", Some("hello")),
            reply("gw.2", Some("you idiot")),
            reply("gw.1", None),
        ] {
            let (action, _, reason, ..) = bound(&request, forged);
            assert_eq!(action, Action::Unmoderated);
            assert_eq!(reason.as_deref(), Some("classify_refused"));
        }
    }

    /// A reply's span reaches the page only when it is a part of the text on character
    /// boundaries: past the end, empty, reversed or inside a character, it is dropped.
    #[test]
    fn a_span_outside_the_text_is_dropped() {
        let mut request = request();
        request.text = "héllo you idiot".into();
        let span = |start, end| Span {
            start,
            end,
            score: 0.9,
        };
        for (given, kept) in [
            (span(7, 16), true),
            (span(0, 16), true),
            (span(7, 17), false),
            (span(2, 5), false),
            (span(9, 9), false),
            (span(9, 7), false),
            (span(u32::MAX - 1, u32::MAX), false),
        ] {
            let mut verdict = reply("gw.1", Some("héllo you idiot"));
            verdict.span = Some(given);
            let (.., span) = bound(&request, verdict);
            assert_eq!(span.is_some(), kept, "{given:?}");
        }
        // A score a hostile verdict set past 1 (`1e39` decodes as infinity) is dropped too.
        for score in [f32::INFINITY, f32::NAN, -0.5, 1.5] {
            let mut verdict = reply("gw.1", Some("héllo you idiot"));
            verdict.span = Some(Span {
                score,
                ..span(7, 16)
            });
            let (.., span) = bound(&request, verdict);
            assert_eq!(span, None, "{score}");
        }
    }
}
