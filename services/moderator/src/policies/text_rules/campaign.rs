//! A rule's campaign condition (issue 30, item 3): near-duplicates of a message sent lately
//! by several senders of the tenant, in any room, as every moderator counts them from the
//! shared sender state (`SENDERS`).
//!
//! ```toml
//! [policies.chat.rules.campaign]
//! campaign = { messages = 5, senders = 2, per_s = 600 }  # a 6th near-copy from a 3rd sender
//! action = "block"
//! ```
//!
//! Near-duplicates are found by MinHash ([`Signature`]) over the character 5-grams of the
//! normalised text with everything but letters and digits left out, so spacing,
//! punctuation, case, look-alike letters and leetspeak do not separate copies; a few
//! words of noise do not either (copies share at least half of their 5-grams, estimated).
//! Texts shorter than [`MIN_CHARS`] letters and digits have no signature: "hi", "lol" and
//! "good morning" are said by everyone and are never a campaign.

use serde::Deserialize;

/// MinHash values of a signature.
pub const HASHES: usize = 32;
/// Bands of the locality-sensitive index: two texts are compared when one band (four
/// consecutive values) is equal.
pub const BANDS: usize = 8;
/// Values in a band.
const ROWS: usize = HASHES / BANDS;
/// Equal values of two signatures that make them near-duplicates: half (an estimated
/// Jaccard similarity of their 5-gram sets of at least 0.5).
pub const NEAR: usize = HASHES / 2;
/// Letters and digits a text needs to have a signature.
pub const MIN_CHARS: usize = 20;
/// Letters and digits a signature reads, the first: a bound on its cost (spam is short; a
/// long text's first kilobyte tells its copies apart).
pub const MAX_CHARS: usize = 1024;
/// Characters of a shingle.
const SHINGLE: usize = 5;
/// Longest window a campaign rule counts over, in seconds: ten minutes.
pub const CAMPAIGN_WINDOW_S: u64 = 600;
/// Near-duplicates a moderator lists for one message: a rule's `messages` stays below it.
pub const MAX_NEAR: usize = 256;

/// A text's MinHash signature: for each of [`HASHES`] hash functions, the least hash of its
/// shingles. The same in every process and version (FNV-1a and fixed multipliers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u32; HASHES]);

impl Signature {
    /// The signature of `text` (best the normalised view), or none when it is too short.
    pub fn of(text: &str) -> Option<Self> {
        let chars: Vec<char> = text
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .take(MAX_CHARS)
            .collect();
        if chars.len() < MIN_CHARS {
            return None;
        }
        let mut mins = [u32::MAX; HASHES];
        for shingle in chars.windows(SHINGLE) {
            // FNV-1a over the characters themselves.
            let h = shingle.iter().fold(FNV_OFFSET, |h, &c| {
                (h ^ u64::from(c)).wrapping_mul(FNV_PRIME)
            });
            for (min, (a, b)) in mins.iter_mut().zip(PERMUTATIONS.iter()) {
                let v = (a.wrapping_mul(h).wrapping_add(*b) >> 32) as u32;
                *min = (*min).min(v);
            }
        }
        Some(Self(mins))
    }

    /// How many values two signatures share (about [`HASHES`] × their Jaccard similarity).
    pub fn shared(&self, other: &Self) -> usize {
        self.0
            .iter()
            .zip(other.0.iter())
            .filter(|(a, b)| a == b)
            .count()
    }

    /// Whether two signatures are near-duplicates ([`NEAR`]).
    pub fn is_near(&self, other: &Self) -> bool {
        self.shared(other) >= NEAR
    }

    /// The band keys of the index, each scoped to `tenant` (a tenant's copies never meet
    /// another's).
    pub fn bands(&self, tenant: u64) -> [u64; BANDS] {
        let mut keys = [0; BANDS];
        for (band, key) in keys.iter_mut().enumerate() {
            let values = &self.0[band * ROWS..(band + 1) * ROWS];
            *key = fnv([tenant, band as u64]
                .into_iter()
                .chain(values.iter().map(|&v| u64::from(v))));
        }
        keys
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a over the bytes of 64-bit words.
fn fnv(words: impl Iterator<Item = u64>) -> u64 {
    let mut h = FNV_OFFSET;
    for word in words {
        for byte in word.to_le_bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// (odd multiplier, addend) of each hash function, from SplitMix64 with a fixed seed.
const PERMUTATIONS: [(u64, u64); HASHES] = permutations();

const fn permutations() -> [(u64, u64); HASHES] {
    let mut out = [(0, 0); HASHES];
    let mut state: u64 = 0x6f66_6670_6174_6821; // "offpath!"
    let mut i = 0;
    while i < HASHES {
        let mut pair = [0u64; 2];
        let mut j = 0;
        while j < 2 {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            pair[j] = z ^ (z >> 31);
            j += 1;
        }
        out[i] = (pair[0] | 1, pair[1]);
        i += 1;
    }
    out
}

/// The near-duplicates of one message that this moderator knows of (the message itself
/// included), and the campaign they form.
#[derive(Debug, Clone, Default)]
pub struct Near {
    /// The campaign's id: 16 hex digits derived from its first member as this moderator
    /// saw it (the same on every moderator that saw the same first member).
    pub campaign: Option<String>,
    /// (sent_at_ms, sender key) of each near-duplicate in the last
    /// [`CAMPAIGN_WINDOW_S`], at most [`MAX_NEAR`] (the newest).
    pub members: Vec<(u64, u64)>,
}

/// `[…rules.<id>] campaign = {…}` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignLimits {
    /// More near-duplicates than this in the window, this message included.
    messages: usize,
    /// From more senders than this.
    #[serde(default)]
    senders: usize,
    /// The window, in seconds (1 to [`CAMPAIGN_WINDOW_S`]).
    per_s: u64,
    /// Only a message with a link (as link rules find them) matches: spam's payload, which
    /// a person repeating a meme does not carry.
    #[serde(default)]
    links: bool,
}

impl CampaignLimits {
    /// Records what is wrong with it (`key` says where in the file).
    pub(crate) fn check(&self, key: &str, problems: &mut Vec<String>) {
        if !(1..=CAMPAIGN_WINDOW_S).contains(&self.per_s) {
            problems.push(format!(
                "{key}.per_s: {} is not within 1..={CAMPAIGN_WINDOW_S}",
                self.per_s
            ));
        }
        if !(1..MAX_NEAR).contains(&self.messages) {
            problems.push(format!(
                "{key}.messages: must be 1..{MAX_NEAR} (what a moderator lists per message)"
            ));
        }
        if self.senders >= self.messages.max(1) {
            problems.push(format!(
                "{key}.senders: {} must be below messages ({})",
                self.senders, self.messages
            ));
        }
    }

    /// Whether the near-duplicates of the message sent at `at_ms` pass both bounds (and it
    /// has a link, when the rule asks; `links`: the message's).
    pub(crate) fn matches(&self, near: &Near, at_ms: u64, links: u16) -> bool {
        (!self.links || links > 0)
            && self
                .counts(near, at_ms)
                .iter()
                .all(|&(_, n, bound)| n > bound)
    }

    /// [`Self::matches`] on a sender's view.
    pub(crate) fn matches_view(&self, view: &super::sender::SenderView) -> bool {
        self.matches(&view.near, view.here.at_ms, view.here.links)
    }

    /// The near-duplicates in the window and their senders, with the bounds: (name,
    /// count, bound). A verdict's `counts` (v1.5) says them.
    pub(crate) fn counts(&self, near: &Near, at_ms: u64) -> [(&'static str, usize, usize); 2] {
        let from = at_ms.saturating_sub(self.per_s * 1000);
        let mut senders: Vec<u64> = near
            .members
            .iter()
            .filter(|(at, _)| *at > from && *at <= at_ms)
            .map(|(_, sender)| *sender)
            .collect();
        let copies = senders.len();
        senders.sort_unstable();
        senders.dedup();
        [
            ("copies", copies, self.messages),
            ("senders", senders.len(), self.senders),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_with_noise_are_near_and_other_texts_are_not() {
        let spam = Signature::of("FREE nitro giveaway!!! claim yours at gift-nitro.example now")
            .expect("long enough");
        for copy in [
            "free nitro giveaway claim yours at gift-nitro.example now",
            "FREE  N I T R O  giveaway!!! claim yours at gift-nitro.example now 🎁",
            "free nitro giveaway!!! claim yours at gift-nitro.example now xq7",
            "hey guys FREE nitro giveaway!!! claim yours at gift-nitro.example now",
        ] {
            let other = Signature::of(copy).expect("long enough");
            assert!(spam.is_near(&other), "{copy}: {}", spam.shared(&other));
            let shared_band = spam
                .bands(1)
                .iter()
                .zip(other.bands(1).iter())
                .any(|(a, b)| a == b);
            assert!(shared_band, "{copy}: no band in common");
        }
        for other in [
            "anyone up for a match of ranked tonight at nine?",
            "the giveaway last week was a scam, don't click links",
            "I finally finished the nitro-fuelled racing game",
        ] {
            let other = Signature::of(other).expect("long enough");
            assert!(!spam.is_near(&other), "{}", spam.shared(&other));
        }
        assert_ne!(spam.bands(1), spam.bands(2), "bands are per tenant");
        assert!(Signature::of("good morning everyone").is_none());
    }

    #[test]
    fn a_campaign_needs_copies_and_senders_within_the_window() {
        let limits: CampaignLimits =
            toml::from_str("messages = 2\nsenders = 1\nper_s = 60").expect("limits");
        let near = |members: Vec<(u64, u64)>| Near {
            campaign: Some("c".into()),
            members,
        };
        let now = 100_000;
        assert!(limits.matches(&near(vec![(90_000, 1), (95_000, 2), (now, 1)]), now, 0));
        assert!(
            !limits.matches(&near(vec![(90_000, 1), (95_000, 1), (now, 1)]), now, 0),
            "one sender repeating is the sender rules' business"
        );
        assert!(
            !limits.matches(&near(vec![(30_000, 2), (95_000, 2), (now, 1)]), now, 0),
            "one copy is out of the window"
        );
        let with_links: CampaignLimits =
            toml::from_str("messages = 2\nsenders = 1\nper_s = 60\nlinks = true").expect("limits");
        let three = near(vec![(90_000, 1), (95_000, 2), (now, 1)]);
        assert!(!with_links.matches(&three, now, 0), "no link");
        assert!(with_links.matches(&three, now, 1));
        let mut problems = Vec::new();
        let bad: CampaignLimits =
            toml::from_str("messages = 2\nsenders = 2\nper_s = 6000").expect("limits");
        bad.check("r", &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
