//! A tictac tree: the hash summary of one partition's keys, kept up to date on every write.
//!
//! After Riak 3's "tictac" AAE: each key falls in one of [`SEGMENTS`] segments by a hash of the
//! key alone; a segment's hash is the XOR of `hash(key, hash(clock))` over the keys in it; a
//! branch's hash is the XOR of its [`SEGMENTS_PER_BRANCH`] segments and the root the XOR of
//! the branches. XOR makes the tree *incremental*: replacing a key's clock XORs out the old
//! entry hash and XORs in the new one, whatever order writes complete in, so the tree never
//! needs a rescan in normal operation — only when it cannot be trusted (after an unclean stop
//! or on a wiped disk), when it is rebuilt from a scan. Two replicas whose trees agree hold the
//! same clocks (up to hash collisions); where they differ, comparing branches, then segments,
//! then the keys of the differing segments finds exactly the keys to exchange.

use crate::protocol::Clock;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Segments per partition.
pub const SEGMENTS: usize = 1024;

/// Segments per branch.
pub const SEGMENTS_PER_BRANCH: usize = 32;

/// Branches per partition.
pub const BRANCHES: usize = SEGMENTS / SEGMENTS_PER_BRANCH;

/// Seeds that keep these hashes independent of placement's (seed 0).
const SEGMENT_SEED: u64 = 0x7ac7_ac00_0000_0001;
const ENTRY_SEED: u64 = 0x7ac7_ac00_0000_0002;

/// The segment of `key`.
pub fn segment_of(key: &[u8]) -> usize {
    (xxh3_64_with_seed(key, SEGMENT_SEED) % SEGMENTS as u64) as usize
}

/// The hash of a clock's encoding.
pub fn clock_hash(clock: &Clock) -> u64 {
    xxh3_64_with_seed(&clock.encode(), ENTRY_SEED)
}

/// The contribution of `key` holding a clock of hash `clock_hash` to its segment.
pub fn entry_hash(key: &[u8], clock_hash: u64) -> u64 {
    let mut buf = Vec::with_capacity(key.len() + 8);
    buf.extend_from_slice(key);
    buf.extend_from_slice(&clock_hash.to_be_bytes());
    xxh3_64_with_seed(&buf, ENTRY_SEED)
}

/// The change one write makes to a tree: XOR `delta` into `segment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The segment.
    pub segment: usize,
    /// Old entry hash XOR new entry hash.
    pub delta: u64,
}

impl Delta {
    /// The change of `key` going from `old` to `new` (either may be absent).
    pub fn of(key: &[u8], old: Option<&Clock>, new: Option<&Clock>) -> Delta {
        let h = |c: Option<&Clock>| c.map_or(0, |c| entry_hash(key, clock_hash(c)));
        Delta {
            segment: segment_of(key),
            delta: h(old) ^ h(new),
        }
    }
}

/// One partition's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    segments: Vec<u64>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            segments: vec![0; SEGMENTS],
        }
    }
}

impl Tree {
    /// Applies one write's change.
    pub fn apply(&mut self, d: Delta) {
        if let Some(s) = self.segments.get_mut(d.segment) {
            *s ^= d.delta;
        }
    }

    /// Adds a key holding `clock` (building from a scan).
    pub fn insert(&mut self, key: &[u8], clock: &Clock) {
        self.apply(Delta::of(key, None, Some(clock)));
    }

    /// The hash of segment `s`.
    pub fn segment(&self, s: usize) -> u64 {
        self.segments.get(s).copied().unwrap_or(0)
    }

    /// The hashes of every branch.
    pub fn branches(&self) -> Vec<u64> {
        self.segments
            .chunks(SEGMENTS_PER_BRANCH)
            .map(|c| c.iter().fold(0, |a, s| a ^ s))
            .collect()
    }

    /// The root hash.
    pub fn root(&self) -> u64 {
        self.segments.iter().fold(0, |a, s| a ^ s)
    }

    /// The segments of branch `b`, with their hashes.
    pub fn branch_segments(&self, b: usize) -> Vec<(u16, u64)> {
        let start = b * SEGMENTS_PER_BRANCH;
        (start..(start + SEGMENTS_PER_BRANCH).min(SEGMENTS))
            .map(|s| (s as u16, self.segment(s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ActorId;
    use crate::value::Value;
    use bytes::Bytes;

    fn clock(v: &str, actor: u64) -> Clock {
        Clock::empty().update(
            &Default::default(),
            Value::Data(Bytes::from(v.to_string())),
            ActorId::new(actor, 0),
        )
    }

    #[test]
    fn incremental_updates_equal_a_rebuild_in_any_order() {
        let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        let v1: Vec<Clock> = (0..200).map(|i| clock(&format!("a{i}"), 1)).collect();
        let v2: Vec<Clock> = (0..200).map(|i| clock(&format!("b{i}"), 2)).collect();
        // Incremental: insert all, then replace every other key, deltas applied backwards.
        let mut inc = Tree::default();
        let mut deltas = Vec::new();
        for (k, c) in keys.iter().zip(&v1) {
            deltas.push(Delta::of(k.as_bytes(), None, Some(c)));
        }
        for i in (0..200).step_by(2) {
            deltas.push(Delta::of(keys[i].as_bytes(), Some(&v1[i]), Some(&v2[i])));
        }
        for d in deltas.into_iter().rev() {
            inc.apply(d);
        }
        let mut rebuilt = Tree::default();
        for i in 0..200 {
            let c = if i % 2 == 0 { &v2[i] } else { &v1[i] };
            rebuilt.insert(keys[i].as_bytes(), c);
        }
        assert_eq!(inc, rebuilt);
        assert_ne!(inc.root(), 0);
        // One changed key changes exactly one segment and one branch.
        let mut changed = rebuilt.clone();
        changed.apply(Delta::of(keys[1].as_bytes(), Some(&v1[1]), Some(&v2[1])));
        let diff: Vec<usize> = (0..SEGMENTS)
            .filter(|s| changed.segment(*s) != rebuilt.segment(*s))
            .collect();
        assert_eq!(diff, vec![segment_of(keys[1].as_bytes())]);
        let branch_diff = changed
            .branches()
            .iter()
            .zip(rebuilt.branches())
            .filter(|(a, b)| **a != *b)
            .count();
        assert_eq!(branch_diff, 1);
        // Removing every key empties the tree.
        for i in 0..200 {
            let c = if i % 2 == 0 { &v2[i] } else { &v1[i] };
            rebuilt.apply(Delta::of(keys[i].as_bytes(), Some(c), None));
        }
        assert_eq!(rebuilt, Tree::default());
    }
}
