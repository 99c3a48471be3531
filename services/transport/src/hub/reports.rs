//! A member's `report` of a message: checked against what the room showed on this gateway,
//! then handed to the outbox as a moderation request with a `report` (interactive lane),
//! which a moderator classifies and always queues for the reviewers.
//!
//! * In a room the server can read, the reported text is the one the gateway relayed (a
//!   client cannot put words in anyone's mouth); a frame with `text` or `key` is refused.
//! * In an end-to-end-encrypted (`e2e`) room the gateway relayed ciphertext: the reporter's
//!   client submits the plaintext. When the sender sent a franking `commitment` (hex
//!   HMAC-SHA256 of the plaintext under a 32-byte key carried inside the ciphertext) and
//!   the reporter submits that key, the gateway checks that the two open the commitment:
//!   then the sender did send that text (`text_source: franked`); when they do not, the
//!   report is still queued, as `mismatch` (either client lied: a sender must not escape
//!   review with a commitment that opens nothing). Without a commitment or a key the
//!   plaintext is the reporter's word (`reporter`). Reviewers are told which. An e2e
//!   message's report carries no context: the gateway holds no plaintext.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use offpath_protocol::{
    DEFAULT_MAX_REQUEST_BYTES, ModerationRequest, PROTOCOL_VERSION, Priority, Report, TextSource,
};

use super::{Admission, Hub, lock, new_id, now_ms};
use crate::frames::{ErrorCode, FrameError};
use crate::metrics as m;
use crate::peer::Peer;

/// A validated `report` frame from a member of `room`.
pub(crate) struct ReportFrame<'a> {
    pub(crate) room: &'a str,
    pub(crate) id: &'a str,
    pub(crate) reason: String,
    pub(crate) text: Option<String>,
    pub(crate) key: Option<String>,
}

/// What the gateway kept of a reported message, copied out under the lock.
struct Reported {
    sender: String,
    sent_at_ms: u64,
    relayed: Arc<str>,
    commitment: Option<Box<str>>,
    context: Vec<offpath_protocol::ContextMessage>,
}

impl Hub {
    /// Queues `peer`'s report of a message of `report.room` for the reviewers; `Ok` also for
    /// a repeated report (queued once). Never waits.
    pub(crate) fn report(
        &self,
        peer: &Arc<Peer>,
        report: ReportFrame<'_>,
    ) -> Result<(), FrameError> {
        if matches!(self.admission, Admission::Off) {
            return Err(FrameError::new(
                ErrorCode::InvalidReport,
                "this gateway runs without moderation (--moderation off): nobody reviews reports",
            ));
        }
        let e2e = self.policy(report.room).e2e;
        check_frame(&report, e2e)?;
        let ReportFrame {
            room,
            id,
            reason,
            text,
            key,
        } = report;
        let Some(reported) = self.take_reported(peer, room, id, e2e)? else {
            return Ok(());
        };
        self.take_quota(peer, room, id)?;
        // `text` is there exactly in an e2e room (checked above).
        let (text, source) = match text {
            None => (reported.relayed.to_string(), TextSource::Gateway),
            Some(text) => {
                let opened = match (reported.commitment.as_deref(), key.as_deref()) {
                    (Some(commitment), Some(key)) if opens(commitment, key, &text) => {
                        TextSource::Franked
                    }
                    (Some(_), Some(_)) => TextSource::Mismatch,
                    (None, _) | (_, None) => TextSource::Reporter,
                };
                (crate::frames::for_review(&text), opened)
            }
        };
        let request = ModerationRequest {
            v: PROTOCOL_VERSION,
            // A request of its own: the message's own request (same tenant and id) may
            // still be in the de-duplication window.
            id: new_id(&self.config.instance),
            tenant: self.config.tenant.clone(),
            room: room.to_string(),
            sender: reported.sender,
            text,
            sent_at_ms: now_ms(),
            deadline_ms: None,
            // A person is waiting on a report: the interactive lane, ahead of bulk.
            priority: Some(Priority::High),
            policy: self.config.moderation_policy_of(room).map(String::from),
            report: Some(Report {
                message_id: id.to_string(),
                reporter: peer.user.to_string(),
                reason,
                message_sent_at_ms: reported.sent_at_ms,
                text_source: source,
            }),
            context: reported.context,
            mentions: Vec::new(),
            account_created_ms: None,
        };
        self.queue_report(peer, room, id, request)?;
        metrics::counter!(m::REPORTS, "source" => source.as_str()).increment(1);
        Ok(())
    }

    /// Looks the message up among what `room` showed and records `peer` as its reporter;
    /// `None` when `peer` reported it already. Under the lock (the send path takes it too):
    /// look up and record, copy, nothing more.
    fn take_reported(
        &self,
        peer: &Peer,
        room: &str,
        id: &str,
        e2e: bool,
    ) -> Result<Option<Reported>, FrameError> {
        let mut recent = lock(&self.recent);
        let unknown = || {
            FrameError::new(
                ErrorCode::UnknownMessage,
                format!(
                    "no message {id:?} among the last {} room {room:?} showed on this gateway \
                     (or it was removed)",
                    self.config.messages.report_window
                ),
            )
        };
        let message = recent.find_mut(room, id).ok_or_else(unknown)?;
        if message.sender == peer.user {
            return Err(FrameError::new(
                ErrorCode::InvalidReport,
                "a member cannot report their own message",
            ));
        }
        if !message.reported_by(&peer.user) {
            return Ok(None);
        }
        let mut reported = Reported {
            sender: message.sender.to_string(),
            sent_at_ms: message.sent_at_ms,
            relayed: Arc::clone(&message.text),
            commitment: message.commitment.clone(),
            context: Vec::new(),
        };
        if !e2e {
            reported.context = recent.context(room, Some(id), self.config.messages.review_context);
        }
        Ok(Some(reported))
    }

    /// Takes one report of `peer`'s quota and the gateway's; when refused, the report is
    /// not queued and the member may report it again once the quota allows.
    fn take_quota(&self, peer: &Arc<Peer>, room: &str, id: &str) -> Result<(), FrameError> {
        let quota = lock(&self.report_quota).take(&peer.user, std::time::Instant::now());
        let Err(refused) = quota else {
            return Ok(());
        };
        self.forget_reporter(room, id, &peer.user);
        metrics::counter!(m::REPORTS_REFUSED, "reason" => refused.as_str()).increment(1);
        Err(FrameError::new(
            ErrorCode::RateLimited,
            match refused.as_str() {
                "reporter_quota" => format!(
                    "report quota: {} reports a minute per member; try again later",
                    self.config.messages.reports_per_minute
                ),
                _ => "this gateway takes no more reports for now; try again later".into(),
            },
        ))
    }

    /// Hands the report's request to the outbox, within what a moderator decodes (context
    /// goes first, oldest first); when it is not queued the member may report again.
    fn queue_report(
        &self,
        peer: &Arc<Peer>,
        room: &str,
        id: &str,
        mut request: ModerationRequest,
    ) -> Result<(), FrameError> {
        while offpath_protocol::encode(&request).len() > DEFAULT_MAX_REQUEST_BYTES {
            if request.context.is_empty() {
                self.forget_reporter(room, id, &peer.user);
                return Err(FrameError::new(
                    ErrorCode::InvalidReport,
                    "the report is too large for a moderation request (16 KiB): shorten the reason",
                ));
            }
            request.context.remove(0);
        }
        if let Err(reason) = self.outbox.try_hand(request) {
            self.forget_reporter(room, id, &peer.user);
            return Err(FrameError::new(
                ErrorCode::ReportUnavailable,
                format!("the report could not be queued ({reason}); try again"),
            ));
        }
        Ok(())
    }

    /// `reporter`'s report of message `id` was not queued: they may report it again.
    fn forget_reporter(&self, room: &str, id: &str, reporter: &Arc<str>) {
        if let Some(message) = lock(&self.recent).find_mut(room, id) {
            message.reporters.retain(|r| r != reporter);
        }
    }
}

/// What the frame must carry in its room, checked before taking the lock: plaintext and key
/// exactly in an end-to-end-encrypted room.
fn check_frame(report: &ReportFrame<'_>, e2e: bool) -> Result<(), FrameError> {
    let room = report.room;
    if !e2e && (report.text.is_some() || report.key.is_some()) {
        return Err(FrameError::new(
            ErrorCode::InvalidReport,
            format!(
                "room {room:?} is not end-to-end encrypted: a report carries no \"text\" \
                 or \"key\" (the gateway reports the text it relayed)"
            ),
        ));
    }
    if e2e && report.text.is_none() {
        return Err(FrameError::new(
            ErrorCode::InvalidReport,
            format!(
                "room {room:?} is end-to-end encrypted: a report carries the message's \
                 plaintext as \"text\" (and \"key\" when it was sent with a commitment)"
            ),
        ));
    }
    Ok(())
}

/// Whether `key` (hex of 32 bytes) and `text` open `commitment` (hex of HMAC-SHA256 under
/// the key of the plaintext's UTF-8 bytes).
fn opens(commitment: &str, key: &str, text: &str) -> bool {
    let (Some(key), Some(expected)) = (hex_bytes(key), hex_bytes(commitment)) else {
        return false;
    };
    if key.len() != 32 {
        return false;
    }
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(text.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&expected).is_ok()
}

/// The bytes of `hex` (either case), or `None` when it is not an even run of hex digits.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commitment opens with its key and text only. The vector: HMAC-SHA256 with a key of
    /// 32 bytes 0x0b over "Hi There" (Python's `hmac`, as a client's WebCrypto computes it).
    #[test]
    fn a_commitment_opens_with_its_key_and_text_only() {
        let key = "0b".repeat(32);
        let commitment = "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7";
        assert!(opens(commitment, &key, "Hi There"));
        assert!(!opens(commitment, &key, "Hi there"));
        assert!(!opens(commitment, &"0c".repeat(32), "Hi There"));
        assert!(
            !opens(commitment, &"0b".repeat(20), "Hi There"),
            "a 20-byte key"
        );
        assert_eq!(hex_bytes("0aFF"), Some(vec![10, 255]));
        assert_eq!(hex_bytes("0g"), None);
        assert_eq!(hex_bytes("+f"), None);
    }
}
