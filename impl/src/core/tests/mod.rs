//! A simulated cluster of cores in one thread: messages are queued and delivered by the test,
//! persists complete when the test says so, and time only moves when the test moves it.

use super::*;
use crate::dvvset::VersionVector;

/// An incarnation of identity `identity`, started for the `boot`-th time.
fn incarnation(identity: u64, boot: u64) -> Incarnation {
    Incarnation {
        identity,
        first_epoch: 0,
        boot,
    }
}
use crate::protocol::{ClientReply, Clock, RequestId};
use crate::ring::NodeSpec;
use crate::value::Value;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Hints by owner and storage key.
type Hints = BTreeMap<(NodeId, Vec<u8>), Clock>;

/// In-memory durable storage shared between a node's core and the test: data, then hints.
#[derive(Clone, Default)]
struct MemStore(Rc<RefCell<BTreeMap<Vec<u8>, Clock>>>, Rc<RefCell<Hints>>);

impl Store for MemStore {
    fn load(&self, key: &[u8]) -> Result<Option<Clock>, StoreError> {
        Ok(self.0.borrow().get(key).cloned())
    }

    fn load_hint(&self, owner: NodeId, key: &[u8]) -> Result<Option<Clock>, StoreError> {
        Ok(self.1.borrow().get(&(owner, key.to_vec())).cloned())
    }

    fn hints(&self) -> Result<Vec<(NodeId, Vec<u8>)>, StoreError> {
        Ok(self.1.borrow().keys().cloned().collect())
    }

    fn scan(&self, partition: u32) -> Result<Vec<(Bytes, Clock)>, StoreError> {
        let prefix = (partition as u16).to_be_bytes();
        Ok(self
            .0
            .borrow()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, c)| (Bytes::copy_from_slice(&k[2..]), c.clone()))
            .collect())
    }
}

impl MemStore {
    /// Applies a durable write.
    fn apply(&self, write: Write) {
        match write {
            Write::Clock { key, clock } => {
                self.0.borrow_mut().insert(key, clock);
            }
            Write::Hint { owner, key, clock } => {
                self.1.borrow_mut().insert((owner, key), clock);
            }
            Write::DropHint { owner, key } => {
                self.1.borrow_mut().remove(&(owner, key));
            }
            Write::DropClock { key } => {
                self.0.borrow_mut().remove(&key);
            }
            Write::EpochLease(_) => {}
        }
    }
}

struct Sim {
    nodes: BTreeMap<NodeId, (Core<MemStore>, MemStore)>,
    /// Messages in flight: (from, to, msg).
    network: Vec<(NodeId, NodeId, PeerMessage)>,
    /// Persists requested but not yet durable, in order, per node.
    pending: Vec<(NodeId, PersistId, Write)>,
    /// The durable epoch lease per node.
    leases_durable: BTreeMap<u64, u64>,
    /// Starts per node.
    boots: BTreeMap<u64, u64>,
    config: CoreConfig,
    replies: BTreeMap<ClientId, ClientReply>,
    now: Time,
}

impl Sim {
    fn new(nodes: u64, config: CoreConfig) -> Sim {
        let ring = Ring::new(16, (1..=nodes).map(NodeSpec::new).collect()).expect("ring");
        let nodes = (1..=nodes)
            .map(|i| {
                let store = MemStore::default();
                let core = Core::new(
                    NodeId(i),
                    incarnation(100 + i, 1),
                    ring.clone(),
                    config.clone(),
                    store.clone(),
                )
                .expect("core");
                (NodeId(i), (core, store))
            })
            .collect();
        Sim {
            nodes,
            network: Vec::new(),
            pending: Vec::new(),
            leases_durable: BTreeMap::new(),
            boots: BTreeMap::new(),
            config: config.clone(),
            replies: BTreeMap::new(),
            now: Duration::ZERO,
        }
    }

    fn core(&mut self, id: u64) -> &mut Core<MemStore> {
        &mut self.nodes.get_mut(&NodeId(id)).expect("node").0
    }

    /// Collects every node's effects into the network, the pending persists and the replies.
    fn drain(&mut self) {
        for (id, (core, _)) in self.nodes.iter_mut() {
            while let Some(e) = core.poll_effect() {
                match e {
                    Effect::Send { to, msg } => self.network.push((*id, to, msg)),
                    Effect::Reply { client, reply } => {
                        self.replies.insert(client, reply);
                    }
                    Effect::Persist { id: p, write } => self.pending.push((*id, p, write)),
                }
            }
        }
    }

    /// Makes every pending write durable.
    fn sync_disks(&mut self) {
        self.drain();
        while !self.pending.is_empty() {
            self.complete_write(0);
        }
        self.drain();
    }

    /// Delivers messages and completes writes until nothing moves, dropping messages to or
    /// from the nodes in `down`.
    fn run(&mut self, down: &[u64]) {
        loop {
            self.sync_disks();
            if self.network.is_empty() {
                return;
            }
            for (from, to, msg) in std::mem::take(&mut self.network) {
                if down.contains(&from.0) || down.contains(&to.0) {
                    continue;
                }
                let now = self.now;
                self.nodes
                    .get_mut(&to)
                    .expect("node")
                    .0
                    .handle_peer(now, from, msg);
            }
        }
    }

    /// Like [`Sim::run`] with every node up, but the `Replicate`s to node `to` stay in
    /// flight: they are returned instead of delivered.
    fn run_holding_replicates_to(&mut self, to: u64) -> Vec<(NodeId, NodeId, PeerMessage)> {
        let mut held = Vec::new();
        loop {
            self.sync_disks();
            if self.network.is_empty() {
                return held;
            }
            for m in std::mem::take(&mut self.network) {
                if m.1 .0 == to && matches!(m.2, PeerMessage::Replicate { .. }) {
                    held.push(m);
                    continue;
                }
                let now = self.now;
                self.core(m.1 .0).handle_peer(now, m.0, m.2);
            }
        }
    }

    fn client(&mut self, node: u64, client: u64, op: ClientOp) {
        let now = self.now;
        self.core(node).handle_client(now, ClientId(client), op);
        self.drain();
    }

    /// Whether client `client`'s write was acknowledged as stored.
    fn stored(&self, client: u64) -> bool {
        matches!(
            self.replies.get(&ClientId(client)),
            Some(ClientReply::Stored { .. })
        )
    }

    /// A get of `key` through `node` as client `client`, run to completion: the sorted
    /// values and the context.
    fn read(&mut self, node: u64, client: u64, key: &str) -> (Vec<String>, VersionVector) {
        self.client(node, client, get(key));
        self.run(&[]);
        found(self.replies.get(&ClientId(client)))
    }

    /// Client 1 writes `value` to `key` through node 1, every copy arrives, and client 2 reads
    /// the key back through node 1: the context it got.
    fn write_and_read_back(&mut self, key: &str, value: &str) -> VersionVector {
        self.client(1, 1, put(key, value, VersionVector::new()));
        self.run(&[]);
        self.read(1, 2, key).1
    }

    /// Makes the `i`-th pending write durable and collects what follows.
    fn complete_write(&mut self, i: usize) {
        let (node, p, write) = self.pending.remove(i);
        if let Write::EpochLease(lease) = write {
            self.leases_durable.insert(node.0, lease);
        }
        self.nodes[&node].1.apply(write);
        let now = self.now;
        self.core(node.0).handle_persisted(now, [p]);
        self.drain();
    }

    /// Delivers every message in flight once, then collects what follows.
    fn deliver_all(&mut self) {
        for (from, to, msg) in std::mem::take(&mut self.network) {
            let now = self.now;
            self.core(to.0).handle_peer(now, from, msg);
        }
        self.drain();
    }

    /// Node `id` crashes (losing its unsynced writes and volatile state) and starts again on
    /// its store, with the same identity and the epoch lease it made durable.
    fn restart(&mut self, id: u64) {
        self.drain();
        self.pending.retain(|(n, ..)| n.0 != id);
        let ring = self.nodes[&NodeId(id)].0.ring().clone();
        let boot = self.boots.entry(id).or_insert(1);
        *boot += 1;
        let incarnation = Incarnation {
            identity: 100 + id,
            first_epoch: self.leases_durable.get(&id).copied().unwrap_or(0),
            boot: *boot,
        };
        let store = self.nodes[&NodeId(id)].1.clone();
        let core =
            Core::new(NodeId(id), incarnation, ring, self.config.clone(), store).expect("core");
        self.nodes.get_mut(&NodeId(id)).expect("node").0 = core;
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for (core, _) in self.nodes.values_mut() {
            core.handle_timeout(now);
        }
        self.drain();
    }
}

fn put(key: &str, value: &str, context: VersionVector) -> ClientOp {
    ClientOp::Put {
        key: Bytes::from(key.to_string()),
        value: Value::Data(Bytes::from(value.to_string())),
        context,
        w: None,
        pw: None,
    }
}

fn get(key: &str) -> ClientOp {
    ClientOp::Get {
        key: Bytes::from(key.to_string()),
        r: None,
        pr: None,
    }
}

fn found(reply: Option<&ClientReply>) -> (Vec<String>, VersionVector) {
    match reply {
        Some(ClientReply::Found { values, context }) => {
            let mut v: Vec<String> = values
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            v.sort();
            (v, context.clone())
        }
        other => panic!("expected Found, got {other:?}"),
    }
}

#[test]
fn a_put_through_one_node_is_read_through_every_node() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "v1", VersionVector::new()));
    sim.run(&[]);
    assert!(sim.stored(1));
    for node in 1..=3 {
        sim.client(node, 10 + node, get("k"));
        sim.run(&[]);
        assert_eq!(found(sim.replies.get(&ClientId(10 + node))).0, vec!["v1"]);
    }
}

#[test]
fn concurrent_blind_writes_become_siblings_and_a_merged_write_resolves_them() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "a", VersionVector::new()));
    sim.client(2, 2, put("k", "b", VersionVector::new()));
    sim.run(&[]);
    let (values, context) = sim.read(3, 3, "k");
    assert_eq!(values, vec!["a", "b"]);
    sim.client(3, 4, put("k", "merged", context));
    sim.run(&[]);
    assert_eq!(sim.read(1, 5, "k").0, vec!["merged"]);
}

#[test]
fn two_writes_with_one_context_through_one_coordinator_both_survive() {
    // Dynamo's per-coordinator clocks lose one of these; DVVSets keep both.
    let mut sim = Sim::new(3, CoreConfig::default());
    let ctx = sim.write_and_read_back("k", "v0");
    sim.client(1, 3, put("k", "x", ctx.clone()));
    sim.client(1, 4, put("k", "y", ctx));
    sim.run(&[]);
    assert_eq!(sim.read(2, 5, "k").0, vec!["x", "y"]);
}

#[test]
fn nothing_is_acknowledged_before_w_copies_are_durable() {
    let config = CoreConfig {
        w: 3,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(3, config);
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    // The coordinator persists its copy; its new dot does not leave the node before that.
    assert_eq!(sim.pending.len(), 2, "the epoch lease and the write");
    assert!(sim.network.is_empty());
    sim.complete_write(0);
    assert!(sim.network.is_empty(), "the lease is not the write");
    sim.complete_write(0);
    assert_eq!(sim.network.len(), 2, "replicated once durable");
    sim.deliver_all();
    // Replicas persist first; no ack leaves before that.
    assert!(sim.network.is_empty());
    assert_eq!(sim.pending.len(), 2);
    assert!(sim.replies.is_empty(), "one durable copy of W = 3");
    sim.complete_write(0);
    sim.deliver_all();
    assert!(sim.replies.is_empty(), "two durable copies of W = 3");
    sim.complete_write(0);
    sim.deliver_all();
    assert!(sim.stored(1));
}

#[test]
fn a_crash_before_the_coordinators_copy_is_durable_leaks_no_dot() {
    // Node 1 coordinates a write and crashes before its own copy is durable: nothing left the
    // node, so the restarted node, under the same identity, may issue that dot again.
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "first", VersionVector::new()));
    assert!(
        sim.network.is_empty(),
        "nothing sent before the write is durable"
    );
    sim.restart(1);
    sim.client(1, 2, put("k", "second", VersionVector::new()));
    sim.run(&[]);
    assert!(sim.stored(2));
    assert!(
        !sim.replies.contains_key(&ClientId(1)),
        "never acknowledged"
    );
    sim.client(2, 3, get("k"));
    sim.run(&[]);
    assert_eq!(found(sim.replies.get(&ClientId(3))).0, vec!["second"]);
}

#[test]
fn a_read_does_not_show_a_dot_of_the_coordinator_before_it_is_durable() {
    let config = CoreConfig {
        r: 1,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(3, config);
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    // A read through the same node while its copy waits for the disk: the node answers with
    // what is durable (nothing), not with the undurable write.
    sim.client(1, 2, get("k"));
    assert!(found(sim.replies.get(&ClientId(2))).0.is_empty());
    sim.run(&[]);
    sim.client(1, 3, get("k"));
    assert_eq!(found(sim.replies.get(&ClientId(3))).0, vec!["v"]);
}

#[test]
fn a_key_whose_history_was_lost_starts_a_new_epoch_instead_of_reusing_dots() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "a", VersionVector::new()));
    sim.run(&[]);
    // Node 1 loses its record of k (a dropped history, an unreadable record) and restarts.
    let skey = storage_key(sim.core(1).ring().partition_of(b"k"), b"k");
    sim.nodes[&NodeId(1)].1 .0.borrow_mut().remove(&skey);
    sim.restart(1);
    sim.client(1, 2, put("k", "b", VersionVector::new()));
    sim.run(&[]);
    assert!(sim.stored(2));
    // Reissuing a's dot would make the replicas take b for a write they already have.
    assert_eq!(sim.read(2, 3, "k").0, vec!["a", "b"]);
}

#[test]
fn without_a_quorum_requests_answer_unavailable_at_the_deadline() {
    // Anti-entropy off: its rounds would keep a timer set.
    let config = CoreConfig {
        aae_interval: Duration::ZERO,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(3, config);
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    sim.client(1, 2, get("k"));
    sim.run(&[2, 3]);
    assert!(sim.replies.is_empty());
    sim.advance(Duration::from_secs(3));
    assert_eq!(
        sim.replies.get(&ClientId(1)),
        Some(&ClientReply::Unavailable {
            required: 2,
            answered: 1
        })
    );
    assert_eq!(
        sim.replies.get(&ClientId(2)),
        Some(&ClientReply::Unavailable {
            required: 2,
            answered: 1
        })
    );
    assert_eq!(sim.core(1).in_flight(), 0);
}

#[test]
fn out_of_range_quorums_are_refused_and_change_nothing() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(
        1,
        1,
        ClientOp::Get {
            key: Bytes::from_static(b"k"),
            r: Some(4),
            pr: None,
        },
    );
    sim.client(
        1,
        2,
        ClientOp::Put {
            key: Bytes::from_static(b"k"),
            value: Value::Data(Bytes::from_static(b"v")),
            context: VersionVector::new(),
            w: Some(0),
            pw: None,
        },
    );
    assert!(matches!(
        sim.replies.get(&ClientId(1)),
        Some(ClientReply::Invalid(_))
    ));
    assert!(matches!(
        sim.replies.get(&ClientId(2)),
        Some(ClientReply::Invalid(_))
    ));
    assert!(sim.pending.is_empty() && sim.network.is_empty());
}

#[test]
fn read_repair_brings_a_replica_that_missed_a_write_up_to_date() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    sim.run(&[3]);
    let skey = storage_key(sim.core(1).ring().partition_of(b"k"), b"k");
    assert!(sim.nodes[&NodeId(3)].1.load(&skey).expect("load").is_none());
    assert_eq!(sim.read(1, 2, "k").0, vec!["v"]);
    let repaired = sim.nodes[&NodeId(3)]
        .1
        .load(&skey)
        .expect("load")
        .expect("repaired");
    assert_eq!(repaired.size(), 1);
    assert!(sim.core(1).stats().read_repairs >= 1);
}

#[test]
fn a_node_outside_the_preference_list_forwards_writes() {
    let config = CoreConfig {
        n: 1,
        r: 1,
        w: 1,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(3, config);
    let ring = sim.core(1).ring().clone();
    let owner = ring.preference_list(ring.partition_of(b"k"), 1)[0];
    let other = (1..=3).find(|i| NodeId(*i) != owner).expect("another node");
    sim.client(other, 1, put("k", "v", VersionVector::new()));
    sim.run(&[]);
    assert!(sim.stored(1));
    assert_eq!(sim.core(other).stats().forwarded, 1);
    assert_eq!(sim.read(other, 2, "k").0, vec!["v"]);
}

#[test]
fn deletes_hide_values_but_a_later_blind_put_shows() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    sim.run(&[]);
    let (_, ctx) = sim.read(2, 2, "k");
    sim.client(
        2,
        3,
        ClientOp::Put {
            key: Bytes::from_static(b"k"),
            value: Value::Tombstone,
            context: ctx,
            w: None,
            pw: None,
        },
    );
    sim.run(&[]);
    let (values, ctx) = sim.read(3, 4, "k");
    assert!(values.is_empty());
    assert!(!ctx.is_empty(), "a deleted key keeps its history");
    sim.client(3, 5, put("k", "again", VersionVector::new()));
    sim.run(&[]);
    assert_eq!(sim.read(1, 6, "k").0, vec!["again"]);
}

#[test]
fn messages_from_strangers_and_oversized_keys_are_ignored() {
    let mut sim = Sim::new(3, CoreConfig::default());
    let now = sim.now;
    sim.core(1).handle_peer(
        now,
        NodeId(99),
        PeerMessage::Read {
            req: RequestId(1),
            key: Bytes::from_static(b"k"),
        },
    );
    sim.core(1).handle_peer(
        now,
        NodeId(2),
        PeerMessage::Read {
            req: RequestId(1),
            key: Bytes::from(vec![0; MAX_KEY_LEN + 1]),
        },
    );
    sim.drain();
    assert!(sim.network.is_empty());
    assert_eq!(sim.core(1).stats().rejected_messages, 2);
}

#[test]
fn a_late_reply_to_an_earlier_incarnation_is_not_taken_for_a_new_answer() {
    let mut sim = Sim::new(
        3,
        CoreConfig {
            r: 3,
            ..CoreConfig::default()
        },
    );
    sim.client(2, 1, put("y", "why", VersionVector::new()));
    sim.client(2, 2, put("x", "ex", VersionVector::new()));
    sim.run(&[]);
    // Node 1 asks for x; the answers are still in flight when it restarts.
    sim.client(1, 3, get("x"));
    let late = std::mem::take(&mut sim.network);
    sim.restart(1);
    // The new incarnation asks for y, then the old question's answers arrive.
    sim.client(1, 4, get("y"));
    for (from, to, msg) in late {
        let now = sim.now;
        sim.nodes
            .get_mut(&to)
            .expect("node")
            .0
            .handle_peer(now, from, msg);
    }
    sim.run(&[]);
    assert_eq!(found(sim.replies.get(&ClientId(4))).0, vec!["why"]);
}

#[test]
fn a_write_that_would_exceed_the_sibling_limit_is_refused_and_stores_nothing() {
    let mut sim = Sim::new(3, CoreConfig::default());
    for i in 0..MAX_SIBLINGS {
        sim.client(
            1,
            i as u64,
            put("k", &format!("v{i}"), VersionVector::new()),
        );
        sim.run(&[]);
    }
    let skey = storage_key(sim.core(1).ring().partition_of(b"k"), b"k");
    let before = sim.nodes[&NodeId(1)]
        .1
        .load(&skey)
        .expect("load")
        .expect("stored");
    assert_eq!(before.size(), MAX_SIBLINGS);
    sim.client(1, 99_999, put("k", "one too many", VersionVector::new()));
    assert!(matches!(
        sim.replies.get(&ClientId(99_999)),
        Some(ClientReply::TooLarge(_))
    ));
    assert!(sim.pending.is_empty() && sim.network.is_empty());
    // A write that merges them (its context covers every sibling) is accepted.
    sim.client(1, 100_000, get("k"));
    sim.run(&[]);
    let (_, ctx) = found(sim.replies.get(&ClientId(100_000)));
    sim.client(1, 100_001, put("k", "merged", ctx));
    sim.run(&[]);
    assert!(matches!(
        sim.replies.get(&ClientId(100_001)),
        Some(ClientReply::Stored { siblings: 1, .. })
    ));
}

#[test]
fn a_draining_node_refuses_new_writes_and_waits_only_for_writes_before_the_drain() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    assert_eq!(
        sim.core(1).pending_persists(),
        2,
        "the epoch lease and the write"
    );
    let mark = sim.core(1).set_draining(true);
    assert!(!sim.core(1).durable_up_to(mark));
    sim.client(1, 2, put("k", "late", VersionVector::new()));
    assert_eq!(
        sim.replies.get(&ClientId(2)),
        Some(&ClientReply::Unavailable {
            required: 2,
            answered: 0
        })
    );
    // Another coordinator's write makes node 1 persist a replica copy after the mark: it
    // issues no dot of node 1's, so the drain does not wait for it.
    sim.client(2, 3, put("other", "x", VersionVector::new()));
    while let Some(i) = sim.pending.iter().position(|(n, ..)| *n == NodeId(2)) {
        sim.complete_write(i);
    }
    sim.deliver_all();
    // Node 1's lease and own write, the first two of its pending writes.
    for _ in 0..2 {
        let i = sim.pending.iter().position(|(n, ..)| *n == NodeId(1));
        sim.complete_write(i.expect("node 1's own write is pending"));
    }
    assert!(
        sim.core(1).durable_up_to(mark),
        "only writes before the drain count"
    );
    assert!(
        sim.core(1).pending_persists() > 0,
        "the replica copy is still pending"
    );
    sim.run(&[]);
    assert!(sim.stored(1));
}

#[test]
fn the_context_a_put_returns_never_covers_a_sibling_the_writer_did_not_see() {
    let mut sim = Sim::new(3, CoreConfig::default());
    // Two blind writes through one coordinator: siblings with dots of the same actor.
    sim.client(1, 1, put("k", "a", VersionVector::new()));
    sim.run(&[]);
    sim.client(1, 2, put("k", "b", VersionVector::new()));
    sim.run(&[]);
    let Some(ClientReply::Stored { context, siblings }) = sim.replies.get(&ClientId(2)).cloned()
    else {
        panic!("b was not stored");
    };
    assert_eq!(siblings, 2);
    // b's writer updates with the context it was given: it must not silently replace a.
    sim.client(1, 3, put("k", "b2", context));
    sim.run(&[]);
    sim.client(2, 4, get("k"));
    sim.run(&[]);
    assert!(found(sim.replies.get(&ClientId(4)))
        .0
        .contains(&"a".to_string()));
    // Whereas a single-valued result hands back a context that covers the write, so the
    // writer's next update replaces it.
    sim.client(1, 5, put("solo", "x", VersionVector::new()));
    sim.run(&[]);
    let Some(ClientReply::Stored { context, .. }) = sim.replies.get(&ClientId(5)).cloned() else {
        panic!("x was not stored");
    };
    sim.client(1, 6, put("solo", "y", context));
    sim.run(&[]);
    assert_eq!(sim.read(3, 7, "solo").0, vec!["y"]);
}

fn delete(key: &str, context: VersionVector) -> ClientOp {
    ClientOp::Put {
        key: Bytes::from(key.to_string()),
        value: Value::Tombstone,
        context,
        w: None,
        pw: None,
    }
}

#[test]
fn a_tombstone_every_replica_holds_is_reaped_and_the_value_never_returns() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    sim.run(&[]);
    let skey = storage_key(sim.core(1).ring().partition_of(b"k"), b"k");
    let before = sim.nodes[&NodeId(2)]
        .1
        .load(&skey)
        .expect("load")
        .expect("stored");
    let (_, ctx) = sim.read(1, 2, "k");
    sim.client(1, 3, delete("k", ctx));
    sim.run(&[]);
    assert!(sim.stored(3));
    for node in 1..=3 {
        let clock = sim.nodes[&NodeId(node)]
            .1
            .load(&skey)
            .expect("load")
            .expect("history kept");
        assert_eq!(clock.size(), 0, "node {node} still holds the tombstone");
        assert!(
            !clock.join().is_empty(),
            "node {node} lost the causal history"
        );
    }
    let reaped: u64 = (1..=3).map(|n| sim.core(n).stats().reaped).sum();
    assert_eq!(reaped, 3);
    // A stale copy of the deleted value arriving late cannot bring it back.
    let now = sim.now;
    sim.core(3).handle_peer(
        now,
        NodeId(2),
        PeerMessage::Repair {
            key: Bytes::from_static(b"k"),
            clock: before,
        },
    );
    sim.run(&[]);
    let (values, ctx) = sim.read(3, 4, "k");
    assert!(values.is_empty());
    assert!(!ctx.is_empty());
}

#[test]
fn a_tombstone_is_kept_while_a_replica_has_not_acknowledged_it() {
    // Anti-entropy off: this is about what the delete's own request does.
    let config = CoreConfig {
        aae_interval: Duration::ZERO,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(3, config);
    let ctx = sim.write_and_read_back("k", "v");
    sim.client(1, 3, delete("k", ctx));
    sim.run(&[3]);
    // W = 2 answered the client; node 3 never acknowledged, so nothing is reaped.
    assert!(sim.stored(3));
    sim.advance(Duration::from_secs(3));
    assert_eq!(sim.replies.len(), 3, "no second answer at the deadline");
    let skey = storage_key(sim.core(1).ring().partition_of(b"k"), b"k");
    for node in 1..=2 {
        let clock = sim.nodes[&NodeId(node)]
            .1
            .load(&skey)
            .expect("load")
            .expect("stored");
        assert_eq!(clock.size(), 1, "node {node} reaped too early");
        assert!(clock.values()[0].is_tombstone());
    }
    assert_eq!(sim.core(1).in_flight(), 0);
}

#[test]
fn a_non_replica_forwards_to_a_live_replica_when_the_first_is_down() {
    let config = CoreConfig {
        n: 2,
        r: 1,
        w: 1,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(3, config);
    let ring = sim.core(1).ring().clone();
    let replicas = ring.preference_list(ring.partition_of(b"k"), 2);
    let other = (1..=3)
        .find(|i| !replicas.contains(&NodeId(*i)))
        .expect("a non-replica");
    let now = sim.now;
    sim.core(other).handle_link(now, replicas[0], false, None);
    sim.client(other, 1, put("k", "v", VersionVector::new()));
    sim.run(&[replicas[0].0]);
    assert!(sim.stored(1), "forwarded to {:?}", replicas[1]);
}

/// A 5-node cluster with N = 3 where `down` primaries of "k" are unreachable and every node
/// knows it; returns the simulator, the primaries and the other nodes.
fn five_with_primaries_down(w: usize, down: usize) -> (Sim, Vec<u64>, Vec<u64>) {
    let config = CoreConfig {
        w,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(5, config);
    let ring = sim.core(1).ring().clone();
    let primaries: Vec<u64> = ring
        .preference_list(ring.partition_of(b"k"), 3)
        .iter()
        .map(|n| n.0)
        .collect();
    let others: Vec<u64> = (1..=5).filter(|n| !primaries.contains(n)).collect();
    let now = sim.now;
    for node in 1..=5 {
        for p in &primaries[3 - down..] {
            sim.core(node).handle_link(now, NodeId(*p), false, None);
        }
    }
    (sim, primaries, others)
}

fn hints_held(sim: &Sim, node: u64) -> usize {
    sim.nodes[&NodeId(node)].1 .1.borrow().len()
}

/// The `down` primaries come back (every node's link to them goes up): after a handoff round
/// each holds the one write of `k` durably.
fn primaries_return_and_hold_k(sim: &mut Sim, down: &[u64]) {
    let now = sim.now;
    for node in 1..=5 {
        for p in down {
            sim.core(node).handle_link(now, NodeId(*p), true, Some(2));
        }
    }
    sim.advance(Duration::from_millis(200));
    sim.run(&[]);
    let skey = storage_key(sim.core(1).ring().partition_of(b"k"), b"k");
    for p in down {
        let clock = sim.nodes[&NodeId(*p)].1.load(&skey).expect("load");
        assert_eq!(
            clock.map(|c| c.size()),
            Some(1),
            "primary {p} got the write"
        );
    }
}

#[test]
fn with_two_primaries_down_a_write_is_acknowledged_through_fallbacks_and_handed_off() {
    let (mut sim, primaries, others) = five_with_primaries_down(3, 2);
    let down: Vec<u64> = primaries[1..].to_vec();
    sim.client(primaries[0], 1, put("k", "v", VersionVector::new()));
    sim.run(&down);
    assert!(sim.stored(1), "W = 3 reached with two fallbacks");
    let held: usize = others.iter().map(|n| hints_held(&sim, *n)).sum();
    assert_eq!(held, 2, "one hint per missing primary");
    // The primaries come back: the fallbacks hand their hints over and drop them.
    primaries_return_and_hold_k(&mut sim, &down);
    let held: usize = others.iter().map(|n| hints_held(&sim, *n)).sum();
    assert_eq!(held, 0, "hints dropped once their owners hold them durably");
    let handed: u64 = others
        .iter()
        .map(|n| sim.core(*n).stats().hints_handed_off)
        .sum();
    assert_eq!(handed, 2);
}

#[test]
fn pw_refuses_a_write_when_too_few_primaries_are_reachable() {
    let (mut sim, primaries, _) = five_with_primaries_down(2, 2);
    let op = ClientOp::Put {
        key: Bytes::from_static(b"k"),
        value: Value::Data(Bytes::from_static(b"v")),
        context: VersionVector::new(),
        w: None,
        pw: Some(2),
    };
    sim.client(primaries[0], 1, op);
    assert_eq!(
        sim.replies.get(&ClientId(1)),
        Some(&ClientReply::Unavailable {
            required: 2,
            answered: 1
        })
    );
    assert!(sim.pending.is_empty(), "nothing stored");
}

#[test]
fn a_put_whose_replicas_stay_silent_goes_to_fallbacks_at_its_deadline() {
    // Nobody knows the two primaries are gone: the put waits, then stands fallbacks in.
    let (mut sim, primaries, others) = five_with_primaries_down(3, 0);
    let down: Vec<u64> = primaries[1..].to_vec();
    sim.client(primaries[0], 1, put("k", "v", VersionVector::new()));
    sim.run(&down);
    assert!(!sim.stored(1));
    sim.advance(Duration::from_secs(3));
    sim.run(&down);
    assert!(sim.stored(1), "acknowledged after the fallbacks stood in");
    let held: usize = others.iter().map(|n| hints_held(&sim, *n)).sum();
    assert_eq!(held, 2);
}

#[test]
fn a_hint_survives_its_holders_crash_and_is_handed_off_after_the_restart() {
    let (mut sim, primaries, others) = five_with_primaries_down(3, 2);
    let down: Vec<u64> = primaries[1..].to_vec();
    sim.client(primaries[0], 1, put("k", "v", VersionVector::new()));
    sim.run(&down);
    assert!(sim.stored(1));
    for n in &others {
        sim.restart(*n);
    }
    primaries_return_and_hold_k(&mut sim, &down);
    assert_eq!(
        others.iter().map(|n| hints_held(&sim, *n)).sum::<usize>(),
        0
    );
}

#[test]
fn a_hint_that_grew_after_it_was_offered_is_kept_until_its_new_clock_is_acknowledged() {
    let (mut sim, primaries, others) = five_with_primaries_down(3, 2);
    let down: Vec<u64> = primaries[1..].to_vec();
    sim.client(primaries[0], 1, put("k", "a", VersionVector::new()));
    sim.run(&down);
    // The owners come back and the hints are offered, but the offers are held in flight.
    let now = sim.now;
    for node in 1..=5 {
        for p in &down {
            sim.core(node).handle_link(now, NodeId(*p), true, Some(2));
        }
    }
    sim.advance(Duration::from_millis(200));
    let offers: Vec<_> = std::mem::take(&mut sim.network);
    assert_eq!(offers.len(), 2, "{offers:?}");
    // Meanwhile the hints grow: another write while the owners still look down to the
    // coordinator.
    for p in &down {
        sim.core(primaries[0])
            .handle_link(now, NodeId(*p), false, None);
    }
    sim.client(primaries[0], 2, put("k", "b", VersionVector::new()));
    sim.run(&down);
    assert!(sim.stored(2));
    // The old offers arrive and are acknowledged: the grown hints must stay.
    sim.network = offers;
    sim.run(&[]);
    let held: usize = others.iter().map(|n| hints_held(&sim, *n)).sum();
    assert_eq!(
        held, 2,
        "a hint is dropped only for the clock its owner acknowledged"
    );
    // The next rounds hand the grown hints over too.
    for _ in 0..30 {
        sim.advance(Duration::from_millis(200));
        sim.run(&[]);
    }
    assert_eq!(
        others.iter().map(|n| hints_held(&sim, *n)).sum::<usize>(),
        0
    );
    assert_eq!(sim.read(down[0], 3, "k").0, vec!["a", "b"]);
}

/// Runs anti-entropy rounds (and everything they cause) for `rounds` intervals.
fn entropy_rounds(sim: &mut Sim, rounds: usize) {
    for _ in 0..rounds {
        sim.advance(sim.config.aae_interval);
        sim.run(&[]);
    }
}

fn local(sim: &Sim, node: u64, key: &str) -> Option<Clock> {
    let ring = sim.nodes[&NodeId(node)].0.ring().clone();
    let skey = storage_key(ring.partition_of(key.as_bytes()), key.as_bytes());
    sim.nodes[&NodeId(node)].1.load(&skey).expect("load")
}

#[test]
fn a_context_naming_versions_no_replica_holds_is_refused_and_the_key_stays_healthy() {
    let mut sim = Sim::new(3, CoreConfig::default());
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    sim.run(&[]);
    let Some(ClientReply::Stored { context, .. }) = sim.replies.get(&ClientId(1)).cloned() else {
        panic!("not stored");
    };
    // The attack: the same actor with a counter raised far beyond anything issued, and a
    // context naming 1,000 made-up actors.
    let (actor, _) = context.pairs()[0];
    let forged = VersionVector::from_pairs([(actor, crate::dvvset::MAX_COUNTER)]);
    let crowd = VersionVector::from_pairs((0..1000).map(|i| (crate::ids::ActorId::new(i, 7), 1)));
    for (client, ctx) in [(2, forged), (3, crowd)] {
        sim.client(1, client, put("k", "evil", ctx));
        sim.run(&[]);
        assert!(
            matches!(
                sim.replies.get(&ClientId(client)),
                Some(ClientReply::Stale(_))
            ),
            "{:?}",
            sim.replies.get(&ClientId(client))
        );
    }
    // Nothing was stored; the key reads and takes writes as before, through every node.
    for node in 1..=3 {
        assert_eq!(sim.read(node, 10 + node, "k").0, vec!["v"]);
    }
    let (_, ctx) = sim.read(2, 20, "k");
    sim.client(2, 21, put("k", "w", ctx));
    sim.run(&[]);
    assert!(sim.stored(21));
    for node in 1..=3 {
        assert_eq!(sim.read(node, 30 + node, "k").0, vec!["w"]);
    }
}

#[test]
fn a_replica_behind_refuses_a_context_ahead_of_it_then_catches_up() {
    let config = CoreConfig {
        n: 3,
        w: 2,
        ..CoreConfig::default()
    };
    let mut sim = Sim::new(3, config);
    // Node 3 misses the write; the client learns its context from nodes 1 and 2.
    sim.client(1, 1, put("k", "v", VersionVector::new()));
    sim.run(&[3]);
    let Some(ClientReply::Stored { context, .. }) = sim.replies.get(&ClientId(1)).cloned() else {
        panic!("not stored");
    };
    let ring = sim.core(3).ring().clone();
    let primaries = ring.preference_list(ring.partition_of(b"k"), 3);
    assert!(primaries.contains(&NodeId(3)));
    // A write with that context coordinated by node 3 (a primary that is behind).
    sim.client(3, 2, put("k", "v2", context.clone()));
    assert!(matches!(
        sim.replies.get(&ClientId(2)),
        Some(ClientReply::Stale(_))
    ));
    // It catches up by itself, and the retry succeeds.
    sim.run(&[]);
    sim.client(3, 3, put("k", "v2", context));
    sim.run(&[]);
    assert!(sim.stored(3));
    assert_eq!(sim.read(1, 4, "k").0, vec!["v2"]);
}

mod anti_entropy;
mod forget;
