//! JetStream topology as code: the six streams, the policy bucket and the moderators' shared
//! durable pull consumer. [`ensure`] creates what is missing and never changes what exists (it reports
//! differences): every service runs it at start-up and when it finds part of the topology
//! deleted. [`apply`] creates or updates to the given settings: only `offpath topology`
//! runs it. Both are idempotent and safe to run from many processes at once.
//!
//! The settings, and why:
//!
//! * `MODERATION` (`offpath.req.*`): **work-queue** retention, so a request is deleted once
//!   a moderator acks it and the stream holds exactly the work not yet done. File storage:
//!   accepted requests survive a NATS restart. `discard: new` with a byte bound: when the
//!   backlog is full a publisher gets an error (the transport counts and sheds) instead of
//!   old, accepted requests disappearing silently. A 2-minute duplicate window de-duplicates
//!   a transport's re-publish of the same `Nats-Msg-Id` (`<tenant>/<id>`). Requests older
//!   than a day are of no use to a chat and age out.
//! * `MODERATION_INTERACTIVE` (`offpath.req.*.interactive`): the interactive lane, as
//!   `MODERATION` with an eighth of its bytes, and its own `moderator` consumer. Moderators
//!   take its requests first (a user waits for them: hold rooms), never starving the bulk
//!   lane. A stream of its own, because consumers of one work-queue stream may not overlap
//!   and the existing `moderator` consumer reads all of `MODERATION`.
//! * `VERDICTS` (`offpath.verdict.*.*`): limits retention for catch-up after a transport
//!   restart and for audit; a day of history, oldest discarded first. Verdicts are published
//!   with `Nats-Msg-Id` = `<tenant>/<id>/<text_sha256>` (`Verdict::dedup_key`), so a
//!   redelivered request's second verdict is stored once.
//! * `MODERATION_DLQ` (`offpath.dlq.*`): limits retention, two weeks, for an operator to
//!   inspect and replay.
//! * `REVIEW` (`offpath.review.*`, contract v1.1): the review queue, limits retention, two
//!   weeks; moderators publish a `ReviewItem` for every flagged message
//!   (`Nats-Msg-Id` = `ReviewItem::dedup_key`).
//! * `AUDIT` (`offpath.audit.*`, contract v1.1): every reviewer decision (`AuditEntry`),
//!   limits retention, a year.
//! * Consumer `moderator`: durable, pull, explicit acks. `ack_wait` 30 s is far longer than
//!   collecting plus inferring a batch (milliseconds to a second); a moderator that keeps
//!   working on a message past it sends `in_progress`. **No server-side `backoff`**: when
//!   it is set the server replaces `ack_wait` with `backoff[0]` and redelivers messages that
//!   are still in a batch; moderators choose their own delay with `nak(delay)` instead.
//!   `max_deliver` 5 bounds a poison message's attempts, after which the worker dead-letters
//!   it. `max_ack_pending` 1024 bounds what all moderators together hold un-acked; each
//!   process's local in-flight bound must not exceed it.
//! * Key-value bucket `offpath-policies` (stream `KV_offpath-policies`): the fleet's policy
//!   file under key `policies`, written by `offpath policy push` and watched by every
//!   moderator; 5 revisions kept for a look back, values up to 1 MiB (a policy file's bound).
//!   Only the topology user creates it (`offpath topology`, `offpath up`, and `offpath
//!   policy push` when it is missing): no service may.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{self, AckPolicy, DeliverPolicy},
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};

use crate::subject::{
    AUDIT_PREFIX, AUDIT_STREAM, DLQ_PREFIX, DLQ_STREAM, INTERACTIVE_LANE, INTERACTIVE_STREAM,
    MODERATION_STREAM, MODERATOR_CONSUMER, POLICY_BUCKET, POLICY_KEY, REQUEST_PREFIX,
    REVIEW_PREFIX, REVIEW_STREAM, VERDICT_PREFIX, VERDICTS_STREAM,
};

mod drift;

pub use drift::{DRIFT_SETTINGS, Drift};
use drift::{consumer_drift, stream_drift};

// Kept reachable here too: the check belongs with putting the topology in place.
pub use crate::server::{MIN_NATS_SERVER, ServerVersionError, check_server_version};

const GIB: i64 = 1024 * 1024 * 1024;
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long and how much one stream keeps. One per stream, so a setting that bounds
/// "every stream" (`--stream-max-bytes`) cannot miss one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Age at which a message is removed.
    pub max_age: Duration,
    /// Bound on the stream, in bytes.
    pub max_bytes: i64,
}

impl Retention {
    const fn new(max_age: Duration, max_bytes: i64) -> Self {
        Self { max_age, max_bytes }
    }
}

/// offpath's streams. [`TopologyConfig::stream`] builds each one's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `MODERATION`: the bulk lane's requests (work queue).
    Moderation,
    /// `MODERATION_INTERACTIVE`: the interactive lane's requests (work queue).
    Interactive,
    /// `VERDICTS`: verdicts, for catch-up and audit.
    Verdicts,
    /// `MODERATION_DLQ`: dead letters.
    Dlq,
    /// `REVIEW`: the review queue (contract v1.1).
    Review,
    /// `AUDIT`: reviewers' decisions (contract v1.1).
    Audit,
}

impl Stream {
    /// Every stream, in the order they are put in place.
    pub const ALL: [Stream; 6] = [
        Stream::Moderation,
        Stream::Interactive,
        Stream::Verdicts,
        Stream::Dlq,
        Stream::Review,
        Stream::Audit,
    ];

    /// The stream's name, subjects and description.
    fn identity(self) -> (&'static str, String, &'static str) {
        match self {
            Stream::Moderation => (
                MODERATION_STREAM,
                format!("{REQUEST_PREFIX}.*"),
                "offpath moderation requests awaiting a verdict",
            ),
            Stream::Interactive => (
                INTERACTIVE_STREAM,
                format!("{REQUEST_PREFIX}.*.{INTERACTIVE_LANE}"),
                "offpath interactive-lane requests awaiting a verdict",
            ),
            Stream::Verdicts => (
                VERDICTS_STREAM,
                format!("{VERDICT_PREFIX}.*.*"),
                "offpath verdicts, for catch-up and audit",
            ),
            Stream::Dlq => (
                DLQ_STREAM,
                format!("{DLQ_PREFIX}.*"),
                "offpath dead letters: requests that could not be moderated",
            ),
            Stream::Review => (
                REVIEW_STREAM,
                format!("{REVIEW_PREFIX}.*"),
                "offpath review queue: messages a person should look at",
            ),
            Stream::Audit => (
                AUDIT_STREAM,
                format!("{AUDIT_PREFIX}.*"),
                "offpath audit trail: reviewers' decisions",
            ),
        }
    }

    /// Work-queue streams hold work not yet done and refuse new work when full; the others
    /// are logs that drop their oldest entries.
    fn is_work_queue(self) -> bool {
        matches!(self, Stream::Moderation | Stream::Interactive)
    }
}

/// The tunable settings of the topology; [`Default`] is the documented configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyConfig {
    /// Stream replicas (1 on one machine, 3 in a cluster).
    pub replicas: usize,
    /// Window in which a re-published `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
    /// `MODERATION`: how long an un-acked request may wait, and the backlog's bound. The
    /// interactive lane keeps as long and an eighth of the bytes.
    pub requests: Retention,
    /// Largest message `MODERATION` stores. Larger than the decoder's limit (16 KiB) on
    /// purpose: a moderately oversized request is stored and dead-lettered with reason
    /// `oversized`, so the operator sees it; only absurd payloads are refused at publish.
    pub request_max_message_bytes: i32,
    /// `VERDICTS`.
    pub verdicts: Retention,
    /// `MODERATION_DLQ`.
    pub dlq: Retention,
    /// `REVIEW`: review-queue items.
    pub review: Retention,
    /// `AUDIT`: reviewer decisions (the audit trail).
    pub audit: Retention,
    /// Time a moderator has to ack (or send `in_progress`) before redelivery.
    pub ack_wait: Duration,
    /// Deliveries before a message is given up on (and dead-lettered by the worker).
    pub max_deliver: i64,
    /// Un-acked messages all moderators together may hold.
    pub max_ack_pending: i64,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            requests: Retention::new(24 * HOUR, GIB),
            request_max_message_bytes: 64 * 1024,
            verdicts: Retention::new(DAY, GIB),
            dlq: Retention::new(14 * DAY, GIB),
            review: Retention::new(14 * DAY, GIB),
            audit: Retention::new(366 * DAY, GIB),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 1024,
        }
    }
}

impl TopologyConfig {
    /// The policy bucket's stream, as async-nats's `create_key_value` would make it (a
    /// bucket is a stream with these settings); made directly because that call first asks
    /// for the account's info in a form nats-server 2.9 does not answer.
    pub fn policy_stream(&self) -> stream::Config {
        stream::Config {
            name: format!("KV_{POLICY_BUCKET}"),
            description: Some("offpath moderation policies (offpath policy push)".into()),
            // The one key only, not `$KV.<bucket>.>`: any NATS role can have the server
            // publish anywhere through a reply subject (issue 26), and answers aimed at other
            // keys would fill the bucket (8 MiB, new values refused) where no moderator
            // sees them. Everything stored here passes the key the moderators follow, so a
            // write that is not the operator's is counted (`policy_bucket_refused_total`).
            subjects: vec![format!("$KV.{POLICY_BUCKET}.{POLICY_KEY}")],
            max_messages_per_subject: 5,
            max_bytes: 8 * 1024 * 1024,
            max_message_size: 1024 * 1024,
            storage: StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: self.replicas,
            discard: DiscardPolicy::New,
            ..Default::default()
        }
    }

    /// These settings with every stream bounded to `bytes` (`--stream-max-bytes`), the
    /// interactive lane at its share of `MODERATION`'s.
    pub fn with_stream_max_bytes(mut self, bytes: i64) -> Self {
        for retention in [
            &mut self.requests,
            &mut self.verdicts,
            &mut self.dlq,
            &mut self.review,
            &mut self.audit,
        ] {
            retention.max_bytes = bytes;
        }
        self
    }

    /// How long and how much `stream` keeps.
    pub fn retention(&self, stream: Stream) -> Retention {
        match stream {
            Stream::Moderation => self.requests,
            // A lane for messages someone waits for is low in volume; its backlog is what
            // lanes exist to keep short.
            Stream::Interactive => Retention {
                max_bytes: (self.requests.max_bytes / 8).max(1024 * 1024),
                ..self.requests
            },
            Stream::Verdicts => self.verdicts,
            Stream::Dlq => self.dlq,
            Stream::Review => self.review,
            Stream::Audit => self.audit,
        }
    }

    /// The settings of `stream`: work queues (`MODERATION`, the interactive lane) refuse
    /// new requests when full and take no oversized payloads; logs (the others) drop their
    /// oldest entries.
    pub fn stream(&self, stream: Stream) -> stream::Config {
        let (name, subjects, description) = stream.identity();
        let Retention { max_age, max_bytes } = self.retention(stream);
        let (retention, discard, max_message_size) = if stream.is_work_queue() {
            let size = self.request_max_message_bytes;
            (RetentionPolicy::WorkQueue, DiscardPolicy::New, size)
        } else {
            // 0: no limit of its own (the server's), as async-nats sends a default.
            (RetentionPolicy::Limits, DiscardPolicy::Old, 0)
        };
        stream::Config {
            name: name.into(),
            description: Some(description.into()),
            subjects: vec![subjects],
            retention,
            discard,
            max_bytes,
            max_age,
            max_message_size,
            storage: StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }

    /// The moderators' shared durable pull consumer on `MODERATION`.
    pub fn moderator_consumer(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(MODERATOR_CONSUMER.into()),
            description: Some("offpath moderators (shared by every worker process)".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        }
    }
}

/// Why the topology could not be put in place.
#[derive(Debug, thiserror::Error)]
#[error("could not create or update JetStream {what}: {source}")]
pub struct TopologyError {
    /// The stream or consumer concerned.
    pub what: String,
    /// The server's or client's error.
    #[source]
    pub source: async_nats::Error,
}

/// Creates whatever of the streams and the moderator consumers is missing and never
/// changes what exists; returns the settings that differ from `config`. This is what the
/// services run at start-up and whenever they find part of the topology gone, so a process
/// started with default settings cannot downgrade streams an operator made with
/// `offpath topology --replicas 3`. Idempotent and safe from many processes at once.
pub async fn ensure(
    js: &jetstream::Context,
    config: &TopologyConfig,
) -> Result<Vec<Drift>, TopologyError> {
    let mut drift = Vec::new();
    for wanted in Stream::ALL.map(|stream| config.stream(stream)) {
        if let Some(existing) = create_stream_if_missing(js, &wanted).await? {
            drift.extend(stream_drift(&existing, &wanted));
        }
    }
    let wanted = config.moderator_consumer();
    for stream in [MODERATION_STREAM, INTERACTIVE_STREAM] {
        if let Some(existing) = create_consumer_if_missing(js, stream, &wanted).await? {
            drift.extend(consumer_drift(stream, &existing, &wanted));
        }
    }
    Ok(drift)
}

/// Creates the streams and the moderator consumer, or updates them to `config`:
/// `offpath topology`, the one place that changes settings of what exists.
pub async fn apply(js: &jetstream::Context, config: &TopologyConfig) -> Result<(), TopologyError> {
    for stream in Stream::ALL {
        apply_stream(js, config.stream(stream)).await?;
    }
    for name in [MODERATION_STREAM, INTERACTIVE_STREAM] {
        let what = || format!("consumer {name}/{MODERATOR_CONSUMER}");
        let stream = js.get_stream(name).await.map_err(|err| TopologyError {
            what: what(),
            source: err.into(),
        })?;
        // The create request is sent with the create-or-update action: idempotent, and an
        // existing durable is updated to the configured settings.
        stream
            .create_consumer(config.moderator_consumer())
            .await
            .map_err(|err| TopologyError {
                what: what(),
                source: err.into(),
            })?;
    }
    apply_stream(js, config.policy_stream()).await
}

/// Creates the policy bucket when it is missing; never changes one that exists. Needs the
/// topology user's rights (`offpath up` runs it so; services never do).
pub async fn ensure_policy_bucket(
    js: &jetstream::Context,
    config: &TopologyConfig,
) -> Result<(), TopologyError> {
    create_stream_if_missing(js, &config.policy_stream())
        .await
        .map(|_| ())
}

/// `None` when the stream was created now, else the existing stream's settings.
async fn create_stream_if_missing(
    js: &jetstream::Context,
    wanted: &stream::Config,
) -> Result<Option<stream::Config>, TopologyError> {
    let what = format!("stream {}", wanted.name);
    let error = |source: async_nats::Error| TopologyError {
        what: what.clone(),
        source,
    };
    for _ in 0..3 {
        match js.get_stream(&wanted.name).await {
            Ok(existing) => return Ok(Some(existing.cached_info().config.clone())),
            Err(err) if is_stream_not_found(&err) => {}
            Err(err) => return Err(error(err.into())),
        }
        match js.create_stream(wanted.clone()).await {
            Ok(_) => return Ok(None),
            // Another process created it between our look and our create: look again.
            Err(err) if is_name_in_use(&err) => continue,
            Err(err) => return Err(error(err.into())),
        }
    }
    Err(error(
        "the stream kept appearing and disappearing while it was created".into(),
    ))
}

/// `None` when the consumer was created now, else the existing consumer's settings.
async fn create_consumer_if_missing(
    js: &jetstream::Context,
    stream_name: &str,
    wanted: &consumer::pull::Config,
) -> Result<Option<consumer::pull::Config>, TopologyError> {
    let what = format!("consumer {stream_name}/{MODERATOR_CONSUMER}");
    let error = |source: async_nats::Error| TopologyError {
        what: what.clone(),
        source,
    };
    let stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| error(e.into()))?;
    match stream.consumer_info(MODERATOR_CONSUMER).await {
        Ok(info) => {
            let existing = &info.config;
            Ok(Some(consumer::pull::Config {
                ack_wait: existing.ack_wait,
                max_deliver: existing.max_deliver,
                max_ack_pending: existing.max_ack_pending,
                ..wanted.clone()
            }))
        }
        Err(err) if is_consumer_not_found(&err) => {
            // Create-or-update: two processes creating it at once with the same settings
            // both succeed.
            stream
                .create_consumer(wanted.clone())
                .await
                .map_err(|e| error(e.into()))?;
            Ok(None)
        }
        Err(err) => Err(error(err.into())),
    }
}

async fn apply_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<(), TopologyError> {
    let what = format!("stream {}", config.name);
    // `create_or_update_stream` updates, and creates on "not found". Two processes starting
    // together can both see "not found"; the slower create then fails with "name in use"
    // when configurations differ in server-side defaults: a second update settles it.
    let first = js.create_or_update_stream(config.clone()).await;
    let result = match first {
        Ok(_) => return Ok(()),
        Err(err) if is_name_in_use(&err) => js.update_stream(config).await.map(|_| ()),
        Err(err) => Err(err),
    };
    result.map_err(|err| TopologyError {
        what,
        source: err.into(),
    })
}

fn is_name_in_use(err: &jetstream::context::CreateStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::CreateStreamErrorKind::JetStream(ref e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST
    )
}

fn is_stream_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(ref e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

fn is_consumer_not_found(err: &jetstream::context::ConsumerInfoError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::ConsumerInfoErrorKind::NotFound
    ) || matches!(
        err.kind(),
        jetstream::context::ConsumerInfoErrorKind::JetStream(ref e)
            if e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
    )
}
