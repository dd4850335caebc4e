//! Coordination: a client's put or get, driven by its coordinator to a quorum.
//!
//! A put is applied to the coordinator's own clock with the client's context, saved, and
//! replicated to the rest of the preference list; the client hears `PutOk` once `W` *distinct*
//! servers (the coordinator included) saved it. A get answers with the merge of `R` replicas'
//! clocks, the coordinator's own included. Counting distinct servers, not acknowledgements,
//! is what makes `R + W > N` mean that a get's readers intersect an acknowledged put's writers,
//! even over a network that duplicates. A coordination timeout stands for the failure
//! detector: it suspects the servers that have not answered and either goes sloppy (see
//! `handoff.rs`) or fails the request, so a client is never left waiting on a crashed replica.

use super::{id, GetCoord, PutCoord, Server, ServerState};
use crate::actor::Wiring;
use crate::clock::Clock;
use crate::dvv::NodeId;
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::value::{Key, RequestId, Value, VersionVector};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

impl Server<'_> {
    /// A client's put (or delete): update, save, replicate, and answer once `W` hold it. A
    /// request already served (a duplicate, with `dedup`) is ignored.
    pub(super) fn put(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        key: Key,
        context: &VersionVector,
        value: Value,
        o: &mut Out<Wiring>,
    ) {
        let me = st.me;
        if st
            .store
            .served
            .get(&req.client)
            .is_some_and(|&s| s >= req.seq)
        {
            return;
        }
        let clock = self.local(st, key).update(context, me, value);
        if self.cfg.dedup {
            st.to_mut().store.served.insert(req.client, req.seq);
        }
        if !self.store(st, key, clock.clone(), o) && self.cfg.dedup {
            self.save(st, o);
        }
        let mut coord = PutCoord {
            key,
            clock: clock.clone(),
            acks: BTreeSet::from([me]),
            ack_msgs: 1,
            hinted: false,
            replied: false,
        };
        let s = st.to_mut();
        for p in self.cfg.ring.preference(key) {
            if p == me {
                continue;
            }
            if s.suspects.contains(&p) && self.cfg.sloppy {
                coord.hinted = true;
                self.send_hinted(s, req, key, &clock, &[p], o);
            } else {
                o.send(
                    id(p),
                    Msg::Replicate {
                        req,
                        key,
                        clock: clock.clone(),
                        hint: None,
                    },
                );
            }
        }
        s.puts.insert(req, coord);
        self.arm(o);
        self.progress_put(s, req, o);
    }

    /// A replica (or a fallback) saved the put: count it once per server.
    pub(super) fn replicate_ack(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        req: RequestId,
        o: &mut Out<Wiring>,
    ) {
        if !st.puts.contains_key(&req) {
            return;
        }
        let s = st.to_mut();
        if let (Some(c), Ok(node)) = (s.puts.get_mut(&req), NodeId::try_from(usize::from(src))) {
            c.acks.insert(node);
            c.ack_msgs = c.ack_msgs.saturating_add(1);
        }
        self.progress_put(s, req, o);
    }

    /// A client's get: read every other replica, counting the coordinator's own clock as the
    /// first reply. A request already served or in progress is ignored.
    pub(super) fn get(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        key: Key,
        o: &mut Out<Wiring>,
    ) {
        let me = st.me;
        if st
            .store
            .served
            .get(&req.client)
            .is_some_and(|&s| s >= req.seq)
            || st.gets.contains_key(&req)
        {
            return;
        }
        let local = self.local(st, key);
        let s = st.to_mut();
        if self.cfg.dedup {
            s.store.served.insert(req.client, req.seq);
            self.save(s, o);
        }
        for p in self.cfg.ring.preference(key) {
            if p != me {
                o.send(id(p), Msg::Read { req, key });
            }
        }
        let replies = BTreeMap::from([(me, local)]);
        s.gets.insert(req, GetCoord { key, replies });
        self.arm(o);
        self.progress_get(st, req, o);
    }

    /// A replica's answer to a read of a get in progress.
    pub(super) fn read_reply(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        req: RequestId,
        clock: Clock,
        o: &mut Out<Wiring>,
    ) {
        if !st.gets.contains_key(&req) {
            return;
        }
        if let (Some(g), Ok(node)) = (
            st.to_mut().gets.get_mut(&req),
            NodeId::try_from(usize::from(src)),
        ) {
            g.replies.insert(node, clock);
        }
        self.progress_get(st, req, o);
    }

    /// Answers the client once `W` replicas stored the put; the coordination ends then, or,
    /// for a delete to be reaped, once all `N` primaries hold it (see `reap.rs`).
    pub(super) fn progress_put(&self, s: &mut ServerState, req: RequestId, o: &mut Out<Wiring>) {
        let Some(c) = s.puts.get_mut(&req) else {
            return;
        };
        let stored = if self.cfg.mutated(Mutation::CountDuplicateAcks) {
            usize::from(c.ack_msgs)
        } else {
            c.acks.len()
        };
        let enough = stored >= usize::from(self.cfg.w) || self.cfg.mutated(Mutation::AckBeforeW);
        if !c.replied && enough {
            c.replied = true;
            o.send(req.client, Msg::PutOk { req });
        }
        if c.replied && !self.awaits_reap(c) {
            let c = s.puts.remove(&req).unwrap_or_else(|| unreachable!());
            self.send_reap(&c, o);
            self.disarm_if_idle(s, o);
        }
    }

    /// Answers the client once `R` replicas replied, then repairs the stale ones.
    fn progress_get(&self, st: &mut Cow<ServerState>, req: RequestId, o: &mut Out<Wiring>) {
        let Some(g) = st.gets.get(&req) else {
            return;
        };
        let needed = if self.cfg.mutated(Mutation::ReadBelowR) {
            usize::from(self.cfg.r).saturating_sub(1).max(1)
        } else {
            usize::from(self.cfg.r)
        };
        if g.replies.len() < needed {
            return;
        }
        let g = st
            .to_mut()
            .gets
            .remove(&req)
            .unwrap_or_else(|| unreachable!());
        let merged = g
            .replies
            .values()
            .fold(Clock::empty(self.cfg.scheme), |acc, v| acc.sync(v));
        o.send(
            req.client,
            Msg::GetOk {
                req,
                values: merged.values(),
                context: merged.context(),
            },
        );
        self.read_repair(st, &g, &merged, o);
        self.disarm_if_idle(st, o);
    }

    /// A coordination timeout: suspect the silent, go sloppy once, else fail.
    pub(super) fn timeout_coordinations(&self, st: &mut Cow<ServerState>, o: &mut Out<Wiring>) {
        let s = st.to_mut();
        for (req, g) in std::mem::take(&mut s.gets) {
            let _ = g;
            o.send(req.client, Msg::Fail { req, put: false });
        }
        let reqs: Vec<RequestId> = s.puts.keys().copied().collect();
        for req in reqs {
            let Some(c) = s.puts.get(&req).cloned() else {
                continue;
            };
            let silent: Vec<NodeId> = self
                .cfg
                .ring
                .preference(c.key)
                .into_iter()
                .filter(|p| !c.acks.contains(p))
                .collect();
            if c.replied {
                s.puts.remove(&req);
            } else if self.cfg.sloppy && !c.hinted {
                s.suspects.extend(silent.iter().copied());
                self.send_hinted(s, req, c.key, &c.clock, &silent, o);
                if let Some(c) = s.puts.get_mut(&req) {
                    c.hinted = true;
                }
            } else {
                s.suspects.extend(silent.iter().copied());
                s.puts.remove(&req);
                o.send(req.client, Msg::Fail { req, put: true });
            }
        }
        if !s.puts.is_empty() {
            self.arm(o);
        }
    }
}
