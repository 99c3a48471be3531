//! The topology's settings: one [`Retention`] per [`Stream`], and [`TopologyConfig`], which
//! builds every stream's, the policy bucket's and the moderators' consumer's settings. The
//! module above puts them in place.

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{self, AckPolicy, DeliverPolicy},
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};

use crate::subject::{
    AUDIT_PREFIX, AUDIT_STREAM, DLQ_PREFIX, DLQ_STREAM, INTERACTIVE_LANE, INTERACTIVE_STREAM,
    MODERATION_STREAM, MODERATOR_CONSUMER, POLICY_BUCKET, POLICY_KEY, REQUEST_PREFIX,
    REVIEW_PREFIX, REVIEW_STREAM, SENDER_PREFIX, SENDERS_STREAM, VERDICT_PREFIX, VERDICTS_STREAM,
};

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
    /// `SENDERS`: what senders did lately, the moderators' shared sender state.
    Senders,
}

impl Stream {
    /// Every stream, in the order they are put in place.
    pub const ALL: [Stream; 7] = [
        Stream::Moderation,
        Stream::Interactive,
        Stream::Verdicts,
        Stream::Dlq,
        Stream::Review,
        Stream::Audit,
        Stream::Senders,
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
            Stream::Senders => (
                SENDERS_STREAM,
                format!("{SENDER_PREFIX}.*"),
                "offpath sender state: what senders did lately (moderators only)",
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
    /// `SENDERS`: sender events, two hours: the longest window a sender rule counts over
    /// (an hour) and a margin; a moderator that starts reads the last hour.
    pub senders: Retention,
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
            senders: Retention::new(2 * HOUR, GIB),
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
            &mut self.senders,
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
            Stream::Senders => self.senders,
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
