//! Forwarding: a server outside a key's preference list hands a client's put to a replica.
//!
//! Only a replica gives a write its dot, so a non-replica forwards the put to the first node
//! of the preference list, waits with its own deadline, and relays the answer it gets in a
//! `ForwardReply` — counted only from the node it forwarded to. The receiver coordinates a
//! `Forward` exactly like a client's put, answering the forwarder instead of the client; a
//! forwarded put is never forwarded again (its receiver is a replica). With `dedup`, both the
//! forwarder and the receiver execute a request once, by the client's request id, so a
//! `Forward` the transport resends is not applied twice.

use super::super::{id, FwdCoord, Server, ServerState};
use crate::actor::Wiring;
use crate::msg::Msg;
use crate::value::{Key, RequestId, Value, VersionVector};
use stateright::actor::{Id, Out};
use std::borrow::Cow;

impl Server<'_> {
    /// Hands a client's put to the first node of the key's preference list.
    pub(super) fn forward(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        key: Key,
        context: &VersionVector,
        value: Value,
        o: &mut Out<Wiring>,
    ) {
        if self.served(st, req) || st.forwards.contains_key(&req) {
            return;
        }
        let Some(&target) = self.cfg.ring.preference(key).first() else {
            return;
        };
        if self.mark_served(st, req) {
            self.save(st, o);
        }
        let slot = self.free_slot(st);
        st.to_mut().forwards.insert(req, FwdCoord { slot, target });
        let m = Msg::Forward {
            req,
            key,
            context: context.clone(),
            value,
        };
        o.send(id(target), m);
        self.arm(slot, o);
    }

    /// The answer to a forwarded put, from the node it was forwarded to: relay it.
    pub(in crate::server) fn forward_reply(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        req: RequestId,
        reply: Msg,
        o: &mut Out<Wiring>,
    ) {
        let ours = st.forwards.get(&req).is_some_and(|f| id(f.target) == src);
        if !ours {
            return;
        }
        if let Some(f) = st.to_mut().forwards.remove(&req) {
            self.disarm(f.slot, o);
            o.send(req.client, reply);
        }
    }

    /// The forward's deadline passed: the client hears `Fail`.
    pub(super) fn forward_deadline(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        o: &mut Out<Wiring>,
    ) {
        if st.to_mut().forwards.remove(&req).is_some() {
            o.send(req.client, Msg::Fail { req, put: true });
        }
    }
}
