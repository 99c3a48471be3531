//! The brake (issue 30, item 5): a bad model or rule push must not wipe a community. Per
//! tenant, this moderator counts its automatic verdicts on stream requests by minute; when
//! the share of blocks in the last two minutes jumps far above the tenant's share of the
//! hour before, within half an hour of a push (this moderator put other policies or models
//! in force: a policy file reloaded, a bucket value, a model reload), blocks become flags
//! for a person to decide (`reason: "brake"`), for ten minutes after the last minute that
//! tripped it. The share of the hour before the trip stays the measure while the brake
//! holds (held blocks would raise it). Without a push nothing trips it: an attacker who
//! floods a room with blockable lines must not turn the blocks of what follows into
//! flags, and nothing a request carries is a push.
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
/// Minutes a tenant must have been judged here before it may trip (its baseline).
const MIN_AGE_MINUTES: u64 = 15;

/// `--brake-factor` and `--brake-min-blocks` unless set.
const FACTOR: f64 = 5.0;
const MIN_BLOCKS: u32 = 30;

/// When automatic blocks become flags.
#[derive(Debug, Clone, Args)]
pub struct BrakeConfig {
    /// Blocks become flags for a person when a tenant's share of blocked messages in the
    /// last two minutes is more than this many times its share over the hour before
    /// (at least 1% assumed; a tenant without 100 verdicts in that hour is not braked); 0
    /// turns the brake off.
    #[arg(long, env = "OFFPATH_BRAKE_FACTOR", default_value_t = FACTOR)]
    pub brake_factor: f64,
    /// ... and at least this many messages were blocked in those two minutes.
    #[arg(long, env = "OFFPATH_BRAKE_MIN_BLOCKS", default_value_t = MIN_BLOCKS)]
    pub brake_min_blocks: u32,
}

impl Default for BrakeConfig {
    fn default() -> Self {
        Self {
            brake_factor: FACTOR,
            brake_min_blocks: MIN_BLOCKS,
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
    /// The block share the brake compares with while it holds: the hour's before it
    /// tripped.
    frozen: f64,
}

/// One automatic verdict as the brake counts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judged {
    pub(crate) action: Action,
    /// A block by a sender or campaign rule.
    pub(crate) exempt: bool,
    /// When this moderator last put other policies or models in force (0: never since it
    /// started).
    pub(crate) pushed_ms: u64,
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
    pub(crate) fn holds(&self, tenant: &str, judged: Judged, now_ms: u64) -> bool {
        let Judged {
            action,
            exempt,
            pushed_ms,
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
        let block = action == Action::Block && !exempt;
        state.count(minute, block);
        if !block {
            return false;
        }
        let pushed = pushed_ms > 0 && minute.saturating_sub(pushed_ms / 60_000) <= PUSH_MINUTES;
        if let Some((share, baseline)) = self.trips(state, minute, pushed) {
            if !state.engaged(minute) {
                state.frozen = baseline;
                metrics::counter!(m::BRAKE_ENGAGED).increment(1);
                tracing::warn!(
                    tenant,
                    block_share = share,
                    baseline_share = baseline,
                    pushed_at_ms = pushed_ms,
                    "brake engaged: automatic blocks become flags (reason brake) for at least \
                    {HOLD_MINUTES} minutes, as long as the share stays above {} times the \
                    baseline; roll the push back, or restart with --brake-factor 0 to let \
                    blocks through",
                    self.config.brake_factor
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

    /// Whether the last two minutes' blocks of `state` trip the brake (or keep it held):
    /// their share and the baseline share, when they do. A brake not holding trips only
    /// `pushed`, on a tenant with a baseline; one holding compares with the share frozen
    /// when it tripped.
    fn trips(&self, state: &Tenant, minute: u64, pushed: bool) -> Option<(f64, f64)> {
        let (recent, before) = state.split(minute);
        if recent.blocks < self.config.brake_min_blocks {
            return None;
        }
        let share = |m: Minute| f64::from(m.blocks) / f64::from(m.verdicts.max(1));
        let baseline = if state.engaged(minute) {
            state.frozen
        } else {
            let known = minute >= state.born + MIN_AGE_MINUTES && before.verdicts >= MIN_BASELINE;
            if !pushed || !known {
                return None;
            }
            share(before).max(FLOOR_SHARE)
        };
        (share(recent) > self.config.brake_factor * baseline).then_some((share(recent), baseline))
    }
}

impl Tenant {
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
        run_at(brake, minute, (verdicts, blocks), exempt, 0)
    }

    /// `pushed`: the minute of the last push (0: none).
    fn run_at(
        brake: &Brake,
        minute: u64,
        (verdicts, blocks): (u32, u32),
        exempt: bool,
        pushed: u64,
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
                pushed_ms: pushed * MIN,
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
        // A bad push: half of everything blocked. The first 30 blocks pass (the bound),
        // then blocks are held, and go on being held while the push blocks half of
        // everything, past the half hour after it (the baseline stays the one before).
        let held = run_at(&brake, 1122, (200, 100), false, 1122);
        assert!((60..=80).contains(&held), "{held} held");
        for minute in 1123..1170 {
            assert_eq!(
                run_at(&brake, minute, (200, 100), false, 1122),
                100,
                "{minute}"
            );
        }
        // Rolled back: held for ten minutes after the last minute that tripped it.
        assert!(run_at(&brake, 1172, (200, 4), false, 1171) > 0);
        assert_eq!(run_at(&brake, 1181, (200, 4), false, 1171), 0);
    }

    #[test]
    fn a_spam_wave_of_sender_rule_blocks_is_not_braked_nor_a_quiet_tenant() {
        let brake = Brake::new(BrakeConfig::default());
        for minute in 1000..1060 {
            run(&brake, minute, 200, 4, false);
        }
        assert_eq!(
            run_at(&brake, 1060, (200, 150), true, 1059),
            0,
            "exempt blocks"
        );
        // A tenant with little traffic: 20 blocks of 25 stay under the bound of 30.
        let quiet = Brake::new(BrakeConfig::default());
        for minute in 1000..1060 {
            run(&quiet, minute, 5, 0, false);
        }
        assert_eq!(run_at(&quiet, 1060, (25, 20), false, 1059), 0);
        // A new tenant: no baseline to compare with, nothing held.
        let new = Brake::new(BrakeConfig::default());
        assert_eq!(run_at(&new, 5, (200, 200), false, 4), 0);
        let off = Brake::new(BrakeConfig {
            brake_factor: 0.0,
            ..BrakeConfig::default()
        });
        assert_eq!(run(&off, 5, 200, 200, false), 0);
    }
}
