//! A quorum get: ask the targets (every healthy primary, and with sloppy quorum a fallback for
//! each other one, which answers with the hints it holds), answer with the merge of the first
//! `R` answers (`pr` of them from primaries), keep collecting until every target answered or
//! the deadline passed, then repair the primaries that answered with something stale.
//!
//! Each answer counts once, only from a target and only for the key asked: a duplicated or
//! stray reply cannot make `R` answers out of fewer nodes, nor a late answer about another key
//! pass for this one.

use super::targets::{self, Target};
use super::{answer, Coordinator, Kind, Request, Waiter};
use crate::core::{read_repair, Env, Store, Time};
use crate::ids::NodeId;
use crate::protocol::{ClientReply, Clock, PeerMessage, RequestId};
use bytes::Bytes;
use std::collections::BTreeMap;

/// A get collecting answers from `replicas`; `replied` once `required` answered.
#[derive(Clone, Debug)]
pub(super) struct GetState {
    key: Bytes,
    targets: Vec<Target>,
    answers: BTreeMap<NodeId, Option<Clock>>,
    required: usize,
    required_primaries: usize,
    replied: bool,
}

impl GetState {
    /// `(required, answered)` if the client has not been answered yet.
    pub(super) fn unanswered(&self) -> Option<(usize, usize)> {
        (!self.replied).then_some((self.required, self.answers.len()))
    }

    /// The targets that have not answered.
    pub(super) fn silent(&self) -> Vec<NodeId> {
        self.targets
            .iter()
            .map(|t| t.node)
            .filter(|n| !self.answers.contains_key(n))
            .collect()
    }

    fn primaries_answered(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.hint.is_none() && self.answers.contains_key(&t.node))
            .count()
    }

    /// A reaper's read completed: if every primary answered with the same tombstone-only
    /// clock, ask them to reap it.
    fn reap_if_settled<S: Store>(&self, env: &mut Env<S>) {
        let primaries: Vec<NodeId> = self.targets.iter().map(|t| t.node).collect();
        let answers: Vec<&Option<Clock>> = self.answers.values().collect();
        let Some(Some(first)) = answers.first() else {
            return;
        };
        let settled = answers.len() == primaries.len()
            && answers.iter().all(|a| a.as_ref() == Some(first))
            && crate::core::local_store::Holds::of(Some(first))
                == crate::core::local_store::Holds::Tombstones;
        if settled {
            crate::core::reap::send_reaps(env, &primaries, self.key.clone(), first.clone());
        }
    }

    /// The get is over: repair the primaries that answered with something stale (a fallback's
    /// answer is its hints, which it hands over itself).
    pub(super) fn repair<S: Store>(self, env: &mut Env<S>) {
        let primaries: Vec<NodeId> = self
            .targets
            .iter()
            .filter(|t| t.hint.is_none())
            .map(|t| t.node)
            .collect();
        read_repair::after_get(env, self.key, self.answers, &primaries);
    }
}

impl Coordinator {
    /// Asks every target for its clock of `key`; this node answers at once if it is one.
    pub(super) fn start_get<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        waiter: Waiter,
        key: Bytes,
        quorum: (usize, usize),
    ) {
        let primaries = env.preference_list(&key);
        let targets = targets::choose(env, &key, &primaries);
        self.read_targets(env, now, waiter, key, quorum, targets);
    }

    /// Sends the reads of a get to `targets`; this node answers at once if it is one.
    fn read_targets<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        waiter: Waiter,
        key: Bytes,
        quorum: (usize, usize),
        targets: Vec<Target>,
    ) {
        let me = env.id;
        let state = GetState {
            key: key.clone(),
            targets: targets.clone(),
            answers: BTreeMap::new(),
            required: quorum.0,
            required_primaries: quorum.1,
            replied: false,
        };
        let req = self.register(env, now, waiter, Kind::Get(state));
        for t in targets.iter().filter(|t| t.node != me) {
            let msg = PeerMessage::Read {
                req,
                key: key.clone(),
            };
            env.out.send(t.node, msg);
        }
        if let Some(t) = targets.iter().find(|t| t.node == me) {
            let skey = env.storage_key(&key);
            let local = match t.hint {
                None => env.store.visible(&skey),
                Some(_) => env.store.hints_for(&skey),
            };
            if let Ok(local) = local {
                self.record_answer(env, req, me, local);
            }
        }
        // Too few targets to ever reach the quorum: answer now.
        self.check_get(env, req);
    }

    /// A replica's answer to a [`PeerMessage::Read`].
    pub(crate) fn on_read_reply<S: Store>(
        &mut self,
        env: &mut Env<S>,
        from: NodeId,
        req: RequestId,
        key: &[u8],
        clock: Option<Clock>,
    ) {
        let ours = matches!(
            self.requests.get(&req).map(|r| &r.kind),
            Some(Kind::Get(g)) if g.key == key
        );
        if ours {
            env.stats.replica_responses += 1;
            self.record_answer(env, req, from, clock);
        }
    }

    fn record_answer<S: Store>(
        &mut self,
        env: &mut Env<S>,
        req: RequestId,
        from: NodeId,
        clock: Option<Clock>,
    ) {
        let Some(request) = self.requests.get_mut(&req) else {
            return;
        };
        let Kind::Get(g) = &mut request.kind else {
            return;
        };
        if !g.targets.iter().any(|t| t.node == from) || g.answers.contains_key(&from) {
            return;
        }
        g.answers.insert(from, clock);
        self.check_get(env, req);
    }

    /// Answers at `R` answers (`pr` of them from primaries), or "unavailable" once every
    /// target answered and that is too few; repairs once every target answered.
    fn check_get<S: Store>(&mut self, env: &mut Env<S>, req: RequestId) {
        let Some(request) = self.requests.get_mut(&req) else {
            return;
        };
        let Kind::Get(g) = &mut request.kind else {
            return;
        };
        let enough =
            g.answers.len() >= g.required && g.primaries_answered() >= g.required_primaries;
        let complete = g.answers.len() == g.targets.len();
        let reply = if g.replied {
            None
        } else if enough {
            Some(found(g.answers.values()))
        } else if complete {
            Some(ClientReply::Unavailable {
                required: g.required,
                answered: g.answers.len(),
            })
        } else {
            None
        };
        if reply.is_some() {
            g.replied = true;
        }
        let waiter = request.waiter.clone();
        if let Some(reply) = reply {
            answer(env, waiter, reply);
        }
        if complete {
            if let Some(Request {
                kind: Kind::Get(g),
                waiter,
                ..
            }) = self.finish(req)
            {
                if waiter == Waiter::Reaper {
                    g.reap_if_settled(env);
                }
                g.repair(env);
            }
        }
    }

    /// Reads `key` from all `N` primaries so that read repair brings this replica (and any
    /// other behind) up to date: after a write was refused for a context ahead of it.
    pub(crate) fn start_catch_up<S: Store>(&mut self, env: &mut Env<S>, now: Time, key: Bytes) {
        self.read_primaries(env, now, Waiter::CatchUp, key, |n| (n, 0));
    }

    /// Reads `key` from all `N` primaries to see whether its tombstones can be reaped (see
    /// [`crate::core::anti_entropy`]).
    pub(crate) fn start_reap_check<S: Store>(&mut self, env: &mut Env<S>, now: Time, key: Bytes) {
        self.read_primaries(env, now, Waiter::Reaper, key, |n| (n, n));
    }

    /// A read of `key` from every primary (no fallbacks) for `waiter`, with the quorum
    /// `quorum(N)` gives: (answers, of which primaries).
    fn read_primaries<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        waiter: Waiter,
        key: Bytes,
        quorum: impl Fn(usize) -> (usize, usize),
    ) {
        let primaries = env.preference_list(&key);
        let targets: Vec<Target> = primaries
            .iter()
            .map(|p| Target {
                node: *p,
                hint: None,
            })
            .collect();
        self.read_targets(env, now, waiter, key, quorum(primaries.len()), targets);
    }
}

/// The merged answer of a get: live values of the merged clock and its history.
fn found<'a>(answers: impl Iterator<Item = &'a Option<Clock>>) -> ClientReply {
    let merged = Clock::sync_all(answers.flatten());
    ClientReply::Found {
        values: merged
            .values()
            .into_iter()
            .filter_map(|v| v.data().cloned())
            .collect(),
        context: merged.join(),
    }
}
