//! Read repair: a get writes its merge back to the replicas that answered with less.
//!
//! The coordinator has just computed the merge of `R` replicas' clocks; any answering
//! replica whose clock differs from it is stale (it lacks a write, or still holds a
//! superseded sibling) and is sent the merge, which it merges in like any other clock. The
//! coordinator's own copy is merged locally. Repair only ever sends a join of stored clocks,
//! so it can bring a replica up but never take a write away.

use super::{id, GetCoord, Server, ServerState};
use crate::actor::Wiring;
use crate::clock::Clock;
use crate::msg::Msg;
use stateright::actor::Out;
use std::borrow::Cow;

impl Server<'_> {
    /// Sends `merged` to every replica of the get whose reply differs from it.
    pub(super) fn read_repair(
        &self,
        st: &mut Cow<ServerState>,
        g: &GetCoord,
        merged: &Clock,
        o: &mut Out<Wiring>,
    ) {
        if !self.cfg.read_repair {
            return;
        }
        for (&node, v) in &g.replies {
            if v == merged {
                continue;
            }
            if node == st.me {
                self.merge(st, g.key, merged, o);
            } else {
                let m = Msg::Repair {
                    key: g.key,
                    clock: merged.clone(),
                };
                o.send(id(node), m);
            }
        }
    }
}
