//! Forwarding: a node outside a key's preference list hands a client's write to a replica.
//!
//! Only a replica may give a write its dot (its clock for the key holds the actor's earlier
//! dots), so a non-replica forwards the put to a replica — the first of the preference list
//! that the failure detector believes alive — and relays the answer. A reply counts only from the node the request was forwarded to. A forwarded
//! write is never forwarded again, so a request cannot loop when rings disagree.

use super::{answer, Coordinator, Kind, Waiter};
use crate::core::{Env, Store, Time};
use crate::ids::NodeId;
use crate::protocol::{ClientOp, ClientReply, PeerMessage, RequestId};

/// A write handed to `target`, waiting for its answer.
#[derive(Clone, Debug)]
pub(super) struct ForwardState {
    /// The node the write went to.
    pub(super) target: NodeId,
    /// The write quorum, reported if the answer never comes.
    pub(super) required: usize,
}

impl Coordinator {
    /// Hands `op` to `target` and waits for its answer.
    pub(super) fn start_forward<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        waiter: Waiter,
        target: NodeId,
        op: ClientOp,
        required: usize,
    ) {
        env.stats.forwarded += 1;
        let state = ForwardState { target, required };
        let req = self.register(env, now, waiter, Kind::Forward(state));
        env.out.send(target, PeerMessage::Forward { req, op });
    }

    /// The replica's answer to a forwarded write.
    pub(crate) fn on_forward_reply<S: Store>(
        &mut self,
        env: &mut Env<S>,
        from: NodeId,
        req: RequestId,
        reply: ClientReply,
    ) {
        let ours = matches!(
            self.requests.get(&req).map(|r| &r.kind),
            Some(Kind::Forward(f)) if f.target == from
        );
        if ours {
            if let Some(request) = self.finish(req) {
                answer(env, request.waiter, reply);
            }
        }
    }
}
