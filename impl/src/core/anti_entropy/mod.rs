//! Anti-entropy (Dynamo §4.7): replicas of a partition compare hash trees and exchange only the
//! keys that differ, so they converge without any client reading the keys.
//!
//! Each node keeps a [`tree::Tree`] per partition it replicates, updated on every durable
//! write (a write's change is computed when it is handed to the shell and applied when it is
//! reported durable), and rebuilt from a scan of the partition when the node starts. Every
//! [`CoreConfig::aae_interval`](super::CoreConfig) the node starts one *exchange* with one
//! replica of one partition, round-robin over its partitions and their healthy replicas, or
//! confirms the exchange under way:
//!
//! 1. initiator → `AaeBranches`: its 32 branch hashes;
//! 2. responder → `AaeSegments`: its hashes of every segment in the branches that differ
//!    (none: the trees agree, the exchange is complete);
//! 3. *confirmation*: at its first round at least half an interval after that answer (and
//!    with the responder still healthy; else the exchange is given up) the initiator compares
//!    again (steps 1–2 under a new exchange id) and keeps only the segments that differed both
//!    times (none: the difference was writes still being replicated, and the exchange is
//!    complete without reading a key).
//!    Riak's tictac AAE confirms the same way: under load most differences are in flight, and
//!    listing a segment's keys scans the partition on both replicas;
//! 4. initiator → `AaeKeys`: its keys and clock hashes in the confirmed segments;
//! 5. responder: for each key whose hash differs or that only it holds, it pushes its clock
//!    (`Repair`); for each key it lacks or holds differently, it asks for the initiator's
//!    (`AaeFetch`, answered with `Repair`s). Both sides merge with `sync`, like read repair.
//!
//! At most [`MAX_KEYS_PER_EXCHANGE`] keys move per exchange and one exchange runs at a time,
//! so anti-entropy's cost is bounded whatever the divergence; the next exchanges continue
//! where the trees still differ. Only durable, visible state is compared and sent.
//!
//! Anti-entropy also completes deletes that a replica missed: every key this node holds as
//! tombstones only is a *reap candidate*; a few per round are re-read from all `N` primaries,
//! and reaped once all of them hold exactly the same tombstones (see [`super::reap`]).

pub mod tree;

use super::local_store::Holds;
use super::{Env, Store, Time};
use crate::ids::NodeId;
use crate::protocol::PeerMessage;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tree::{Delta, Tree, BRANCHES};

/// Most keys an exchange repairs.
pub const MAX_KEYS_PER_EXCHANGE: usize = 1000;

/// How long an exchange may wait for an answer before another starts.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reap candidates checked per round.
const REAP_CHECKS_PER_ROUND: usize = 16;

/// The exchange this node started and waits on.
#[derive(Clone, Debug)]
struct Exchange {
    /// The id of the comparison under way (the confirmation gets a new one, so that a late or
    /// duplicated answer to the first cannot pass for it).
    id: u64,
    partition: u32,
    peer: NodeId,
    started: Time,
    stage: Stage,
}

/// Where an exchange stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    /// The first comparison: waiting for the responder's segments.
    First,
    /// These segments differed at the first comparison, answered at this time; the first
    /// round at least half an interval later compares again.
    Differed(BTreeSet<u16>, Time),
    /// The second comparison: waiting for the responder's segments again.
    Confirming(BTreeSet<u16>),
}

/// What a round does with the exchange under way.
enum Next {
    /// Leave it be: its answer or its confirmation is not due yet.
    Wait,
    /// Compare the partition's trees again (step 3).
    Confirm,
    /// Drop it (timed out, or its peer is no longer healthy) and start another.
    GiveUp,
}

/// Counters of anti-entropy's work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AaeStats {
    /// Exchanges started by this node.
    pub exchanges: u64,
    /// Exchanges that found the trees equal, found their differences gone when compared
    /// again, or sent the keys that still differed.
    pub exchanges_completed: u64,
    /// Keys this node pushed or asked for in exchanges.
    pub keys_repaired: u64,
    /// Exchanges whose differences were gone at the confirmation (writes in flight).
    pub unconfirmed: u64,
}

/// The trees and the exchange schedule.
#[derive(Debug, Default)]
pub(crate) struct AntiEntropy {
    trees: BTreeMap<u32, Tree>,
    /// Partitions this node replicates, in the order exchanges visit them.
    partitions: Vec<u32>,
    cursor: usize,
    current: Option<Exchange>,
    next_id: u64,
    next_round: Option<Time>,
    /// When each partition last completed an exchange.
    completed: BTreeMap<u32, Time>,
    /// Keys held as tombstones only: storage keys.
    reap_candidates: BTreeSet<Vec<u8>>,
    /// Keys the start-up scan found holding a history only, for [`super::forget`].
    histories: Vec<Vec<u8>>,
    /// Where the next reap checks start, so that every candidate gets its turn.
    reap_cursor: Vec<u8>,
    stats: AaeStats,
}

impl AntiEntropy {
    /// Builds the trees of the partitions `me` replicates from a scan of the store, and the
    /// reap candidates with them.
    pub(crate) fn build<S: Store>(
        store: &S,
        partitions: Vec<u32>,
        seed: u64,
    ) -> Result<Self, super::StoreError> {
        let mut trees = BTreeMap::new();
        let mut reap_candidates = BTreeSet::new();
        let mut histories = Vec::new();
        for &p in &partitions {
            let mut tree = Tree::default();
            for (key, clock) in store.scan(p)? {
                tree.insert(&key, &clock);
                match Holds::of(Some(&clock)) {
                    Holds::Tombstones => {
                        reap_candidates.insert(super::storage_key(p, &key));
                    }
                    Holds::History => histories.push(super::storage_key(p, &key)),
                    _ => {}
                }
            }
            trees.insert(p, tree);
        }
        Ok(AntiEntropy {
            trees,
            cursor: seed as usize % partitions.len().max(1),
            partitions,
            next_id: seed << 32,
            reap_candidates,
            histories,
            ..AntiEntropy::default()
        })
    }

    /// The keys the start-up scan found holding a history only (once).
    pub(crate) fn take_histories(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.histories)
    }

    /// Counters.
    pub(crate) fn stats(&self) -> &AaeStats {
        &self.stats
    }

    /// The partitions this node replicates.
    pub(crate) fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    /// When each partition last completed an exchange.
    pub(crate) fn completed(&self) -> &BTreeMap<u32, Time> {
        &self.completed
    }

    /// The root hash of `partition`'s tree, if this node replicates it.
    pub(crate) fn root(&self, partition: u32) -> Option<u64> {
        self.trees.get(&partition).map(Tree::root)
    }

    /// When the next round is due.
    pub(crate) fn next_round(&self) -> Option<Time> {
        self.next_round
    }

    /// Makes sure a round is scheduled.
    pub(crate) fn schedule(&mut self, now: Time, interval: Duration) {
        if self.next_round.is_none() && !self.partitions.is_empty() && interval > Duration::ZERO {
            self.next_round = Some(now + interval);
        }
    }

    /// A durable write of `skey` changed its partition's tree; `tombstones` tells whether the
    /// key now holds tombstones only.
    pub(crate) fn written(&mut self, skey: &[u8], delta: Delta, tombstones: bool) {
        let Some(p) = partition_of(skey) else {
            return;
        };
        if let Some(tree) = self.trees.get_mut(&p) {
            tree.apply(delta);
        }
        if tombstones {
            self.reap_candidates.insert(skey.to_vec());
        } else {
            self.reap_candidates.remove(skey);
        }
    }

    /// A round: start an exchange (unless one is running), and pick reap candidates to check.
    /// Returns the keys to re-read for reaping.
    pub(crate) fn round<S: Store>(&mut self, env: &mut Env<S>, now: Time) -> Vec<Bytes> {
        if self.next_round.is_none_or(|t| t > now) {
            return Vec::new();
        }
        self.next_round = Some(now + env.config.aae_interval);
        let waiting = self.current.as_ref().map(|x| match x.stage {
            // The two comparisons at least half an interval apart however late the first
            // answer came (when it comes at once, the next round). Waiting for the
            // confirmation waits on this node, not on the peer: it does not time out.
            Stage::Differed(_, at) if now.saturating_sub(at) < env.config.aae_interval / 2 => {
                Next::Wait
            }
            Stage::Differed(..) if env.detector.healthy(x.peer) => Next::Confirm,
            // The peer is no longer healthy: give the exchange up and start another.
            Stage::Differed(..) => Next::GiveUp,
            _ if now.saturating_sub(x.started) < EXCHANGE_TIMEOUT => Next::Wait,
            _ => Next::GiveUp,
        });
        match waiting {
            Some(Next::Wait) => return self.reap_checks(),
            Some(Next::Confirm) => {
                if let Some(Exchange {
                    partition,
                    peer,
                    stage: Stage::Differed(first, _),
                    ..
                }) = self.current.take()
                {
                    self.current = self.compare(env, partition, peer).map(|id| Exchange {
                        id,
                        partition,
                        peer,
                        started: now,
                        stage: Stage::Confirming(first),
                    });
                }
                return self.reap_checks();
            }
            Some(Next::GiveUp) | None => self.current = None,
        }
        for _ in 0..self.partitions.len() {
            let Some(&partition) = self.partitions.get(self.cursor % self.partitions.len()) else {
                break;
            };
            self.cursor = self.cursor.wrapping_add(1);
            let peers: Vec<NodeId> = env
                .ring
                .preference_list(partition, env.config.n)
                .into_iter()
                .filter(|n| *n != env.id && env.detector.healthy(*n))
                .collect();
            let pick = (self.stats.exchanges as usize) % peers.len().max(1);
            let Some(&peer) = peers.get(pick) else {
                continue;
            };
            let Some(id) = self.compare(env, partition, peer) else {
                continue;
            };
            self.current = Some(Exchange {
                id,
                partition,
                peer,
                started: now,
                stage: Stage::First,
            });
            self.stats.exchanges += 1;
            break;
        }
        self.reap_checks()
    }

    /// Steps 1 (and 3): sends `peer` our branch hashes of `partition` under a new exchange id,
    /// which it returns (`None`: we hold no tree for it).
    fn compare<S: Store>(&mut self, env: &mut Env<S>, partition: u32, peer: NodeId) -> Option<u64> {
        let tree = self.trees.get(&partition)?;
        self.next_id += 1;
        let msg = PeerMessage::AaeBranches {
            exchange: self.next_id,
            partition,
            branches: tree.branches(),
        };
        env.out.send(peer, msg);
        Some(self.next_id)
    }

    fn reap_checks(&mut self) -> Vec<Bytes> {
        let picked: Vec<Vec<u8>> = self
            .reap_candidates
            .range(self.reap_cursor.clone()..)
            .chain(self.reap_candidates.iter())
            .take(REAP_CHECKS_PER_ROUND.min(self.reap_candidates.len()))
            .cloned()
            .collect();
        if let Some(last) = picked.last() {
            let mut next = last.clone();
            next.push(0);
            self.reap_cursor = next;
        }
        picked
            .into_iter()
            .map(|skey| Bytes::copy_from_slice(skey.get(2..).unwrap_or_default()))
            .collect()
    }

    /// Responder, step 2: answer with the segments of the branches that differ.
    pub(crate) fn on_branches<S: Store>(
        &mut self,
        env: &mut Env<S>,
        from: NodeId,
        exchange: u64,
        partition: u32,
        branches: &[u64],
    ) {
        let Some(tree) = self.trees.get(&partition) else {
            return;
        };
        let mine = tree.branches();
        let segments: Vec<(u16, u64)> = (0..BRANCHES)
            .filter(|b| mine.get(*b) != branches.get(*b))
            .flat_map(|b| tree.branch_segments(b))
            .collect();
        let msg = PeerMessage::AaeSegments {
            exchange,
            partition,
            segments,
        };
        env.out.send(from, msg);
    }

    /// Initiator, steps 3 and 4: after the first comparison wait for the next round; after
    /// the second, send the keys of the segments that differed both times.
    pub(crate) fn on_segments<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        from: NodeId,
        exchange: u64,
        partition: u32,
        segments: &[(u16, u64)],
    ) {
        let Some(x) = self
            .current
            .as_mut()
            .filter(|x| x.id == exchange && x.peer == from && x.partition == partition)
        else {
            return;
        };
        let Some(tree) = self.trees.get(&partition) else {
            return;
        };
        let now_differing = segments
            .iter()
            .filter(|(s, h)| tree.segment(usize::from(*s)) != *h)
            .map(|(s, _)| *s);
        let differing: BTreeSet<u16> = match &x.stage {
            Stage::First => {
                let first: BTreeSet<u16> = now_differing.collect();
                if !first.is_empty() {
                    x.stage = Stage::Differed(first, now);
                    return;
                }
                first
            }
            Stage::Confirming(first) => {
                let confirmed: BTreeSet<u16> =
                    now_differing.filter(|s| first.contains(s)).collect();
                if confirmed.is_empty() {
                    self.stats.unconfirmed += 1;
                }
                confirmed
            }
            Stage::Differed(..) => return,
        };
        if differing.is_empty() {
            self.complete(now, partition);
            return;
        }
        let keys = keys_in(env, partition, &differing);
        let msg = PeerMessage::AaeKeys {
            exchange,
            partition,
            segments: differing.into_iter().collect(),
            keys,
        };
        env.out.send(from, msg);
        // The exchange is complete on our side: the responder pushes and fetches from here.
        self.complete(now, partition);
    }

    fn complete(&mut self, now: Time, partition: u32) {
        self.current = None;
        self.completed.insert(partition, now);
        self.stats.exchanges_completed += 1;
    }

    /// Responder, step 5: push what the initiator lacks or holds differently, ask for what we
    /// lack or hold differently.
    pub(crate) fn on_keys<S: Store>(
        &mut self,
        env: &mut Env<S>,
        from: NodeId,
        partition: u32,
        segments: &[u16],
        theirs: &[(Bytes, u64)],
    ) {
        if !self.trees.contains_key(&partition) {
            return;
        }
        let differing: BTreeSet<u16> = segments.iter().copied().collect();
        let mine: BTreeMap<Bytes, u64> = keys_in(env, partition, &differing).into_iter().collect();
        let theirs: BTreeMap<&Bytes, u64> = theirs.iter().map(|(k, h)| (k, *h)).collect();
        let mut budget = MAX_KEYS_PER_EXCHANGE;
        let (mut fetch, mut lacking) = (Vec::new(), Vec::new());
        for (key, hash) in &mine {
            if budget == 0 {
                break;
            }
            let theirs = theirs.get(key);
            if theirs != Some(hash) {
                let skey = env.storage_key(key);
                if let Ok(Some(clock)) = env.store.visible(&skey) {
                    // A history without values is not pushed to a replica that holds nothing:
                    // it may have forgotten the key (see `forget`), and nothing it could hold
                    // needs the history to lose.
                    if theirs.is_none() && clock.size() == 0 {
                        continue;
                    }
                    let msg = PeerMessage::Repair {
                        key: key.clone(),
                        clock,
                    };
                    env.out.send(from, msg);
                    budget -= 1;
                }
            }
        }
        for (key, hash) in theirs {
            if budget == 0 {
                break;
            }
            match mine.get(key) {
                None => lacking.push(key.clone()),
                Some(h) if *h != hash => fetch.push(key.clone()),
                Some(_) => continue,
            }
            budget -= 1;
        }
        self.stats.keys_repaired += (MAX_KEYS_PER_EXCHANGE - budget) as u64;
        if !fetch.is_empty() || !lacking.is_empty() {
            let msg = PeerMessage::AaeFetch {
                partition,
                keys: fetch,
                lacking,
            };
            env.out.send(from, msg);
        }
    }

    /// Initiator: the responder asks for our clocks of `keys` (it holds them differently) and
    /// of `lacking` (it holds nothing of them: histories without values stay here).
    pub(crate) fn on_fetch<S: Store>(
        &mut self,
        env: &mut Env<S>,
        from: NodeId,
        keys: Vec<Bytes>,
        lacking: Vec<Bytes>,
    ) {
        let asked = keys.into_iter().map(|k| (k, false));
        let asked = asked.chain(lacking.into_iter().map(|k| (k, true)));
        for (key, lacks) in asked.take(MAX_KEYS_PER_EXCHANGE) {
            let skey = env.storage_key(&key);
            if let Ok(Some(clock)) = env.store.visible(&skey) {
                if lacks && clock.size() == 0 {
                    continue;
                }
                env.out.send(from, PeerMessage::Repair { key, clock });
                self.stats.keys_repaired += 1;
            }
        }
    }
}

/// The partition of a storage key.
fn partition_of(skey: &[u8]) -> Option<u32> {
    let b: [u8; 2] = skey.get(..2)?.try_into().ok()?;
    Some(u32::from(u16::from_be_bytes(b)))
}

/// This node's keys of `partition` in `segments`, with their clock hashes (durable state).
fn keys_in<S: Store>(env: &Env<S>, partition: u32, segments: &BTreeSet<u16>) -> Vec<(Bytes, u64)> {
    let Ok(entries) = env.store.store().scan(partition) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter(|(k, _)| segments.contains(&(tree::segment_of(k) as u16)))
        .map(|(k, c)| {
            let h = tree::clock_hash(&c);
            (k, h)
        })
        .collect()
}
