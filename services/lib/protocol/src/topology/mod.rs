//! JetStream topology as code: the seven streams, the policy bucket and the moderators' shared
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

use async_nats::jetstream::{self, consumer, stream};

use crate::subject::{INTERACTIVE_STREAM, MODERATION_STREAM, MODERATOR_CONSUMER};

mod config;
mod drift;

pub use config::{Retention, Stream, TopologyConfig};

pub use drift::{DRIFT_SETTINGS, Drift};
use drift::{consumer_drift, stream_drift};

// Kept reachable here too: the check belongs with putting the topology in place.
pub use crate::server::{MIN_NATS_SERVER, ServerVersionError, check_server_version};

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
