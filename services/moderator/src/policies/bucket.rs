//! The fleet's policy bucket (`offpath-policies`, key `policies`): every moderator follows
//! it, so `offpath policy push FILE` changes a whole fleet together. A moderator reads the
//! value once before it takes requests ([`Bucket::read_current`]), then subscribes to the key's
//! subject and reads the value again (the subscription catches every change after that
//! read), so it needs no consumer of its own: its NATS user may only subscribe to the key
//! and read the bucket. A lost subscription or a missing bucket is tried again.
//!
//! **Nothing is taken for the subject it arrives on.** nats-server never checks a reply
//! subject against publish permissions, so any role that may make a JetStream request can
//! have the server publish on the key, to this subscription and into the bucket's stream
//! (issue 26). Every value passes the [`Gate`] first: signed by a key of
//! `--policy-signers` and not older than the newest signed value seen
//! ([`offpath_protocol::policy_signature`]); anything else is counted in
//! `offpath_moderator_policy_bucket_refused_total{reason}` and never parsed (so an
//! attacker chooses neither a log line nor a label). At start, the newest validly signed
//! value among the key's history is the one put in force: values written over it by
//! redirected replies do not hide it until they have pushed it out of the history.
//!
//! This module only reads and checks: what it finds goes to its caller
//! ([`crate::model_reload`]), which puts it in force.

use std::time::Duration;

use async_nats::jetstream::{self, context::KeyValueErrorKind, stream::DirectGetErrorKind};
use futures::StreamExt;
use offpath_protocol::policy_signature::{Refusal, Signers, Verified};
use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::metrics as m;

/// Pause before looking for the bucket again, or following it again after a loss.
const RETRY: Duration = Duration::from_secs(5);
/// How long start-up waits for the bucket's value before taking requests without it.
const FIRST_READ: Duration = Duration::from_secs(3);
/// At most this many of the key's stored values are read at start (the bucket keeps 5;
/// a bound in case an operator raised it).
const MAX_HISTORY: usize = 64;

/// What a bucket value must pass before it is read: a trusted signature, and not older
/// than the newest signed value seen (a replay cannot roll the fleet back).
pub(crate) struct Gate {
    signers: Signers,
    newest_ms: std::sync::Mutex<Option<u64>>,
}

impl Gate {
    /// A gate trusting `signers` (none: the bucket is not followed at all).
    pub(crate) fn new(signers: Signers) -> Self {
        Self {
            signers,
            newest_ms: std::sync::Mutex::new(None),
        }
    }

    /// The value, when its signature is a trusted one; a refusal is counted and logged,
    /// without anything of the value.
    fn check(&self, value: &[u8]) -> Result<Verified, Refusal> {
        self.signers.verify(value, None).inspect_err(refused)
    }

    /// Whether `verified` is at least as new as every signed value seen (then it is the
    /// newest); an older one is counted as `stale`.
    fn take(&self, verified: &Verified) -> bool {
        let mut newest = self.newest_ms.lock().unwrap_or_else(|p| p.into_inner());
        match *newest {
            Some(in_force_ms) if verified.signed_at_ms < in_force_ms => {
                drop(newest);
                refused(&Refusal::Stale {
                    signed_at_ms: verified.signed_at_ms,
                    in_force_ms,
                });
                false
            }
            _ => {
                *newest = Some(verified.signed_at_ms);
                true
            }
        }
    }

    /// Whether a signed value was ever taken.
    fn has_taken(&self) -> bool {
        self.newest_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// The policy text of a signed value; `None`: the operator cleared the fleet's policy.
fn text(verified: &Verified) -> Option<String> {
    Some(verified.text.clone()).filter(|text| !text.is_empty())
}

/// A change to put in force: a signed policy text, or `None` (cleared: the file decides).
pub(crate) type Change = Option<String>;

fn refused(refusal: &Refusal) {
    metrics::counter!(m::POLICY_BUCKET_REFUSED, "reason" => refusal.reason()).increment(1);
    warn!(
        reason = refusal.reason(),
        "a policy bucket value was refused unread, the policies in force are kept: {refusal}"
    );
}

/// The bucket could not be opened or read.
enum Unavailable {
    /// There is no bucket (`offpath topology` makes it).
    Missing,
    /// Anything else: no permission, NATS away, a timeout.
    Failed(String),
}

/// The fleet's policy bucket as one moderator reads it: through `js`, every value past the
/// [`Gate`].
pub(crate) struct Bucket {
    js: jetstream::Context,
    gate: Gate,
}

impl Bucket {
    /// The bucket read through `js`, trusting `signers` (none: it is not followed at all).
    pub(crate) fn new(js: jetstream::Context, signers: Signers) -> Self {
        Self {
            js,
            gate: Gate::new(signers),
        }
    }

    /// What to put in force of what [`Bucket::current`] found: the newest signed value;
    /// with none at all, the file, unless a signed value was taken before (the bucket's
    /// history then holds only what was written over it: the policies in force are kept).
    fn decide(&self, found: Option<Verified>) -> Option<Change> {
        match found {
            Some(verified) if self.gate.take(&verified) => Some(text(&verified)),
            Some(_) => None,
            None if !self.gate.has_taken() => Some(None),
            None => None,
        }
    }

    /// The bucket's value to put in force before the first request, waiting at most
    /// [`FIRST_READ`]: a restarted moderator judges its first requests by the fleet's
    /// policies, not only by its own file. Without a bucket (or when it cannot be read in
    /// time) `None`: it starts with what it has.
    pub(crate) async fn read_current(&self) -> Option<Change> {
        if self.gate.signers.is_empty() {
            info!(
                "no --policy-signers: the policy bucket is not followed, the --policies file decides"
            );
            return None;
        }
        match tokio::time::timeout(FIRST_READ, self.current()).await {
            Ok(Ok(found)) => self.decide(found),
            Ok(Err(Unavailable::Missing)) => None,
            Ok(Err(Unavailable::Failed(why))) => {
                warn!(
                    "cannot read the policy bucket at start ({why}); starting with the file's policies"
                );
                None
            }
            Err(_) => {
                warn!(
                    "the policy bucket did not answer within {FIRST_READ:?}; starting with the file's policies"
                );
                None
            }
        }
    }

    /// The bucket's signed policy text now, waiting at most [`FIRST_READ`]; `None` when
    /// there is none, it cannot be read, or no signer is trusted.
    pub(crate) async fn value(&self) -> Option<String> {
        if self.gate.signers.is_empty() {
            return None;
        }
        let found = tokio::time::timeout(FIRST_READ, self.current())
            .await
            .ok()?
            .ok()??;
        if !self.gate.take(&found) {
            return None;
        }
        text(&found)
    }

    /// Follows the bucket until `stop` turns true, sending each change to put in force to
    /// `changes`, in order.
    pub(crate) async fn watch(
        &self,
        mut stop: watch::Receiver<bool>,
        changes: mpsc::Sender<Change>,
    ) {
        if self.gate.signers.is_empty() {
            return;
        }
        let mut said_missing = false;
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                ended = self.follow(&changes) => {
                    metrics::gauge!(m::POLICY_BUCKET_WATCHING).set(0.0);
                    match ended {
                        Unavailable::Missing if !said_missing => {
                            said_missing = true;
                            info!("no policy bucket {POLICY_BUCKET}: the --policies file (SIGHUP) \
                                decides until `offpath topology` makes it");
                        }
                        Unavailable::Missing => {}
                        Unavailable::Failed(why) => {
                            said_missing = false;
                            warn!("not following the policy bucket ({why}); trying again in {RETRY:?}");
                        }
                    }
                }
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Subscribes to the key, reads its value, then sends every change until the
    /// subscription ends; returns why it ended.
    async fn follow(&self, changes: &mpsc::Sender<Change>) -> Unavailable {
        let js = &self.js;
        let subject = format!("$KV.{POLICY_BUCKET}.{POLICY_KEY}");
        // Subscribed first: a change between the read below and the subscription is not missed.
        let mut subscription = match js.client().subscribe(subject).await {
            Ok(subscription) => subscription,
            Err(err) => return Unavailable::Failed(err.to_string()),
        };
        match self.current().await {
            Ok(found) => {
                if let Some(change) = self.decide(found) {
                    let _ = changes.send(change).await;
                }
            }
            Err(why) => return why,
        }
        metrics::gauge!(m::POLICY_BUCKET_WATCHING).set(1.0);
        while let Some(message) = subscription.next().await {
            // Whatever its headers say (a `KV-Operation: DEL` rides along a redirected reply
            // as easily as a text): only a signed value changes anything; an operator clears
            // the fleet's policy with a signed empty value (`offpath policy clear`).
            if let Ok(verified) = self.gate.check(&message.payload)
                && self.gate.take(&verified)
                && changes.send(text(&verified)).await.is_err()
            {
                return Unavailable::Failed("nobody applies the changes".into());
            }
        }
        Unavailable::Failed("the subscription ended".into())
    }

    /// The newest validly signed value among the key's stored values (`None`: there is none).
    /// Each stored value is read by sequence with a direct get, so values written over the
    /// operator's by redirected replies are refused (and counted) one by one instead of hiding
    /// it.
    async fn current(&self) -> Result<Option<Verified>, Unavailable> {
        let js = &self.js;
        js.get_key_value(POLICY_BUCKET).await.map_err(|err| {
            match (err.kind(), is_not_found(&err)) {
                (KeyValueErrorKind::GetBucket, true) => Unavailable::Missing,
                _ => Unavailable::Failed(err.to_string()),
            }
        })?;
        let stream = js
            .get_stream(format!("KV_{POLICY_BUCKET}"))
            .await
            .map_err(|err| Unavailable::Failed(err.to_string()))?;
        let subject = format!("$KV.{POLICY_BUCKET}.{POLICY_KEY}");
        let mut newest: Option<Verified> = None;
        let mut next = None;
        for _ in 0..MAX_HISTORY {
            let message = match stream.direct_get_next_for_subject(&subject, next).await {
                Ok(message) => message,
                Err(err) if err.kind() == DirectGetErrorKind::NotFound => break,
                Err(err) => return Err(Unavailable::Failed(err.to_string())),
            };
            next = Some(message.sequence + 1);
            if let Ok(verified) = self.gate.check(&message.payload)
                && newest
                    .as_ref()
                    .is_none_or(|seen| verified.signed_at_ms >= seen.signed_at_ms)
            {
                newest = Some(verified);
            }
        }
        Ok(newest)
    }
}

/// Whether opening the bucket failed because its stream does not exist.
fn is_not_found(err: &jetstream::context::KeyValueError) -> bool {
    use std::error::Error;
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(get) = cause.downcast_ref::<jetstream::context::GetStreamError>() {
            return matches!(
                get.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            );
        }
        source = cause.source();
    }
    false
}
