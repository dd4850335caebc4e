//! A key's clock under either causality scheme.
//!
//! A *clock* is everything a replica stores for one key: a DVVSet (a version vector plus the
//! dotted siblings) or, in the classic scheme, the siblings with their per-sibling vector
//! clocks. Servers, messages and properties handle a `Clock` without caring which [`Scheme`] a
//! configuration chose; the scheme decides only how a put and a merge treat causality (see
//! [`crate::dvv`]). Both schemes are join-semilattices under `sync` for the DVVSet and "keep
//! the undominated clocks" for the classic one.

use crate::dvv::{Classic, Dot, DvvSet, NodeId};
use crate::value::{Value, VersionVector};
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use stateright::{Rewrite, RewritePlan};
use std::collections::BTreeSet;

/// Which causality scheme a configuration runs.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Scheme {
    /// Dotted version vector sets (what shoal uses).
    Dvv,
    /// Dynamo's coordinator-incremented vector clock (known to lose updates).
    Classic,
}

/// The clock of one key held by a replica, a hint or a message.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum Clock {
    /// A DVVSet.
    Dvv(DvvSet),
    /// Siblings with classic vector clocks.
    Classic(Classic),
}

impl Clock {
    /// The empty clock (no history) of the given scheme.
    pub fn empty(scheme: Scheme) -> Clock {
        match scheme {
            Scheme::Dvv => Clock::Dvv(DvvSet::default()),
            Scheme::Classic => Clock::Classic(Classic::default()),
        }
    }

    /// Merges another replica's clock into this one.
    pub fn sync(&self, other: &Clock) -> Clock {
        match (self, other) {
            (Clock::Dvv(a), Clock::Dvv(b)) => Clock::Dvv(a.sync(b)),
            (Clock::Classic(a), Clock::Classic(b)) => Clock::Classic(a.sync(b)),
            _ => panic!("a configuration never mixes clock schemes"),
        }
    }

    /// A coordinator's put of `value` with the client's context.
    pub fn update(&self, context: &VersionVector, node: NodeId, value: Value) -> Clock {
        match self {
            Clock::Dvv(a) => Clock::Dvv(a.update(context, node, value)),
            Clock::Classic(a) => Clock::Classic(a.update(context, node, value)),
        }
    }

    /// The context a put's reply hands back, `self` being the coordinator's clock after the
    /// client wrote `value` with `context` at `node` (see [`DvvSet::reply_context`]); in the
    /// classic scheme, the new value's own vector clock.
    pub fn reply_context(&self, context: &VersionVector, value: Value) -> VersionVector {
        match self {
            Clock::Dvv(a) => a
                .dot_of(value)
                .map_or_else(|| context.clone(), |dot| a.reply_context(context, dot)),
            Clock::Classic(a) => a
                .siblings
                .get(&value)
                .cloned()
                .unwrap_or_else(|| context.clone()),
        }
    }

    /// The dot of the sibling holding `value` (DVVSet only).
    pub fn dot_of(&self, value: Value) -> Option<Dot> {
        match self {
            Clock::Dvv(a) => a.dot_of(value),
            Clock::Classic(_) => None,
        }
    }

    /// The siblings with their dots (DVVSet only; none in the classic scheme).
    pub fn dotted(&self) -> Vec<(Dot, Value)> {
        match self {
            Clock::Dvv(a) => a.siblings.iter().map(|(d, v)| (*d, *v)).collect(),
            Clock::Classic(_) => Vec::new(),
        }
    }

    /// The number of siblings, tombstones included.
    pub fn size(&self) -> usize {
        match self {
            Clock::Dvv(a) => a.siblings.len(),
            Clock::Classic(a) => a.siblings.len(),
        }
    }

    /// The live values: the siblings that are not tombstones (what a get returns).
    pub fn live(&self) -> BTreeSet<Value> {
        self.values().into_iter().filter(|v| !v.tomb).collect()
    }

    /// The opaque context a get hands to the client.
    pub fn context(&self) -> VersionVector {
        match self {
            Clock::Dvv(a) => a.context(),
            Clock::Classic(a) => a.context(),
        }
    }

    /// The sibling values (tombstones included).
    pub fn values(&self) -> BTreeSet<Value> {
        match self {
            Clock::Dvv(a) => a.siblings.values().copied().collect(),
            Clock::Classic(a) => a.values(),
        }
    }

    /// Whether every sibling is a tombstone and there is at least one: the key is deleted.
    pub fn only_tombstones(&self) -> bool {
        let vals = self.values();
        !vals.is_empty() && vals.iter().all(|v| v.tomb)
    }

    /// The clock with its tombstones reaped but its causal context kept (DVVSet only).
    pub fn reaped(&self) -> Clock {
        match self {
            Clock::Dvv(a) => Clock::Dvv(a.reaped()),
            Clock::Classic(a) => Clock::Classic(a.clone()),
        }
    }

    /// Whether the key has a history but no siblings: its tombstones were reaped.
    pub fn is_reaped(&self) -> bool {
        match self {
            Clock::Dvv(a) => a.siblings.is_empty() && !a.vv.is_empty(),
            Clock::Classic(_) => false,
        }
    }
}

impl Rewrite<Id> for Clock {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            Clock::Dvv(a) => Clock::Dvv(DvvSet {
                vv: a.vv.clone(),
                siblings: a
                    .siblings
                    .iter()
                    .map(|(d, v)| (*d, v.rewrite(plan)))
                    .collect(),
            }),
            Clock::Classic(a) => Clock::Classic(Classic {
                siblings: a
                    .siblings
                    .iter()
                    .map(|(v, c)| (v.rewrite(plan), c.clone()))
                    .collect(),
            }),
        }
    }
}
