//! Worked examples from the DVVSet reference library and property tests of its algebra.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type Clock = DvvSet<String>;

fn id(c: char) -> ActorId {
    ActorId::new(c as u64, 0)
}

fn s(v: &str) -> String {
    v.to_string()
}

/// Builds a clock from the reference library's notation `[{id, counter, [values]}]`.
fn clock(entries: &[(char, u64, &[&str])]) -> Clock {
    DvvSet {
        entries: entries
            .iter()
            .map(|(i, n, vs)| Entry {
                id: id(*i),
                counter: *n,
                values: vs.iter().map(|v| s(v)).collect(),
            })
            .collect(),
        anonymous: Vec::new(),
    }
}

/// `update(new(V), I)` of the reference library: a first write coordinated by `i`.
fn first(v: &str, i: char) -> Clock {
    Clock::empty().update(&VersionVector::new(), s(v), id(i))
}

/// `update(new(join(ctx), V), I)`: a write with a context, coordinated by `i` on an empty node.
fn write(ctx: &Clock, v: &str, i: char) -> Clock {
    Clock::empty().update(&ctx.join(), s(v), id(i))
}

#[test]
fn join_matches_reference() {
    let a = Clock::new(s("v1"));
    let a1 = first("v1", 'a');
    let b1 = a1.update(&a1.join(), s("v2"), id('b'));
    assert!(a.join().is_empty());
    assert_eq!(a1.join().pairs(), &[(id('a'), 1)]);
    assert_eq!(b1.join().pairs(), &[(id('a'), 1), (id('b'), 1)]);
}

#[test]
fn update_matches_reference() {
    let a0 = first("v1", 'a');
    let a1 = a0.update(&a0.join(), s("v2"), id('a'));
    let a2 = a1.update(&a1.join(), s("v3"), id('b'));
    let a3 = a1.update(&a0.join(), s("v4"), id('b'));
    let a4 = a1.update(&a0.join(), s("v5"), id('a'));
    assert_eq!(a0, clock(&[('a', 1, &["v1"])]));
    assert_eq!(a1, clock(&[('a', 2, &["v2"])]));
    assert_eq!(a2, clock(&[('a', 2, &[]), ('b', 1, &["v3"])]));
    assert_eq!(a3, clock(&[('a', 2, &["v2"]), ('b', 1, &["v4"])]));
    // Two clients wrote through coordinator `a` with the same context (a0's): both values
    // survive as siblings. Dynamo's per-coordinator vector clock would keep only v5.
    assert_eq!(a4, clock(&[('a', 3, &["v5", "v2"])]));
}

#[test]
fn sync_matches_reference() {
    let x = clock(&[('x', 1, &[])]);
    let a = first("v1", 'a');
    let y = first("v2", 'b');
    let a1 = write(&a, "v2", 'a');
    let a3 = write(&a1, "v3", 'b');
    let a4 = write(&a1, "v3", 'c');
    let w = clock(&[('a', 1, &[])]);
    let z = clock(&[('a', 2, &["v2", "v1"])]);
    assert_eq!(Clock::sync_all([&w, &z]), clock(&[('a', 2, &["v2"])]));
    assert_eq!(w.sync(&z), z.sync(&w));
    assert_eq!(a.sync(&a1), a1.sync(&a));
    assert_eq!(a4.sync(&a3), a3.sync(&a4));
    assert_eq!(
        a4.sync(&a3),
        clock(&[('a', 2, &[]), ('b', 1, &["v3"]), ('c', 1, &["v3"])])
    );
    assert_eq!(x.sync(&a), clock(&[('a', 1, &["v1"]), ('x', 1, &[])]));
    assert_eq!(x.sync(&a), a.sync(&x));
    assert_eq!(a.sync(&y), clock(&[('a', 1, &["v1"]), ('b', 1, &["v2"])]));
    assert_eq!(y.sync(&a), a.sync(&y));
}

#[test]
fn less_matches_reference() {
    let a = first("v1", 'a');
    let b = write(&a, "v2", 'a');
    let b2 = write(&a, "v2", 'b');
    let b3 = write(&a, "v2", 'z');
    let c = a.update(&b.join(), s("v3"), id('c'));
    let d = b2.update(&c.join(), s("v4"), id('d'));
    assert!(a.less(&b));
    assert!(a.less(&c));
    assert!(b.less(&c));
    assert!(b.less(&d));
    assert!(b2.less(&d));
    assert!(a.less(&d));
    assert!(!b2.less(&c));
    assert!(!b.less(&b2));
    assert!(!b2.less(&b));
    assert!(!a.less(&a));
    assert!(!c.less(&c));
    assert!(!d.less(&b2));
    assert!(!b3.less(&d));
}

#[test]
fn size_ids_values_match_reference() {
    let a = clock(&[('a', 4, &["v5", "v0"]), ('b', 0, &[]), ('c', 1, &["v3"])]);
    assert_eq!(a.size(), 3);
    assert_eq!(a.ids(), vec![id('a'), id('b'), id('c')]);
    let mut vals: Vec<&String> = a.values();
    vals.sort();
    assert_eq!(vals, vec!["v0", "v3", "v5"]);
}

#[test]
fn retain_values_keeps_history_so_dropped_values_stay_dropped() {
    let mut a = clock(&[('a', 5, &["v5", "v4"])]);
    let other = a.clone();
    a.retain_values(|v| v != "v4");
    assert_eq!(a, clock(&[('a', 5, &["v5"])]));
    // A replica still holding v4 does not bring it back: the history covers its dot.
    assert_eq!(a.sync(&other), a);
    // Only the oldest values can go without renaming dots: v5 is kept.
    let mut b = clock(&[('a', 5, &["v5", "v4"])]);
    b.retain_values(|v| v != "v5");
    assert_eq!(b.values(), vec!["v5", "v4"]);
}

#[test]
fn context_string_round_trips_and_rejects_garbage() {
    let vv = VersionVector::from_pairs([
        (ActorId::new(3, 0), 7),
        (ActorId::new(1, 0), 2),
        (ActorId::new(3, 0), 9),
    ]);
    assert_eq!(
        vv.pairs(),
        &[(ActorId::new(1, 0), 2), (ActorId::new(3, 0), 9)]
    );
    let text = vv.to_context_string();
    assert!(text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_eq!(VersionVector::from_context_str(&text), Ok(vv));
    assert!(matches!(
        VersionVector::from_context_str("not base64!"),
        Err(DecodeError::Base64(_))
    ));
    assert_eq!(VersionVector::from_context_str(""), Err(DecodeError::Empty));
    let long = "A".repeat(MAX_CONTEXT_LEN + 1);
    assert_eq!(
        VersionVector::from_context_str(&long),
        Err(DecodeError::TooLong(MAX_CONTEXT_LEN + 1))
    );
    // Unsorted ids, zero counters and huge counters are refused.
    let unsorted = encode_versioned(&vec![
        (ActorId::new(3, 0), 1u64),
        (ActorId::new(1, 0), 1u64),
    ]);
    assert!(matches!(
        VersionVector::decode(&unsorted),
        Err(DecodeError::Invalid(_))
    ));
    let zero = encode_versioned(&vec![(ActorId::new(1, 0), 0u64)]);
    assert!(matches!(
        VersionVector::decode(&zero),
        Err(DecodeError::Invalid(_))
    ));
    let huge = encode_versioned(&vec![(ActorId::new(1, 0), u64::MAX)]);
    assert!(matches!(
        VersionVector::decode(&huge),
        Err(DecodeError::Invalid(_))
    ));
    let mut wrong_version = vv_bytes();
    wrong_version[0] = 9;
    assert_eq!(
        VersionVector::decode(&wrong_version),
        Err(DecodeError::UnknownVersion(9))
    );
    let mut trailing = vv_bytes();
    trailing.push(0);
    assert_eq!(
        VersionVector::decode(&trailing),
        Err(DecodeError::TrailingBytes(1))
    );
}

fn vv_bytes() -> Vec<u8> {
    VersionVector::from_pairs([(ActorId::new(1, 0), 1)]).encode()
}

#[test]
fn decoding_a_clock_checks_its_invariants() {
    let too_many_values = clock(&[('a', 1, &["x", "y"])]);
    assert!(matches!(
        Clock::decode(&encode_versioned(&too_many_values)),
        Err(DecodeError::Invalid(_))
    ));
    let unsorted = clock(&[('b', 1, &["x"]), ('a', 1, &["y"])]);
    assert!(matches!(
        Clock::decode(&encode_versioned(&unsorted)),
        Err(DecodeError::Invalid(_))
    ));
    let good = clock(&[('a', 2, &["x"]), ('b', 1, &["y"])]);
    assert_eq!(Clock::decode(&good.encode()), Ok(good));
    // A length prefix claiming 2^32 elements with no bytes behind it fails cleanly.
    let claim = [FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(Clock::decode(&claim).is_err());
}

// ---------------------------------------------------------------------------------------
// Property tests: random histories of writes and syncs over three replicas.

/// One step of a random history.
#[derive(Clone, Debug)]
enum Op {
    /// A client reads replica `read_from` (or nobody: a blind write) and writes through
    /// coordinator `coord`.
    Write {
        coord: usize,
        read_from: Option<usize>,
    },
    /// Replica `to` merges replica `from`'s clock.
    Sync { from: usize, to: usize },
}

const REPLICAS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..REPLICAS, proptest::option::of(0..REPLICAS))
            .prop_map(|(coord, read_from)| Op::Write { coord, read_from }),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// The outcome of running a history: the replicas, every clock seen, and each write's
/// context and dot (its causal past and its identity).
struct Run {
    replicas: Vec<Clock>,
    seen: Vec<Clock>,
    writes: BTreeMap<String, (VersionVector, Dot)>,
}

fn dot_of(c: &Clock, v: &str) -> Option<Dot> {
    c.dotted_values()
        .into_iter()
        .find(|(_, x)| *x == v)
        .and_then(|(d, _)| d)
}

fn run(ops: &[Op]) -> Result<Run, TestCaseError> {
    let mut replicas = vec![Clock::empty(); REPLICAS];
    let mut seen = Vec::new();
    let mut writes = BTreeMap::new();
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Write { coord, read_from } => {
                let ctx = read_from.map(|r| replicas[r].join()).unwrap_or_default();
                let value = format!("v{n}");
                let old = replicas[coord].clone();
                let new = old.update(&ctx, value.clone(), ActorId::new(coord as u64, 0));
                // The new history strictly dominates the context and the old local history.
                let vv = new.join();
                prop_assert!(vv.descends(&ctx) && vv != ctx);
                prop_assert!(vv.descends(&old.join()));
                // Exactly the old values the context does not cover stay, plus the new one.
                let mut expected: BTreeSet<&String> = old
                    .dotted_values()
                    .into_iter()
                    .filter(|(d, _)| d.is_none_or(|d| !ctx.covers(d)))
                    .map(|(_, v)| v)
                    .collect();
                expected.insert(&value);
                let got: BTreeSet<&String> = new.values().into_iter().collect();
                prop_assert_eq!(got, expected);
                let dot = dot_of(&new, &value).ok_or_else(|| TestCaseError::fail("no dot"))?;
                prop_assert_eq!(dot.actor, ActorId::new(coord as u64, 0));
                writes.insert(value, (ctx, dot));
                replicas[coord] = new;
            }
            Op::Sync { from, to } => {
                replicas[to] = replicas[to].sync(&replicas[from]);
            }
        }
        seen.extend(replicas.iter().cloned());
    }
    Ok(Run {
        replicas,
        seen,
        writes,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sync_is_commutative_associative_idempotent(ops in prop::collection::vec(op(), 0..30)) {
        let r = run(&ops)?;
        let [a, b, c] = [&r.replicas[0], &r.replicas[1], &r.replicas[2]];
        prop_assert_eq!(a.sync(b), b.sync(a));
        prop_assert_eq!(a.sync(&b.sync(c)), a.sync(b).sync(c));
        prop_assert_eq!(a.sync(a), a.clone());
        // Merging in what one already has changes nothing.
        let ab = a.sync(b);
        prop_assert_eq!(ab.sync(b), ab.clone());
        prop_assert!(!ab.less(a) && !ab.less(b));
    }

    #[test]
    fn siblings_are_pairwise_concurrent(ops in prop::collection::vec(op(), 0..30)) {
        let r = run(&ops)?;
        for c in &r.seen {
            let vals: Vec<&String> = c.values();
            for x in &vals {
                for y in &vals {
                    if x != y {
                        let (ctx_y, _) = &r.writes[*y];
                        let (_, dot_x) = r.writes[*x];
                        prop_assert!(!ctx_y.covers(dot_x), "{x} is in the past of {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn full_sync_keeps_exactly_the_maximal_writes(ops in prop::collection::vec(op(), 0..30)) {
        let r = run(&ops)?;
        let all = Clock::sync_all(&r.replicas);
        let got: BTreeSet<&String> = all.values().into_iter().collect();
        // A write survives iff no other write's context covers its dot: nothing lost,
        // nothing superseded comes back.
        let expected: BTreeSet<&String> = r
            .writes
            .iter()
            .filter(|(_, (_, dot))| r.writes.values().all(|(ctx, _)| !ctx.covers(*dot)))
            .map(|(v, _)| v)
            .collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn less_agrees_with_version_vectors(ops in prop::collection::vec(op(), 0..30)) {
        let r = run(&ops)?;
        for a in &r.replicas {
            for b in &r.replicas {
                let (va, vb) = (a.join(), b.join());
                prop_assert_eq!(a.less(b), vb.descends(&va) && va != vb);
            }
        }
    }

    #[test]
    fn encodings_round_trip(ops in prop::collection::vec(op(), 0..30)) {
        let r = run(&ops)?;
        for c in &r.seen {
            prop_assert_eq!(&Clock::decode(&c.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?, c);
            let vv = c.join();
            prop_assert_eq!(VersionVector::from_context_str(&vv.to_context_string()), Ok(vv));
        }
    }

    #[test]
    fn arbitrary_bytes_get_a_verdict_from_the_decoders(
        raw in prop::collection::vec(any::<u8>(), 0..256), versioned in any::<bool>()
    ) {
        // Half the inputs carry the right format byte, so the body decoders are exercised too.
        let bytes: Vec<u8> = if versioned {
            std::iter::once(FORMAT_VERSION).chain(raw).collect()
        } else {
            raw
        };
        // Whatever the bytes, decoding returns (no panic), and what it accepts is a valid value
        // that survives a round trip; input with a foreign format byte is refused as such.
        match Clock::decode(&bytes) {
            Ok(c) => prop_assert_eq!(Clock::decode(&c.encode()), Ok(c)),
            Err(e) => match bytes.first() {
                None => prop_assert_eq!(e, DecodeError::Empty),
                Some(&v) if v != FORMAT_VERSION => prop_assert_eq!(e, DecodeError::UnknownVersion(v)),
                Some(_) => {}
            },
        }
        if let Ok(vv) = VersionVector::decode(&bytes) {
            prop_assert!(vv.pairs().windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(vv.pairs().iter().all(|(_, c)| (1..=MAX_COUNTER).contains(c)));
            prop_assert_eq!(VersionVector::decode(&vv.encode()), Ok(vv));
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(vv) = VersionVector::from_context_str(&text) {
            prop_assert_eq!(VersionVector::from_context_str(&vv.to_context_string()), Ok(vv));
        }
    }

    #[test]
    fn decoded_clocks_satisfy_the_invariants(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut input = vec![FORMAT_VERSION];
        input.extend(bytes);
        if let Ok(c) = Clock::decode(&input) {
            prop_assert!(c.validate().is_ok());
            prop_assert_eq!(Clock::decode(&c.encode()), Ok(c.clone()));
        }
    }
}

/// The limits are inclusive: exactly `MAX_ENTRIES` actors and a counter of exactly
/// `MAX_COUNTER` are valid, one more of either is not; and a clock's size counts the values
/// without a dot as well.
#[test]
fn limits_are_inclusive_and_size_counts_every_value() {
    let pairs = |n: u64, c: u64| -> Vec<(ActorId, u64)> {
        (1..=n).map(|i| (ActorId::new(i, 0), c)).collect()
    };
    let max = MAX_ENTRIES as u64;
    let full = VersionVector::try_from(pairs(max, MAX_COUNTER)).expect("at both limits");
    assert!(VersionVector::try_from(pairs(max + 1, 1)).is_err());
    assert!(VersionVector::try_from(pairs(1, MAX_COUNTER + 1)).is_err());
    let at_limit = Clock::with_context(&full, s("v"));
    assert_eq!(at_limit.check(), Ok(()));
    let over = VersionVector::from_pairs(pairs(max + 1, 1));
    assert!(Clock::with_context(&over, s("v")).check().is_err());
    let mut mixed = clock(&[('a', 2, &["x", "y"])]);
    mixed.anonymous.push(s("z"));
    assert_eq!((mixed.size(), mixed.values().len()), (3, 3));
}
