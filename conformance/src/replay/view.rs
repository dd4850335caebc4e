//! The model's side of the abstraction: model clocks and contexts seen as writes.
//!
//! The node's side is [`crate::abstraction`]: a node clock becomes an [`Abstract`] (the writes
//! live in it, the writes its history covers) through the dots learned from the node's own
//! clocks. The model's side is the same function over the model's terms: a model value *is*
//! a write (`{client, seq, key, tomb}` → [`WriteId`]), and a model dot `(server, counter)` —
//! a per-key counter — names the write whose value it tagged in any model clock seen so far.
//! Dots of the two sides are never compared with each other: only abstractions are.

use crate::abstraction::{Abstract, Dots, WriteId};
use shoal::{Clock as NodeClock, VersionVector as NodeVv};
use shoal_model::clock::Clock;
use shoal_model::dvv::covers;
use shoal_model::msg::Msg;
use shoal_model::value::{Value, VersionVector};
use std::collections::{BTreeMap, BTreeSet};

/// The write a model value is.
pub fn write_of(v: &Value) -> WriteId {
    WriteId {
        client: usize::from(v.client) as u64,
        seq: u64::from(v.seq),
        key: u64::from(v.key),
        tomb: v.tomb,
    }
}

/// What is known of the model's dots: per key, which write each names.
#[derive(Clone, Debug, Default)]
pub struct ModelDots {
    by_dot: BTreeMap<(u8, (u8, u8)), WriteId>,
}

impl ModelDots {
    /// Learns the dots of `clock`'s siblings.
    pub fn learn(&mut self, clock: &Clock) {
        for (dot, v) in clock.dotted() {
            self.by_dot.insert((v.key, dot), write_of(&v));
        }
    }

    /// Learns from every clock a message carries (ghosts included: the new clock of a
    /// `PutOk`).
    pub fn learn_msg(&mut self, msg: &Msg) {
        match msg {
            Msg::ReadReply { clock, .. }
            | Msg::Replicate { clock, .. }
            | Msg::Repair { clock, .. }
            | Msg::Handoff { clock, .. }
            | Msg::HandoffAck { clock, .. }
            | Msg::Reap { clock, .. } => self.learn(clock),
            Msg::PutOk { written, .. } => self.learn(written),
            Msg::ForwardReply { reply, .. } => self.learn_msg(reply),
            Msg::Sync { entries } => entries.values().for_each(|c| self.learn(c)),
            _ => {}
        }
    }

    /// The writes to `key` a model context covers.
    pub fn covered(&self, key: u8, vv: &VersionVector) -> BTreeSet<WriteId> {
        self.by_dot
            .iter()
            .filter(|((k, d), _)| *k == key && covers(vv, *d))
            .map(|(_, w)| *w)
            .collect()
    }

    /// A model clock of `key` through the abstraction (DVVSets only).
    pub fn abstract_clock(&self, key: u8, clock: &Clock) -> Result<Abstract, String> {
        match clock {
            Clock::Dvv(d) => Ok(Abstract {
                live: d.siblings.values().map(write_of).collect(),
                covered: self.covered(key, &d.vv),
            }),
            Clock::Classic(_) => Err("a classic clock: the node keeps DVVSets only".into()),
        }
    }
}

/// The writes to `key` a node context covers.
pub fn node_covered(dots: &Dots, key: u8, vv: &NodeVv) -> BTreeSet<WriteId> {
    dots.covered_by(vv)
        .into_iter()
        .filter(|w| w.key == u64::from(key))
        .collect()
}

/// A node clock of `key` (absent: no history) through the abstraction.
pub fn node_abstract(dots: &Dots, key: u8, clock: Option<&NodeClock>) -> Result<Abstract, String> {
    let Some(clock) = clock else {
        return Ok(Abstract::default());
    };
    let mut a = dots.abstract_clock(clock)?;
    a.covered.retain(|w| w.key == u64::from(key));
    Ok(a)
}

/// A model clock of `key` (absent: no history) through the abstraction.
pub fn model_abstract(
    dots: &ModelDots,
    key: u8,
    clock: Option<&Clock>,
) -> Result<Abstract, String> {
    clock.map_or(Ok(Abstract::default()), |c| dots.abstract_clock(key, c))
}

/// Writes, for people.
pub fn show_writes(ws: &BTreeSet<WriteId>) -> String {
    let items: Vec<String> = ws.iter().map(WriteId::to_string).collect();
    format!("{{{}}}", items.join(" "))
}
