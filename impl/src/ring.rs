//! Placement: the ring of `Q` equal partitions and the preference lists it defines.
//!
//! This is strategy 3 of the Dynamo paper (§6.2): the 64-bit hash space is cut into `Q`
//! equal partitions (`Q` a power of two, fixed at cluster creation), and each partition is
//! assigned to one node. A key's partition is the top `log2 Q` bits of its hash. The
//! *preference list* of a partition is found by walking the ring clockwise from it, taking
//! each owner not already chosen — preferring owners in zones not yet used — until `N`
//! distinct nodes are chosen. The nodes after those, in walk order, form the *extended list*
//! that sloppy quorum falls back to when a preferred node is down.
//!
//! Assignment keeps two promises, both property-tested: every node owns within one partition
//! of its weighted fair share `Q · w / Σw`, and a change of membership moves only the
//! partitions that must move (the orphans of a leaving node plus what nodes above their new
//! target give up), so a join moves at most the joining node's share, rounded up.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use xxhash_rust::xxh3::xxh3_64;

/// The stable key hash that decides placement. It is XXH3-64 with seed 0, a published,
/// frozen algorithm: changing it would move every key, so it never changes.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Largest partition count accepted (2^12, as large as Riak's largest common ring): beyond
/// it, rebalancing (quadratic in `Q` per moved partition) and per-partition state cost more
/// than the finer balance helps.
pub const MAX_PARTITIONS: u32 = 1 << 12;

/// How far apart, in partitions, the assignment tries to keep two partitions of one node so
/// that `N` consecutive partitions usually have `N` distinct owners.
const SPREAD_WINDOW: usize = 2;

/// Why a ring could not be built or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `Q` must be a power of two so that a partition is a prefix of the hash.
    #[error("partition count {0} is not a power of two between 1 and {MAX_PARTITIONS}")]
    BadPartitionCount(u32),
    /// A ring needs at least one node.
    #[error("a ring needs at least one node")]
    NoNodes,
    /// Each node id may appear once.
    #[error("node {0} is listed twice")]
    DuplicateNode(NodeId),
    /// A node with weight zero would own nothing; remove it instead.
    #[error("node {0} has weight 0; weights must be at least 1")]
    ZeroWeight(NodeId),
    /// The node to remove is not in the ring.
    #[error("node {0} is not in the ring")]
    UnknownNode(NodeId),
}

/// A member of the ring: its id, optional zone (failure domain) and relative weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The node's id.
    pub id: NodeId,
    /// Failure domain: preference lists take distinct zones first. `None` is a zone of its own.
    pub zone: Option<String>,
    /// Relative capacity: a node of weight 2 owns twice the partitions of weight 1.
    pub weight: u32,
}

impl NodeSpec {
    /// A node with no zone and weight 1.
    pub fn new(id: impl Into<NodeId>) -> Self {
        NodeSpec {
            id: id.into(),
            zone: None,
            weight: 1,
        }
    }

    /// The same node in zone `zone`.
    pub fn in_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// The same node with weight `weight`.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

/// A versioned assignment of `Q` partitions to nodes; every node holds the same ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    version: u64,
    /// Members sorted by id.
    nodes: Vec<NodeSpec>,
    /// `owners[p]` owns partition `p`; `owners.len() == Q`.
    owners: Vec<NodeId>,
}

/// Per-node load figures of a ring, for `shoal ring` and the docs.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLoad {
    /// The node.
    pub id: NodeId,
    /// Partitions it owns.
    pub owned: usize,
    /// Its weighted fair share `Q · w / Σw`.
    pub fair_share: f64,
    /// Partitions whose preference list (of length `N`) includes it: its share of replicas.
    pub replicas: usize,
}

/// Load balance of a ring: the Dynamo paper's Figure 8 measure, mean load ÷ hottest load.
#[derive(Clone, Debug, PartialEq)]
pub struct Balance {
    /// One row per node, by id.
    pub nodes: Vec<NodeLoad>,
    /// Mean owned ÷ max owned (1.0 is perfect), counting primary ownership.
    pub ownership_efficiency: f64,
    /// Mean ÷ max of replica counts: the load when every replica serves requests.
    pub replica_efficiency: f64,
}

impl Ring {
    /// A fresh ring (version 1) over `nodes` with `q` partitions.
    pub fn new(q: u32, nodes: Vec<NodeSpec>) -> Result<Ring, RingError> {
        check_q(q)?;
        let nodes = check_nodes(nodes)?;
        let zero = BTreeMap::new();
        let targets = targets(q as usize, &nodes, &zero);
        let owners = interleave(q as usize, &nodes, &targets);
        Ok(Ring {
            version: 1,
            nodes,
            owners,
        })
    }

    /// A ring (version 1) over `nodes` whose partition `p` is owned by `owners[p]`: an
    /// explicit owner table instead of the balanced assignment of [`Ring::new`]. The
    /// conformance crate builds the placement a model trace names with it (each key's
    /// preference list and fallbacks are the walk from one partition). `owners.len()` is `Q`
    /// (a power of two); every owner must be a member.
    pub fn with_owners(nodes: Vec<NodeSpec>, owners: Vec<NodeId>) -> Result<Ring, RingError> {
        check_q(u32::try_from(owners.len()).unwrap_or(u32::MAX))?;
        let nodes = check_nodes(nodes)?;
        if let Some(stranger) = owners.iter().find(|o| !nodes.iter().any(|n| n.id == **o)) {
            return Err(RingError::UnknownNode(*stranger));
        }
        Ok(Ring {
            version: 1,
            nodes,
            owners,
        })
    }

    /// The version, bumped by every membership change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The partition count `Q`.
    pub fn partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The members, sorted by id.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: NodeId) -> bool {
        self.nodes.iter().any(|n| n.id == id)
    }

    /// The owner of each partition, indexed by partition.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// The partition a key falls in: the top `log2 Q` bits of its hash.
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        partition_of_hash(key_hash(key), self.partitions())
    }

    /// All members in clockwise order from `partition`, each once: the order in which the
    /// preference list and then the sloppy-quorum fallbacks are taken. Members that own no
    /// partition (more nodes than partitions) come last, by id.
    pub fn walk(&self, partition: u32) -> Vec<NodeId> {
        let q = self.owners.len();
        let start = partition as usize % q.max(1);
        let mut out: Vec<NodeId> = Vec::with_capacity(self.nodes.len());
        for i in 0..q {
            if out.len() == self.nodes.len() {
                break;
            }
            if let Some(owner) = self.owners.get((start + i) % q) {
                if !out.contains(owner) {
                    out.push(*owner);
                }
            }
        }
        for n in &self.nodes {
            if !out.contains(&n.id) {
                out.push(n.id);
            }
        }
        out
    }

    /// The first `n` nodes of [`Ring::extended_list`]: the replicas of `partition`, distinct
    /// zones first. Shorter than `n` only when the ring has fewer than `n` nodes.
    pub fn preference_list(&self, partition: u32, n: usize) -> Vec<NodeId> {
        let mut list = self.extended_list(partition, n);
        list.truncate(n);
        list
    }

    /// Every member, ordered as the preference list of `partition` for `n` replicas followed
    /// by the remaining nodes in walk order (the sloppy-quorum fallbacks).
    pub fn extended_list(&self, partition: u32, n: usize) -> Vec<NodeId> {
        let walk = self.walk(partition);
        let mut chosen: Vec<NodeId> = Vec::with_capacity(walk.len());
        let mut zones: BTreeSet<Option<&str>> = BTreeSet::new();
        // First pass: one node per zone, in walk order (nodes with no zone are each their
        // own zone).
        for id in &walk {
            if chosen.len() == n {
                break;
            }
            let zone = self.zone_of(*id);
            if zone.is_none() || zones.insert(zone) {
                chosen.push(*id);
            }
        }
        // Then fill from the skipped nodes, still in walk order, and append the rest.
        for id in &walk {
            if !chosen.contains(id) {
                chosen.push(*id);
            }
        }
        chosen
    }

    fn zone_of(&self, id: NodeId) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .and_then(|n| n.zone.as_deref())
    }

    /// Partitions owned per member.
    pub fn owned_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> = self.nodes.iter().map(|n| (n.id, 0)).collect();
        for o in &self.owners {
            *counts.entry(*o).or_default() += 1;
        }
        counts
    }

    /// A new ring (version + 1) with `node` added, moving only what must move.
    pub fn with_node(&self, node: NodeSpec) -> Result<Ring, RingError> {
        let mut nodes = self.nodes.clone();
        nodes.push(node);
        self.reassign(nodes)
    }

    /// A new ring (version + 1) without `id`; its partitions go to the nodes below target.
    pub fn without_node(&self, id: NodeId) -> Result<Ring, RingError> {
        if !self.contains(id) {
            return Err(RingError::UnknownNode(id));
        }
        let nodes = self.nodes.iter().filter(|n| n.id != id).cloned().collect();
        self.reassign(nodes)
    }

    /// A new ring (version + 1) over `nodes` (joins, leaves and weight changes at once),
    /// moving the fewest partitions that reach every node's new target.
    pub fn reassign(&self, nodes: Vec<NodeSpec>) -> Result<Ring, RingError> {
        let nodes = check_nodes(nodes)?;
        let q = self.owners.len();
        let members: BTreeSet<NodeId> = nodes.iter().map(|n| n.id).collect();
        let mut by_node: BTreeMap<NodeId, Vec<usize>> =
            nodes.iter().map(|n| (n.id, Vec::new())).collect();
        let mut released: Vec<usize> = Vec::new();
        for (p, o) in self.owners.iter().enumerate() {
            match by_node.get_mut(o) {
                Some(v) if members.contains(o) => v.push(p),
                _ => released.push(p),
            }
        }
        let current: BTreeMap<NodeId, usize> =
            by_node.iter().map(|(id, ps)| (*id, ps.len())).collect();
        let targets = targets(q, &nodes, &current);
        // Nodes above target give up partitions, keeping the rest in place. Each release is
        // the partition farthest from those already released, taking turns between nodes, so
        // what a joining node receives is spread around the ring rather than bunched.
        let mut surplus: BTreeMap<NodeId, usize> = by_node
            .iter()
            .map(|(id, ps)| {
                (
                    *id,
                    ps.len()
                        .saturating_sub(targets.get(id).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, s)| *s > 0)
            .collect();
        let mut taken: BTreeSet<usize> = released.iter().copied().collect();
        while !surplus.is_empty() {
            for (id, left) in surplus.iter_mut() {
                let candidates = by_node.get(id).map(Vec::as_slice).unwrap_or(&[]);
                if let Some(p) = farthest_from(candidates, &taken, q) {
                    taken.insert(p);
                }
                *left -= 1;
            }
            surplus.retain(|_, left| *left > 0);
        }
        let released: Vec<usize> = taken.into_iter().collect();
        let mut owners = self.owners.clone();
        for p in &released {
            // Mark released partitions as unowned while choosing, so the spread check below
            // does not count their old owner.
            if let Some(slot) = owners.get_mut(*p) {
                *slot = NodeId(u64::MAX);
            }
        }
        let mut deficit: BTreeMap<NodeId, usize> = nodes
            .iter()
            .map(|n| {
                let have = current.get(&n.id).copied().unwrap_or(0);
                let target = targets.get(&n.id).copied().unwrap_or(0);
                (n.id, target.saturating_sub(have.min(target)))
            })
            .collect();
        for p in released {
            let near: BTreeSet<NodeId> = (1..=SPREAD_WINDOW)
                .flat_map(|d| [(p + q - d % q) % q, (p + d) % q])
                .filter_map(|i| owners.get(i).copied())
                .collect();
            let pick = deficit
                .iter()
                .filter(|(_, d)| **d > 0)
                .max_by_key(|(id, d)| (!near.contains(id), **d, std::cmp::Reverse(**id)))
                .map(|(id, _)| *id);
            if let Some(id) = pick {
                if let Some(d) = deficit.get_mut(&id) {
                    *d -= 1;
                }
                if let Some(slot) = owners.get_mut(p) {
                    *slot = id;
                }
            }
        }
        Ok(Ring {
            version: self.version + 1,
            nodes,
            owners,
        })
    }

    /// Load figures for replicas of `n` nodes per key (Dynamo paper, Figure 8).
    pub fn balance(&self, n: usize) -> Balance {
        let total_weight: u64 = self.nodes.iter().map(|x| u64::from(x.weight)).sum();
        let owned = self.owned_counts();
        let mut replicas: BTreeMap<NodeId, usize> = self.nodes.iter().map(|x| (x.id, 0)).collect();
        for p in 0..self.partitions() {
            for id in self.preference_list(p, n) {
                *replicas.entry(id).or_default() += 1;
            }
        }
        let q = self.owners.len() as f64;
        let nodes: Vec<NodeLoad> = self
            .nodes
            .iter()
            .map(|x| NodeLoad {
                id: x.id,
                owned: owned.get(&x.id).copied().unwrap_or(0),
                fair_share: q * f64::from(x.weight) / total_weight.max(1) as f64,
                replicas: replicas.get(&x.id).copied().unwrap_or(0),
            })
            .collect();
        let eff = |xs: Vec<usize>| {
            let max = xs.iter().copied().max().unwrap_or(0);
            if max == 0 {
                return 1.0;
            }
            xs.iter().sum::<usize>() as f64 / xs.len() as f64 / max as f64
        };
        Balance {
            ownership_efficiency: eff(nodes.iter().map(|x| x.owned).collect()),
            replica_efficiency: eff(nodes.iter().map(|x| x.replicas).collect()),
            nodes,
        }
    }
}

/// The partition of a hash in a ring of `q` partitions (`q` a power of two).
pub fn partition_of_hash(hash: u64, q: u32) -> u32 {
    let bits = q.trailing_zeros();
    hash.checked_shr(64 - bits).unwrap_or(0) as u32
}

fn check_q(q: u32) -> Result<(), RingError> {
    if q == 0 || !q.is_power_of_two() || q > MAX_PARTITIONS {
        return Err(RingError::BadPartitionCount(q));
    }
    Ok(())
}

fn check_nodes(mut nodes: Vec<NodeSpec>) -> Result<Vec<NodeSpec>, RingError> {
    if nodes.is_empty() {
        return Err(RingError::NoNodes);
    }
    nodes.sort_by_key(|n| n.id);
    for w in nodes.windows(2) {
        if let [a, b] = w {
            if a.id == b.id {
                return Err(RingError::DuplicateNode(a.id));
            }
        }
    }
    if let Some(n) = nodes.iter().find(|n| n.weight == 0) {
        return Err(RingError::ZeroWeight(n.id));
    }
    Ok(nodes)
}

/// Each node's partition target: the floor of its fair share, plus one for as many nodes as
/// partitions remain. Only nodes with a fractional share may get an extra (an exact share is
/// its own target); among them, first those that already hold more than the floor (so they
/// keep what they have and nothing moves for it), then by largest fraction.
fn targets(
    q: usize,
    nodes: &[NodeSpec],
    current: &BTreeMap<NodeId, usize>,
) -> BTreeMap<NodeId, usize> {
    let total: u128 = nodes.iter().map(|n| u128::from(n.weight)).sum();
    let mut out = BTreeMap::new();
    let mut order = Vec::with_capacity(nodes.len());
    let mut assigned = 0usize;
    for n in nodes {
        let scaled = q as u128 * u128::from(n.weight);
        let base = (scaled / total.max(1)) as usize;
        let frac = scaled % total.max(1);
        let has_more = current.get(&n.id).copied().unwrap_or(0) > base;
        assigned += base;
        out.insert(n.id, base);
        order.push((frac > 0, has_more, frac, std::cmp::Reverse(n.id)));
    }
    order.sort_unstable_by(|a, b| b.cmp(a));
    for (_, _, _, std::cmp::Reverse(id)) in order.into_iter().take(q.saturating_sub(assigned)) {
        if let Some(t) = out.get_mut(&id) {
            *t += 1;
        }
    }
    out
}

/// A fresh assignment: smooth weighted round-robin over the nodes ordered zone by zone, so
/// that neighbouring partitions belong to different nodes and, where possible, zones.
fn interleave(q: usize, nodes: &[NodeSpec], targets: &BTreeMap<NodeId, usize>) -> Vec<NodeId> {
    let mut by_zone: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for n in nodes {
        by_zone.entry(n.zone.as_deref()).or_default().push(n.id);
    }
    let mut order: Vec<NodeId> = Vec::with_capacity(nodes.len());
    let longest = by_zone.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for ids in by_zone.values() {
            if let Some(id) = ids.get(i) {
                order.push(*id);
            }
        }
    }
    let mut credit: Vec<i64> = vec![0; order.len()];
    let mut owners = Vec::with_capacity(q);
    for _ in 0..q {
        let mut best: Option<usize> = None;
        for (i, id) in order.iter().enumerate() {
            let t = targets.get(id).copied().unwrap_or(0) as i64;
            if let Some(c) = credit.get_mut(i) {
                *c += t;
            }
            let better = match (best, credit.get(i)) {
                (None, Some(_)) => true,
                (Some(b), Some(c)) => credit.get(b).is_some_and(|cb| c > cb),
                _ => false,
            };
            if better {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            if let (Some(c), Some(id)) = (credit.get_mut(b), order.get(b)) {
                *c -= q as i64;
                owners.push(*id);
            }
        }
    }
    owners
}

/// The candidate not yet in `taken` whose circular distance (on a ring of `q`) to the
/// nearest member of `taken` is largest; the lowest such partition on ties.
fn farthest_from(candidates: &[usize], taken: &BTreeSet<usize>, q: usize) -> Option<usize> {
    let dist = |p: usize| -> usize {
        let after = taken.range(p..).next().or_else(|| taken.iter().next());
        let before = taken
            .range(..=p)
            .next_back()
            .or_else(|| taken.iter().next_back());
        [after, before]
            .into_iter()
            .flatten()
            .map(|t| {
                let d = t.abs_diff(p);
                d.min(q - d)
            })
            .min()
            .unwrap_or(q)
    };
    candidates
        .iter()
        .copied()
        .filter(|p| !taken.contains(p))
        .max_by_key(|p| (dist(*p), std::cmp::Reverse(*p)))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod owner_table_tests {
    use super::*;

    #[test]
    fn an_explicit_owner_table_decides_the_walks_and_is_checked() {
        let nodes: Vec<NodeSpec> = (1..=3).map(NodeSpec::new).collect();
        let owners: Vec<NodeId> = [1, 2, 3, 1].into_iter().map(NodeId).collect();
        let ring = Ring::with_owners(nodes.clone(), owners.clone()).expect("valid table");
        assert_eq!((ring.version(), ring.owners()), (1, owners.as_slice()));
        let ids = |v: &[u64]| v.iter().copied().map(NodeId).collect::<Vec<_>>();
        assert_eq!(ring.extended_list(0, 2), ids(&[1, 2, 3]));
        assert_eq!(ring.preference_list(1, 2), ids(&[2, 3]));
        assert_eq!(ring.extended_list(2, 2), ids(&[3, 1, 2]));
        assert_eq!(
            Ring::with_owners(nodes.clone(), ids(&[1, 2, 3])),
            Err(RingError::BadPartitionCount(3))
        );
        assert_eq!(
            Ring::with_owners(nodes, ids(&[1, 4])),
            Err(RingError::UnknownNode(NodeId(4)))
        );
    }
}
