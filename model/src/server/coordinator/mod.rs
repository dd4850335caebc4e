//! Coordination: a client's put or get, driven by its coordinator to a quorum, each request
//! with its own deadline — as the node's `core/coordinator/` does.
//!
//! A put is applied to the coordinator's own clock with the client's context, saved, and
//! replicated to the rest of the preference list; the client hears `PutOk` once `W`
//! *distinct* servers (the coordinator included) saved it (`put.rs`). A get asks every replica,
//! answers with the merge of the first `R` answers, and waits on for the others to repair the
//! stale ones (`get.rs`). Counting distinct servers, not acknowledgements, is what makes
//! `R + W > N` mean that a get's readers intersect an acknowledged put's writers, even over a
//! network that duplicates. With forwarding, a server outside a key's preference list hands a
//! put to the list's first node and relays its answer (`forward.rs`).
//!
//! **Deadlines.** A request's deadline stands for the node's per-request timeout and for the
//! failure detector: an unanswered get fails; an unanswered put suspects the replicas that have
//! not answered and either goes sloppy once (see `handoff.rs`) or fails; a forward fails. A
//! deadline affects only its own request. Its timer names a *slot*, the smallest free among the
//! server's requests when the request started, kept in the request: a timer must not name a
//! client, because stateright's symmetry reduction reindexes timer sets without rewriting
//! their values. Deadlines are armed only where `timeouts` is on: without drops every message
//! arrives, if need be after its receiver recovers, so a fault-free configuration needs none.

use super::{id, Server, ServerState, Waiter};
use crate::actor::{Timer, Wiring};
use crate::msg::Msg;
use crate::value::RequestId;
use stateright::actor::{model_timeout, Out};
use std::borrow::Cow;
use std::collections::BTreeSet;

mod forward;
mod get;
mod put;

impl ServerState {
    /// The request whose deadline is in `slot`, if one is.
    pub fn request_in_slot(&self, slot: u8) -> Option<RequestId> {
        let put = self.puts.iter().find(|(_, c)| c.slot == slot);
        let get = || {
            self.gets
                .iter()
                .find(|(_, g)| g.slot == slot)
                .map(|(r, _)| r)
        };
        let fwd = || {
            self.forwards
                .iter()
                .find(|(_, f)| f.slot == slot)
                .map(|(r, _)| r)
        };
        put.map(|(r, _)| r).or_else(get).or_else(fwd).copied()
    }
}

impl Server<'_> {
    /// The deadline slot of a new request: the smallest not held by one of the server's
    /// requests (always 0 without deadlines, so that no state differs by an unused slot).
    pub(super) fn free_slot(&self, s: &ServerState) -> u8 {
        if !self.cfg.timeouts {
            return 0;
        }
        let used: BTreeSet<u8> = s
            .puts
            .values()
            .map(|c| c.slot)
            .chain(s.gets.values().map(|g| g.slot))
            .chain(s.forwards.values().map(|f| f.slot))
            .collect();
        (0..u8::MAX).find(|i| !used.contains(i)).unwrap_or(u8::MAX)
    }

    /// Sets the deadline of the request in `slot` (with `timeouts`).
    pub(super) fn arm(&self, slot: u8, o: &mut Out<Wiring>) {
        if self.cfg.timeouts {
            o.set_timer(Timer::Deadline(slot), model_timeout());
        }
    }

    /// Cancels the deadline of the request in `slot`, which has finished.
    pub(super) fn disarm(&self, slot: u8, o: &mut Out<Wiring>) {
        if self.cfg.timeouts {
            o.cancel_timer(Timer::Deadline(slot));
        }
    }

    /// The deadline in `slot` passed: its request gives up.
    pub(in crate::server) fn deadline(
        &self,
        st: &mut Cow<ServerState>,
        slot: u8,
        o: &mut Out<Wiring>,
    ) {
        let Some(req) = st.request_in_slot(slot) else {
            return;
        };
        if st.puts.contains_key(&req) {
            self.put_deadline(st, req, o);
        } else if st.gets.contains_key(&req) {
            self.get_deadline(st, req, o);
        } else {
            self.forward_deadline(st, req, o);
        }
    }

    /// Sends a put's answer to whoever waits for it: the client, or the server that forwarded
    /// the put (in a `ForwardReply`).
    pub(super) fn answer(&self, req: RequestId, waiter: Waiter, reply: Msg, o: &mut Out<Wiring>) {
        match waiter {
            Waiter::Client => o.send(req.client, reply),
            Waiter::Forwarder(from) => o.send(
                id(from),
                Msg::ForwardReply {
                    req,
                    reply: Box::new(reply),
                },
            ),
        }
    }

    /// Whether this server already executed the request (with `dedup`).
    pub(super) fn served(&self, s: &ServerState, req: RequestId) -> bool {
        s.store
            .served
            .get(&req.client)
            .is_some_and(|&seq| seq >= req.seq)
    }

    /// Records the request as executed (with `dedup`), durably; returns whether the store
    /// still needs saving.
    pub(super) fn mark_served(&self, st: &mut Cow<ServerState>, req: RequestId) -> bool {
        if !self.cfg.dedup {
            return false;
        }
        st.to_mut().store.served.insert(req.client, req.seq);
        true
    }
}
