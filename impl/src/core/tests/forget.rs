//! Forgetting deleted keys' histories (see [`crate::core::forget`]): when it happens, what it
//! waits for, and that nothing older comes back.

use super::*;

/// Request timeout 3 s, message lifetime 1 s, and the shortest safe grace (4 s).
fn forgetting() -> CoreConfig {
    CoreConfig {
        request_timeout: Duration::from_secs(3),
        message_lifetime: Duration::from_secs(1),
        forget_after: Some(Duration::from_secs(4)),
        ..CoreConfig::default()
    }
}

/// Moves time on in steps of `step` until `until`, running the cluster after each.
fn run_until(sim: &mut Sim, until: Duration, step: Duration) {
    while sim.now < until {
        sim.advance(step);
        sim.run(&[]);
    }
}

/// Writes `v` to `key`, reads it, deletes it with that context, and runs until every
/// replica holds the history only.
fn write_then_delete(sim: &mut Sim, key: &str) -> VersionVector {
    sim.client(1, 1, put(key, "v", VersionVector::new()));
    sim.run(&[]);
    let (_, ctx) = sim.read(1, 2, key);
    sim.client(1, 3, delete(key, ctx.clone()));
    sim.run(&[]);
    assert!(sim.stored(3));
    for node in 1..=3 {
        assert_eq!(
            local(sim, node, key).map(|c| c.size()),
            Some(0),
            "reaped on {node}"
        );
    }
    ctx
}

#[test]
fn a_deleted_key_is_forgotten_everywhere_after_the_grace_and_can_be_written_again() {
    let mut sim = Sim::new(3, forgetting());
    run_until(&mut sim, Duration::from_secs(2), Duration::from_millis(250));
    let old = write_then_delete(&mut sim, "k");
    let deleted_at = sim.now;
    // Not before two agreeing rounds a grace apart.
    run_until(
        &mut sim,
        deleted_at + Duration::from_secs(4),
        Duration::from_millis(250),
    );
    assert!(
        (1..=3).all(|n| local(&sim, n, "k").is_some()),
        "forgotten too early"
    );
    run_until(
        &mut sim,
        deleted_at + Duration::from_secs(12),
        Duration::from_millis(250),
    );
    for node in 1..=3 {
        assert_eq!(
            local(&sim, node, "k"),
            None,
            "node {node} still holds the history"
        );
    }
    let forgotten: u64 = (1..=3).map(|n| sim.core(n).stats().forgotten).sum();
    assert_eq!(forgotten, 3);
    let (values, ctx) = sim.read(2, 4, "k");
    assert!(values.is_empty() && ctx.is_empty());
    // A context from before names versions no replica holds any more: refused, not stored.
    sim.client(1, 5, put("k", "stale", old));
    sim.run(&[]);
    assert!(matches!(
        sim.replies.get(&ClientId(5)),
        Some(ClientReply::Stale(_))
    ));
    // Read again, write again: the key lives under a fresh epoch.
    sim.client(3, 6, put("k", "again", VersionVector::new()));
    sim.run(&[]);
    assert!(sim.stored(6));
    assert_eq!(sim.read(1, 7, "k").0, vec!["again"]);
}

#[test]
fn a_repair_sent_after_the_first_round_cannot_bring_the_value_back() {
    // A get reads `v` just before the delete; node 3, which had missed `v`, answers only
    // after the first round agreed, so the get's repair carries `v` to node 3 then. Were the
    // key forgotten on the first round, that repair (delivered within its lifetime) would
    // bring `v` back on node 3; the grace makes every node still hold the history then.
    let mut sim = Sim::new(3, forgetting());
    run_until(&mut sim, Duration::from_secs(5), Duration::from_millis(500));
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    sim.run(&[3]);
    assert!(sim.stored(1));
    assert_eq!(local(&sim, 3, "k"), None);
    sim.client(1, 2, get("k"));
    sim.drain();
    // Deliver the reads; hold node 3's answer.
    let mut held = None;
    for _ in 0..4 {
        for (from, to, msg) in std::mem::take(&mut sim.network) {
            if from == NodeId(3) && matches!(msg, PeerMessage::ReadReply { .. }) {
                held = Some((from, to, msg));
                continue;
            }
            let now = sim.now;
            sim.core(to.0).handle_peer(now, from, msg);
        }
        sim.sync_disks();
    }
    let (_, ctx) = found(sim.replies.get(&ClientId(2)));
    let held = held.expect("node 3 answered");
    sim.client(1, 3, delete("k", ctx));
    sim.run(&[]);
    assert!(sim.stored(3));
    assert_eq!(local(&sim, 3, "k").map(|c| c.size()), Some(0));
    // The first round agrees at the next tick.
    let first_round = sim.now + Duration::from_secs(1);
    run_until(&mut sim, first_round, Duration::from_millis(100));
    let rounds: u64 = (1..=3).map(|n| sim.core(n).stats().forget_rounds).sum();
    assert!(rounds >= 1, "no round yet");
    // Node 3's answer arrives: the get completes and repairs node 3 with `v`.
    let (from, to, msg) = held;
    let now = sim.now;
    sim.core(to.0).handle_peer(now, from, msg);
    sim.drain();
    let repair = sim
        .network
        .iter()
        .position(|(_, to, m)| *to == NodeId(3) && matches!(m, PeerMessage::Repair { .. }))
        .expect("a repair to node 3");
    let late = sim.network.remove(repair);
    let sent = sim.now;
    // Delivered just within its lifetime, it meets the history and loses.
    run_until(
        &mut sim,
        sent + Duration::from_millis(900),
        Duration::from_millis(100),
    );
    let now = sim.now;
    sim.core(3).handle_peer(now, late.0, late.2);
    sim.run(&[]);
    run_until(
        &mut sim,
        sent + Duration::from_secs(15),
        Duration::from_millis(250),
    );
    for node in 1..=3 {
        assert_eq!(local(&sim, node, "k"), None, "node {node}");
    }
    let (values, _) = sim.read(3, 4, "k");
    assert!(values.is_empty(), "the deleted value came back: {values:?}");
}

/// Runs like [`Sim::run`] for `for_`, in steps of 250 ms, but drops every message between
/// nodes `a` and `b` (a partition between those two only).
fn run_cut(sim: &mut Sim, a: u64, b: u64, for_: Duration) {
    let until = sim.now + for_;
    while sim.now < until {
        sim.advance(Duration::from_millis(250));
        loop {
            sim.sync_disks();
            if sim.network.is_empty() {
                break;
            }
            for (from, to, msg) in std::mem::take(&mut sim.network) {
                let pair = (from.0, to.0);
                if pair == (a, b) || pair == (b, a) {
                    continue;
                }
                let now = sim.now;
                sim.core(to.0).handle_peer(now, from, msg);
            }
        }
    }
}

#[test]
fn a_hint_for_the_key_holds_forgetting_up_until_it_is_handed_off() {
    // Five nodes. The key's third primary is down when `v` is written, so a fallback keeps
    // `v` as a hint for it; then the primary is back, but not for the fallback (a partition
    // between those two only). The delete reaches all three primaries and is reaped. While
    // the hint of `v` waits, no round may agree: once the key were forgotten, the handoff
    // would bring `v` back.
    let mut sim = Sim::new(5, forgetting());
    run_until(&mut sim, Duration::from_secs(2), Duration::from_millis(250));
    let ring = sim.core(1).ring().clone();
    let primaries = ring.preference_list(ring.partition_of(b"k"), 3);
    let (via, owner) = (primaries[0].0, primaries[2].0);
    let now = sim.now;
    sim.core(via).handle_link(now, NodeId(owner), false, None);
    sim.client(via, 1, put("k", "v", VersionVector::new()));
    sim.run(&[owner]);
    sim.advance(Duration::from_secs(3));
    sim.run(&[owner]);
    assert!(sim.stored(1));
    let holder = (1..=5)
        .find(|n| hints_held(&sim, *n) > 0)
        .expect("a fallback holds v as a hint");
    let now = sim.now;
    for n in 1..=5 {
        let up = n != holder;
        sim.core(n)
            .handle_link(now, NodeId(owner), up, up.then_some(1));
    }
    sim.core(owner)
        .handle_link(now, NodeId(holder), false, None);
    let (_, ctx) = sim.read(via, 2, "k");
    sim.client(via, 3, delete("k", ctx));
    run_cut(&mut sim, holder, owner, Duration::from_secs(1));
    assert!(sim.stored(3));
    assert!(hints_held(&sim, holder) > 0);
    for p in &primaries {
        assert_eq!(
            local(&sim, p.0, "k").map(|c| c.size()),
            Some(0),
            "{p} reaped"
        );
    }
    // Many graces pass while the hint waits: the history stays.
    run_cut(&mut sim, holder, owner, Duration::from_secs(30));
    for p in &primaries {
        assert!(
            local(&sim, p.0, "k").is_some(),
            "{p} forgot while a hint of v was held"
        );
    }
    // The partition heals: `v` is handed off and loses to the history, then the key goes.
    let now = sim.now;
    sim.core(holder)
        .handle_link(now, NodeId(owner), true, Some(1));
    sim.core(owner)
        .handle_link(now, NodeId(holder), true, Some(1));
    let until = sim.now + Duration::from_secs(30);
    run_until(&mut sim, until, Duration::from_millis(250));
    assert_eq!(hints_held(&sim, holder), 0);
    for p in &primaries {
        assert_eq!(local(&sim, p.0, "k"), None, "node {p}");
    }
    assert!(sim.read(owner, 4, "k").0.is_empty());
}

#[test]
fn anti_entropy_does_not_give_a_forgotten_history_back_to_a_replica_that_dropped_it() {
    let mut sim = Sim::new(3, CoreConfig::default());
    write_then_delete(&mut sim, "k");
    // Node 1 alone forgets (as if the others' Forget had not arrived yet).
    let history = local(&sim, 1, "k").expect("history");
    let now = sim.now;
    sim.core(1).handle_peer(
        now,
        NodeId(2),
        PeerMessage::Forget {
            key: Bytes::from_static(b"k"),
            clock: history,
        },
    );
    sim.run(&[]);
    assert_eq!(local(&sim, 1, "k"), None);
    entropy_rounds(&mut sim, 60);
    assert_eq!(
        local(&sim, 1, "k"),
        None,
        "anti-entropy restored the history"
    );
    assert!(local(&sim, 2, "k").is_some());
}

#[test]
fn a_forget_for_a_clock_that_moved_on_changes_nothing() {
    let mut sim = Sim::new(3, CoreConfig::default());
    write_then_delete(&mut sim, "k");
    let history = local(&sim, 2, "k").expect("history");
    sim.client(2, 9, put("k", "new", VersionVector::new()));
    sim.run(&[]);
    let now = sim.now;
    for n in 1..=3 {
        sim.core(n).handle_peer(
            now,
            NodeId(if n == 1 { 2 } else { 1 }),
            PeerMessage::Forget {
                key: Bytes::from_static(b"k"),
                clock: history.clone(),
            },
        );
    }
    sim.run(&[]);
    assert_eq!(sim.read(1, 10, "k").0, vec!["new"]);
    assert!((1..=3).all(|n| local(&sim, n, "k").is_some()));
}
