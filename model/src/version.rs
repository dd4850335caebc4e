//! A key's stored versions under either clock scheme.
//!
//! Servers, messages and properties handle a `Version` without caring which scheme a
//! configuration chose; the scheme decides only how a put and a merge treat causality
//! (see [`crate::dvv`]). Both schemes are join-semilattices under `sync` for the DVVSet and
//! "keep the undominated clocks" for the classic one.

use crate::dvv::{Classic, DvvSet, Node};
use crate::value::{Ctx, Val};
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use stateright::{Rewrite, RewritePlan};
use std::collections::BTreeSet;

/// Which causality scheme a configuration runs.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Clock {
    /// Dotted version vector sets (what shoal uses).
    Dvv,
    /// Dynamo's coordinator-incremented vector clock (known to lose updates).
    Classic,
}

/// The versions of one key held by a replica, a hint or a message.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum Version {
    /// A DVVSet.
    Dvv(DvvSet),
    /// Siblings with classic vector clocks.
    Classic(Classic),
}

impl Version {
    /// The empty version (no history) of the given scheme.
    pub fn empty(clock: Clock) -> Version {
        match clock {
            Clock::Dvv => Version::Dvv(DvvSet::default()),
            Clock::Classic => Version::Classic(Classic::default()),
        }
    }

    /// Merges another replica's version into this one.
    pub fn sync(&self, other: &Version) -> Version {
        match (self, other) {
            (Version::Dvv(a), Version::Dvv(b)) => Version::Dvv(a.sync(b)),
            (Version::Classic(a), Version::Classic(b)) => Version::Classic(a.sync(b)),
            _ => panic!("a configuration never mixes clock schemes"),
        }
    }

    /// A coordinator's put of `val` with the client's context.
    pub fn update(&self, ctx: &Ctx, node: Node, val: Val) -> Version {
        match self {
            Version::Dvv(a) => Version::Dvv(a.update(ctx, node, val)),
            Version::Classic(a) => Version::Classic(a.update(ctx, node, val)),
        }
    }

    /// The opaque context a get hands to the client.
    pub fn context(&self) -> Ctx {
        match self {
            Version::Dvv(a) => a.context(),
            Version::Classic(a) => a.context(),
        }
    }

    /// The sibling values (tombstones included).
    pub fn values(&self) -> BTreeSet<Val> {
        match self {
            Version::Dvv(a) => a.siblings.values().copied().collect(),
            Version::Classic(a) => a.values(),
        }
    }

    /// Whether every sibling is a tombstone and there is at least one: the key is deleted.
    pub fn only_tombstones(&self) -> bool {
        let vals = self.values();
        !vals.is_empty() && vals.iter().all(|v| v.tomb)
    }

    /// The version with its tombstones reaped but its causal context kept (DVVSet only).
    pub fn reaped(&self) -> Version {
        match self {
            Version::Dvv(a) => Version::Dvv(a.reaped()),
            Version::Classic(a) => Version::Classic(a.clone()),
        }
    }

    /// Whether the key has a history but no siblings: its tombstones were reaped.
    pub fn is_reaped(&self) -> bool {
        match self {
            Version::Dvv(a) => a.siblings.is_empty() && !a.vv.is_empty(),
            Version::Classic(_) => false,
        }
    }
}

impl Rewrite<Id> for Version {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            Version::Dvv(a) => Version::Dvv(DvvSet {
                vv: a.vv.clone(),
                siblings: a
                    .siblings
                    .iter()
                    .map(|(d, v)| (*d, v.rewrite(plan)))
                    .collect(),
            }),
            Version::Classic(a) => Version::Classic(Classic {
                siblings: a
                    .siblings
                    .iter()
                    .map(|(v, c)| (v.rewrite(plan), c.clone()))
                    .collect(),
            }),
        }
    }
}
