//! Sloppy quorum and hinted handoff: writes for a suspected owner go to a stand-in.
//!
//! When a preference-list node is suspected, the coordinator sends its copy to the next
//! unsuspected fallback on the ring with a hint naming the owner, so a put still reaches `W`
//! servers. The hint is the only copy the owner is missing, so the holder keeps it durably (in
//! its store, apart from its own data), offers it to the owner after every change, and drops
//! it only once the owner acknowledged storing exactly that clock: a hint is never dropped
//! while it holds anything the owner has not stored.

use super::{id, Server, ServerState};
use crate::actor::{Timer, Wiring};
use crate::clock::Clock;
use crate::dvv::NodeId;
use crate::msg::Msg;
use crate::value::{Key, RequestId};
use stateright::actor::{model_timeout, Id, Out};
use std::borrow::Cow;

impl Server<'_> {
    /// Sends the put for each of `owners` to a distinct unsuspected fallback, with a hint.
    pub(super) fn send_hinted(
        &self,
        s: &ServerState,
        req: RequestId,
        key: Key,
        clock: &Clock,
        owners: &[NodeId],
        o: &mut Out<Wiring>,
    ) {
        let mut stand_ins = self
            .cfg
            .ring
            .fallbacks(key)
            .into_iter()
            .filter(|f| !s.suspects.contains(f) && *f != s.me);
        for &owner in owners {
            if let Some(f) = stand_ins.next() {
                o.send(
                    id(f),
                    Msg::Replicate {
                        req,
                        key,
                        clock: clock.clone(),
                        hint: Some(owner),
                    },
                );
            }
        }
    }

    /// A hinted put: merge it into the hint held for `owner`, save, acknowledge; a changed
    /// hint is offered to its owner.
    pub(super) fn hold_hint(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        req: RequestId,
        (owner, key): (NodeId, Key),
        clock: Clock,
        o: &mut Out<Wiring>,
    ) {
        let old = st.store.hints.get(&(owner, key)).cloned();
        let new = old
            .clone()
            .map_or_else(|| clock.clone(), |h| h.sync(&clock));
        if old.as_ref() != Some(&new) {
            let s = st.to_mut();
            s.store.hints.insert((owner, key), new);
            self.save(s, o);
            if !s.offer {
                s.offer = true;
                o.set_timer(Timer::Handoff, model_timeout());
            }
        }
        o.send(src, Msg::ReplicateAck { req });
    }

    /// The `Handoff` timer: offer every hint to its owner.
    pub(super) fn offer_hints(&self, st: &mut Cow<ServerState>, o: &mut Out<Wiring>) {
        let s = st.to_mut();
        s.offer = false;
        for (&(owner, key), clock) in &s.store.hints {
            let m = Msg::Handoff {
                key,
                clock: clock.clone(),
            };
            o.send(id(owner), m);
        }
    }

    /// The owner receives a hint: merge it and acknowledge that clock.
    pub(super) fn take_handoff(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        key: Key,
        clock: Clock,
        o: &mut Out<Wiring>,
    ) {
        self.merge(st, key, &clock, o);
        o.send(src, Msg::HandoffAck { key, clock });
    }

    /// The owner stored a hint: drop it if it is still exactly that clock.
    pub(super) fn handoff_acked(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        key: Key,
        clock: &Clock,
        o: &mut Out<Wiring>,
    ) {
        let Ok(owner) = NodeId::try_from(usize::from(src)) else {
            return;
        };
        if st.store.hints.get(&(owner, key)) == Some(clock) {
            let s = st.to_mut();
            s.store.hints.remove(&(owner, key));
            self.save(s, o);
            if self.cfg.forget {
                // A `Handoff` of this hint may still be in flight for a message lifetime.
                s.dropped.insert(key);
                o.set_timer(Timer::Expire, model_timeout());
            }
        }
    }
}
