//! A quorum get: ask every replica, answer with the merge of the first `R` answers, keep
//! collecting until all `N` answered or the deadline passed, then repair stale replicas.
//!
//! Each replica's answer counts once, only from a node of the key's preference list and only
//! for the key asked: a duplicated or stray reply cannot make `R` answers out of fewer
//! replicas, nor a late answer about another key pass for this one.

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
    replicas: Vec<NodeId>,
    answers: BTreeMap<NodeId, Option<Clock>>,
    required: usize,
    replied: bool,
}

impl GetState {
    /// `(required, answered)` if the client has not been answered yet.
    pub(super) fn unanswered(&self) -> Option<(usize, usize)> {
        (!self.replied).then_some((self.required, self.answers.len()))
    }

    /// The replicas that have not answered.
    pub(super) fn silent(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.answers.contains_key(r))
            .collect()
    }

    /// The get is over: repair the replicas that answered with something stale.
    pub(super) fn repair<S: Store>(self, env: &mut Env<S>) {
        read_repair::after_get(env, self.key, self.answers);
    }
}

impl Coordinator {
    /// Asks every replica of `key` for its clock; the local one answers at once.
    pub(super) fn start_get<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        waiter: Waiter,
        key: Bytes,
        r: usize,
    ) {
        let replicas = env.preference_list(&key);
        let me = env.id;
        let state = GetState {
            key: key.clone(),
            replicas: replicas.clone(),
            answers: BTreeMap::new(),
            required: r,
            replied: false,
        };
        let req = self.register(env, now, waiter, Kind::Get(state));
        for node in &replicas {
            if *node != me {
                let msg = PeerMessage::Read {
                    req,
                    key: key.clone(),
                };
                env.out.send(*node, msg);
            }
        }
        if replicas.contains(&me) {
            let skey = env.storage_key(&key);
            if let Ok(local) = env.store.visible(&skey) {
                self.record_answer(env, req, me, local);
            }
        }
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
        if !g.replicas.contains(&from) || g.answers.contains_key(&from) {
            return;
        }
        g.answers.insert(from, clock);
        let reply = if !g.replied && g.answers.len() >= g.required {
            g.replied = true;
            Some(found(g.answers.values()))
        } else {
            None
        };
        let complete = g.answers.len() == g.replicas.len();
        let waiter = request.waiter.clone();
        if let Some(reply) = reply {
            answer(env, waiter, reply);
        }
        if complete {
            if let Some(Request {
                kind: Kind::Get(g), ..
            }) = self.finish(req)
            {
                g.repair(env);
            }
        }
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
