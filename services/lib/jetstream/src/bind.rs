//! Binding: looking the stream and the consumer up (within [`LOOKUP_TIMEOUT`]), putting back
//! what is missing of the topology, and starting a continuous pull with idle heartbeats.
//! [`Unbound`] is every reason a consumer is not bound, for a failed bind and a lost
//! consumer alike.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer, pull};
use async_nats::jetstream::context::{
    ConsumerInfoError, ConsumerInfoErrorKind, GetStreamErrorKind,
};
use async_nats::jetstream::{self, ErrorCode};
use offpath_protocol::topology::{self, TopologyError};
use tracing::{info, warn};

use crate::{Hooks, Settings, Target};

/// How long a lookup of the consumer may take: while a cluster elects a new leader, API
/// requests go unanswered until the context's timeout (10 s); trying again sooner finds it.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the consumer is not bound: a bind that failed, or a bound consumer that was lost.
#[derive(Debug, thiserror::Error)]
pub enum Unbound {
    /// The stream or the consumer does not exist (it is created when this is a bind's
    /// first lookup).
    #[error("{what}: {source}")]
    Missing {
        /// `stream X` or `consumer X/y`.
        what: String,
        /// The server's answer.
        source: async_nats::Error,
    },
    /// Looking up failed otherwise (a node failing over, say): creating the topology then
    /// would only wait for more timeouts, so the bind is tried again later.
    #[error("{what}: {source}")]
    Lookup {
        /// `stream X` or `consumer X/y`.
        what: String,
        /// The server's or the client's error.
        source: async_nats::Error,
    },
    /// The lookup had no answer within [`LOOKUP_TIMEOUT`].
    #[error("looking up the consumer: no answer within {0:?}")]
    LookupTimeout(Duration),
    /// What was missing could not be created.
    #[error("{missing}; re-creating the topology: {source}")]
    Topology {
        /// What the lookup found missing.
        missing: String,
        /// Why it could not be created.
        source: TopologyError,
    },
    /// The pull could not be started.
    #[error("starting the pull: {0}")]
    Pull(#[source] consumer::StreamError),
    /// The server ended the pull for good (consumer deleted, pulls refused, no leader for
    /// longer than the grace).
    #[error("{0}")]
    Refused(#[source] pull::MessagesError),
    /// The pull's stream of messages ended.
    #[error("the pull ended")]
    Ended,
}

/// A bound consumer and its first pull.
pub(crate) struct Bound {
    pub(crate) consumer: PullConsumer,
    pub(crate) pull: pull::Stream,
}

/// Looks the consumer up, creating whatever of the topology is missing when it is not
/// there, and starts a continuous pull.
pub(crate) async fn bind(
    js: &jetstream::Context,
    target: &Target,
    settings: &Settings,
    hooks: &mut impl Hooks,
) -> Result<Bound, Unbound> {
    let consumer = match lookup(js, target, hooks.create_config()).await {
        Ok(consumer) => consumer,
        Err(missing @ Unbound::Missing { .. }) => {
            let missing = missing.to_string();
            info!(
                stream = target.stream,
                consumer = target.consumer,
                "{missing}; creating what is missing of the topology"
            );
            let drift = topology::ensure(js, &target.topology)
                .await
                .map_err(|source| Unbound::Topology { missing, source })?;
            for drift in &drift {
                warn!("topology drift: {drift}");
                hooks.drift(drift);
            }
            lookup(js, target, hooks.create_config()).await?
        }
        Err(other) => return Err(other),
    };
    let pull = start_pull(&consumer, settings).await?;
    Ok(Bound { consumer, pull })
}

/// A continuous pull on `consumer` with idle heartbeats.
pub(crate) async fn start_pull(
    consumer: &PullConsumer,
    settings: &Settings,
) -> Result<pull::Stream, Unbound> {
    let mut builder = consumer
        .stream()
        .expires(settings.expires)
        .heartbeat(settings.heartbeat);
    if let Some(batch) = settings.batch {
        builder = builder.max_messages_per_batch(batch.max(1));
    }
    builder.messages().await.map_err(Unbound::Pull)
}

/// The consumer, if it can be looked up within [`LOOKUP_TIMEOUT`]: with `create`, created
/// when the stream has no such consumer; without, [`Unbound::Missing`] then.
pub(crate) async fn lookup(
    js: &jetstream::Context,
    target: &Target,
    create: Option<pull::Config>,
) -> Result<PullConsumer, Unbound> {
    tokio::time::timeout(LOOKUP_TIMEOUT, lookup_unbounded(js, target, create))
        .await
        .unwrap_or(Err(Unbound::LookupTimeout(LOOKUP_TIMEOUT)))
}

async fn lookup_unbounded(
    js: &jetstream::Context,
    target: &Target,
    create: Option<pull::Config>,
) -> Result<PullConsumer, Unbound> {
    let stream = js.get_stream(&target.stream).await.map_err(|e| {
        let what = format!("stream {}", target.stream);
        let missing = matches!(e.kind(), GetStreamErrorKind::JetStream(j)
            if j.error_code() == ErrorCode::STREAM_NOT_FOUND);
        let source = e.into();
        if missing {
            Unbound::Missing { what, source }
        } else {
            Unbound::Lookup { what, source }
        }
    })?;
    let what = format!("consumer {}/{}", target.stream, target.consumer);
    let Some(config) = create else {
        return stream
            .get_consumer(&target.consumer)
            .await
            .map_err(|source| {
                if is_missing(&source) {
                    Unbound::Missing { what, source }
                } else {
                    Unbound::Lookup { what, source }
                }
            });
    };
    stream
        .get_or_create_consumer(&target.consumer, config)
        .await
        .map_err(|e| Unbound::Lookup {
            what,
            source: e.into(),
        })
}

/// Whether a consumer lookup's error says the consumer (or its stream) does not exist.
fn is_missing(error: &async_nats::Error) -> bool {
    match error.downcast_ref::<ConsumerInfoError>().map(|e| e.kind()) {
        Some(ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound) => true,
        Some(ConsumerInfoErrorKind::JetStream(j)) => {
            j.error_code() == ErrorCode::CONSUMER_NOT_FOUND
        }
        _ => false,
    }
}
