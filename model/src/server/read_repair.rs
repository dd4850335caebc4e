//! Read repair: a finished get writes the merge of what it read back to the stale replicas.
//!
//! A get ends once every replica of the preference list answered, or its deadline passed
//! (the node's order: answer at `R`, keep collecting, then repair). Any answering replica
//! whose clock differs from the merge of *all* answers is stale (it lacks a write, or still
//! holds a superseded sibling) and is sent the merge, which it merges in like any other clock;
//! the coordinator's own copy is merged locally, into its current clock. Replicas that did not
//! answer are not repaired (a later read repairs them). Repair only ever sends a join of
//! stored clocks, so it can bring a replica up but never take a write away.

use super::{id, GetCoord, Server, ServerState};
use crate::actor::Wiring;
use crate::msg::Msg;
use crate::value::RequestId;
use stateright::actor::Out;
use std::borrow::Cow;

impl Server<'_> {
    /// Sends the merge of the get's answers to every replica whose answer differs from it.
    pub(super) fn read_repair(
        &self,
        st: &mut Cow<ServerState>,
        req: RequestId,
        g: &GetCoord,
        o: &mut Out<Wiring>,
    ) {
        if !self.cfg.read_repair {
            return;
        }
        let merged = self.merged(g);
        for (&node, v) in &g.replies {
            if *v == merged {
                continue;
            }
            if node == st.me {
                self.merge(st, g.key, &merged, o);
            } else {
                let m = Msg::Repair {
                    key: g.key,
                    clock: merged.clone(),
                    req: self.cfg.forget.then_some(req),
                };
                o.send(id(node), m);
            }
        }
    }
}
