//! A quorum put: update the coordinator's clock, save it, replicate it; answer once `W`
//! distinct servers saved it.
//!
//! The node persists the coordinator's new clock before it replicates it or counts its own
//! copy; the model's one atomic step (save, replicate, count the own copy) is that order. The
//! answer is `PutOk` with a context that covers the new value and nothing the client did not
//! see (the node's `reply_context`, see [`crate::dvv::DvvSet::reply_context`]); ghosts on it
//! (the new clock, the request's context) let the properties judge that context. A delete
//! whose clock holds only tombstones waits on, after answering, for every primary (see
//! `reap.rs`).
//!
//! **A stale context is refused.** A put whose context names versions the coordinator's own
//! clock does not descend (it read a newer version from another replica) stores nothing: the
//! client hears `PutStale` (the node's `Stale`, HTTP 409) and the coordinator reads the key
//! from every primary so that read repair brings it up to date (`get.rs`, `catch_up`).

use super::super::{id, PutCoord, Server, ServerState, Waiter};
use crate::actor::Wiring;
use crate::clock::{Clock, Scheme};
use crate::dvv::{actor, epoch_of, leq, server_of, NodeId};
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::value::{Key, RequestId, Value, VersionVector};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::collections::BTreeSet;

impl Server<'_> {
    /// A client's put (or delete): coordinated here, or, with forwarding, handed to the first
    /// node of the preference list when this server is not in it.
    pub(in crate::server) fn client_put(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        key: Key,
        context: &VersionVector,
        value: Value,
        o: &mut Out<Wiring>,
    ) {
        if self.cfg.forwarding && !self.cfg.ring.replicates(st.me, key) {
            self.forward(st, req, key, context, value, o);
        } else {
            self.put(st, Waiter::Client, req, key, context, value, o);
        }
    }

    /// Coordinates a put for `waiter`: update, save, replicate, and answer once `W` hold it.
    /// A request already executed here (a duplicate, with `dedup`) is ignored.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::server) fn put(
        &self,
        st: &mut Cow<ServerState>,
        waiter: Waiter,
        req: RequestId,
        key: Key,
        context: &VersionVector,
        value: Value,
        o: &mut Out<Wiring>,
    ) {
        if self.served(st, req) {
            return;
        }
        if self.stale(st, key, context) {
            if self.mark_served(st, req) {
                self.save(st, o);
            }
            self.answer(req, waiter, Msg::PutStale { req }, o);
            self.catch_up(st, req, key, o);
            return;
        }
        let me = st.me;
        let clock = self
            .local(st, key)
            .update(context, self.actor_for(st, key), value);
        if self.cfg.restore {
            self.issued(st, key, &clock, value);
        }
        let unsaved = self.mark_served(st, req);
        if !self.store(st, key, clock.clone(), o) && unsaved {
            self.save(st, o);
        }
        let mut coord = PutCoord {
            slot: self.free_slot(st),
            waiter,
            key,
            value,
            asked: context.clone(),
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
        self.arm(coord.slot, o);
        s.puts.insert(req, coord);
        self.progress_put(st, req, o);
    }

    /// Whether a put's `context` names versions this coordinator's clock of `key` does not
    /// hold (DVVSet only; the node has no other scheme). Such a context is refused, as the
    /// node refuses it (`start_put`): this replica is behind (the client read a newer version
    /// elsewhere), and a clock built on it would cover dots this replica has never seen.
    fn stale(&self, s: &ServerState, key: Key, context: &VersionVector) -> bool {
        self.cfg.scheme == Scheme::Dvv && !leq(context, &self.local(s, key).context())
    }

    /// The actor this server writes `key` under: the newest of its current identity's in the
    /// key's clock, else a fresh one in the key's next epoch (epoch 0 until the key is
    /// forgotten here or the server takes a fresh identity; see [`crate::dvv::EPOCH_STRIDE`]
    /// and `restore.rs`).
    fn actor_for(&self, s: &ServerState, key: Key) -> NodeId {
        let floor = s.store.floor;
        let own = self
            .local(s, key)
            .context()
            .into_keys()
            .filter(|a| server_of(*a) == s.me && epoch_of(*a) >= floor)
            .max();
        let epoch = s.store.epochs.get(&key).copied().unwrap_or(0).max(floor);
        own.unwrap_or_else(|| actor(s.me, epoch))
    }

    /// Ghost (`restore`): records the dot the put's `value` got, and whether it already named
    /// another write.
    fn issued(&self, st: &mut Cow<ServerState>, key: Key, clock: &Clock, value: Value) {
        let Some(dot) = clock.dot_of(value) else {
            return;
        };
        let s = st.to_mut();
        let before = s.store.issued.insert((key, dot), value);
        if before.is_some_and(|v| v != value) {
            s.store.reissued = true;
        }
    }

    /// A replica (or a fallback) saved the put: count it once per server.
    pub(in crate::server) fn replicate_ack(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        req: RequestId,
        o: &mut Out<Wiring>,
    ) {
        if !st.puts.contains_key(&req) {
            return;
        }
        if let (Some(c), Ok(node)) = (
            st.to_mut().puts.get_mut(&req),
            NodeId::try_from(usize::from(src)),
        ) {
            c.acks.insert(node);
            if self.cfg.mutated(Mutation::CountDuplicateAcks) {
                c.ack_msgs = c.ack_msgs.saturating_add(1);
            }
        }
        self.progress_put(st, req, o);
    }

    /// The answer to a put stored on `W` servers.
    fn put_ok(&self, req: RequestId, c: &PutCoord) -> Msg {
        let context = if self.cfg.mutated(Mutation::ReplyWholeContext) {
            c.clock.context()
        } else {
            c.clock.reply_context(&c.asked, c.value)
        };
        Msg::PutOk {
            req,
            context,
            siblings: u8::try_from(c.clock.size()).unwrap_or(u8::MAX),
            written: c.clock.clone(),
            asked: c.asked.clone(),
        }
    }

    /// Answers once `W` servers stored the put; the coordination ends then, or, for a delete
    /// to be reaped, once all `N` primaries hold it (see `reap.rs`).
    fn progress_put(&self, st: &mut Cow<ServerState>, req: RequestId, o: &mut Out<Wiring>) {
        let Some(c) = st.puts.get(&req) else {
            return;
        };
        let stored = if self.cfg.mutated(Mutation::CountDuplicateAcks) {
            usize::from(c.ack_msgs)
        } else {
            c.acks.len()
        };
        let enough = stored >= usize::from(self.cfg.w) || self.cfg.mutated(Mutation::AckBeforeW);
        if !c.replied && enough {
            self.answer(req, c.waiter, self.put_ok(req, c), o);
            if let Some(c) = st.to_mut().puts.get_mut(&req) {
                c.replied = true;
            }
        }
        let Some(c) = st.puts.get(&req) else {
            return;
        };
        if c.replied && !self.awaits_reap(c) {
            let Some(c) = st.to_mut().puts.remove(&req) else {
                return;
            };
            self.disarm(c.slot, o);
            self.send_reap(st, req, &c, o);
        }
    }

    /// The put's deadline passed. Answered already (a delete waiting to be reaped): it ends
    /// without reaping, as in the node. Otherwise the replicas that have not acknowledged are
    /// suspected, and the put goes sloppy once (with sloppy quorum; its deadline is set
    /// again) or fails.
    pub(super) fn put_deadline(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        o: &mut Out<Wiring>,
    ) {
        let Some(c) = st.puts.get(&req).cloned() else {
            return;
        };
        let s = st.to_mut();
        if c.replied {
            s.puts.remove(&req);
            return;
        }
        let silent: Vec<NodeId> = self
            .cfg
            .ring
            .preference(c.key)
            .into_iter()
            .filter(|p| !c.acks.contains(p))
            .collect();
        s.suspects.extend(silent.iter().copied());
        if self.cfg.sloppy && !c.hinted {
            self.send_hinted(s, req, c.key, &c.clock, &silent, o);
            if let Some(c) = s.puts.get_mut(&req) {
                c.hinted = true;
            }
            self.arm(c.slot, o);
        } else {
            s.puts.remove(&req);
            self.answer(req, c.waiter, Msg::Fail { req, put: true }, o);
        }
    }
}
