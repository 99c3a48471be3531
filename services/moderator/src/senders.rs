//! Sender state shared by every moderator (issue 30, item 2): what each sender did lately
//! (messages per room and across rooms, repeats of one text, strikes: blocks), which a
//! policy's sender rules count.
//!
//! Kept on NATS, no other store: a moderator publishes one small event for each request
//! it takes from the stream, and one for each block, to `SENDERS`
//! (`offpath.sender.<tenant>`, `Nats-Msg-Id` `<tenant>/<id>/<kind>`, so a redelivered
//! request's event is stored once); every moderator reads all of `SENDERS` with an ordered
//! consumer of its own into its bounded [`Book`], from an hour back when it starts (a
//! restart loses nothing the stream kept). Its own events count at once, and their echo
//! is recognised by request id: each event counts once, however many moderators and
//! gateways a sender's messages pass. Another moderator's events arrive within a NATS
//! round trip. Events carry what the rules count: a text digest (repeats), links and
//! mentions. `offpath.classify` calls and members' reports are not a sender's messages
//! and record nothing. Events carry ids and digests, never text.

pub(crate) mod book;
mod campaigns;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use offpath_protocol::subject::{SENDER_PREFIX, SENDERS_STREAM, sender_subject};
use offpath_protocol::{Action, ModerationRequest, Verdict, now_ms};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::warn;

pub(crate) use crate::policies::text_rules::sender::{Here, SenderView};
use book::{Added, Book, Entry, Kind, WINDOW_S, local_hash, sender_key, text_digest};
use campaigns::Campaigns;

use crate::metrics as m;
use crate::policies::text_rules::campaign::{HASHES, Near, Signature};
use crate::policies::text_rules::count_links;

/// Events waiting to be published; past it they are dropped and counted.
const OUTBOX: usize = 4096;
/// How far ahead of this clock an event's time may be (clocks of several hosts).
const MAX_SKEW_MS: u64 = 60_000;
/// Publish acknowledgements awaited at once.
const IN_FLIGHT_ACKS: usize = 256;

/// One sender event as published on `offpath.sender.<tenant>` (moderators only): anything
/// that does not decode, is not `v: 1`, names another tenant than its subject or lies in
/// the future is counted `malformed` and skipped. Unknown fields are ignored, so a later
/// moderator may add one in a rolling upgrade (a change of meaning changes `v`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SenderEvent {
    /// Always 1.
    v: u32,
    /// `message` or `strike`.
    kind: Kind,
    /// The request's id.
    id: String,
    tenant: String,
    sender: String,
    room: String,
    /// The request's `sent_at_ms` (never later than when it was recorded).
    at_ms: u64,
    /// [`text_digest`] of the message.
    text: u64,
    /// Links in the message, as link rules find them.
    links: u16,
    /// Users it mentions (the request's `mentions`, contract v1.4).
    mentions: u16,
    /// A message's MinHash signature ([`Signature`], its 32 values), by which every
    /// moderator finds near-duplicates; absent from strikes and short texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    near: Option<Vec<u32>>,
}

impl SenderEvent {
    /// The event of `request`; `similar`: the text near-duplicates are found by (its
    /// normalised view), for a message.
    fn of(request: &ModerationRequest, kind: Kind, similar: Option<&str>) -> Self {
        Self {
            v: 1,
            kind,
            id: request.id.clone(),
            tenant: request.tenant.clone(),
            sender: request.sender.clone(),
            room: request.room.clone(),
            at_ms: request.sent_at_ms.min(now_ms()),
            text: text_digest(&request.text),
            links: u16::try_from(count_links(&request.text)).unwrap_or(u16::MAX),
            mentions: u16::try_from(request.mentions.len()).unwrap_or(u16::MAX),
            near: similar
                .and_then(Signature::of)
                .map(|signature| signature.0.to_vec()),
        }
    }

    /// Its signature, when it carries a whole one.
    fn signature(&self) -> Option<Signature> {
        let values: [u32; HASHES] = self.near.as_deref()?.try_into().ok()?;
        Some(Signature(values))
    }

    fn entry(&self) -> (u64, Entry) {
        let entry = Entry {
            at_ms: self.at_ms,
            room: local_hash(&self.room),
            text: self.text,
            id: local_hash(&self.id),
            links: self.links,
            mentions: self.mentions,
        };
        (sender_key(&self.tenant, &self.sender), entry)
    }
}

/// The sender state of this process: its book, and the outbox its events leave by.
pub(crate) struct Senders {
    book: Book,
    /// None when the capacity is 0: no campaign rule matches.
    campaigns: Option<Campaigns>,
    outbox: Option<mpsc::Sender<SenderEvent>>,
    caught_up: AtomicBool,
}

impl Senders {
    /// Sender state for up to `capacity` senders; none when 0 (nothing recorded, sender
    /// and campaign rules never match); signatures of up to `campaign_capacity` messages
    /// (0: campaign rules never match). Returns the outbox's far end for [`publish`].
    pub(crate) fn new(
        capacity: usize,
        campaign_capacity: usize,
    ) -> (Arc<Self>, Option<mpsc::Receiver<SenderEvent>>) {
        let (outbox, receiver) = if capacity == 0 {
            (None, None)
        } else {
            let (tx, rx) = mpsc::channel(OUTBOX);
            (Some(tx), Some(rx))
        };
        let senders = Self {
            book: Book::new(capacity.max(1)),
            campaigns: (campaign_capacity > 0).then(|| Campaigns::new(campaign_capacity)),
            outbox,
            caught_up: AtomicBool::new(false),
        };
        (Arc::new(senders), receiver)
    }

    /// Whether messages are recorded (a capacity above 0).
    pub(crate) fn records(&self) -> bool {
        self.outbox.is_some()
    }

    /// Records `request` as its sender's message (a stream request that is not a report;
    /// `similar`: its normalised text) and, when `view`, returns the sender's history as
    /// this process knows it, where `request` stands in it and its near-duplicates; none
    /// until the last hour of `SENDERS` is read after start (a partial history would
    /// under-count, and make every link a first one).
    pub(crate) fn message(
        &self,
        request: &ModerationRequest,
        similar: &str,
        view: bool,
    ) -> Option<SenderView> {
        self.outbox.as_ref()?;
        let event = SenderEvent::of(request, Kind::Message, Some(similar));
        let (sender, entry) = event.entry();
        let near = if request.report.is_none() {
            self.record(event).unwrap_or_default()
        } else {
            Near::default()
        };
        (view && self.caught_up.load(Ordering::Relaxed)).then(|| SenderView {
            near,
            recent: self.book.recent(sender),
            here: Here {
                at_ms: entry.at_ms,
                room: entry.room,
                text: entry.text,
                links: entry.links,
            },
        })
    }

    /// Records a strike when `verdict` blocks `request` (a stream request, not a report).
    pub(crate) fn strike(&self, request: &ModerationRequest, verdict: &Verdict) {
        if verdict.action == Action::Block && request.report.is_none() {
            self.record(SenderEvent::of(request, Kind::Strike, None));
        }
    }

    /// Counts `event` here and publishes it; returns a message's near-duplicates.
    fn record(&self, event: SenderEvent) -> Option<Near> {
        let outbox = self.outbox.as_ref()?;
        let (_, near) = self.add(&event, true);
        // Full (or closed at shutdown): the event is counted here, not published.
        if outbox.try_send(event).is_err() {
            metrics::counter!(m::SENDER_EVENTS, "outcome" => "dropped").increment(1);
        }
        near
    }

    /// Counts `event` in the book and, a message new to it with a signature, in the
    /// campaign index; returns what it did and the message's near-duplicates. `look`: a
    /// message the book has seen is looked up too (the index keeps each message once, and
    /// answers one it holds with its copies): a redelivered request finds its campaign,
    /// and an echo read back costs no look-up.
    fn add(&self, event: &SenderEvent, look: bool) -> (Added, Option<Near>) {
        let (sender, entry) = event.entry();
        let now = now_ms();
        let (added, evicted, held) = self.book.add(sender, event.kind, entry, now);
        if evicted > 0 {
            metrics::counter!(m::SENDER_EVICTIONS).increment(evicted as u64);
        }
        metrics::gauge!(m::SENDERS_TRACKED).set(held as f64);
        let index = added == Added::New || (look && added == Added::Seen);
        let near = (index && event.kind == Kind::Message)
            .then(|| self.campaigns.as_ref().zip(event.signature()))
            .flatten()
            .map(|(campaigns, signature)| {
                let tenant = local_hash(&event.tenant);
                let (near, dropped) =
                    campaigns.add(tenant, sender, entry.id, entry.at_ms, signature, now);
                if dropped > 0 {
                    metrics::counter!(m::CAMPAIGN_EVICTIONS).increment(dropped as u64);
                }
                if added == Added::New && near.members.len() > 1 {
                    metrics::counter!(m::NEAR_DUPLICATES).increment(1);
                }
                near
            });
        (added, near)
    }

    /// Marks the window read (once: `sender_state_caught_up`).
    fn set_caught_up(&self) {
        if !self.caught_up.swap(true, Ordering::Relaxed) {
            metrics::gauge!(m::SENDER_STATE_CAUGHT_UP).set(1.0);
        }
    }

    /// Folds one event read from `SENDERS` on `subject`; returns how it was counted.
    fn fold(&self, subject: &str, payload: &[u8]) -> &'static str {
        let Ok(event) = serde_json::from_slice::<SenderEvent>(payload) else {
            return "malformed";
        };
        // Another version, another tenant's subject, or a time to come (it would never
        // leave the book).
        if event.v != 1
            || subject != sender_subject(&event.tenant)
            || event.at_ms > now_ms() + MAX_SKEW_MS
            || (event.near.is_some() && event.signature().is_none())
        {
            return "malformed";
        }
        match self.add(&event, false).0 {
            Added::New => "folded",
            Added::Seen => "seen",
            Added::Stale => "stale",
        }
    }
}

/// Publishes the events of `outbox` to `SENDERS` until it closes, a few hundred
/// acknowledgements awaited at once; each counted `published` or `failed`.
pub(crate) async fn publish(js: jetstream::Context, mut outbox: mpsc::Receiver<SenderEvent>) {
    let mut acks = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            event = outbox.recv(), if acks.len() < IN_FLIGHT_ACKS => {
                let Some(event) = event else { break };
                acks.push(send(js.clone(), event));
            }
            Some(outcome) = acks.next() => {
                metrics::counter!(m::SENDER_EVENTS, "outcome" => outcome).increment(1);
            }
        }
    }
    while let Some(outcome) = acks.next().await {
        metrics::counter!(m::SENDER_EVENTS, "outcome" => outcome).increment(1);
    }
}

async fn send(js: jetstream::Context, event: SenderEvent) -> &'static str {
    let Ok(payload) = serde_json::to_vec(&event) else {
        return "failed";
    };
    let mut headers = async_nats::HeaderMap::new();
    let id = format!("{}/{}/{}", event.tenant, event.id, event.kind.as_str());
    headers.insert("Nats-Msg-Id", id.as_str());
    let sent = js
        .publish_with_headers(sender_subject(&event.tenant), headers, payload.into())
        .await;
    let acked = match sent {
        Ok(ack) => tokio::time::timeout(Duration::from_secs(5), ack).await,
        Err(_) => return "failed",
    };
    match acked {
        Ok(Ok(_)) => "published",
        _ => "failed",
    }
}

/// Reads `SENDERS` into `senders`' book from an hour back, again after any failure, until
/// `stop`.
pub(crate) async fn follow(
    js: jetstream::Context,
    senders: Arc<Senders>,
    mut stop: watch::Receiver<bool>,
) {
    if senders.outbox.is_none() {
        return;
    }
    let mut failures = 0u64;
    loop {
        tokio::select! {
            result = read(&js, &senders) => {
                if let Err(err) = result {
                    // The first failure and every 30th (a minute apart) are logged: a missing
                    // stream or grant (`offpath topology`, `offpath nats-auth`) must not
                    // flood the log; every one is counted.
                    if failures.is_multiple_of(30) {
                        warn!("not following {SENDERS_STREAM} ({err}); trying again every 2 s \
                            (`offpath topology` creates the stream; sender rules wait for it)");
                    }
                    failures += 1;
                    metrics::counter!(m::NATS_ERRORS, "operation" => "follow_senders").increment(1);
                }
            }
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// One ordered consumer over the window (async-nats re-creates it after a gap or a lost
/// consumer); ends with the stream.
async fn read(js: &jetstream::Context, senders: &Senders) -> Result<(), String> {
    let stream = js
        .get_stream(SENDERS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let state = &stream.cached_info().state;
    let end = state.last_sequence;
    let start = time::OffsetDateTime::now_utc() - Duration::from_secs(WINDOW_S);
    // Nothing in the window: read already.
    if end == 0 || state.last_timestamp < start {
        senders.set_caught_up();
    }
    let config = consumer::pull::OrderedConfig {
        filter_subject: format!("{SENDER_PREFIX}.>"),
        deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: start },
        ..Default::default()
    };
    let reader = stream
        .create_consumer(config)
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = reader.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let outcome = senders.fold(&message.subject, &message.payload);
        metrics::counter!(m::SENDER_EVENTS, "outcome" => outcome).increment(1);
        metrics::gauge!(m::SENDER_LAST_READ).set(now_ms() as f64 / 1000.0);
        if message.info().is_ok_and(|i| i.stream_sequence >= end) {
            senders.set_caught_up();
        }
    }
    Err("the consumer ended".into())
}

#[cfg(test)]
#[path = "senders/tests.rs"]
mod tests;
