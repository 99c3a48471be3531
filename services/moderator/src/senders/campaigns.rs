//! The bounded index of recent messages' signatures by which near-duplicates across a
//! tenant's rooms are found (issue 30, item 3): every message with a signature, its own and
//! other moderators', each once (by tenant and request id, however often its event is read
//! or its request delivered), for [`CAMPAIGN_WINDOW_S`], at most a capacity (the first
//! added go first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::policies::text_rules::campaign::{CAMPAIGN_WINDOW_S, MAX_NEAR, Near, Signature};

/// One message in the index.
struct Member {
    seq: u64,
    /// The request id's hash.
    id: u64,
    at_ms: u64,
    tenant: u64,
    sender: u64,
    signature: Signature,
    /// The campaign it belongs to: the id derived from its first member.
    campaign: u64,
}

#[derive(Default)]
struct Index {
    /// In the order added.
    members: VecDeque<Member>,
    /// Band key → sequence numbers of the members with that band, in the order added (so
    /// the member dropped first is at the front of each of its buckets).
    buckets: HashMap<u64, VecDeque<u64>>,
    /// (tenant, id) → sequence number: a message is indexed once.
    ids: HashMap<(u64, u64), u64>,
    next_seq: u64,
}

/// Recent signatures, bounded.
pub(crate) struct Campaigns {
    index: Mutex<Index>,
    capacity: usize,
}

impl Campaigns {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            index: Mutex::new(Index::default()),
            capacity: capacity.max(1),
        }
    }

    /// Adds the message `id` (a hash) of `sender` in `tenant` (keys) sent at `at_ms` unless
    /// it is in already, and returns its near-duplicates (itself included) and their
    /// campaign; `now_ms` bounds the window. Returns how many members were dropped for room.
    pub(crate) fn add(
        &self,
        tenant: u64,
        sender: u64,
        id: u64,
        at_ms: u64,
        signature: Signature,
        now_ms: u64,
    ) -> (Near, usize) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = now_ms.saturating_sub(CAMPAIGN_WINDOW_S * 1000);
        let mut dropped = 0;
        while let Some(front) = index.members.front() {
            if front.at_ms > oldest && index.members.len() < self.capacity {
                break;
            }
            if front.at_ms > oldest {
                dropped += 1;
            }
            index.pop_front();
        }
        let bands = signature.bands(tenant);
        // A message indexed already (a redelivered request, an event read again): its
        // near-duplicates as they stand, nothing added.
        let known = index.ids.get(&(tenant, id)).copied();
        let mut near: Vec<&Member> = index
            .candidates(&bands)
            .filter(|m| m.tenant == tenant && m.signature.is_near(&signature))
            .filter(|m| Some(m.seq) != known)
            .collect();
        near.sort_unstable_by_key(|m| m.seq);
        let campaign = near.first().map_or(id ^ tenant, |m| m.campaign);
        let mut members: Vec<(u64, u64)> = near.iter().map(|m| (m.at_ms, m.sender)).collect();
        members.push((at_ms, sender));
        if members.len() > MAX_NEAR {
            members.drain(..members.len() - MAX_NEAR);
        }
        let near = Near {
            campaign: (members.len() > 1).then(|| format!("{campaign:016x}")),
            members,
        };
        if known.is_some() {
            return (near, dropped);
        }
        let seq = index.next_seq;
        index.next_seq += 1;
        for key in bands {
            index.buckets.entry(key).or_default().push_back(seq);
        }
        index.ids.insert((tenant, id), seq);
        index.members.push_back(Member {
            seq,
            id,
            at_ms,
            tenant,
            sender,
            signature,
            campaign,
        });
        (near, dropped)
    }

    /// Messages in the index.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .members
            .len()
    }
}

impl Index {
    /// The members sharing a band with `bands`, each once: of each band the newest
    /// [`MAX_NEAR`], so a wave's copies cost a bounded look-up each.
    fn candidates(&self, bands: &[u64]) -> impl Iterator<Item = &Member> {
        let first = self.members.front().map_or(0, |m| m.seq);
        let mut seqs: Vec<u64> = bands
            .iter()
            .filter_map(|key| self.buckets.get(key))
            .flat_map(|seqs| seqs.iter().rev().take(MAX_NEAR))
            .copied()
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs.into_iter()
            .filter_map(move |seq| self.members.get(usize::try_from(seq - first).ok()?))
    }

    fn pop_front(&mut self) {
        let Some(member) = self.members.pop_front() else {
            return;
        };
        self.ids.remove(&(member.tenant, member.id));
        for key in member.signature.bands(member.tenant) {
            if let Some(seqs) = self.buckets.get_mut(&key) {
                if seqs.front() == Some(&member.seq) {
                    seqs.pop_front();
                }
                if seqs.is_empty() {
                    self.buckets.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(text: &str) -> Signature {
        Signature::of(text).expect("long enough")
    }

    #[test]
    fn near_copies_form_one_campaign_per_tenant() {
        let campaigns = Campaigns::new(100);
        let now = 1_000_000;
        // Message `id` of `sender` in `tenant`, sent `id` ms after `now`.
        let add = |tenant, sender, id: u64, text| {
            campaigns
                .add(tenant, sender, id, now + id, signature(text), now)
                .0
        };
        let first = add(1, 10, 100, "buy cheap followers at best-followers.example");
        assert_eq!(first.members.len(), 1);
        assert!(first.campaign.is_none(), "one message is no campaign");
        let second = add(
            1,
            11,
            101,
            "BUY cheap f0llowers at best-followers.example!!",
        );
        let third = add(
            1,
            12,
            102,
            "buy cheap followers at best-followers.example 4u",
        );
        assert_eq!(third.members.len(), 3);
        assert_eq!(second.campaign, third.campaign);
        let other_tenant = add(2, 13, 103, "buy cheap followers at best-followers.example");
        assert_eq!(
            other_tenant.members.len(),
            1,
            "another tenant's copies do not count"
        );
        let again = add(
            1,
            12,
            102,
            "buy cheap followers at best-followers.example 4u",
        );
        assert_eq!(
            again.members.len(),
            3,
            "a message read again is not a fourth copy"
        );
        assert_eq!(again.campaign, third.campaign);
        let unrelated = add(
            1,
            14,
            104,
            "anyone want to play ranked after dinner tonight",
        );
        assert_eq!(unrelated.members.len(), 1);
    }

    #[test]
    fn the_index_stays_bounded_and_forgets_the_window() {
        let campaigns = Campaigns::new(50);
        let now = 10_000_000;
        let mut dropped = 0;
        for i in 0..200u64 {
            let text = format!("message number {i} with enough letters to have a signature");
            dropped += campaigns.add(1, i, i, now, signature(&text), now).1;
        }
        assert_eq!(campaigns.len(), 50);
        assert_eq!(dropped, 150);
        let later = now + CAMPAIGN_WINDOW_S * 1000 + 1;
        campaigns.add(
            1,
            0,
            999,
            later,
            signature("a new message after the whole window went by"),
            later,
        );
        assert_eq!(campaigns.len(), 1, "the window's messages went");
        let index = campaigns.index.lock().expect("index");
        let keys: usize = index.buckets.values().map(VecDeque::len).sum();
        assert_eq!(keys, 8, "buckets forget evicted members");
    }
}
