//! Sloppy quorum and hinted handoff: writes for a suspected owner go to a stand-in.
//!
//! When a preference-list node is suspected, the coordinator sends its copy to the next
//! unsuspected fallback on the ring with a hint naming the owner, so a put still reaches `W`
//! servers. The hint is the only copy the owner is missing, so the holder keeps it durably (in
//! its store, apart from its own data), offers it to the owner after every change, and drops
//! it only once the owner acknowledged storing exactly that version: a hint is never dropped
//! while it holds anything the owner has not stored.

use super::{id, Server, ServerState};
use crate::actor::{Timer, Wiring};
use crate::dvv::Node;
use crate::msg::Msg;
use crate::value::{Key, ReqId};
use crate::version::Version;
use stateright::actor::{model_timeout, Id, Out};
use std::borrow::Cow;

impl Server<'_> {
    /// Sends the put for each of `owners` to a distinct unsuspected fallback, with a hint.
    pub(super) fn send_hinted(
        &self,
        s: &ServerState,
        req: ReqId,
        key: Key,
        version: &Version,
        owners: &[Node],
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
                        version: version.clone(),
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
        req: ReqId,
        (owner, key): (Node, Key),
        version: Version,
        o: &mut Out<Wiring>,
    ) {
        let old = st.store.hints.get(&(owner, key)).cloned();
        let new = old
            .clone()
            .map_or_else(|| version.clone(), |h| h.sync(&version));
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
        for (&(owner, key), version) in &s.store.hints {
            let m = Msg::Handoff {
                key,
                version: version.clone(),
            };
            o.send(id(owner), m);
        }
    }

    /// The owner receives a hint: merge it and acknowledge that version.
    pub(super) fn take_handoff(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        key: Key,
        version: Version,
        o: &mut Out<Wiring>,
    ) {
        self.merge(st, key, &version, o);
        o.send(src, Msg::HandoffAck { key, version });
    }

    /// The owner stored a hint: drop it if it is still exactly that version.
    pub(super) fn handoff_acked(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        key: Key,
        version: &Version,
        o: &mut Out<Wiring>,
    ) {
        let Ok(owner) = Node::try_from(usize::from(src)) else {
            return;
        };
        if st.store.hints.get(&(owner, key)) == Some(version) {
            let s = st.to_mut();
            s.store.hints.remove(&(owner, key));
            self.save(s, o);
        }
    }
}
