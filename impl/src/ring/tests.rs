//! Placement tests: table tests of the hash and partition arithmetic, property tests of
//! balance, preference lists and movement.

use super::*;
use proptest::prelude::*;

fn ring(q: u32, ids: &[u64]) -> Ring {
    Ring::new(q, ids.iter().map(|i| NodeSpec::new(*i)).collect()).expect("valid ring")
}

fn moved(a: &Ring, b: &Ring) -> usize {
    a.owners()
        .iter()
        .zip(b.owners())
        .filter(|(x, y)| x != y)
        .count()
}

fn assert_balanced(r: &Ring) -> Result<(), TestCaseError> {
    let b = r.balance(1);
    let total: usize = b.nodes.iter().map(|n| n.owned).sum();
    prop_assert_eq!(total, r.partitions() as usize);
    for n in &b.nodes {
        prop_assert!(
            (n.owned as f64 - n.fair_share).abs() < 1.0,
            "{} owns {} for a fair share of {}",
            n.id,
            n.owned,
            n.fair_share
        );
    }
    Ok(())
}

#[test]
fn the_key_hash_is_frozen() {
    // XXH3-64 with seed 0: these values decide placement and must never change.
    assert_eq!(key_hash(b""), 0x2D06_8005_38D3_94C2);
    let r = ring(256, &[1, 2, 3]);
    assert_eq!(r.partition_of(b""), 0x2D);
}

#[test]
fn partitions_are_hash_prefixes() {
    let table: &[(u64, u32, u32)] = &[
        (0, 1, 0),
        (u64::MAX, 1, 0),
        (u64::MAX, 2, 1),
        (1 << 63, 2, 1),
        ((1 << 63) - 1, 2, 0),
        (u64::MAX, 256, 255),
        (0x0100_0000_0000_0000, 256, 1),
        (0x00ff_ffff_ffff_ffff, 256, 0),
        (u64::MAX, 4096, 4095),
    ];
    for (hash, q, want) in table {
        assert_eq!(partition_of_hash(*hash, *q), *want, "hash {hash:#x} q {q}");
    }
}

#[test]
fn bad_rings_are_refused() {
    assert_eq!(
        Ring::new(100, vec![NodeSpec::new(1u64)]),
        Err(RingError::BadPartitionCount(100))
    );
    assert_eq!(
        Ring::new(0, vec![NodeSpec::new(1u64)]),
        Err(RingError::BadPartitionCount(0))
    );
    assert_eq!(Ring::new(64, vec![]), Err(RingError::NoNodes));
    assert_eq!(
        Ring::new(64, vec![NodeSpec::new(1u64), NodeSpec::new(1u64)]),
        Err(RingError::DuplicateNode(NodeId(1)))
    );
    assert_eq!(
        Ring::new(64, vec![NodeSpec::new(1u64).with_weight(0)]),
        Err(RingError::ZeroWeight(NodeId(1)))
    );
    assert_eq!(
        ring(64, &[1, 2]).without_node(NodeId(9)),
        Err(RingError::UnknownNode(NodeId(9)))
    );
}

#[test]
fn a_fresh_ring_interleaves_owners() {
    let r = ring(8, &[1, 2, 3, 4]);
    // Equal weights: round robin, so any N consecutive partitions have N distinct owners.
    let owners: Vec<u64> = r.owners().iter().map(|n| n.0).collect();
    assert_eq!(owners, vec![1, 2, 3, 4, 1, 2, 3, 4]);
    assert_eq!(
        r.preference_list(3, 3),
        vec![NodeId(4), NodeId(1), NodeId(2)]
    );
    assert_eq!(r.version(), 1);
}

#[test]
fn zones_come_first_in_preference_lists() {
    // Zone a holds nodes 1 and 2, zone b node 3, zone c node 4.
    let nodes = vec![
        NodeSpec::new(1u64).in_zone("a"),
        NodeSpec::new(2u64).in_zone("a"),
        NodeSpec::new(3u64).in_zone("b"),
        NodeSpec::new(4u64).in_zone("c"),
    ];
    let r = Ring::new(64, nodes).expect("ring");
    for p in 0..64 {
        let list = r.preference_list(p, 3);
        let zones: BTreeSet<_> = list.iter().map(|id| r.zone_of(*id)).collect();
        assert_eq!(zones.len(), 3, "partition {p}: {list:?}");
        // The partition's owner always leads its preference list.
        assert_eq!(list.first(), r.owners().get(p as usize));
    }
}

fn nodes_strategy() -> impl Strategy<Value = Vec<NodeSpec>> {
    prop::collection::vec((1u32..4, 0usize..4), 1..24).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (w, z))| {
                let n = NodeSpec::new(i as u64 + 1).with_weight(w);
                if z == 0 {
                    n
                } else {
                    n.in_zone(format!("z{z}"))
                }
            })
            .collect()
    })
}

fn q_strategy() -> impl Strategy<Value = u32> {
    (3u32..11).prop_map(|b| 1 << b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn fresh_rings_are_balanced(q in q_strategy(), nodes in nodes_strategy()) {
        assert_balanced(&Ring::new(q, nodes)?)?;
    }

    #[test]
    fn preference_lists_are_distinct_and_zone_diverse(
        q in q_strategy(), nodes in nodes_strategy(), n in 1usize..5, key in any::<Vec<u8>>()
    ) {
        let r = Ring::new(q, nodes)?;
        let p = r.partition_of(&key);
        let list = r.preference_list(p, n);
        let distinct: BTreeSet<_> = list.iter().collect();
        prop_assert_eq!(distinct.len(), list.len());
        prop_assert_eq!(list.len(), n.min(r.nodes().len()));
        prop_assert_eq!(list.first(), r.owners().get(p as usize));
        // As many zones as possible: min(n, zones available), counting zoneless nodes alone.
        let zone_key = |id: &NodeId| r.zone_of(*id).map(str::to_string).unwrap_or_else(|| id.to_string());
        let all_zones: BTreeSet<String> = r.nodes().iter().map(|x| zone_key(&x.id)).collect();
        let zones: BTreeSet<String> = list.iter().map(zone_key).collect();
        prop_assert_eq!(zones.len(), n.min(all_zones.len()));
        // The extended list is every node once, preference list first.
        let ext = r.extended_list(p, n);
        prop_assert_eq!(&ext[..list.len()], &list[..]);
        prop_assert_eq!(ext.iter().collect::<BTreeSet<_>>().len(), r.nodes().len());
    }

    #[test]
    fn a_join_moves_at_most_the_new_share(q in q_strategy(), count in 1u64..30) {
        let ids: Vec<u64> = (1..=count).collect();
        let before = ring(q, &ids);
        let after = before.with_node(NodeSpec::new(count + 1))?;
        assert_balanced(&after)?;
        let share = f64::from(q) / (count + 1) as f64;
        prop_assert!(moved(&before, &after) as f64 <= share.ceil(),
            "moved {} for a share of {share}", moved(&before, &after));
        // Everything that moved went to the new node.
        for (x, y) in before.owners().iter().zip(after.owners()) {
            prop_assert!(x == y || *y == NodeId(count + 1));
        }
        prop_assert_eq!(after.version(), before.version() + 1);
    }

    #[test]
    fn a_leave_moves_only_the_leavers_partitions(q in q_strategy(), count in 2u64..30, pick in any::<prop::sample::Index>()) {
        let ids: Vec<u64> = (1..=count).collect();
        let before = ring(q, &ids);
        let gone = NodeId(ids[pick.index(ids.len())]);
        let after = before.without_node(gone)?;
        assert_balanced(&after)?;
        let owned = before.owned_counts()[&gone];
        prop_assert_eq!(moved(&before, &after), owned);
        prop_assert!(!after.owners().contains(&gone));
    }

    #[test]
    fn any_change_sequence_stays_balanced(
        q in q_strategy(), start in nodes_strategy(),
        changes in prop::collection::vec((any::<bool>(), 1u32..4, any::<prop::sample::Index>()), 1..8)
    ) {
        let mut r = Ring::new(q, start)?;
        let mut next_id = 1000u64;
        for (join, weight, pick) in changes {
            let before = r.clone();
            if join || r.nodes().len() == 1 {
                next_id += 1;
                r = r.with_node(NodeSpec::new(next_id).with_weight(weight))?;
            } else {
                let id = r.nodes()[pick.index(r.nodes().len())].id;
                r = r.without_node(id)?;
            }
            assert_balanced(&r)?;
            // Never more moves than the targets force: orphans plus surplus.
            let counts_before = before.owned_counts();
            let counts_after = r.owned_counts();
            let forced: usize = counts_after.iter().map(|(id, after)| {
                let kept = counts_before.get(id).copied().unwrap_or(0);
                after.saturating_sub(kept)
            }).sum();
            prop_assert_eq!(moved(&before, &r), forced);
        }
    }
}
