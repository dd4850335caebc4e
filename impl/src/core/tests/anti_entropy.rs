//! Anti-entropy between cores: a replica that missed writes, a wiped replica and a missed
//! delete are brought up without reads; a difference that is only writes in flight is left
//! alone.

use super::*;

/// Three nodes, `W = 2`, no read repair: forty blind puts through node 1, not yet delivered.
fn forty_writes_without_read_repair() -> Sim {
    let config = CoreConfig {
        w: 2,
        read_repair: false,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(3, config);
    for i in 0..40 {
        sim.client(1, i, put(&format!("k{i}"), "v", VersionVector::new()));
    }
    sim
}

#[test]
fn anti_entropy_brings_a_replica_that_missed_writes_up_to_date_without_reads() {
    let mut sim = forty_writes_without_read_repair();
    sim.run(&[3]);
    assert!((0..40).all(|i| local(&sim, 3, &format!("k{i}")).is_none()));
    entropy_rounds(&mut sim, 120);
    for i in 0..40 {
        let key = format!("k{i}");
        assert_eq!(local(&sim, 3, &key), local(&sim, 1, &key), "{key}");
    }
    for p in 0..16 {
        let roots: Vec<Option<u64>> = (1..=3).map(|n| sim.core(n).aae_root(p)).collect();
        assert!(
            roots.windows(2).all(|w| w[0] == w[1]),
            "partition {p}: {roots:?}"
        );
    }
    let repaired: u64 = (1..=3).map(|n| sim.core(n).stats().aae_keys_repaired).sum();
    assert!(repaired >= 40, "{repaired}");
}

#[test]
fn anti_entropy_leaves_alone_differences_gone_when_compared_again() {
    let mut sim = forty_writes_without_read_repair();
    // Node 3's copies are still in flight when the first comparisons run…
    let in_flight = sim.run_holding_replicates_to(3);
    assert!(!in_flight.is_empty());
    assert!((0..40).all(|i| sim.stored(i)));
    entropy_rounds(&mut sim, 1);
    // …and arrive before the confirmations.
    sim.network.extend(in_flight);
    sim.run(&[]);
    entropy_rounds(&mut sim, 60);
    let stats: Vec<Stats> = (1..=3).map(|n| sim.core(n).stats()).collect();
    let unconfirmed: u64 = stats.iter().map(|s| s.aae_unconfirmed).sum();
    let repaired: u64 = stats.iter().map(|s| s.aae_keys_repaired).sum();
    assert!(unconfirmed >= 1, "no exchange saw the writes in flight");
    assert_eq!(repaired, 0, "a difference in flight was repaired");
    for i in 0..40 {
        let key = format!("k{i}");
        assert_eq!(local(&sim, 3, &key), local(&sim, 1, &key), "{key}");
    }
}

/// Thirty keys written to all three nodes, node 3's store wiped and the node restarted:
/// anti-entropy alone (no reads) gives every key back to node 3 within 120 rounds.
fn wiped_replica_is_refilled(config: CoreConfig) {
    let mut sim = Sim::new(3, config);
    for i in 0..30 {
        sim.client(1, i, put(&format!("k{i}"), "v", VersionVector::new()));
    }
    sim.run(&[]);
    sim.nodes[&NodeId(3)].1 .0.borrow_mut().clear();
    sim.restart(3);
    entropy_rounds(&mut sim, 120);
    for i in 0..30 {
        let key = format!("k{i}");
        assert!(local(&sim, 3, &key).is_some(), "{key} not refilled");
    }
}

#[test]
fn a_wiped_replica_is_refilled_by_anti_entropy() {
    wiped_replica_is_refilled(CoreConfig::default());
}

#[test]
fn a_wiped_replica_is_refilled_with_an_interval_longer_than_the_exchange_timeout() {
    // The confirmation comes an interval after the first comparison: its timeout must not
    // count from the exchange's start.
    wiped_replica_is_refilled(CoreConfig {
        aae_interval: Duration::from_secs(30),
        ..CoreConfig::default()
    });
}

#[test]
fn a_delete_a_replica_missed_is_completed_and_reaped_through_anti_entropy() {
    let mut sim = Sim::new(3, CoreConfig::default());
    let ctx = sim.write_and_read_back("k", "v");
    sim.client(1, 3, delete("k", ctx));
    sim.run(&[3]);
    assert!(sim.stored(3));
    assert_eq!(
        local(&sim, 3, "k").map(|c| c.size()),
        Some(1),
        "node 3 missed it"
    );
    assert!(local(&sim, 1, "k").is_some_and(|c| c.values()[0].is_tombstone()));
    entropy_rounds(&mut sim, 120);
    for node in 1..=3 {
        let clock = local(&sim, node, "k").expect("history kept");
        assert_eq!(
            clock.size(),
            0,
            "node {node} still holds a value or tombstone"
        );
        assert!(!clock.join().is_empty());
    }
}
