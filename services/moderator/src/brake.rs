//! The brake (issue 30, item 5): a bad model or rule push must not wipe a community. Per
//! tenant, this moderator counts its automatic verdicts on stream requests by minute; when
//! the share of blocks in the last two minutes jumps far above the tenant's share of the
//! hour before, within half an hour of a push (a policy or model version the tenant's
//! verdicts had not named before), blocks become flags for a person to decide
//! (`reason: "brake"`), for ten minutes after the last minute that tripped it. Without a
//! push nothing trips it: an attacker who floods a room with blockable lines must not turn
//! the blocks of what follows into flags.
//!
//! Blocks by rules that count senders or campaigns neither trip the brake nor are held by
//! it: a spam wave raises the block rate by design, and holding its blocks would show the
//! wave to everyone. Each moderator brakes on what it judges (the shared consumer spreads a
//! tenant's traffic over the fleet evenly, so shares agree).

use std::collections::HashMap;
use std::sync::Mutex;

use clap::Args;
use offpath_protocol::Action;

use crate::metrics as m;

/// Minutes of history: the last two against the 59 before.
const MINUTES: u64 = 61;
/// The least baseline share: a tenant that blocked nothing in the hour is compared with 1%.
const FLOOR_SHARE: f64 = 0.01;
/// Verdicts the hour before needs for the brake to trip: without a baseline (a new tenant,
/// a moderator's first minutes) nothing says what is normal, and nothing is held.
const MIN_BASELINE: u32 = 100;
/// Minutes the brake holds after the last minute that tripped it.
const HOLD_MINUTES: u64 = 10;
/// Tenants tracked; past it new tenants are not braked (counted).
const MAX_TENANTS: usize = 10_000;
/// Minutes after a push during which the brake may trip.
const PUSH_MINUTES: u64 = 30;
/// Versions remembered per tenant (its policies by room, and the models).
const MAX_VERSIONS: usize = 16;

/// When automatic blocks become flags.
#[derive(Debug, Clone, Args)]
pub struct BrakeConfig {
    /// Blocks become flags for a person when a tenant's share of blocked messages in the
    /// last two minutes is more than this many times its share over the hour before
    /// (at least 1% assumed; a tenant without 100 verdicts in that hour is not braked); 0
    /// turns the brake off.
    #[arg(long, env = "OFFPATH_BRAKE_FACTOR", default_value_t = 5.0)]
    pub brake_factor: f64,
    /// ... and at least this many messages were blocked in those two minutes.
    #[arg(long, env = "OFFPATH_BRAKE_MIN_BLOCKS", default_value_t = 30)]
    pub brake_min_blocks: u32,
}

impl Default for BrakeConfig {
    fn default() -> Self {
        Self {
            brake_factor: 5.0,
            brake_min_blocks: 30,
        }
    }
}

/// One minute's automatic verdicts and blocks.
#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    minute: u64,
    verdicts: u32,
    blocks: u32,
}

#[derive(Debug, Default)]
struct Tenant {
    minutes: Vec<Minute>,
    /// The brake holds until this minute (exclusive).
    until: u64,
    /// The minute of the tenant's first verdict here.
    born: u64,
    /// Policy and model versions its verdicts named, with the minute each was first seen.
    versions: Vec<(String, u64)>,
}

/// One automatic verdict as the brake counts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judged<'a> {
    pub(crate) action: Action,
    /// A block by a sender or campaign rule.
    pub(crate) exempt: bool,
    /// The policy's and the models' versions that decided it.
    pub(crate) version: &'a str,
}

/// Every tenant's recent verdicts.
pub(crate) struct Brake {
    tenants: Mutex<HashMap<String, Tenant>>,
    config: BrakeConfig,
}

impl Brake {
    pub(crate) fn new(config: BrakeConfig) -> Self {
        Self {
            tenants: Mutex::new(HashMap::new()),
            config,
        }
    }

    /// Counts an automatic verdict of `tenant` at `now_ms`; returns whether a block must be
    /// held as a flag.
    pub(crate) fn holds(&self, tenant: &str, judged: Judged<'_>, now_ms: u64) -> bool {
        let Judged {
            action,
            exempt,
            version,
        } = judged;
        if self.config.brake_factor <= 0.0 || action == Action::Unmoderated {
            return false;
        }
        let minute = now_ms / 60_000;
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if !tenants.contains_key(tenant) && tenants.len() >= MAX_TENANTS {
            metrics::counter!(m::BRAKE_UNTRACKED).increment(1);
            return false;
        }
        let state = tenants.entry(tenant.to_string()).or_insert_with(|| Tenant {
            born: minute,
            ..Tenant::default()
        });
        state.saw(version, minute);
        let block = action == Action::Block && !exempt;
        state.count(minute, block);
        if !block {
            return false;
        }
        if self.trips(state, minute) {
            if !state.engaged(minute) {
                metrics::counter!(m::BRAKE_ENGAGED).increment(1);
                tracing::warn!(
                    tenant,
                    "brake engaged: automatic blocks become flags for at \
                    least {HOLD_MINUTES} minutes (the block rate jumped above the last hour's)"
                );
            }
            state.until = minute + HOLD_MINUTES + 1;
        }
        let held = state.engaged(minute);
        if held {
            metrics::counter!(m::BRAKE_HELD).increment(1);
        }
        held
    }

    /// Whether the last two minutes' blocks of `state` trip the brake.
    fn trips(&self, state: &Tenant, minute: u64) -> bool {
        if !state.pushed(minute) {
            return false;
        }
        let (recent, before) = state.split(minute);
        if recent.blocks < self.config.brake_min_blocks || recent.verdicts == 0 {
            return false;
        }
        let share = |m: Minute| f64::from(m.blocks) / f64::from(m.verdicts.max(1));
        if before.verdicts < MIN_BASELINE {
            return false;
        }
        share(recent) > self.config.brake_factor * share(before).max(FLOOR_SHARE)
    }
}

impl Tenant {
    /// Remembers `version` (the oldest first seen goes when there are too many).
    fn saw(&mut self, version: &str, minute: u64) {
        if self.versions.iter().any(|(v, _)| v == version) {
            return;
        }
        if self.versions.len() >= MAX_VERSIONS
            && let Some(oldest) = (0..self.versions.len()).min_by_key(|&i| self.versions[i].1)
        {
            self.versions.swap_remove(oldest);
        }
        self.versions.push((version.to_string(), minute));
    }

    /// Whether a version first appeared within [`PUSH_MINUTES`], after the tenant's first
    /// minute here (what a moderator found at its start is no push).
    fn pushed(&self, minute: u64) -> bool {
        self.versions
            .iter()
            .any(|&(_, first)| first > self.born && minute.saturating_sub(first) <= PUSH_MINUTES)
    }

    fn count(&mut self, minute: u64, block: bool) {
        if self.minutes.is_empty() {
            self.minutes = vec![Minute::default(); MINUTES as usize];
        }
        let slot = &mut self.minutes[(minute % MINUTES) as usize];
        if slot.minute != minute {
            *slot = Minute {
                minute,
                ..Minute::default()
            };
        }
        slot.verdicts += 1;
        slot.blocks += u32::from(block);
    }

    fn engaged(&self, minute: u64) -> bool {
        minute < self.until
    }

    /// The sums of the last two minutes and of the 59 before them.
    fn split(&self, minute: u64) -> (Minute, Minute) {
        let (mut recent, mut before) = (Minute::default(), Minute::default());
        for slot in &self.minutes {
            let age = minute.wrapping_sub(slot.minute);
            let sum = match age {
                0 | 1 => &mut recent,
                2..MINUTES => &mut before,
                _ => continue,
            };
            sum.verdicts += slot.verdicts;
            sum.blocks += slot.blocks;
        }
        (recent, before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn run(brake: &Brake, minute: u64, verdicts: u32, blocks: u32, exempt: bool) -> u32 {
        run_at(brake, minute, (verdicts, blocks), exempt, "policy@1")
    }

    fn run_at(
        brake: &Brake,
        minute: u64,
        (verdicts, blocks): (u32, u32),
        exempt: bool,
        version: &str,
    ) -> u32 {
        let mut held = 0;
        for i in 0..verdicts {
            let action = if i < blocks {
                Action::Block
            } else {
                Action::Allow
            };
            let judged = Judged {
                action,
                exempt,
                version,
            };
            held += u32::from(brake.holds("acme", judged, minute * MIN + u64::from(i)));
        }
        held
    }

    #[test]
    fn a_jump_in_blocks_is_held_and_the_brake_lets_go_after_the_hold() {
        let brake = Brake::new(BrakeConfig::default());
        // An hour at 2% blocked: nothing held.
        for minute in 1000..1060 {
            assert_eq!(run(&brake, minute, 200, 4, false), 0, "minute {minute}");
        }
        // A flood of blockable lines without a push: nothing held (an attacker must not
        // make the next blocks flags).
        assert_eq!(run(&brake, 1060, 200, 100, false), 0);
        for minute in 1062..1122 {
            run(&brake, minute, 200, 4, false);
        }
        // A bad push: half of everything blocked under a new version. The first 30 blocks
        // pass (the bound), then blocks are held.
        let held = run_at(&brake, 1122, (200, 100), false, "policy@2");
        assert!((60..=80).contains(&held), "{held} held");
        // Back to normal: held for ten minutes after the last minute that tripped it.
        assert!(run_at(&brake, 1127, (200, 4), false, "policy@2") > 0);
        assert_eq!(run_at(&brake, 1134, (200, 4), false, "policy@2"), 0);
    }

    #[test]
    fn a_spam_wave_of_sender_rule_blocks_is_not_braked_nor_a_quiet_tenant() {
        let brake = Brake::new(BrakeConfig::default());
        for minute in 1000..1060 {
            run(&brake, minute, 200, 4, false);
        }
        assert_eq!(
            run_at(&brake, 1060, (200, 150), true, "policy@2"),
            0,
            "exempt blocks"
        );
        // A tenant with little traffic: 20 blocks of 25 stay under the bound of 30.
        let quiet = Brake::new(BrakeConfig::default());
        for minute in 1000..1060 {
            run(&quiet, minute, 5, 0, false);
        }
        assert_eq!(run_at(&quiet, 1060, (25, 20), false, "policy@2"), 0);
        // A new tenant: no hour to compare with, nothing held.
        let new = Brake::new(BrakeConfig::default());
        assert_eq!(run(&new, 5, 200, 200, false), 0);
        let off = Brake::new(BrakeConfig {
            brake_factor: 0.0,
            ..BrakeConfig::default()
        });
        assert_eq!(run(&off, 5, 200, 200, false), 0);
    }
}
