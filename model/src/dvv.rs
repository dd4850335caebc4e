//! The model's plain dotted version vector set (DVVSet) and the classic Dynamo vector clock.
//!
//! A DVVSet (Preguiça, Baquero, Almeida et al., "Dotted Version Vectors: Logical Clocks for
//! Optimistic Replication", 2010; the `dvvset` used by Riak 2.0) stores, for one key, a
//! *causal context* — a version vector `vv` — and the concurrent values (siblings), each tagged
//! by the *dot* `(node, counter)` of the write that created it. Invariant: every sibling's dot is
//! covered by `vv` (`dot.1 <= vv[dot.0]`), and a dot covered by `vv` but absent from the
//! siblings was superseded. Here it is written in the plainest form, one ordered map of dots to
//! values plus one ordered map for the vector, so that it is obviously right; Almeida's compact
//! per-node lists are an encoding of the same thing.
//!
//! - `sync(a, b)` keeps a sibling of either side unless the other side covers its dot without
//!   holding it (then it was superseded there); the vectors are joined pointwise.
//! - `update(local, context, node, v)` is a coordinator's put: siblings covered by the
//!   client's `context` are replaced, the others stay as concurrent, and `v` gets the next dot
//!   of `node` — larger than any counter of `node` that `local` or `context` has seen.
//! - `less(a, b)`: `a`'s causal context is covered by `b`'s and differs.
//!
//! The classic scheme (`Classic`) is Dynamo's (DeCandia et al. 2007, §4.4) as Riak used it
//! before 2.0 with per-vnode clocks: each sibling carries its own vector clock; a put's clock is
//! the client's context with the coordinator's entry set to one more than the largest it has
//! stored for the key; a sibling dominated by another clock is discarded. Two clients writing
//! through one coordinator with the same context get comparable clocks for concurrent writes,
//! so one write silently replaces the other: the lost update the checker must find.

use crate::value::{Value, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A server, by its index on the ring: the actor of the dots it creates, and the index of
/// version vector entries.
pub type NodeId = u8;
/// A dot `(actor, counter)`: the identity of one write event, the coordinator that created it
/// and its counter there.
pub type Dot = (NodeId, u8);

/// How actors number a server's per-key epochs: actor `server + EPOCH_STRIDE * epoch`.
///
/// The node's actors are `(identity, epoch)`: a coordinator continues the newest epoch of its
/// own in the key's clock, and takes a fresh one for a key whose clock holds none of its own —
/// after forgetting the key, so that no dot is ever issued twice (`core/actors.rs`). The model
/// numbers epochs per server and key and folds them into the version vector's index, so that
/// epoch 0 — every write before a key is forgotten — is the server itself: without
/// forgetting, actors are servers, as they always were.
pub const EPOCH_STRIDE: u8 = 16;

/// The actor of `server` in `epoch` (see [`EPOCH_STRIDE`]).
pub fn actor(server: NodeId, epoch: u8) -> NodeId {
    server + EPOCH_STRIDE * epoch
}

/// The server an actor belongs to.
pub fn server_of(actor: NodeId) -> NodeId {
    actor % EPOCH_STRIDE
}

/// The epoch of an actor.
pub fn epoch_of(actor: NodeId) -> u8 {
    actor / EPOCH_STRIDE
}

/// Whether the version vector `vv` covers `dot`.
pub fn covers(vv: &VersionVector, dot: Dot) -> bool {
    vv.get(&dot.0).is_some_and(|&n| n >= dot.1)
}

/// Pointwise maximum of two version vectors.
pub fn join(a: &VersionVector, b: &VersionVector) -> VersionVector {
    let mut out = a.clone();
    for (&n, &c) in b {
        let e = out.entry(n).or_insert(0);
        *e = (*e).max(c);
    }
    out
}

/// Whether every entry of `a` is at most the entry of `b` (`a` happened before or equals `b`).
pub fn leq(a: &VersionVector, b: &VersionVector) -> bool {
    a.iter().all(|(n, &c)| b.get(n).is_some_and(|&d| d >= c))
}

/// The model's DVVSet: a causal context and the siblings keyed by their dots.
#[derive(Clone, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct DvvSet {
    /// Causal context: for each node, the largest counter of its writes that this set has seen.
    pub vv: VersionVector,
    /// The concurrent values, each tagged by the dot of the write that created it.
    #[serde(with = "crate::pairs")]
    pub siblings: BTreeMap<Dot, Value>,
}

impl DvvSet {
    /// Merges two replicas' sets: the join in the DVVSet lattice.
    pub fn sync(&self, other: &DvvSet) -> DvvSet {
        let keep = |from: &DvvSet, against: &DvvSet| {
            from.siblings
                .iter()
                .filter(|(d, _)| !covers(&against.vv, **d) || against.siblings.contains_key(d))
                .map(|(d, v)| (*d, *v))
                .collect::<Vec<_>>()
        };
        let mut siblings: BTreeMap<Dot, Value> = keep(self, other).into_iter().collect();
        siblings.extend(keep(other, self));
        DvvSet {
            vv: join(&self.vv, &other.vv),
            siblings,
        }
    }

    /// A coordinator's put of `value` with the client's `context` at `node`.
    pub fn update(&self, context: &VersionVector, node: NodeId, value: Value) -> DvvSet {
        let seen = self
            .vv
            .get(&node)
            .copied()
            .unwrap_or(0)
            .max(context.get(&node).copied().unwrap_or(0));
        let dot = (node, seen + 1);
        let mut siblings: BTreeMap<Dot, Value> = self
            .siblings
            .iter()
            .filter(|(d, _)| !covers(context, **d))
            .map(|(d, v)| (*d, *v))
            .collect();
        siblings.insert(dot, value);
        let mut vv = join(&self.vv, context);
        vv.insert(node, dot.1);
        DvvSet { vv, siblings }
    }

    /// The context handed to a client: the causal context, which covers every sibling.
    pub fn context(&self) -> VersionVector {
        self.vv.clone()
    }

    /// The dot of the sibling holding `value`, if it is one.
    pub fn dot_of(&self, value: Value) -> Option<Dot> {
        self.siblings
            .iter()
            .find(|(_, v)| **v == value)
            .map(|(d, _)| *d)
    }

    /// The context a put's reply hands back, `self` being the coordinator's clock after
    /// writing `dot` with the client's `context` (the node's `reply_context`). It must cover
    /// the new value, so that the client's next write replaces it, and nothing the client did
    /// not see. If the new value is the only sibling, the whole causal context does both.
    /// Otherwise the client's context plus the new dot — unless that covers another sibling
    /// (an unseen earlier write of the same node, whose dots a vector covers contiguously),
    /// and then the client's context alone: its next write becomes a sibling of this one
    /// instead of silently replacing a value it never read.
    pub fn reply_context(&self, context: &VersionVector, dot: Dot) -> VersionVector {
        if self.siblings.len() == 1 {
            return self.vv.clone();
        }
        let mut candidate = context.clone();
        let e = candidate.entry(dot.0).or_insert(0);
        *e = (*e).max(dot.1);
        let covers_unseen = self
            .siblings
            .keys()
            .any(|d| *d != dot && covers(&candidate, *d));
        if covers_unseen {
            context.clone()
        } else {
            candidate
        }
    }

    /// Whether `self` is strictly older than `other`.
    pub fn less(&self, other: &DvvSet) -> bool {
        leq(&self.vv, &other.vv) && self.vv != other.vv
    }

    /// The set with its siblings removed and its causal context kept: a reaped tombstone.
    pub fn reaped(&self) -> DvvSet {
        DvvSet {
            vv: self.vv.clone(),
            siblings: BTreeMap::new(),
        }
    }
}

/// Dynamo's original clocks: each sibling with its own vector clock.
#[derive(Clone, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Classic {
    /// The siblings, each with the vector clock the coordinator gave it.
    #[serde(with = "crate::pairs")]
    pub siblings: BTreeMap<Value, VersionVector>,
}

impl Classic {
    /// Keeps every sibling that no other sibling's clock strictly dominates.
    fn prune(all: BTreeMap<Value, VersionVector>) -> Classic {
        let siblings = all
            .iter()
            .filter(|(_, c)| !all.values().any(|d| leq(c, d) && *c != d))
            .map(|(v, c)| (*v, c.clone()))
            .collect();
        Classic { siblings }
    }

    /// Merges two replicas' sibling sets, discarding dominated clocks.
    pub fn sync(&self, other: &Classic) -> Classic {
        let mut all = self.siblings.clone();
        all.extend(other.siblings.iter().map(|(v, c)| (*v, c.clone())));
        Classic::prune(all)
    }

    /// A coordinator's put: the context incremented at `node`, past anything stored locally.
    pub fn update(&self, context: &VersionVector, node: NodeId, value: Value) -> Classic {
        let local = self
            .siblings
            .values()
            .filter_map(|c| c.get(&node).copied())
            .max()
            .unwrap_or(0);
        let mut clock = context.clone();
        clock.insert(
            node,
            local.max(context.get(&node).copied().unwrap_or(0)) + 1,
        );
        let mut all = self.siblings.clone();
        all.insert(value, clock);
        Classic::prune(all)
    }

    /// The context handed to a client: the join of the siblings' clocks.
    pub fn context(&self) -> VersionVector {
        self.siblings
            .values()
            .fold(VersionVector::new(), |acc, c| join(&acc, c))
    }

    /// The sibling values.
    pub fn values(&self) -> BTreeSet<Value> {
        self.siblings.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::actor::Id;

    fn value(client: usize, seq: u8) -> Value {
        Value {
            client: Id::from(client),
            seq,
            key: 0,
            tomb: false,
        }
    }

    #[test]
    fn concurrent_puts_through_one_coordinator_become_siblings() {
        let empty = DvvSet::default();
        let a = empty.update(&VersionVector::new(), 0, value(5, 1));
        let b = a.update(&VersionVector::new(), 0, value(6, 1));
        assert_eq!(b.siblings.len(), 2);
        assert_eq!(b.vv, VersionVector::from([(0, 2)]));
    }

    #[test]
    fn put_with_context_replaces_exactly_what_it_covers() {
        let a = DvvSet::default().update(&VersionVector::new(), 0, value(5, 1));
        let context = a.context();
        let b = a.update(&VersionVector::new(), 1, value(6, 1));
        let c = b.update(&context, 1, value(5, 2));
        let vals: Vec<Value> = c.siblings.values().copied().collect();
        assert_eq!(vals, vec![value(6, 1), value(5, 2)]);
    }

    #[test]
    fn sync_drops_superseded_and_keeps_concurrent() {
        let a = DvvSet::default().update(&VersionVector::new(), 0, value(5, 1));
        let newer = a.update(&a.context(), 0, value(5, 2));
        let other = DvvSet::default().update(&VersionVector::new(), 1, value(6, 1));
        let merged = a.sync(&newer).sync(&other);
        assert_eq!(merged.siblings.len(), 2);
        assert!(!merged.siblings.values().any(|v| *v == value(5, 1)));
        assert_eq!(
            merged,
            other.sync(&newer).sync(&a),
            "sync is commutative here"
        );
        assert_eq!(merged.sync(&merged), merged, "sync is idempotent");
        assert!(a.less(&newer) && !newer.less(&a));
    }

    #[test]
    fn a_put_reply_covers_its_own_write_and_no_unseen_sibling() {
        let a = DvvSet::default().update(&VersionVector::new(), 0, value(5, 1));
        assert_eq!(a.reply_context(&VersionVector::new(), (0, 1)), a.vv);
        // A second blind write at the same node: `{0: 2}` would cover the unseen (0, 1).
        let b = a.update(&VersionVector::new(), 0, value(6, 1));
        assert_eq!(
            b.reply_context(&VersionVector::new(), (0, 2)),
            VersionVector::new()
        );
        // A blind write at another node: its own dot covers no other sibling.
        let c = a.update(&VersionVector::new(), 1, value(6, 1));
        assert_eq!(
            c.reply_context(&VersionVector::new(), (1, 1)),
            VersionVector::from([(1, 1)])
        );
        assert_eq!(c.dot_of(value(6, 1)), Some((1, 1)));
    }

    #[test]
    fn a_reaped_set_still_shadows_what_it_deleted() {
        let a = DvvSet::default().update(&VersionVector::new(), 0, value(5, 1));
        let reaped = a.reaped();
        assert_eq!(a.sync(&reaped), reaped);
    }

    #[test]
    fn classic_clock_loses_a_concurrent_write_through_one_coordinator() {
        let a = Classic::default().update(&VersionVector::new(), 0, value(5, 1));
        let b = a.update(&VersionVector::new(), 0, value(6, 1));
        assert_eq!(b.values(), BTreeSet::from([value(6, 1)]));
        let c = Classic::default().update(&VersionVector::new(), 1, value(6, 1));
        assert_eq!(
            a.sync(&c).values().len(),
            2,
            "different coordinators: siblings"
        );
    }
}
