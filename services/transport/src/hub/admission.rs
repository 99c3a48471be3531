//! How a `send` is admitted, chosen once from `--moderation` when the gateway starts:
//! decoupled (offpath), the inline baseline, or no moderation at all.

mod inline;

use std::sync::Arc;
use std::time::Instant;

use super::Hub;
use crate::config::Moderation;
use crate::frames::{ErrorCode, FrameError};
use crate::peer::Peer;

/// How a `send` is admitted: chosen once, from `--moderation`, when the gateway starts.
#[derive(Clone)]
pub(crate) enum Admission {
    /// Deliver now (or hold), hand the request to the outbox, apply the verdict later.
    Decoupled,
    /// The coupled baseline: each send awaits a classify call over this client first.
    Inline(async_nats::Client),
    /// Deliver, nothing else.
    Off,
}

impl Admission {
    /// The admission `moderation` asks for; `client` makes the inline calls.
    pub(crate) fn new(moderation: Moderation, client: &async_nats::Client) -> Self {
        match moderation {
            Moderation::Decoupled => Admission::Decoupled,
            Moderation::Inline => Admission::Inline(client.clone()),
            Moderation::Off => Admission::Off,
        }
    }
}

impl Hub {
    /// Admits a validated `send` from `peer` (a member of `room`) the way the gateway was
    /// started to: [`Hub::accept`], or the inline baseline's classify call first. An
    /// end-to-end-encrypted room's message is relayed unmoderated whatever the admission
    /// ([`Hub::accept_e2e`]); `commitment` is for those rooms only.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        room: &str,
        text: String,
        client_msg_id: Option<String>,
        commitment: Option<String>,
        received: Instant,
    ) -> Result<(), FrameError> {
        if self.policy(room).e2e {
            self.accept_e2e(peer, room, text, client_msg_id, commitment, received);
            return Ok(());
        }
        if commitment.is_some() {
            return Err(FrameError::new(
                ErrorCode::InvalidFrame,
                format!(
                    "send frame: a commitment is for end-to-end-encrypted rooms; {room:?} is not one"
                ),
            ));
        }
        match &self.admission {
            Admission::Inline(client) => {
                inline::accept(self, client, peer, room, text, client_msg_id, received).await;
            }
            Admission::Decoupled | Admission::Off => {
                self.accept(peer, room, text, client_msg_id, received);
            }
        }
        Ok(())
    }
}
