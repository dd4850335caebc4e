//! The fixed ring: which servers replicate a key and which stand in for them.
//!
//! The model abstracts the hashed, partitioned ring of DESIGN.md to its consequence: key `k`
//! lives on the `n` consecutive servers starting at `k mod servers` (its *preference list*),
//! and the remaining servers, in ring order, are its *fallbacks* for sloppy quorum. With
//! `R + W > N` any read quorum and any write quorum of the preference list intersect, which is
//! what makes a read see an acknowledged write when no write went to a fallback.

use crate::dvv::NodeId;
use crate::value::Key;

/// The ring of `servers` servers with `n` replicas per key.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct Ring {
    /// Number of servers (3 to 5 in the configurations).
    pub servers: u8,
    /// Replicas per key.
    pub n: u8,
}

impl Ring {
    /// The key's preference list: `n` consecutive servers from the key's home.
    pub fn preference(&self, key: Key) -> Vec<NodeId> {
        (0..self.n).map(|i| (key + i) % self.servers).collect()
    }

    /// The servers after the preference list, in ring order: stand-ins for sloppy quorum.
    pub fn fallbacks(&self, key: Key) -> Vec<NodeId> {
        (self.n..self.servers)
            .map(|i| (key + i) % self.servers)
            .collect()
    }

    /// Whether `node` is one of the key's replicas.
    pub fn replicates(&self, node: NodeId, key: Key) -> bool {
        self.preference(key).contains(&node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_and_fallbacks_partition_the_ring() {
        let ring = Ring { servers: 4, n: 2 };
        assert_eq!(ring.preference(1), vec![1, 2]);
        assert_eq!(ring.fallbacks(1), vec![3, 0]);
        assert_eq!(ring.preference(3), vec![3, 0]);
        assert!(ring.replicates(0, 3) && !ring.replicates(1, 3));
    }

    #[test]
    fn quorums_of_the_preference_list_intersect_when_r_plus_w_exceeds_n() {
        // Every pair of an R-subset and a W-subset of N nodes shares a node iff R + W > N.
        let n = 3u32;
        for r in 1..=n {
            for w in 1..=n {
                let mut all_intersect = true;
                for rs in 0u32..(1 << n) {
                    for ws in 0u32..(1 << n) {
                        if rs.count_ones() == r && ws.count_ones() == w && rs & ws == 0 {
                            all_intersect = false;
                        }
                    }
                }
                assert_eq!(all_intersect, r + w > n, "r={r} w={w}");
            }
        }
    }
}
