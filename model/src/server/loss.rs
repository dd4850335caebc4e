//! Bounded loss (`lose`): a server may lose up to `lose` incoming `Replicate`s and `Repair`s.
//!
//! stateright's lossy network drops unboundedly often, so faults never stop and convergence
//! cannot be checked under it; a per-server budget can. With budget left, a received
//! `Replicate` or `Repair` is held and a nondeterministic choice offered between processing it
//! and losing it. A lost message changes nothing and is not acknowledged — exactly a dropped
//! one — and only counts against the budget, a ghost kept with the store so a crash does not
//! renew it. While a message is held the server receives nothing else (and, see the model's
//! boundary, does not crash), so receiving and choosing act as one step.

use super::{Server, ServerState};
use crate::actor::{Choice, Wiring};
use crate::msg::Msg;
use stateright::actor::{Id, Out};
use std::borrow::Cow;

impl Server<'_> {
    /// Whether `msg` may be lost now: a replication message, with budget left.
    pub(super) fn losable(&self, s: &ServerState, msg: &Msg) -> bool {
        let losable = matches!(msg, Msg::Replicate { .. } | Msg::Repair { .. });
        losable && s.store.lost < self.cfg.lose
    }

    /// Holds `msg` and offers the choice between keeping and losing it.
    pub(super) fn hold(&self, st: &mut Cow<ServerState>, src: Id, msg: Msg, o: &mut Out<Wiring>) {
        st.to_mut().pending = Some(Box::new((src, msg)));
        o.choose_random("lose", vec![Choice::Keep, Choice::Lose]);
    }

    /// The choice is made: returns the held message to process, or counts it lost.
    pub(super) fn resolve(
        &self,
        st: &mut Cow<ServerState>,
        lose: bool,
        o: &mut Out<Wiring>,
    ) -> Option<(Id, Msg)> {
        let held = st.to_mut().pending.take()?;
        if lose {
            let s = st.to_mut();
            s.store.lost = s.store.lost.saturating_add(1);
            self.save(s, o);
            return None;
        }
        Some(*held)
    }
}
