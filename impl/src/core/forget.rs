//! Forgetting a deleted key: removing the causal history that reaping leaves behind.
//!
//! Reaping ([`super::reap`]) removes a delete's tombstones but keeps the key's version vector
//! `E` (a clock with no values), because `E` is what makes any older copy of the key that is
//! still around — on a replica that missed the delete, in a hint, in a message — lose against
//! the delete. Keeping `E` for ever makes every deleted key cost a record on `N` nodes; this
//! room removes it once no older copy can exist anywhere.
//!
//! **The rule.** A node that holds `E` for a key it is the first healthy primary of runs
//! *rounds*: it asks every node of the cluster (`ForgetCheck`) for its clock of the key and
//! whether it holds a hint for it. A round *agrees* when every node answered before the
//! request timeout, every primary answered `E` or nothing (and at least one `E`), and no node
//! holds a hint or may still have a hint's message in flight. The key is forgotten after two
//! agreeing rounds with the same `E`, the second starting at least
//! [`CoreConfig::forget_after`](super::CoreConfig) after the first ended: each primary is then
//! sent `Forget`, and removes the key if its clock is still exactly `E`.
//!
//! **Why it is safe.** Forgetting is wrong only if a copy of an older version `v` (one `E`
//! covers) reaches a primary after it removed `E`: there `v` would be new again. After the
//! first round no primary holds `v` (each holds `E`, and a primary holding `E` discards `v`
//! on arrival), so a copy of `v` can only be in a hint, in a coordinator's memory, or in a
//! message. A coordinator holds what it read for at most the request timeout before it sends
//! its repairs; no message reaches a core more than the message lifetime
//! ([`CoreConfig::message_lifetime`](super::CoreConfig), enforced by the transport) after it
//! was queued; and a node answers "hinted" while it holds a hint for the key, for a message
//! lifetime after dropping one, and for a message lifetime after it starts (what it sent
//! before a crash may still be in flight). The grace is at least the request timeout plus the
//! message lifetime, so by the second round every copy of `v` outside hints is gone, and the
//! second round sees every hint. The configuration refuses a shorter grace.
//!
//! **What it costs and what it does not do.** Two rounds of one message to and from every
//! node per deleted key, a few rounds per tick. A node that is down, or a hint that waits for
//! its owner, holds forgetting up (the history stays; nothing is lost). A node restored from
//! a backup older than the grace may bring a forgotten key back, as in Cassandra after
//! `gc_grace_seconds`; restore only into a node that rejoins empty. A client holding a
//! context from before the key was forgotten gets `409` on its next write (the context names
//! versions no replica holds) and must read again.

use super::handoff::Handoff;
use super::local_store::Holds;
use super::{Env, Store, Time};
use crate::ids::NodeId;
use crate::protocol::{Clock, PeerMessage};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// How often candidates are looked at.
const TICK: Duration = Duration::from_secs(1);

/// Rounds started per tick, at most.
const ROUNDS_PER_TICK: usize = 8;

/// Rounds in flight, at most.
const MAX_ROUNDS: usize = 64;

/// A key held as history only, and when to look at it next.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Since when this node has known it as one.
    since: Time,
    /// When a round may next be started for it.
    next: Time,
}

/// A round in flight.
#[derive(Debug)]
struct Round {
    key: Bytes,
    skey: Vec<u8>,
    started: Time,
    primaries: Vec<NodeId>,
    /// Nodes that have not answered yet.
    waiting: BTreeSet<NodeId>,
    /// The primaries' answers.
    clocks: Vec<Option<Clock>>,
    /// Whether any node holds, or may have just sent, a hint for the key.
    hinted: bool,
}

/// Counters of forgetting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ForgetStats {
    /// Rounds started by this node.
    pub(crate) rounds: u64,
    /// Keys this node removed on a `Forget`.
    pub(crate) forgotten: u64,
}

/// The candidates, the first rounds that agreed, and the rounds in flight.
#[derive(Debug, Default)]
pub(crate) struct Forget {
    /// Storage keys this node holds as history only.
    candidates: BTreeMap<Vec<u8>, Candidate>,
    /// Where the next tick's look starts, so every candidate gets its turn.
    cursor: Vec<u8>,
    /// Keys whose first round agreed: the history and when that round ended.
    agreed: HashMap<Vec<u8>, (Clock, Time)>,
    rounds: HashMap<u64, Round>,
    next_round_id: u64,
    next_tick: Option<Time>,
    /// When this node (this core) started: it answers "hinted" for a message lifetime after.
    born: Option<Time>,
    stats: ForgetStats,
}

impl Forget {
    /// The room, with the keys the start-up scan found holding history only.
    pub(crate) fn new(histories: Vec<Vec<u8>>, seed: u64) -> Self {
        let candidate = Candidate {
            since: Duration::ZERO,
            next: Duration::ZERO,
        };
        Forget {
            candidates: histories.into_iter().map(|k| (k, candidate)).collect(),
            next_round_id: seed << 32,
            ..Forget::default()
        }
    }

    /// Counters.
    pub(crate) fn stats(&self) -> &ForgetStats {
        &self.stats
    }

    /// When the next tick is due.
    pub(crate) fn next_tick(&self) -> Option<Time> {
        self.next_tick
    }

    /// After any input: note the start, and keep a tick scheduled while there is work.
    pub(crate) fn schedule(&mut self, now: Time, enabled: bool) {
        self.born.get_or_insert(now);
        let work = !self.candidates.is_empty() || !self.rounds.is_empty();
        if enabled && work && self.next_tick.is_none() {
            self.next_tick = Some(now + TICK);
        }
    }

    /// A durable write left `skey` holding `holds`.
    pub(crate) fn written(&mut self, skey: &[u8], holds: Holds, now: Time) {
        if holds == Holds::History {
            self.candidates.entry(skey.to_vec()).or_insert(Candidate {
                since: now,
                next: now,
            });
        } else {
            self.candidates.remove(skey);
            self.agreed.remove(skey);
        }
    }

    /// A tick: give up on rounds past their deadline, and start rounds for candidates due.
    pub(crate) fn tick<S: Store>(&mut self, env: &mut Env<S>, handoff: &Handoff, now: Time) {
        if self.next_tick.is_none_or(|t| t > now) {
            return;
        }
        self.next_tick = None;
        let Some(grace) = env.config.forget_after else {
            return;
        };
        let timeout = env.config.request_timeout;
        let expired: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| now.saturating_sub(r.started) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(r) = self.rounds.remove(&id) {
                self.retry_later(&r.skey, now + grace);
            }
        }
        let busy: BTreeSet<Vec<u8>> = self.rounds.values().map(|r| r.skey.clone()).collect();
        let due: Vec<Vec<u8>> = self
            .candidates
            .range(self.cursor.clone()..)
            .chain(self.candidates.range(..self.cursor.clone()))
            .filter(|(k, c)| c.next <= now && !busy.contains(*k))
            .map(|(k, _)| k.clone())
            .take(ROUNDS_PER_TICK)
            .collect();
        if let Some(last) = due.last() {
            let mut next = last.clone();
            next.push(0);
            self.cursor = next;
        }
        for skey in due {
            if self.rounds.len() >= MAX_ROUNDS {
                break;
            }
            let Some(c) = self.candidates.get(&skey).copied() else {
                continue;
            };
            if let Some((_, ended)) = self.agreed.get(&skey) {
                if now < *ended + grace {
                    continue;
                }
            }
            let key = Bytes::copy_from_slice(skey.get(2..).unwrap_or_default());
            let primaries = env.preference_list(&key);
            // One coordinator per key: its first healthy primary. A candidate left behind
            // (that primary already forgot, and this one's clock differed) is taken up by any
            // holder after three graces.
            let first = primaries
                .iter()
                .copied()
                .find(|p| *p == env.id || env.detector.healthy(*p));
            if first != Some(env.id) && now.saturating_sub(c.since) < grace * 3 {
                self.retry_later(&skey, now + grace);
                continue;
            }
            self.start_round(env, handoff, now, key, skey, primaries);
        }
        self.schedule(now, true);
    }

    fn retry_later(&mut self, skey: &[u8], at: Time) {
        if let Some(c) = self.candidates.get_mut(skey) {
            c.next = at;
        }
    }

    fn start_round<S: Store>(
        &mut self,
        env: &mut Env<S>,
        handoff: &Handoff,
        now: Time,
        key: Bytes,
        skey: Vec<u8>,
        primaries: Vec<NodeId>,
    ) {
        self.next_round_id += 1;
        let id = self.next_round_id;
        self.stats.rounds += 1;
        let others: BTreeSet<NodeId> = env
            .ring
            .nodes()
            .iter()
            .map(|n| n.id)
            .filter(|n| *n != env.id)
            .collect();
        for node in &others {
            let msg = PeerMessage::ForgetCheck {
                round: id,
                key: key.clone(),
            };
            env.out.send(*node, msg);
        }
        self.rounds.insert(
            id,
            Round {
                key: key.clone(),
                skey,
                started: now,
                clocks: Vec::new(),
                primaries,
                waiting: others,
                hinted: false,
            },
        );
        let (clock, hinted) = self.holding(env, handoff, now, &key);
        let me = env.id;
        self.on_reply(env, now, me, id, &key, clock, hinted);
    }

    /// What this node holds of `key`: its clock, and whether it holds or may have just sent a
    /// hint for it.
    fn holding<S: Store>(
        &self,
        env: &mut Env<S>,
        handoff: &Handoff,
        now: Time,
        key: &[u8],
    ) -> (Option<Clock>, bool) {
        let skey = env.storage_key(key);
        let (clock, unreadable) = match env.store.load(&skey) {
            Ok(c) => (c, false),
            Err(_) => (None, true),
        };
        let lifetime = env.config.message_lifetime;
        let young = self.born.is_none_or(|b| now < b + lifetime);
        let hinted = unreadable
            || young
            || !matches!(env.store.hints_for(&skey), Ok(None))
            || handoff.dropped_within(&skey, now, lifetime);
        (clock, hinted)
    }

    /// A node asks what this one holds of `key`.
    pub(crate) fn on_check<S: Store>(
        &self,
        env: &mut Env<S>,
        handoff: &Handoff,
        now: Time,
        from: NodeId,
        round: u64,
        key: Bytes,
    ) {
        let (clock, hinted) = self.holding(env, handoff, now, &key);
        let msg = PeerMessage::ForgetCheckReply {
            round,
            key,
            clock,
            hinted,
        };
        env.out.send(from, msg);
    }

    /// An answer to one of this node's rounds (or this node's own).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_reply<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        from: NodeId,
        round: u64,
        key: &[u8],
        clock: Option<Clock>,
        hinted: bool,
    ) {
        let Some(r) = self.rounds.get_mut(&round) else {
            return;
        };
        if r.key != key || (from != env.id && !r.waiting.remove(&from)) {
            return;
        }
        if r.primaries.contains(&from) {
            r.clocks.push(clock);
        }
        r.hinted |= hinted;
        if !r.waiting.is_empty() || r.clocks.len() < r.primaries.len() {
            return;
        }
        if let Some(r) = self.rounds.remove(&round) {
            self.conclude(env, now, r);
        }
    }

    /// Every node answered: decide.
    fn conclude<S: Store>(&mut self, env: &mut Env<S>, now: Time, r: Round) {
        let Some(grace) = env.config.forget_after else {
            return;
        };
        let held: Vec<&Clock> = r.clocks.iter().flatten().collect();
        let history = held.first().copied().cloned();
        let same = held.iter().all(|c| Some(*c) == history.as_ref());
        let agrees = match &history {
            Some(e) => e.size() == 0 && same && !r.hinted,
            None => false,
        };
        let (Some(e), true) = (history, agrees) else {
            if !same {
                self.agreed.remove(&r.skey);
            }
            self.retry_later(&r.skey, now + grace);
            return;
        };
        match self.agreed.get(&r.skey) {
            Some((first, ended)) if *first == e && r.started >= *ended + grace => {
                self.agreed.remove(&r.skey);
                for node in &r.primaries {
                    if *node == env.id {
                        on_forget(env, &mut self.stats, r.key.clone(), e.clone());
                    } else {
                        let msg = PeerMessage::Forget {
                            key: r.key.clone(),
                            clock: e.clone(),
                        };
                        env.out.send(*node, msg);
                    }
                }
                // Look again later: a primary whose clock moved on keeps its history.
                self.retry_later(&r.skey, now + grace);
            }
            _ => {
                self.agreed.insert(r.skey.clone(), (e, now));
                self.retry_later(&r.skey, now + grace);
            }
        }
    }

    /// A coordinator's `Forget`: remove the key if its clock is still exactly `clock`.
    pub(crate) fn on_forget_message<S: Store>(
        &mut self,
        env: &mut Env<S>,
        key: Bytes,
        clock: Clock,
    ) {
        on_forget(env, &mut self.stats, key, clock);
    }
}

/// Removes `key` if its clock here is still exactly the history `clock`.
fn on_forget<S: Store>(env: &mut Env<S>, stats: &mut ForgetStats, key: Bytes, clock: Clock) {
    if clock.size() != 0 {
        return;
    }
    let skey = env.storage_key(&key);
    if let Ok(Some(local)) = env.store.load(&skey) {
        if local == clock {
            env.store.remove(env.out, skey);
            stats.forgotten += 1;
        }
    }
}
