//! JetStream topology as code: the three streams and the moderators' shared durable pull
//! consumer. [`ensure`] creates what is missing and updates what differs, so every process
//! runs it at start-up; it is idempotent and safe to run from many processes at once.
//!
//! The settings, and why:
//!
//! * `MODERATION` (`offpath.req.*`): **work-queue** retention, so a request is deleted once
//!   a moderator acks it and the stream holds exactly the work not yet done. File storage:
//!   accepted requests survive a NATS restart. `discard: new` with a byte bound: when the
//!   backlog is full a publisher gets an error (the transport counts and sheds) instead of
//!   old, accepted requests disappearing silently. A 2-minute duplicate window de-duplicates
//!   a transport's re-publish of the same `Nats-Msg-Id`. Requests older than a day are of
//!   no use to a chat and age out.
//! * `VERDICTS` (`offpath.verdict.*.*`): limits retention for catch-up after a transport
//!   restart and for audit; a day of history, oldest discarded first. Verdicts are published
//!   with `Nats-Msg-Id` = the request id, so a redelivered request's second verdict is
//!   stored once.
//! * `MODERATION_DLQ` (`offpath.dlq.*`): limits retention, two weeks, for an operator to
//!   inspect and replay.
//! * Consumer `moderator`: durable, pull, explicit acks. `ack_wait` 30 s is far longer than
//!   collecting plus inferring a batch (milliseconds to a second); a moderator that keeps
//!   working on a message past it sends `in_progress`. **No server-side `backoff`**: when
//!   it is set the server replaces `ack_wait` with `backoff[0]` and redelivers messages that
//!   are still in a batch; moderators choose their own delay with `nak(delay)` instead.
//!   `max_deliver` 5 bounds a poison message's attempts, after which the worker dead-letters
//!   it. `max_ack_pending` 1024 bounds what all moderators together hold un-acked; each
//!   process's local in-flight bound must not exceed it.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{self, AckPolicy, DeliverPolicy},
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};

use crate::subject::{
    DLQ_PREFIX, DLQ_STREAM, MODERATION_STREAM, MODERATOR_CONSUMER, REQUEST_PREFIX, VERDICT_PREFIX,
    VERDICTS_STREAM,
};

const GIB: i64 = 1024 * 1024 * 1024;
const HOUR: Duration = Duration::from_secs(3600);

/// The tunable settings of the topology; [`Default`] is the documented configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyConfig {
    /// Stream replicas (1 on one machine, 3 in a cluster).
    pub replicas: usize,
    /// Window in which a re-published `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
    /// How long an un-acked request may wait in `MODERATION`.
    pub request_max_age: Duration,
    /// Bound on the `MODERATION` backlog, in bytes.
    pub request_max_bytes: i64,
    /// Largest message `MODERATION` stores. Larger than the decoder's limit (16 KiB) on
    /// purpose: a moderately oversized request is stored and dead-lettered with reason
    /// `oversized`, so the operator sees it; only absurd payloads are refused at publish.
    pub request_max_message_bytes: i32,
    /// How long verdicts are kept.
    pub verdict_max_age: Duration,
    /// Bound on `VERDICTS`, in bytes.
    pub verdict_max_bytes: i64,
    /// How long dead letters are kept.
    pub dlq_max_age: Duration,
    /// Bound on `MODERATION_DLQ`, in bytes.
    pub dlq_max_bytes: i64,
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
            request_max_age: 24 * HOUR,
            request_max_bytes: GIB,
            request_max_message_bytes: 64 * 1024,
            verdict_max_age: 24 * HOUR,
            verdict_max_bytes: GIB,
            dlq_max_age: 14 * 24 * HOUR,
            dlq_max_bytes: GIB,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 1024,
        }
    }
}

impl TopologyConfig {
    /// The `MODERATION` stream.
    pub fn moderation_stream(&self) -> stream::Config {
        stream::Config {
            name: MODERATION_STREAM.into(),
            description: Some("offpath moderation requests awaiting a verdict".into()),
            subjects: vec![format!("{REQUEST_PREFIX}.*")],
            retention: RetentionPolicy::WorkQueue,
            discard: DiscardPolicy::New,
            max_bytes: self.request_max_bytes,
            max_age: self.request_max_age,
            max_message_size: self.request_max_message_bytes,
            ..self.common()
        }
    }

    /// The `VERDICTS` stream.
    pub fn verdicts_stream(&self) -> stream::Config {
        stream::Config {
            name: VERDICTS_STREAM.into(),
            description: Some("offpath verdicts, for catch-up and audit".into()),
            subjects: vec![format!("{VERDICT_PREFIX}.*.*")],
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_bytes: self.verdict_max_bytes,
            max_age: self.verdict_max_age,
            ..self.common()
        }
    }

    /// The `MODERATION_DLQ` stream.
    pub fn dlq_stream(&self) -> stream::Config {
        stream::Config {
            name: DLQ_STREAM.into(),
            description: Some("offpath dead letters: requests that could not be moderated".into()),
            subjects: vec![format!("{DLQ_PREFIX}.*")],
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_bytes: self.dlq_max_bytes,
            max_age: self.dlq_max_age,
            ..self.common()
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

    fn common(&self) -> stream::Config {
        stream::Config {
            storage: StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
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

/// Creates or updates the three streams and the moderator consumer.
pub async fn ensure(js: &jetstream::Context, config: &TopologyConfig) -> Result<(), TopologyError> {
    for stream in [
        config.moderation_stream(),
        config.verdicts_stream(),
        config.dlq_stream(),
    ] {
        ensure_stream(js, stream).await?;
    }
    let what = || format!("consumer {MODERATION_STREAM}/{MODERATOR_CONSUMER}");
    let stream = js
        .get_stream(MODERATION_STREAM)
        .await
        .map_err(|err| TopologyError {
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
    Ok(())
}

async fn ensure_stream(
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
