//! A quorum get: ask every replica, answer with the merge of the first `R` answers, keep
//! collecting until all `N` answered or the deadline passed, then repair the stale ones.
//!
//! The answer carries the merged clock's *live* values (tombstones removed, as the node
//! answers) and its causal context, plus, as a ghost, every sibling the client saw. Each
//! replica's answer counts once, and only from the key's preference list, so a duplicated
//! reply cannot make `R` answers out of fewer replicas. Without read repair nothing waits on
//! the remaining answers, so the get ends once answered (the node keeps it until its
//! deadline, to no observable effect).

use super::super::{id, GetCoord, Server, ServerState};
use crate::actor::Wiring;
use crate::clock::Clock;
use crate::dvv::NodeId;
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::value::{Key, RequestId};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::collections::BTreeMap;

impl Server<'_> {
    /// A client's get: read every other replica, counting the coordinator's own clock as the
    /// first answer when it is a replica. A request already executed or in progress is
    /// ignored.
    pub(in crate::server) fn get(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        key: Key,
        o: &mut Out<Wiring>,
    ) {
        if self.served(st, req) || st.gets.contains_key(&req) {
            return;
        }
        if self.mark_served(st, req) {
            self.save(st, o);
        }
        let replies = self.read_all(st, req, key, o);
        self.await_reads(st, req, key, replies, false, o);
    }

    /// After refusing a stale put (request `req`): read `key` from every primary so that read
    /// repair brings this replica, and any other behind, up to date — the node's
    /// `start_catch_up`. Nobody is answered (the get starts as answered); it ends once all
    /// `N` answered or at its deadline, and repairs. Without read repair the node's catch-up
    /// repairs nothing, so the model sends the reads and keeps nothing waiting on them.
    pub(in crate::server) fn catch_up(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        key: Key,
        o: &mut Out<Wiring>,
    ) {
        if st.gets.contains_key(&req) {
            return;
        }
        let replies = self.read_all(st, req, key, o);
        if self.cfg.read_repair {
            self.await_reads(st, req, key, replies, true, o);
        }
    }

    /// Waits for the reads of `req` under a fresh deadline, `replied` if nobody is to be
    /// answered, and takes the answers already there into account.
    fn await_reads(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        key: Key,
        replies: BTreeMap<NodeId, Clock>,
        replied: bool,
        o: &mut Out<Wiring>,
    ) {
        let slot = self.free_slot(st);
        self.arm(slot, o);
        let g = GetCoord {
            slot,
            key,
            replies,
            replied,
        };
        st.to_mut().gets.insert(req, g);
        self.progress_get(st, req, o);
    }

    /// Sends `Read`s for `key` to every other primary; the coordinator's own clock is the
    /// first answer when it is one.
    fn read_all(
        &self,
        st: &ServerState,
        req: RequestId,
        key: Key,
        o: &mut Out<Wiring>,
    ) -> BTreeMap<NodeId, Clock> {
        let mut replies = BTreeMap::new();
        for p in self.cfg.ring.preference(key) {
            if p == st.me {
                replies.insert(st.me, self.local(st, key));
            } else {
                o.send(id(p), Msg::Read { req, key });
            }
        }
        replies
    }

    /// A replica's answer to a read of a get in progress: the first from each replica counts.
    pub(in crate::server) fn read_reply(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        req: RequestId,
        clock: Clock,
        o: &mut Out<Wiring>,
    ) {
        let (Some(g), Ok(node)) = (st.gets.get(&req), NodeId::try_from(usize::from(src))) else {
            return;
        };
        if g.replies.contains_key(&node) || !self.cfg.ring.replicates(node, g.key) {
            return;
        }
        if let Some(g) = st.to_mut().gets.get_mut(&req) {
            g.replies.insert(node, clock);
        }
        self.progress_get(st, req, o);
    }

    /// Answers the client once `R` replicas answered; ends the get, repairing, once every
    /// replica answered (or at once without read repair).
    fn progress_get(&self, st: &mut Cow<ServerState>, req: RequestId, o: &mut Out<Wiring>) {
        let Some(g) = st.gets.get(&req) else {
            return;
        };
        let needed = if self.cfg.mutated(Mutation::ReadBelowR) {
            usize::from(self.cfg.r).saturating_sub(1).max(1)
        } else {
            usize::from(self.cfg.r)
        };
        if !g.replied && g.replies.len() >= needed {
            let merged = self.merged(g);
            let reply = Msg::GetOk {
                req,
                values: merged.live(),
                context: merged.context(),
                seen: merged.values(),
            };
            o.send(req.client, reply);
            if let Some(g) = st.to_mut().gets.get_mut(&req) {
                g.replied = true;
            }
        }
        let Some(g) = st.gets.get(&req) else {
            return;
        };
        let everyone = g.replies.len() >= usize::from(self.cfg.ring.n);
        if g.replied && (everyone || !self.cfg.read_repair) {
            if let Some(g) = st.to_mut().gets.remove(&req) {
                self.disarm(g.slot, o);
                self.read_repair(st, req, &g, o);
            }
        }
    }

    /// The get's deadline passed: answer `Fail` if the client has not been answered, then
    /// repair with the answers received.
    pub(super) fn get_deadline(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        o: &mut Out<Wiring>,
    ) {
        let Some(g) = st.to_mut().gets.remove(&req) else {
            return;
        };
        if !g.replied {
            o.send(req.client, Msg::Fail { req, put: false });
        }
        self.read_repair(st, req, &g, o);
    }

    /// The merge of every answer a get received.
    pub(in crate::server) fn merged(&self, g: &GetCoord) -> Clock {
        g.replies
            .values()
            .fold(Clock::empty(self.cfg.scheme), |acc, v| acc.sync(v))
    }
}
