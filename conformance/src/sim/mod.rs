//! The node on its own, under faults: a seeded simulation of a whole cluster of real cores,
//! checking the model's invariants on the node's state after every step.
//!
//! Everything comes from one seed: which client sends what to which node, which message is
//! delivered next (reordering), duplicated or lost, when each node's disk completes its writes,
//! when a node crashes (losing its volatile state and its writes not yet durable) and restarts,
//! and how far each node's clock moves. Clients run read-modify-write scripts on a few keys with
//! the contexts they read. After every step the node's state is seen through the
//! [`crate::abstraction`] and held to the model's properties (`model/src/properties.rs`):
//!
//! - **no acknowledged write is lost**: it is live in some replica's store, hint, unsynced write
//!   or message in flight, or a write that is present (or a delete whose history is) was made
//!   with a context that covered it;
//! - **siblings are pairwise concurrent**: no clock holds two values one of which was written
//!   with a context covering the other;
//! - **no superseded or deleted value comes back** to a replica that dropped it;
//! - **a put's context** covers nothing its writer had not seen, and covers the write itself
//!   when the key has no other sibling;
//!
//! and when the faults stop and the cluster goes quiet, **replicas converge**: every primary
//! of every key holds the same clock and no hint is left. A failing seed prints the one command
//! that reproduces it; `SIM_DEBUG=1` prints every step of a run and every write handed out.

use crate::abstraction::{Abstract, Dots, WriteId};
use crate::harness::Harness;
use crate::store::{MemStore, TestStore};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal::{
    ClientId, ClientOp, Clock, CoreConfig, NodeId, NodeSpec, PeerMessage, Ring, VersionVector,
    Write,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

mod check;

/// The shape of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes in the cluster.
    pub nodes: u64,
    /// Replicas per key.
    pub n: usize,
    /// Read quorum.
    pub r: usize,
    /// Write quorum.
    pub w: usize,
    /// Keys the clients use.
    pub keys: u64,
    /// Clients.
    pub clients: u64,
    /// Operations per client.
    pub ops: u64,
    /// Probability that a delivered message stays in flight too (a duplicate).
    pub duplicate: f64,
    /// Probability that a step loses a message.
    pub lose: f64,
    /// Probability that a step crashes a node.
    pub crash: f64,
    /// Sloppy quorum and hinted handoff.
    pub sloppy: bool,
    /// Share of client operations that are deletes.
    pub deletes: f64,
    /// Steps before the faults stop.
    pub max_steps: usize,
    /// Forgetting deleted keys' histories with this grace (`None`: histories are kept). With
    /// it, the nodes share one clock and messages older than [`MESSAGE_LIFETIME`] expire, as
    /// the real transport makes them.
    pub forget: Option<Duration>,
}

/// The message lifetime of runs that forget (see [`SimConfig::forget`]).
pub const MESSAGE_LIFETIME: Duration = Duration::from_millis(1000);

/// The request timeout of every run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

impl SimConfig {
    /// A run built to exercise forgetting: deletes are frequent and the grace is the shortest
    /// the rule allows (request timeout plus message lifetime).
    pub fn forgetting() -> SimConfig {
        SimConfig {
            keys: 2,
            ops: 10,
            deletes: 0.3,
            max_steps: 900,
            forget: Some(REQUEST_TIMEOUT + MESSAGE_LIFETIME),
            ..SimConfig::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 4,
            n: 3,
            r: 2,
            w: 2,
            keys: 3,
            clients: 3,
            ops: 8,
            duplicate: 0.05,
            lose: 0.03,
            crash: 0.01,
            sloppy: true,
            deletes: 0.1,
            max_steps: 600,
            forget: None,
        }
    }
}

/// A broken invariant, with the seed that reproduces it.
#[derive(Debug)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// The step it broke at.
    pub step: usize,
    /// What broke.
    pub what: String,
    /// The last steps taken.
    pub trail: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} step {}: {}", self.seed, self.step, self.what)?;
        writeln!(f, "last steps:")?;
        for s in &self.trail {
            writeln!(f, "  {s}")?;
        }
        write!(
            f,
            "reproduce: cargo run -p shoal-conformance --release -- simulate --seed {} --seeds 1",
            self.seed
        )
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Steps taken.
    pub steps: usize,
    /// Writes acknowledged.
    pub acked: usize,
    /// Client operations that got an answer.
    pub answered: usize,
    /// Messages lost, duplicated; nodes crashed.
    pub lost: usize,
    /// Duplicates delivered.
    pub duplicated: usize,
    /// Crashes.
    pub crashes: usize,
    /// Histories a node forgot (a key's record removed after a delete).
    pub forgotten: usize,
    /// Messages that expired before delivery.
    pub expired: usize,
}

/// A client: its script position, what it is waiting for, and what it last read per key.
struct Client {
    id: u64,
    next: u64,
    waiting: Option<(ClientId, WriteOrRead)>,
    /// Per key, the context of its last answer.
    context: BTreeMap<u64, VersionVector>,
}

#[derive(Clone, Copy)]
enum WriteOrRead {
    Write(WriteId),
    Read(u64),
}

/// The ghost history, as the model keeps it.
#[derive(Default)]
struct History {
    /// Every write issued, with the writes its context covered (what it supersedes).
    supersedes: BTreeMap<WriteId, BTreeSet<WriteId>>,
    /// Writes acknowledged.
    acked: BTreeSet<WriteId>,
    /// Per node and key: writes its store dropped (they must never come back there).
    gone: BTreeMap<(NodeId, Vec<u8>), BTreeSet<WriteId>>,
    /// Writes covered by a history some node forgot: superseded for good, they must never be
    /// live anywhere again.
    retired: BTreeSet<WriteId>,
}

/// One run of the simulation.
pub struct Sim {
    seed: u64,
    cfg: SimConfig,
    h: Harness<MemStore>,
    rng: StdRng,
    dots: Dots,
    history: History,
    clients: Vec<Client>,
    /// Forwarded writes: (forwarding node, its request) → the write.
    forwards: BTreeMap<(NodeId, u64), WriteId>,
    /// A forwarded write whose Forward is being delivered in this step.
    pending_attribution: Option<WriteId>,
    next_client_id: u64,
    trail: Vec<String>,
    report: SimReport,
    /// Each node's durable data, abstracted, as of the last step.
    last: BTreeMap<(NodeId, Vec<u8>), Abstract>,
    timeout: Duration,
}

/// The key bytes of key index `k`.
fn key_bytes(k: u64) -> Bytes {
    Bytes::from(format!("key{k}"))
}

impl Sim {
    /// A run of `cfg` from `seed`.
    pub fn new(seed: u64, cfg: SimConfig) -> Sim {
        let specs = (1..=cfg.nodes).map(NodeSpec::new).collect();
        let ring = Ring::new(16, specs).unwrap_or_else(|e| panic!("ring: {e}"));
        let timeout = REQUEST_TIMEOUT;
        let config = CoreConfig {
            n: cfg.n,
            r: cfg.r,
            w: cfg.w,
            request_timeout: timeout,
            sloppy_quorum: cfg.sloppy,
            aae_interval: Duration::from_millis(200),
            handoff_interval: Duration::from_millis(100),
            forget_after: cfg.forget,
            message_lifetime: MESSAGE_LIFETIME,
            ..CoreConfig::default()
        };
        let stores = (0..cfg.nodes).map(|_| MemStore::default()).collect();
        let mut h = Harness::new(ring, config, stores);
        if cfg.forget.is_some() {
            h.message_lifetime = Some(MESSAGE_LIFETIME);
        }
        let clients = (1..=cfg.clients)
            .map(|id| Client {
                id,
                next: 1,
                waiting: None,
                context: BTreeMap::new(),
            })
            .collect();
        Sim {
            seed,
            h,
            rng: StdRng::seed_from_u64(seed),
            dots: Dots::default(),
            history: History::default(),
            clients,
            forwards: BTreeMap::new(),
            pending_attribution: None,
            next_client_id: 1,
            trail: Vec::new(),
            report: SimReport::default(),
            last: BTreeMap::new(),
            timeout,
            cfg,
        }
    }

    fn log(&mut self, what: String) {
        if std::env::var("SIM_DEBUG").is_ok() {
            eprintln!("{what}");
        }
        self.trail.push(what);
        if self.trail.len() > 40 {
            self.trail.remove(0);
        }
    }

    fn violation(&self, step: usize, what: String) -> Violation {
        Violation {
            seed: self.seed,
            step,
            what,
            trail: self.trail.clone(),
        }
    }

    /// Runs the faulty phase, then lets the cluster settle and checks it converged.
    pub fn run(mut self) -> Result<SimReport, Violation> {
        let ids: Vec<NodeId> = self.h.nodes.keys().copied().collect();
        for step in 0..self.cfg.max_steps {
            self.step(&ids);
            self.observe(step)?;
            self.report.steps = step + 1;
        }
        self.settle(&ids)?;
        self.report.expired = self.h.expired;
        Ok(self.report)
    }

    /// One random step.
    fn step(&mut self, ids: &[NodeId]) {
        let roll: f64 = self.rng.gen();
        let node = ids[self.rng.gen_range(0..ids.len())];
        if roll < self.cfg.crash {
            if self.h.is_up(node) {
                self.crash(node);
            }
        } else if roll < 0.08 {
            if !self.h.is_up(node) {
                self.h.start(node);
                self.log(format!("restart {node}"));
            }
        } else if roll < 0.22 {
            self.client_step(ids);
        } else if roll < 0.22 + self.cfg.lose {
            if !self.h.network.is_empty() {
                let i = self.rng.gen_range(0..self.h.network.len());
                if let Some(m) = self.h.drop_message(i) {
                    self.report.lost += 1;
                    self.log(format!("lose {} → {}: {}", m.from, m.to, kind(&m.msg)));
                }
            }
        } else if roll < 0.62 {
            if !self.h.network.is_empty() {
                let i = self.rng.gen_range(0..self.h.network.len());
                let keep = self.rng.gen_bool(self.cfg.duplicate);
                let m = self.h.network[i].clone();
                if !self.h.is_up(m.to) {
                    return;
                }
                self.note_forward_delivery(&m.msg, m.from);
                self.h.deliver(i, keep);
                self.report.duplicated += usize::from(keep);
                let dup = if keep { " (and kept a copy)" } else { "" };
                self.log(format!(
                    "deliver {} → {}: {}{dup}",
                    m.from,
                    m.to,
                    kind(&m.msg)
                ));
            }
        } else if roll < 0.85 {
            let pending = self.h.nodes.get(&node).map_or(0, |n| n.pending.len());
            if pending > 0 {
                let count = self.rng.gen_range(1..=pending);
                self.h.complete(node, count);
                self.log(format!("{node} syncs {count} writes"));
            }
        } else {
            let by =
                Duration::from_millis(self.rng.gen_range(0..(self.timeout.as_millis() as u64 / 3)));
            if self.cfg.forget.is_some() {
                // One clock for all: the grace and the message lifetime are real durations.
                let to = self.global_now() + by;
                for id in ids {
                    self.h.advance_to(*id, to);
                }
                self.log(format!("time +{}ms", by.as_millis()));
            } else {
                let to = self.h.nodes.get(&node).map_or(Duration::ZERO, |n| n.now) + by;
                self.h.advance_to(node, to);
                self.log(format!("{node} time +{}ms", by.as_millis()));
            }
        }
        self.learn_step();
    }

    /// The latest time any node has reached.
    fn global_now(&self) -> Duration {
        self.h
            .nodes
            .values()
            .map(|n| n.now)
            .max()
            .unwrap_or_default()
    }

    /// Node `node` crashes; the dots of the writes it loses are forgotten unless some clock
    /// that survives covers them.
    fn crash(&mut self, node: NodeId) {
        let lost: Vec<shoal::Dot> = self
            .h
            .nodes
            .get(&node)
            .map(|n| {
                n.pending
                    .iter()
                    .filter_map(|(_, w)| match w {
                        Write::Clock { clock, .. } | Write::Hint { clock, .. } => Some(clock),
                        _ => None,
                    })
                    .flat_map(|c| c.dotted_values().into_iter().filter_map(|(d, _)| d))
                    .collect()
            })
            .unwrap_or_default();
        self.h.crash(node);
        self.report.crashes += 1;
        self.log(format!("crash {node}"));
        let mut remaining: Vec<Clock> = Vec::new();
        for n in self.h.nodes.values() {
            remaining.extend(n.store.all().into_iter().map(|(_, c)| c));
            remaining.extend(n.store.all_hints().into_iter().map(|(_, c)| c));
            remaining.extend(n.pending.iter().filter_map(|(_, w)| match w {
                Write::Clock { clock, .. } | Write::Hint { clock, .. } => Some(clock.clone()),
                _ => None,
            }));
        }
        for m in &self.h.network {
            if let Some(c) = carried(&m.msg) {
                remaining.push(c.clone());
            }
            if let PeerMessage::ReadReply { clock: Some(c), .. } = &m.msg {
                remaining.push(c.clone());
            }
        }
        self.dots.forget_unless_covered(&lost, &remaining);
    }

    /// A client sends its next operation (or gives up waiting, as on a timeout).
    fn client_step(&mut self, ids: &[NodeId]) {
        let c = self.rng.gen_range(0..self.clients.len());
        if self.clients[c].waiting.is_some() {
            // A client gives up on a request now and then (an HTTP timeout).
            if self.rng.gen_bool(0.02) {
                self.clients[c].waiting = None;
            }
            return;
        }
        if self.clients[c].next > self.cfg.ops {
            return;
        }
        let key = self.rng.gen_range(0..self.cfg.keys);
        let node = ids[self.rng.gen_range(0..ids.len())];
        if !self.h.is_up(node) {
            return;
        }
        let client = &mut self.clients[c];
        let seq = client.next;
        client.next += 1;
        let cid = ClientId(self.next_client_id);
        self.next_client_id += 1;
        let kind_roll: f64 = self.rng.gen();
        let client = &mut self.clients[c];
        let context = client.context.get(&key).cloned().unwrap_or_default();
        let (op, what) = if kind_roll < 0.35 {
            client.waiting = Some((cid, WriteOrRead::Read(key)));
            let op = ClientOp::Get {
                key: key_bytes(key),
                r: None,
                pr: None,
            };
            (op, format!("client {} get key{key} via {node}", client.id))
        } else {
            let blind = kind_roll < 0.45;
            let tomb = kind_roll > 1.0 - self.cfg.deletes;
            let write = WriteId {
                client: client.id,
                seq,
                key,
                tomb,
            };
            let context = if blind { VersionVector::new() } else { context };
            let supersedes = self.dots.covered_by(&context);
            self.history.supersedes.insert(write, supersedes);
            client.waiting = Some((cid, WriteOrRead::Write(write)));
            let op = ClientOp::Put {
                key: key_bytes(key),
                value: write.value(),
                context,
                w: None,
                pw: None,
            };
            (
                op,
                format!("client {} writes {write} via {node}", client.id),
            )
        };
        self.log(what);
        let before = self.h.network.len();
        self.h.client(node, cid, op);
        // A write forwarded to a replica: remember which, to name its dot there.
        if let Some((_, WriteOrRead::Write(write))) = self.clients[c].waiting {
            for m in &self.h.network[before..] {
                if let PeerMessage::Forward { req, .. } = &m.msg {
                    self.forwards.insert((node, req.0), write);
                }
            }
            self.attribute(write);
        }
    }

    /// A Forward from `from` is about to be delivered: its write gets its dot in this step.
    fn note_forward_delivery(&mut self, msg: &PeerMessage, from: NodeId) {
        if let PeerMessage::Forward { req, .. } = msg {
            if let Some(write) = self.forwards.get(&(from, req.0)) {
                self.pending_attribution = Some(*write);
            }
        }
    }

    /// Learns the dot of `write` from the clocks just handed out.
    fn attribute(&mut self, write: WriteId) {
        for (n, w) in &self.h.handed_out {
            if let Write::Clock { clock, .. } | Write::Hint { clock, .. } = w {
                self.dots.learn(write, clock);
                if std::env::var("SIM_DEBUG").is_ok() {
                    eprintln!(
                        "attribute {write} at {n}: {clock:?} -> {:?}",
                        self.dots.dot_of(write)
                    );
                }
            }
        }
    }

    /// After a step: learn data dots from every clock handed out, and the forwarded write's.
    fn learn_step(&mut self) {
        if let Some(write) = self.pending_attribution.take() {
            self.attribute(write);
        }
        for (n, w) in std::mem::take(&mut self.h.handed_out) {
            if std::env::var("SIM_DEBUG").is_ok() {
                eprintln!("  handed out at {n}: {w:?}");
            }
            if let Write::Clock { clock, .. } | Write::Hint { clock, .. } = &w {
                self.dots.learn_data(clock);
                self.dots.note_seen(clock);
            }
        }
        for m in &self.h.network {
            if let Some(clock) = carried(&m.msg) {
                self.dots.learn_data(clock);
                self.dots.note_seen(clock);
            }
        }
    }
}

/// A message's name, for the trail.
fn kind(msg: &PeerMessage) -> String {
    let text = format!("{msg:?}");
    text.split([' ', '{', '(']).next().unwrap_or("?").to_owned()
}

/// The clock a message carries to be stored (read answers are stored nowhere).
fn carried(msg: &PeerMessage) -> Option<&Clock> {
    match msg {
        PeerMessage::Replicate { clock, .. }
        | PeerMessage::Repair { clock, .. }
        | PeerMessage::Handoff { clock, .. } => Some(clock),
        _ => None,
    }
}
