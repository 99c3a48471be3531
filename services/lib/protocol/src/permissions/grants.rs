//! What each role may publish and subscribe to: [`Role::permissions`], built from the
//! subject constants of [`crate::subject`], and the subject lists it is made of.

use super::{Role, transport_consumer, transport_filter};
use crate::subject::{
    AUDIT_PREFIX, AUDIT_STREAM, CLASSIFY_SUBJECT, DLQ_PREFIX, DLQ_STREAM, INTERACTIVE_LANE,
    INTERACTIVE_STREAM, MODERATION_STREAM, MODERATOR_CONSUMER, POLICY_BUCKET, POLICY_KEY,
    REQUEST_PREFIX, REVIEW_PREFIX, REVIEW_STREAM, SENDER_PREFIX, SENDERS_STREAM, VERDICT_PREFIX,
    VERDICTS_STREAM,
};

/// The subjects one role may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to (everything else is refused).
    pub publish: Vec<String>,
    /// Subjects it may subscribe to (everything else is refused).
    pub subscribe: Vec<String>,
    /// Whether it may publish once to the reply subject of each message it receives.
    pub allow_responses: bool,
}

impl Role {
    /// What this role may publish and subscribe to.
    pub fn permissions(&self) -> Permissions {
        let inbox = format!("{}.>", self.inbox_prefix());
        match self {
            Role::Transport { tenant, instance } => Permissions {
                publish: transport_publish(tenant, instance.as_deref()),
                subscribe: vec![inbox],
                allow_responses: false,
            },
            Role::Moderator => {
                let mut publish = vec![
                    format!("{VERDICT_PREFIX}.>"),
                    format!("{DLQ_PREFIX}.>"),
                    format!("{REVIEW_PREFIX}.>"),
                    format!("{SENDER_PREFIX}.>"),
                ];
                publish.extend(topology_lookups());
                publish.extend(ordered_reads(SENDERS_STREAM));
                for stream in [MODERATION_STREAM, INTERACTIVE_STREAM] {
                    publish.extend([
                        format!("{API}.CONSUMER.MSG.NEXT.{stream}.{MODERATOR_CONSUMER}"),
                        format!("$JS.ACK.{stream}.{MODERATOR_CONSUMER}.>"),
                    ]);
                }
                publish.extend(policy_reads());
                Permissions {
                    publish,
                    subscribe: vec![
                        inbox,
                        CLASSIFY_SUBJECT.into(),
                        "$SRV.>".into(),
                        policy_key_subject(),
                    ],
                    allow_responses: true,
                }
            }
            Role::Topology => Permissions {
                // The JetStream API, and writing the policy bucket (`offpath policy push`).
                publish: vec![format!("{API}.>"), format!("$KV.{POLICY_BUCKET}.>")],
                subscribe: vec![inbox],
                allow_responses: false,
            },
            // Verdicts as they are published: a sender's recent blocks beside their items.
            Role::Reviewer => Permissions {
                publish: reviewer_publish(),
                subscribe: vec![inbox, format!("{VERDICT_PREFIX}.>")],
                allow_responses: false,
            },
            // `offpath.classify` only, answered on its own inbox. Not the tenant's request
            // and verdict subjects: they are the chat gateway's, which trusts what arrives
            // there (a review found that with them an integration could have real chat
            // messages retracted by publishing requests with their ids, forge "verified"
            // reports in a user's name, read every chat message's verdict with reviewers'
            // notes, and have the server publish its acknowledgements anywhere). A classify
            // verdict goes to the caller alone: nothing is stored, queued or published.
            Role::Integration { tenant: _ } => Permissions {
                publish: vec![CLASSIFY_SUBJECT.into()],
                subscribe: vec![inbox],
                allow_responses: false,
            },
        }
    }
}

/// The JetStream API's subject prefix.
const API: &str = "$JS.API";

/// What a service looks up to see whether the topology is in place ([`crate::topology::ensure`]):
/// the seven streams' info and the moderators' consumers' info.
fn topology_lookups() -> Vec<String> {
    let streams = [
        MODERATION_STREAM,
        INTERACTIVE_STREAM,
        VERDICTS_STREAM,
        DLQ_STREAM,
        REVIEW_STREAM,
        AUDIT_STREAM,
        SENDERS_STREAM,
    ];
    let mut subjects: Vec<String> = streams
        .iter()
        .map(|s| format!("{API}.STREAM.INFO.{s}"))
        .collect();
    for stream in [MODERATION_STREAM, INTERACTIVE_STREAM] {
        subjects.push(format!("{API}.CONSUMER.INFO.{stream}.{MODERATOR_CONSUMER}"));
    }
    subjects
}

/// What following the policy bucket takes (a moderator reads it, never writes it): the
/// bucket stream's info and direct gets (the key's last value, and each stored value by
/// sequence: start-up looks for the newest validly signed one), published; the key's
/// subject, subscribed. No consumer: creating one would let the creator name any delivery
/// subject, which nats-server does not check against its publish permissions.
fn policy_reads() -> Vec<String> {
    let stream = format!("KV_{POLICY_BUCKET}");
    vec![
        format!("{API}.STREAM.INFO.{stream}"),
        format!("{API}.DIRECT.GET.{stream}"),
        format!("{API}.DIRECT.GET.{stream}.{}", policy_key_subject()),
    ]
}

/// What the review console publishes: human verdicts (any tenant's, as moderators do) and
/// audit entries; and reading `REVIEW` and `AUDIT` with ordered consumers of its own (pull
/// consumers answer on the caller's inbox; their names are chosen at random).
fn reviewer_publish() -> Vec<String> {
    let mut publish = vec![format!("{VERDICT_PREFIX}.>"), format!("{AUDIT_PREFIX}.>")];
    for stream in [REVIEW_STREAM, AUDIT_STREAM] {
        publish.push(format!("{API}.STREAM.INFO.{stream}"));
        publish.extend(ordered_reads(stream));
        publish.push(format!("{API}.CONSUMER.DELETE.{stream}.*"));
    }
    publish
}

/// Reading `stream` with ordered consumers of one's own (pull consumers answer on the
/// caller's inbox; their names are chosen at random): the review console's `REVIEW` and
/// `AUDIT`, the moderators' `SENDERS`. No delete: an ordered consumer is ephemeral and goes
/// when idle (async-nats's attempt to delete one it replaces may fail harmlessly); the
/// console may delete its own. Stream info is granted beside (moderators have it already).
fn ordered_reads(stream: &str) -> [String; 4] {
    [
        format!("{API}.CONSUMER.CREATE.{stream}"),
        format!("{API}.CONSUMER.CREATE.{stream}.>"),
        format!("{API}.CONSUMER.INFO.{stream}.*"),
        format!("{API}.CONSUMER.MSG.NEXT.{stream}.*"),
    ]
}

/// The subject of the policy file in its bucket: `$KV.offpath-policies.policies`.
fn policy_key_subject() -> String {
    format!("$KV.{POLICY_BUCKET}.{POLICY_KEY}")
}

/// A transport's publish permissions: its tenant's requests, the topology look-ups, and its
/// verdict consumer (any name, or exactly its own when pinned), created only with its
/// tenant's filter in the subject.
fn transport_publish(tenant: &str, instance: Option<&str>) -> Vec<String> {
    let consumer = instance.map_or_else(|| "*".to_string(), |i| transport_consumer(tenant, i));
    // Not `offpath.classify`: its reply subject is the caller's to choose, and a moderator
    // answering it publishes with the moderator's rights (verdict and dead-letter subjects
    // included). The inline mode it serves is a benchmark's, run without authorization.
    let mut publish = vec![
        format!("{REQUEST_PREFIX}.{tenant}"),
        format!("{REQUEST_PREFIX}.{tenant}.{INTERACTIVE_LANE}"),
    ];
    publish.extend(topology_lookups());
    publish.extend([
        format!("{API}.CONSUMER.INFO.{VERDICTS_STREAM}.{consumer}"),
        format!(
            "{API}.CONSUMER.CREATE.{VERDICTS_STREAM}.{consumer}.{}",
            transport_filter(tenant)
        ),
        format!("{API}.CONSUMER.MSG.NEXT.{VERDICTS_STREAM}.{consumer}"),
        format!("$JS.ACK.{VERDICTS_STREAM}.{consumer}.>"),
    ]);
    publish
}
