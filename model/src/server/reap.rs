//! Reaping: a tombstone all `N` primaries hold is dropped, its causal context kept.
//!
//! A delete's coordination does not end when the client is answered: it waits until every
//! primary acknowledged the tombstone-only clock, then reaps its own copy at once and tells the
//! other primaries to reap theirs (as the node does). A replica
//! reaps only if it still holds exactly that clock (a newer write makes the reap moot), and
//! reaping keeps the key's version vector: a stale copy of a deleted value still in flight, in
//! a hint or on a lagging replica is then recognised as superseded instead of resurrecting the
//! key (the `reap-forgets-context` mutation shows the resurrection otherwise).

use super::{id, PutCoord, Server, ServerState};
use crate::actor::Wiring;
use crate::clock::Clock;
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::value::{Key, RequestId};
use stateright::actor::Out;
use std::borrow::Cow;

impl Server<'_> {
    /// Whether the put is a delete to be reaped (reaping on, a tombstone-only clock).
    fn reapable(&self, c: &PutCoord) -> bool {
        self.cfg.reap && c.clock.only_tombstones()
    }

    /// Whether an answered put's coordination must wait on: a delete to be reaped waits for
    /// all `N` primaries.
    pub(super) fn awaits_reap(&self, c: &PutCoord) -> bool {
        let pref = self.cfg.ring.preference(c.key);
        let all_primaries = pref.iter().all(|p| c.acks.contains(p));
        self.reapable(c) && !all_primaries
    }

    /// At the end of a put's coordination: a delete is reaped on every primary, the
    /// coordinator's own copy at once.
    pub(super) fn send_reap(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        c: &PutCoord,
        o: &mut Out<Wiring>,
    ) {
        if !self.reapable(c) {
            return;
        }
        for p in self.cfg.ring.preference(c.key) {
            if p == st.me {
                self.reap_if_current(st, c.key, &c.clock, o);
            } else {
                let m = Msg::Reap {
                    key: c.key,
                    clock: c.clock.clone(),
                    req: self.cfg.forget.then_some(req),
                };
                o.send(id(p), m);
            }
        }
    }

    /// A `Reap`: reap the key if it still holds exactly the acknowledged clock.
    pub(super) fn reap_if_current(
        &self,
        st: &mut Cow<ServerState>,
        key: Key,
        clock: &Clock,
        o: &mut Out<Wiring>,
    ) {
        if st.store.data.get(&key) == Some(clock) {
            self.reap(st, key, clock, o);
        }
    }

    fn reap(&self, st: &mut Cow<ServerState>, key: Key, clock: &Clock, o: &mut Out<Wiring>) {
        if self.cfg.mutated(Mutation::ReapForgetsContext) {
            let s = st.to_mut();
            s.store.gone.extend(clock.values());
            s.store.data.remove(&key);
            self.save(s, o);
        } else {
            self.store(st, key, clock.reaped(), o);
        }
    }
}
