//! A cluster of the node's real protocol cores in one thread, driven one input at a time.
//!
//! Everything the shell would do is done here, explicitly: messages wait in a network until
//! the driver delivers, duplicates or drops them; each node's writes wait in its own queue
//! until the driver completes them (in order, as the group-commit writer does), so a crash
//! loses exactly the writes not yet completed; time moves per node only when the driver moves
//! it. The replay of model traces and the seeded simulation are two drivers of this harness.

use crate::store::TestStore;
use shoal::{
    ClientId, ClientOp, ClientReply, Core, CoreConfig, Effect, Incarnation, NodeId, PeerMessage,
    PersistId, Ring, Time, Write,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// A message in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The message.
    pub msg: PeerMessage,
    /// A copy of a message already delivered (a duplicate the transport would resend).
    pub copy: bool,
    /// The sender's time when it sent the message.
    pub sent: Time,
}

/// One node: its core (none while crashed), its store and its writes not yet durable.
pub struct Node<S> {
    /// The protocol core, `None` while the node is down.
    pub core: Option<Core<S>>,
    /// Its durable storage.
    pub store: S,
    /// Writes handed out and not yet durable, in order.
    pub pending: Vec<(PersistId, Write)>,
    identity: u64,
    boot: u64,
    /// The epoch lease that is durable.
    lease: u64,
    /// This node's time.
    pub now: Time,
}

/// The cluster.
pub struct Harness<S> {
    /// Nodes by id.
    pub nodes: BTreeMap<NodeId, Node<S>>,
    ring: Ring,
    config: CoreConfig,
    /// Messages in flight (a multiset: order means nothing).
    pub network: Vec<InFlight>,
    /// Client answers not yet taken by the driver: node, client, answer.
    pub replies: Vec<(NodeId, ClientId, ClientReply)>,
    /// Every write the cores handed out since the driver last took them, with the node: the
    /// driver learns from them which dot each client write got (see [`crate::abstraction`]).
    pub handed_out: Vec<(NodeId, Write)>,
    /// Whether a node's writes become durable as soon as it hands them out.
    pub instant_disks: bool,
    /// The transport's bound on a message's age (see `shoal::transport::Limits`): a message
    /// older than this on its receiver's clock is dropped instead of delivered. `None`:
    /// messages live for ever (meaningful only when the nodes' clocks are one clock).
    pub message_lifetime: Option<Duration>,
    /// Messages dropped for their age.
    pub expired: usize,
}

impl<S: TestStore> Harness<S> {
    /// A cluster of `stores.len()` nodes (ids 1..) on `ring`.
    pub fn new(ring: Ring, config: CoreConfig, stores: Vec<S>) -> Harness<S> {
        let nodes = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let id = NodeId(i as u64 + 1);
                let node = Node {
                    core: None,
                    store,
                    pending: Vec::new(),
                    identity: 1000 + i as u64,
                    boot: 0,
                    lease: 0,
                    now: Duration::ZERO,
                };
                (id, node)
            })
            .collect();
        let mut h = Harness {
            nodes,
            ring,
            config,
            network: Vec::new(),
            replies: Vec::new(),
            handed_out: Vec::new(),
            instant_disks: false,
            message_lifetime: None,
            expired: 0,
        };
        let ids: Vec<NodeId> = h.nodes.keys().copied().collect();
        for id in ids {
            h.start(id);
        }
        h
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Whether `id` is up.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.core.is_some())
    }

    /// Starts (or restarts) node `id` on its store, with the same identity, the next boot
    /// and the durable epoch lease.
    pub fn start(&mut self, id: NodeId) {
        let ring = self.ring.clone();
        let config = self.config.clone();
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.boot += 1;
        let incarnation = Incarnation {
            identity: node.identity,
            first_epoch: node.lease,
            boot: node.boot,
        };
        let core = Core::new(id, incarnation, ring, config, node.store.clone())
            .unwrap_or_else(|e| panic!("start node {id}: {e}"));
        node.core = Some(core);
        node.pending.clear();
        self.collect(id);
    }

    /// Node `id` crashes: its volatile state and its writes not yet durable are lost. Copies
    /// of messages it already received go too: the transport resends to a new incarnation
    /// only what the old one had not acknowledged, and a message is acknowledged once handed
    /// to the core (the gap — handed over, then a crash before the acknowledgement left —
    /// is documented in the conformance README).
    pub fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.core = None;
            node.pending.clear();
        }
        self.network.retain(|m| !(m.to == id && m.copy));
    }

    /// Node `id` loses its disk (and, as the shell would decide, its identity).
    pub fn wipe(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.store.wipe();
            node.identity += 100;
            node.lease = 0;
        }
    }

    /// Runs `f` on node `id`'s core if it is up, then collects the effects.
    fn with_core(&mut self, id: NodeId, f: impl FnOnce(&mut Core<S>, Time)) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let now = node.now;
        if let Some(core) = node.core.as_mut() {
            f(core, now);
        }
        self.collect(id);
    }

    /// A client request to node `id`.
    pub fn client(&mut self, id: NodeId, client: ClientId, op: ClientOp) {
        self.with_core(id, |core, now| core.handle_client(now, client, op));
    }

    /// Delivers message `i` of the network; with `keep`, a copy stays (a duplicate).
    pub fn deliver(&mut self, i: usize, keep: bool) {
        if i >= self.network.len() {
            return;
        }
        let receiver_now = self.nodes.get(&self.network[i].to).map(|n| n.now);
        if let (Some(lifetime), Some(now)) = (self.message_lifetime, receiver_now) {
            if now > self.network[i].sent + lifetime {
                self.network.swap_remove(i);
                self.expired += 1;
                return;
            }
        }
        let m = if keep {
            self.network[i].copy = true;
            self.network[i].clone()
        } else {
            self.network.swap_remove(i)
        };
        self.with_core(m.to, |core, now| core.handle_peer(now, m.from, m.msg));
    }

    /// Drops every message older than the message lifetime on its receiver's clock (they can
    /// no longer be delivered).
    pub fn expire(&mut self) {
        let Some(lifetime) = self.message_lifetime else {
            return;
        };
        let before = self.network.len();
        let nodes = &self.nodes;
        self.network
            .retain(|m| nodes.get(&m.to).is_none_or(|n| n.now <= m.sent + lifetime));
        self.expired += before - self.network.len();
    }

    /// Drops message `i` of the network.
    pub fn drop_message(&mut self, i: usize) -> Option<InFlight> {
        (i < self.network.len()).then(|| self.network.swap_remove(i))
    }

    /// Makes node `id`'s first `count` pending writes durable, in order.
    pub fn complete(&mut self, id: NodeId, count: usize) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let count = count.min(node.pending.len());
        let done: Vec<(PersistId, Write)> = node.pending.drain(..count).collect();
        if done.is_empty() {
            return;
        }
        for (_, w) in &done {
            if let Write::EpochLease(l) = w {
                node.lease = node.lease.max(*l);
            }
        }
        let ids: Vec<PersistId> = done.iter().map(|(p, _)| *p).collect();
        node.store.apply(done.into_iter().map(|(_, w)| w).collect());
        self.with_core(id, |core, now| core.handle_persisted(now, ids));
    }

    /// Makes every pending write of node `id` durable (and those that follow from them).
    pub fn complete_all(&mut self, id: NodeId) {
        for _ in 0..1000 {
            let n = self.nodes.get(&id).map_or(0, |n| n.pending.len());
            if n == 0 {
                return;
            }
            self.complete(id, n);
        }
    }

    /// Moves node `id`'s clock to `to` (never backwards) and lets its timers fire.
    pub fn advance_to(&mut self, id: NodeId, to: Time) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.now = node.now.max(to);
        }
        self.with_core(id, |core, now| core.handle_timeout(now));
    }

    /// Node `id`'s core, if it is up.
    pub fn core(&self, id: NodeId) -> Option<&Core<S>> {
        self.nodes.get(&id).and_then(|n| n.core.as_ref())
    }

    /// When node `id` next wants its timers handled.
    pub fn next_timeout(&self, id: NodeId) -> Option<Time> {
        self.nodes
            .get(&id)
            .and_then(|n| n.core.as_ref())
            .and_then(|c| c.poll_timeout())
    }

    /// Tells node `id` its connection to `peer` came up or went down.
    pub fn link(&mut self, id: NodeId, peer: NodeId, up: bool) {
        self.with_core(id, |core, now| {
            core.handle_link(now, peer, up, up.then_some(1))
        });
    }

    /// Takes node `id`'s effects into the network, the replies and its write queue.
    fn collect(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(core) = node.core.as_mut() else {
            return;
        };
        let sent = node.now;
        while let Some(e) = core.poll_effect() {
            match e {
                Effect::Send { to, msg } => self.network.push(InFlight {
                    from: id,
                    to,
                    msg,
                    copy: false,
                    sent,
                }),
                Effect::Reply { client, reply } => self.replies.push((id, client, reply)),
                Effect::Persist { id: p, write } => {
                    self.handed_out.push((id, write.clone()));
                    node.pending.push((p, write))
                }
            }
        }
        if self.instant_disks && !node.pending.is_empty() {
            self.complete_all(id);
        }
    }
}
