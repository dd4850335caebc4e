//! The node's ring for a trace: built from the trace's explicit placement, so that each model
//! key lands in a partition whose preference list and fallbacks are exactly the ones the model
//! used.
//!
//! The model places key `k` on a fixed list of servers; the node hashes keys onto partitions.
//! [`Placement::build`] makes an explicit owner table (`Ring::with_owners`) in which, for every
//! key, some partition's walk round the ring is the key's preference list followed by its
//! fallbacks (model server `s` is node `NodeId(s + 1)`), then picks for each key node-side bytes
//! that hash into that partition. Everything is checked against the ring's own
//! `extended_list`, so a placement the table cannot express is reported, not guessed.

use bytes::Bytes;
use shoal::{storage_key, NodeId, NodeSpec, Ring};
use shoal_model::trace::Placement as ModelPlacement;
use std::collections::BTreeMap;

/// The node id of model server `s`.
pub fn node_id(s: u8) -> NodeId {
    NodeId(u64::from(s) + 1)
}

/// The model server of node `id`, if it is one.
pub fn server_of(id: NodeId) -> Option<u8> {
    u8::try_from(id.0.checked_sub(1)?).ok()
}

/// The node's ring and key bytes for a trace's placement.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The ring every node holds.
    pub ring: Ring,
    /// Per model key: its node-side bytes.
    keys: BTreeMap<u8, Bytes>,
    /// Per model key: its partition.
    partitions: BTreeMap<u8, u32>,
}

impl Placement {
    /// Builds the ring of `servers` nodes for `placement`, with `n` replicas per key.
    pub fn build(servers: u8, n: usize, placement: &[ModelPlacement]) -> Result<Placement, String> {
        let walks: Vec<(u8, Vec<NodeId>)> = placement
            .iter()
            .map(|p| {
                let order = p.preference.iter().chain(&p.fallbacks);
                (p.key, order.copied().map(node_id).collect())
            })
            .collect();
        for (key, walk) in &walks {
            if walk.len() != usize::from(servers) {
                return Err(format!(
                    "key {key}: preference list and fallbacks name {} servers, not all {servers}",
                    walk.len()
                ));
            }
        }
        let specs: Vec<NodeSpec> = (0..servers).map(|s| NodeSpec::new(node_id(s))).collect();
        // Grow the table by each key's walk until every walk is some partition's; the table is
        // padded to a power of two by repeating itself, so rotations of one ring order need no
        // extra partitions.
        let mut base: Vec<NodeId> = Vec::new();
        for _ in 0..=walks.len() {
            let q = base.len().max(1).next_power_of_two();
            let owners: Vec<NodeId> = if base.is_empty() {
                Vec::new()
            } else {
                (0..q).map(|i| base[i % base.len()]).collect()
            };
            let ring = if owners.is_empty() {
                None
            } else {
                Some(Ring::with_owners(specs.clone(), owners).map_err(|e| e.to_string())?)
            };
            let found = |walk: &Vec<NodeId>| {
                let ring = ring.as_ref()?;
                (0..ring.partitions()).find(|p| ring.extended_list(*p, n) == *walk)
            };
            match walks.iter().find(|(_, w)| found(w).is_none()) {
                Some((_, missing)) => base.extend(missing.iter().copied()),
                None => {
                    let mut partitions = BTreeMap::new();
                    for (key, walk) in &walks {
                        partitions.insert(*key, found(walk).ok_or("unreachable")?);
                    }
                    let ring = ring.ok_or("no keys")?;
                    let mut keys = BTreeMap::new();
                    for (key, p) in &partitions {
                        keys.insert(*key, key_in(&ring, *key, *p)?);
                    }
                    return Ok(Placement {
                        ring,
                        keys,
                        partitions,
                    });
                }
            }
        }
        Err("no owner table expresses this placement".into())
    }

    /// The node-side bytes of model key `k`.
    pub fn key(&self, k: u8) -> Bytes {
        self.keys.get(&k).cloned().unwrap_or_default()
    }

    /// The model key whose node-side bytes are `bytes`.
    pub fn model_key(&self, bytes: &[u8]) -> Option<u8> {
        self.keys
            .iter()
            .find(|(_, b)| b.as_ref() == bytes)
            .map(|(k, _)| *k)
    }

    /// The storage key (partition prefix and key) of model key `k`.
    pub fn storage_key(&self, k: u8) -> Vec<u8> {
        storage_key(self.partition(k), &self.key(k))
    }

    /// The partition of model key `k`.
    pub fn partition(&self, k: u8) -> u32 {
        self.partitions.get(&k).copied().unwrap_or_default()
    }

    /// The model keys.
    pub fn model_keys(&self) -> Vec<u8> {
        self.keys.keys().copied().collect()
    }
}

/// Bytes for model key `k` that hash into partition `p` (`key<k>.<i>` for the first `i`
/// that does).
fn key_in(ring: &Ring, k: u8, p: u32) -> Result<Bytes, String> {
    (0..100_000u32)
        .map(|i| Bytes::from(format!("key{k}.{i}")))
        .find(|b| ring.partition_of(b) == p)
        .ok_or_else(|| format!("no key bytes for key {k} in partition {p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(servers: u8, n: u8, keys: &[u8]) -> Vec<ModelPlacement> {
        keys.iter()
            .map(|&k| ModelPlacement {
                key: k,
                preference: (0..n).map(|i| (k + i) % servers).collect(),
                fallbacks: (n..servers).map(|i| (k + i) % servers).collect(),
            })
            .collect()
    }

    #[test]
    fn every_key_lands_where_the_model_put_it() {
        for servers in 2..=5u8 {
            for n in 1..=servers {
                let placement = rotation(servers, n, &(0..servers).collect::<Vec<_>>());
                let built = Placement::build(servers, usize::from(n), &placement)
                    .unwrap_or_else(|e| panic!("{servers}/{n}: {e}"));
                for p in &placement {
                    let key = built.key(p.key);
                    let part = built.ring.partition_of(&key);
                    let want: Vec<NodeId> = p
                        .preference
                        .iter()
                        .chain(&p.fallbacks)
                        .copied()
                        .map(node_id)
                        .collect();
                    assert_eq!(built.ring.extended_list(part, usize::from(n)), want);
                    assert_eq!(built.model_key(&key), Some(p.key));
                }
            }
        }
        // An arbitrary placement gets a partition of its own.
        let odd = vec![ModelPlacement {
            key: 1,
            preference: vec![2, 0],
            fallbacks: vec![1],
        }];
        let built = Placement::build(3, 2, &odd).expect("placement");
        let part = built.ring.partition_of(&built.key(1));
        assert_eq!(
            built.ring.extended_list(part, 2),
            vec![NodeId(3), NodeId(1), NodeId(2)]
        );
    }
}
