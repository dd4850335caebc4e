//! Forgetting a deleted key: removing the causal history reaping leaves behind, as the node's
//! `core/forget.rs` does.
//!
//! Reaping keeps a deleted key's version vector `E` (a clock without values) so that an older
//! copy still around loses against the delete. Once no such copy can exist, `E` is removed:
//!
//! - **Rounds.** A server holding `E` that is the key's first unsuspected primary runs rounds
//!   (`Forget` timer): it asks every other server (`ForgetCheck`) for its clock of the key and
//!   whether it is *hinted* — holds a hint for the key, dropped one less than a message
//!   lifetime ago (a `Handoff` it sent may still be in flight), or restarted less than one ago.
//!   A round *agrees* when every server answered, every primary answered `E` or nothing (at
//!   least one `E`), and none is hinted.
//! - **Two rounds a grace apart.** A round that agrees on the `E` an earlier agreeing round
//!   agreed on, and that started once the grace after that first round passed, decides: each
//!   primary is sent `Forget`, and removes the key if its clock is still exactly `E`. The
//!   model has no time; the grace is stated as what it guarantees (`model.rs`,
//!   `within_boundary`): every message queued before the first round ended, or sent by a
//!   request that started before it ended, is gone, and every such request has finished.
//! - **Fresh epochs.** A server that removed a history holding one of its actors raises the
//!   key's epoch, so its next write of the key is a new actor's and reissues no dot.
//!
//! Rounds are bounded (`forget_rounds` per key and incarnation, where the node retries for
//! ever) and volatile; a restart looks at every history it holds again.

use super::{id, ForgetCoord, ForgetRound, Server, ServerState};
use crate::actor::{Timer, Wiring};
use crate::clock::Clock;
use crate::dvv::{epoch_of, server_of, NodeId};
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::value::Key;
use stateright::actor::{model_timeout, Id, Out};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

impl Server<'_> {
    /// Whether this server coordinates forgetting `key`: it is the key's first primary it
    /// does not suspect (the node's "first healthy primary").
    fn coordinates_forgetting(&self, s: &ServerState, key: Key) -> bool {
        let first = self
            .cfg
            .ring
            .preference(key)
            .into_iter()
            .find(|p| *p == s.me || !s.suspects.contains(p));
        first == Some(s.me)
    }

    /// The key just became a values-free history here (or the server started holding it):
    /// look at forgetting it, if this server coordinates that.
    pub(super) fn consider_forgetting(&self, s: &ServerState, key: Key, o: &mut Out<Wiring>) {
        if self.cfg.forget && self.coordinates_forgetting(s, key) {
            o.set_timer(Timer::Forget(key), model_timeout());
        }
    }

    /// Whether this server must answer a round about `key` "hinted".
    fn hinted(&self, s: &ServerState, key: Key) -> bool {
        s.young || s.dropped.contains(&key) || s.store.hints.keys().any(|(_, k)| *k == key)
    }

    /// The `Forget` timer: start a round for `key` if this server holds it as a history,
    /// coordinates forgetting it, has no round running and rounds left.
    pub(super) fn start_round(&self, st: &mut Cow<ServerState>, key: Key, o: &mut Out<Wiring>) {
        let coord = st.forgets.get(&key).cloned().unwrap_or_default();
        let local = self.local(st, key);
        let due = self.cfg.forget
            && coord.round.is_none()
            && coord.started < self.cfg.forget_rounds
            && local.is_reaped()
            && self.coordinates_forgetting(st, key);
        if !due {
            return;
        }
        let me = st.me;
        let started = coord.started + 1;
        let round = st.store.boots.saturating_mul(8).saturating_add(started);
        let mut waiting = BTreeSet::new();
        for peer in (0..self.cfg.ring.servers).filter(|p| *p != me) {
            o.send(id(peer), Msg::ForgetCheck { round, key });
            waiting.insert(peer);
        }
        let mut clocks = BTreeMap::new();
        if self.cfg.ring.replicates(me, key) {
            clocks.insert(me, local);
        }
        let hinted = self.hinted(st, key);
        let coord = ForgetCoord {
            started,
            round: Some(ForgetRound {
                id: round,
                waiting,
                clocks,
                hinted,
            }),
            ..coord
        };
        st.to_mut().forgets.insert(key, coord);
    }

    /// A round's question: answer with this server's clock of the key and whether it is
    /// hinted.
    pub(super) fn forget_check(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        round: u8,
        key: Key,
        o: &mut Out<Wiring>,
    ) {
        let reply = Msg::ForgetCheckReply {
            round,
            key,
            clock: self.local(st, key),
            hinted: self.hinted(st, key),
        };
        o.send(src, reply);
    }

    /// An answer to a round of ours: counted once per server; the last one concludes it.
    pub(super) fn forget_reply(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        (round, key): (u8, Key),
        clock: Clock,
        hinted: bool,
        o: &mut Out<Wiring>,
    ) {
        let Ok(from) = NodeId::try_from(usize::from(src)) else {
            return;
        };
        let ours = st
            .forgets
            .get(&key)
            .and_then(|f| f.round.as_ref())
            .is_some_and(|r| r.id == round && r.waiting.contains(&from));
        if !ours {
            return;
        }
        let primary = self.cfg.ring.replicates(from, key);
        let s = st.to_mut();
        let Some(r) = s.forgets.get_mut(&key).and_then(|f| f.round.as_mut()) else {
            return;
        };
        r.waiting.remove(&from);
        if primary {
            r.clocks.insert(from, clock);
        }
        r.hinted |= hinted;
        if r.waiting.is_empty() {
            self.conclude(st, key, o);
        }
    }

    /// Every server answered: does the round agree, and is it the second?
    fn conclude(&self, st: &mut Cow<ServerState>, key: Key, o: &mut Out<Wiring>) {
        let s = st.to_mut();
        let Some(coord) = s.forgets.get_mut(&key) else {
            return;
        };
        let Some(r) = coord.round.take() else {
            return;
        };
        let empty = Clock::empty(self.cfg.scheme);
        let held: Vec<&Clock> = r.clocks.values().filter(|c| **c != empty).collect();
        let history = held.first().map(|c| (*c).clone());
        let same = held.iter().all(|c| Some(*c) == history.as_ref());
        let hinted = r.hinted && !self.cfg.mutated(Mutation::ForgetIgnoresHints);
        let agreed = match &history {
            Some(e) => e.is_reaped() && same && !hinted,
            None => false,
        };
        let again = coord.started < self.cfg.forget_rounds;
        let mut forget = None;
        match history {
            Some(e) if agreed => {
                let second = coord.agreed.as_ref().is_some_and(|(first, _)| *first == e);
                if second || self.cfg.mutated(Mutation::ForgetAfterOneRound) {
                    coord.agreed = None;
                    forget = Some(e);
                } else {
                    coord.agreed = Some((e, r.id));
                }
            }
            _ if !same => coord.agreed = None,
            _ => {}
        }
        if again {
            o.set_timer(Timer::Forget(key), model_timeout());
        }
        let Some(e) = forget else {
            return;
        };
        let me = st.me;
        for p in self.cfg.ring.preference(key) {
            if p == me {
                self.forget_if_current(st, key, &e, o);
            } else {
                let m = Msg::Forget {
                    key,
                    clock: e.clone(),
                };
                o.send(id(p), m);
            }
        }
    }

    /// A `Forget` (or the coordinator's own decision): remove the key if its clock here is
    /// still exactly the history agreed on. A history holding one of this server's actors
    /// raises the key's epoch: the next write starts a fresh actor.
    pub(super) fn forget_if_current(
        &self,
        st: &mut Cow<ServerState>,
        key: Key,
        clock: &Clock,
        o: &mut Out<Wiring>,
    ) {
        if !clock.is_reaped() || st.store.data.get(&key) != Some(clock) {
            return;
        }
        let s = st.to_mut();
        let me = s.me;
        s.store.data.remove(&key);
        let own = clock
            .context()
            .keys()
            .filter(|a| server_of(**a) == me)
            .map(|a| epoch_of(*a))
            .max();
        if let (Some(e), false) = (own, self.cfg.mutated(Mutation::ForgetReusesDots)) {
            let next = s.store.epochs.entry(key).or_insert(0);
            *next = (*next).max(e + 1);
        }
        s.store.forgot.entry(key).or_default().insert(clock.clone());
        self.save(s, o);
    }

    /// A message lifetime passed: hints handed off and the restart are old news.
    pub(super) fn expire(&self, st: &mut Cow<ServerState>) {
        if st.young || !st.dropped.is_empty() {
            let s = st.to_mut();
            s.young = false;
            s.dropped.clear();
        }
    }
}
