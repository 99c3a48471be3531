//! The descriptions of the sender-state and campaign series (issue 30).

use metrics::Unit;

use super::*;

pub(super) const DESCRIPTIONS: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        SENDER_EVENTS,
        Kind::Counter,
        None,
        "Sender events (SENDERS), by outcome: published, failed, dropped (this moderator's); folded, seen, stale, malformed (read)",
    ),
    (
        SENDERS_TRACKED,
        Kind::Gauge,
        None,
        "Senders whose last hour this moderator keeps (sender rules)",
    ),
    (
        SENDER_EVICTIONS,
        Kind::Counter,
        None,
        "Senders evicted from a full sender book before their hour was over (--sender-capacity)",
    ),
    (
        SENDER_LAST_READ,
        Kind::Gauge,
        Some(Unit::Seconds),
        "When an event was last read from SENDERS (own echoes included), seconds since the epoch",
    ),
    (
        SENDER_STATE_CAUGHT_UP,
        Kind::Gauge,
        None,
        "1 once the last hour of SENDERS has been read after start",
    ),
    (
        BRAKE_ENGAGED,
        Kind::Counter,
        None,
        "Times a tenant's brake engaged: its block share jumped above the last hour's (--brake-factor)",
    ),
    (
        BRAKE_HELD,
        Kind::Counter,
        None,
        "Automatic blocks the brake held as flags for a person (verdict reason brake)",
    ),
    (
        BRAKE_UNTRACKED,
        Kind::Counter,
        None,
        "Verdicts of tenants past the brake's bound of 10,000 tenants (not braked)",
    ),
    (
        NEAR_DUPLICATES,
        Kind::Counter,
        None,
        "Messages with a near-duplicate from the last ten minutes of their tenant (campaign rules)",
    ),
    (
        CAMPAIGN_EVICTIONS,
        Kind::Counter,
        None,
        "Messages dropped from a full campaign index before their ten minutes were over (--campaign-capacity)",
    ),
];
