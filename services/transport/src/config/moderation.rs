//! How rooms are moderated: the mode, the rooms' policies and failure policies, and how long a held message waits.

use super::{Moderation, ModerationRule, RoomPolicy, RoomRule, defaults};
use clap::Args;
use offpath_ops::cli::Millis;

/// How rooms are moderated: the mode, the rooms' policies and failure policies, and how long a held message waits.
#[derive(Debug, Clone, Args)]
pub struct ModerationConfig {
    /// How messages are moderated: `decoupled` (offpath: deliver now, verdicts later),
    /// `inline` (the coupled baseline of the load scenarios: each send awaits the
    /// moderator's `offpath.classify` before fan-out) or `off` (no moderation: the floor).
    #[arg(long = "moderation", env = "OFFPATH_MODERATION", value_enum, default_value_t = defaults::MODERATION)]
    pub mode: Moderation,
    /// `--moderation inline` only: how long a send waits for its verdict before it is
    /// delivered unmoderated (fail-open).
    #[arg(long = "inline-timeout-ms", env = "OFFPATH_INLINE_TIMEOUT_MS", default_value_t = Millis::new(defaults::INLINE_TIMEOUT_MS))]
    pub inline_timeout: Millis,
    /// How long a message in a `hold` room waits for its verdict before the room's failure
    /// policy decides. Only a `hold:fail_closed` room's request carries it to the moderator
    /// as `deadline_ms` (past it the message was dropped, so a verdict is of no use); every
    /// other message stays visible and is classified however late the moderator is.
    #[arg(long = "hold-deadline-ms", env = "OFFPATH_HOLD_DEADLINE_MS", default_value_t = Millis::new(defaults::HOLD_DEADLINE_MS))]
    pub hold_deadline: Millis,
    /// Policy of rooms not named in `--room-policy`.
    #[arg(
        long,
        env = "OFFPATH_DEFAULT_ROOM_POLICY",
        default_value_t = defaults::ROOM_POLICY
    )]
    pub default_room_policy: RoomPolicy,
    /// Per-room policies, `room=mode:failure`, comma-separated, e.g.
    /// `kids=hold:fail_closed,lobby=post:fail_open,dm-*=e2e`. A name ending in `*` is a
    /// prefix. Modes: `post`, `hold`, `e2e` (end-to-end encrypted: never moderated, only
    /// reported).
    #[arg(long, env = "OFFPATH_ROOM_POLICY", value_delimiter = ',')]
    pub room_policy: Vec<RoomRule>,
    /// The moderation policy each room's requests name, `room=policy`, comma-separated (a
    /// name in the moderators' policy file; a room ending in `*` is a prefix), e.g.
    /// `kids*=strict`. Rooms without a rule name none: the moderators' policy file then
    /// chooses by tenant and room.
    #[arg(long, env = "OFFPATH_MODERATION_POLICY", value_delimiter = ',')]
    pub moderation_policy: Vec<ModerationRule>,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        Self {
            mode: defaults::MODERATION,
            inline_timeout: Millis::new(defaults::INLINE_TIMEOUT_MS),
            hold_deadline: Millis::new(defaults::HOLD_DEADLINE_MS),
            default_room_policy: defaults::ROOM_POLICY,
            room_policy: Vec::new(),
            moderation_policy: Vec::new(),
        }
    }
}
