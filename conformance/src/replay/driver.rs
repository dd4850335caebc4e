//! The driver: each event of a trace as inputs to the node's cores.
//!
//! - **request** (a client sends its next operation): nothing reaches the node yet — the
//!   request travels in the model's network until delivered.
//! - **deliver** of a client's `Get`/`Put` to server `x`: `Core::handle_client` on node
//!   `x + 1`, as the HTTP layer would call it. A put's context is the one the *node* gave the
//!   same client for that key (its last `Found` the model's client took); the driver checks
//!   that the model's context covers the same writes. The node's clock moves 1 ms first, so
//!   that no two requests of a node share a deadline.
//! - **deliver** between servers: the node message that matched the model's when it was sent
//!   (same ends, same kind, the node's request id bound to the model's, equal abstractions)
//!   is handed to `Core::handle_peer`; on a duplicating network a copy stays in flight.
//! - **deliver** of a reply to a client: the client takes the node's answer (a get's context
//!   is kept for the client's next put).
//! - **drop**: the matching node message is dropped (all its copies on a duplicating
//!   network).
//! - **timer**, **crash**, **recover**: see `timers.rs`; crash and restart are the harness's.
//!
//! Request ids: the model names a request by the client's `{client, seq}` everywhere; a node
//! names it by the coordinator's own `RequestId`. The first message a coordinator sends for a
//! request binds the two (`bindings`), and every later message naming the request must carry
//! the bound id.
//!
//! Disks are instant (`Harness::instant_disks`): the model saves and replicates in one atomic
//! step, so every write a core hands out is durable at once and what follows from it (an
//! acknowledgement, a replication after the own copy) happens in the same step.
//!
//! The failure detector is an oracle on both sides. Before each step the driver sets each
//! node's detector to the model's: with sloppy quorum, the model's suspicions (set at a put's
//! deadline, cleared by an answer); without, nobody is suspected (the model consults no
//! detector then), through `Core::handle_unreachable` and `Core::handle_link`, the inputs the
//! node's transport feeds it.

use super::matching::Flight;
use super::mirror::Mirror;
use super::placement::{node_id, Placement};
use super::view::{node_covered, show_writes, ModelDots};
use super::{Outcome, Reason, Stop};
use crate::abstraction::{Dots, WriteId};
use crate::harness::{Harness, InFlight};
use crate::store::TestStore;
use shoal::{
    ClientId, ClientOp, ClientReply, CoreConfig, NodeId, PeerMessage, RequestId as NodeReq, Time,
    VersionVector as NodeVv, Write,
};
use shoal_model::clock::Clock as MClock;
use shoal_model::msg::Msg;
use shoal_model::trace::{Envelope, Event, Step, Trace};
use shoal_model::value::RequestId as MReq;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The node's request timeout in replays: long enough that only the deadlines the driver
/// fires on purpose ever pass (see `timers.rs`).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(100_000);

/// How far a node's clock moves before it starts a request (so deadlines are distinct).
pub(super) const START_TICK: Duration = Duration::from_millis(1);

/// A client request the node was given.
#[derive(Clone, Copy, Debug)]
pub(super) struct ClientReq {
    pub(super) cid: ClientId,
    pub(super) key: u8,
}

/// The node-side counterpart of a model anti-entropy push (`Sync`): the `Repair`s the
/// pushing node's exchange with the receiver produced, held until the model delivers the push.
#[derive(Clone, Debug)]
pub(super) struct Bundle {
    pub(super) from: u8,
    pub(super) to: u8,
    /// The model's entries, once matched.
    pub(super) entries: Option<BTreeMap<u8, MClock>>,
    pub(super) repairs: Vec<InFlight>,
    /// Made in the current step (not yet matched with the model's push).
    pub(super) fresh: bool,
}

/// One trace's replay.
pub(super) struct Driver<'t, S: TestStore> {
    pub(super) trace: &'t Trace,
    pub(super) place: Placement,
    pub(super) h: Harness<S>,
    pub(super) mirror: Mirror,
    pub(super) mdots: ModelDots,
    pub(super) ndots: Dots,
    pub(super) servers: u8,
    pub(super) sloppy: bool,
    pub(super) duplicating: bool,
    pub(super) anti_entropy: bool,
    /// Model request at a coordinator → the node's request id there.
    pub(super) bindings: BTreeMap<(u8, MReq), NodeReq>,
    /// The same for incarnations that crashed: their messages may still be in flight.
    pub(super) stale_bindings: BTreeMap<(u8, MReq), Vec<NodeReq>>,
    /// Model request at a coordinator → the node's deadline for it.
    pub(super) deadlines: BTreeMap<(u8, MReq), Time>,
    /// `(client, seq)` → the node client request.
    pub(super) requests: BTreeMap<(usize, u8), ClientReq>,
    pub(super) by_cid: BTreeMap<ClientId, (usize, u8)>,
    /// The node context each client last took per key.
    pub(super) node_ctx: BTreeMap<(usize, u8), NodeVv>,
    /// The node's answers to `(client, seq)`, waiting to be delivered.
    pub(super) answers: BTreeMap<(usize, u8), ClientReply>,
    pub(super) bundles: Vec<Bundle>,
    next_cid: u64,
    /// Messages the driver took out of the network in this step.
    pub(super) consumed: Vec<Flight>,
    /// The write a core coordinated in this step (its dot is learned from what it wrote).
    coordinated: Option<WriteId>,
    /// Copies of delivered messages the harness dropped when their receiver crashed (the
    /// transport does not resend to a new incarnation what the old one received).
    pub(super) not_resent: Vec<InFlight>,
}

/// Replays `trace` on `stores`.
pub(super) fn run<S: TestStore>(trace: &Trace, place: Placement, stores: Vec<S>) -> Outcome {
    let mut d = match Driver::new(trace, place, stores) {
        Ok(d) => d,
        Err(detail) => {
            return Outcome {
                steps: 0,
                result: Err(Stop::Broken { step: 0, detail }),
            }
        }
    };
    if let Err(stop) = d.compare_stores(0, &trace.initial) {
        return Outcome {
            steps: 0,
            result: Err(stop),
        };
    }
    for (i, step) in trace.steps.iter().enumerate() {
        if let Err(stop) = d.step(i, step) {
            return Outcome {
                steps: i,
                result: Err(stop),
            };
        }
    }
    Outcome {
        steps: trace.steps.len(),
        result: Ok(()),
    }
}

impl<'t, S: TestStore> Driver<'t, S> {
    fn new(trace: &'t Trace, place: Placement, stores: Vec<S>) -> Result<Self, String> {
        let s = &trace.settings;
        let config = CoreConfig {
            n: usize::from(s.n),
            r: usize::from(s.r),
            w: usize::from(s.w),
            request_timeout: REQUEST_TIMEOUT,
            read_repair: s.read_repair,
            reap_tombstones: s.reap,
            sloppy_quorum: s.sloppy,
            // Background rounds are due whenever a node's clock moves; the driver moves it
            // only at the model's timers (see `timers.rs`).
            handoff_interval: Duration::from_millis(1),
            handoff_batch: 1000,
            aae_interval: if s.anti_entropy {
                Duration::from_millis(1)
            } else {
                Duration::ZERO
            },
            forget_after: None,
            ..CoreConfig::default()
        };
        let mut h = Harness::new(place.ring.clone(), config, stores);
        h.instant_disks = true;
        let mirror = Mirror::new(&s.config(&trace.config))?;
        Ok(Driver {
            trace,
            place,
            h,
            mirror,
            mdots: ModelDots::default(),
            ndots: Dots::default(),
            servers: s.servers,
            sloppy: s.sloppy,
            duplicating: s.duplicating,
            anti_entropy: s.anti_entropy,
            bindings: BTreeMap::new(),
            stale_bindings: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            requests: BTreeMap::new(),
            by_cid: BTreeMap::new(),
            node_ctx: BTreeMap::new(),
            answers: BTreeMap::new(),
            bundles: Vec::new(),
            next_cid: 1,
            consumed: Vec::new(),
            coordinated: None,
            not_resent: Vec::new(),
        })
    }

    /// Whether actor `a` of the trace is a client.
    pub(super) fn is_client(&self, a: usize) -> bool {
        a >= usize::from(self.servers)
    }

    /// The server index of actor `a` (a server).
    pub(super) fn server(a: usize) -> u8 {
        u8::try_from(a).unwrap_or(u8::MAX)
    }

    /// Node `id`'s clock.
    pub(super) fn now(&self, id: NodeId) -> Time {
        self.h.nodes.get(&id).map_or(Duration::ZERO, |n| n.now)
    }

    /// Moves node `id`'s clock forward without handling timers (the shell has not woken up).
    pub(super) fn tick(&mut self, id: NodeId, by: Duration) {
        if let Some(n) = self.h.nodes.get_mut(&id) {
            n.now += by;
        }
    }

    pub(super) fn unsupported(&self, reason: Reason, step: usize, detail: String) -> Stop {
        Stop::Unsupported {
            reason,
            step,
            detail,
        }
    }

    pub(super) fn broken(&self, step: usize, detail: impl Into<String>) -> Stop {
        Stop::Broken {
            step,
            detail: detail.into(),
        }
    }

    /// One step: the event on the node, the model re-run, then the comparison.
    fn step(&mut self, i: usize, step: &Step) -> Result<(), Stop> {
        self.sync_detectors();
        let before: Vec<Flight> = self.h.network.iter().map(Flight::of).collect();
        self.consumed.clear();
        self.h.replies.clear();
        self.h.handed_out.clear();
        self.coordinated = None;
        for b in &mut self.bundles {
            b.fresh = false;
        }
        match &step.event {
            Event::Request { .. } => {}
            Event::Deliver(e) => self.deliver(i, e)?,
            Event::Drop(e) => self.drop_msg(i, e)?,
            Event::Timer {
                node,
                timer,
                request,
            } => self.timer(i, *node, timer, *request, step)?,
            Event::Crash { node } => {
                let x = Self::server(*node);
                let gone = self
                    .h
                    .network
                    .iter()
                    .filter(|m| m.copy && m.to == node_id(x))
                    .cloned();
                self.not_resent.extend(gone);
                self.h.crash(node_id(x));
                let gone: Vec<(u8, MReq)> = self
                    .bindings
                    .keys()
                    .filter(|(s, _)| *s == x)
                    .copied()
                    .collect();
                for k in gone {
                    if let Some(b) = self.bindings.remove(&k) {
                        self.stale_bindings.entry(k).or_default().push(b);
                    }
                }
                self.deadlines.retain(|(s, _), _| *s != x);
            }
            Event::Recover { node } => self.h.start(node_id(Self::server(*node))),
            Event::Restore { node, .. } => {
                return Err(self.unsupported(
                    Reason::Restore,
                    i,
                    format!("server {node}'s data directory is wiped or restored"),
                ))
            }
        }
        let in_model_network: Vec<Envelope> = if self.duplicating {
            self.mirror.network()
        } else {
            Vec::new()
        };
        self.mirror
            .apply(step)
            .map_err(|e| self.broken(i, format!("model re-run: {e}")))?;
        self.learn(step);
        self.compare_sent(i, step, &before, &in_model_network)?;
        self.compare_stores(i, &step.observed.replicas)?;
        self.after_timer(step);
        Ok(())
    }

    /// Learns the dots both sides' new clocks name.
    fn learn(&mut self, step: &Step) {
        for r in &step.observed.replicas {
            r.data.values().for_each(|c| self.mdots.learn(c));
            r.hints.iter().for_each(|(_, _, c)| self.mdots.learn(c));
        }
        for e in &step.observed.sent {
            self.mdots.learn_msg(&e.msg);
        }
        let handed: Vec<(NodeId, Write)> = std::mem::take(&mut self.h.handed_out);
        for (_, w) in &handed {
            if let Write::Clock { clock, .. } | Write::Hint { clock, .. } = w {
                if let Some(write) = self.coordinated {
                    self.ndots.learn(write, clock);
                }
            }
        }
        for (_, w) in &handed {
            if let Write::Clock { clock, .. } | Write::Hint { clock, .. } = w {
                self.ndots.learn_data(clock);
                self.ndots.note_seen(clock);
            }
        }
        let carried: Vec<shoal::Clock> = self
            .h
            .network
            .iter()
            .chain(self.bundles.iter().flat_map(|b| b.repairs.iter()))
            .filter_map(|m| message_clock(&m.msg).cloned())
            .collect();
        for c in &carried {
            self.ndots.learn_data(c);
            self.ndots.note_seen(c);
        }
    }

    /// Sets every node's failure detector to the model's (see the module doc).
    pub(super) fn sync_detectors(&mut self) {
        for s in 0..self.servers {
            let id = node_id(s);
            let desired: BTreeSet<NodeId> = match (self.sloppy, self.mirror.server(s)) {
                (true, Some(st)) => st.suspects.iter().map(|p| node_id(*p)).collect(),
                _ => BTreeSet::new(),
            };
            let peers: Vec<NodeId> = (0..self.servers)
                .map(node_id)
                .filter(|p| *p != id)
                .collect();
            let Some(node) = self.h.nodes.get_mut(&id) else {
                continue;
            };
            let now = node.now;
            let Some(core) = node.core.as_mut() else {
                continue;
            };
            let unhealthy: BTreeSet<NodeId> = core
                .peer_health()
                .into_iter()
                .filter(|(_, h)| !h.healthy())
                .map(|(p, _)| p)
                .collect();
            for p in peers {
                match (desired.contains(&p), unhealthy.contains(&p)) {
                    (true, false) => core.handle_unreachable(now, p),
                    (false, true) => core.handle_link(now, p, true, Some(1)),
                    _ => {}
                }
            }
        }
    }

    /// Hands message `i` of the network to its receiver (a copy stays on a duplicating
    /// network).
    pub(super) fn deliver_at(&mut self, i: usize) {
        let keep = self.duplicating;
        if !keep {
            if let Some(m) = self.h.network.get(i) {
                self.consumed.push(Flight::of(m));
            }
        }
        self.h.deliver(i, keep);
    }

    /// Drops message `i` of the network.
    pub(super) fn drop_at(&mut self, i: usize) {
        if let Some(m) = self.h.drop_message(i) {
            self.consumed.push(Flight::of(&m));
        }
    }

    fn deliver(&mut self, i: usize, e: &Envelope) -> Result<(), Stop> {
        if self.is_client(e.to) {
            // A client takes its answer: a get's context is what its next put carries.
            if let Msg::GetOk { req, .. } = &e.msg {
                let at = (e.to, req.seq);
                if let (Some(ClientReply::Found { context, .. }), Some(r)) =
                    (self.answers.get(&at), self.requests.get(&at))
                {
                    self.node_ctx.insert((e.to, r.key), context.clone());
                }
            }
            return Ok(());
        }
        if self.is_client(e.from) {
            return self.client_request(i, e);
        }
        if let Msg::Sync { entries } = &e.msg {
            return self.deliver_sync(i, e, entries);
        }
        let Some(at) = self.find(e) else {
            return Err(self.missing(i, e));
        };
        if let Msg::Forward { req, value, .. } = &e.msg {
            // The receiver coordinates the forwarded put: a request starts there.
            let y = Self::server(e.to);
            let id = node_id(y);
            self.tick(id, START_TICK);
            self.deadlines
                .insert((y, *req), self.now(id) + REQUEST_TIMEOUT);
            self.coordinated = Some(super::view::write_of(value));
        }
        self.deliver_at(at);
        Ok(())
    }

    /// The node message the model's `e` was matched with when sent, if still in flight.
    fn find(&self, e: &Envelope) -> Option<usize> {
        self.h
            .network
            .iter()
            .position(|m| self.match_msg(e, m, false).is_ok())
    }

    /// The model delivers or drops a message the node does not have in flight.
    fn missing(&self, i: usize, e: &Envelope) -> Stop {
        if self
            .not_resent
            .iter()
            .any(|m| self.match_msg(e, m, false).is_ok())
        {
            return self.unsupported(
                Reason::CopyNotResent,
                i,
                format!("{} → {}: {:?}", e.from, e.to, e.msg),
            );
        }
        self.broken(
            i,
            format!(
                "the model delivers {} → {} {:?}, which has no node counterpart in flight",
                e.from, e.to, e.msg
            ),
        )
    }

    fn drop_msg(&mut self, i: usize, e: &Envelope) -> Result<(), Stop> {
        if self.is_client(e.to) || self.is_client(e.from) {
            // A client request or answer lost: the node never sees the request, or the
            // client never takes the answer.
            return Ok(());
        }
        if let Msg::Sync { entries } = &e.msg {
            let pos = self.bundle_of(e, entries);
            return match pos {
                Some(p) => {
                    self.bundles.remove(p);
                    Ok(())
                }
                None => Err(self.missing(i, e)),
            };
        }
        let Some(at) = self.find(e) else {
            return Err(self.missing(i, e));
        };
        self.drop_at(at);
        if self.duplicating {
            // The model's duplicating network is a set: the message is gone, every copy.
            while let Some(at) = self.find(e) {
                self.drop_at(at);
            }
        }
        Ok(())
    }

    /// A client's request reaches its coordinator.
    fn client_request(&mut self, i: usize, e: &Envelope) -> Result<(), Stop> {
        let x = Self::server(e.to);
        let client = e.from;
        let (req, key, op) = match &e.msg {
            Msg::Get { req, key } => {
                let op = ClientOp::Get {
                    key: self.place.key(*key),
                    r: None,
                    pr: None,
                };
                (*req, *key, op)
            }
            Msg::Put {
                req,
                key,
                context,
                value,
                ..
            } => {
                let write = super::view::write_of(value);
                let ctx = if context.is_empty() {
                    NodeVv::new()
                } else {
                    match self.node_ctx.get(&(client, *key)) {
                        Some(c) => c.clone(),
                        None => {
                            return Err(self.diverged(
                                i,
                                format!(
                                    "client {client} puts with a context but the node never gave it one for key {key}"
                                ),
                            ))
                        }
                    }
                };
                let m = self.mdots.covered(*key, context);
                let n = node_covered(&self.ndots, *key, &ctx);
                if m != n {
                    return Err(self.diverged(
                        i,
                        format!(
                            "client {client}'s put context: the model's covers {}, the node's {}",
                            show_writes(&m),
                            show_writes(&n)
                        ),
                    ));
                }
                self.coordinated = Some(write);
                let op = ClientOp::Put {
                    key: self.place.key(*key),
                    value: write.value(),
                    context: ctx,
                    w: None,
                    pw: None,
                };
                (*req, *key, op)
            }
            other => return Err(self.broken(i, format!("a client sends {other:?}"))),
        };
        let cid = ClientId(self.next_cid);
        self.next_cid += 1;
        self.requests
            .insert((client, req.seq), ClientReq { cid, key });
        self.by_cid.insert(cid, (client, req.seq));
        let id = node_id(x);
        self.tick(id, START_TICK);
        self.deadlines
            .insert((x, req), self.now(id) + REQUEST_TIMEOUT);
        if std::env::var_os("REPLAY_DEBUG").is_some() {
            eprintln!("step {}: client {client} → {id} as {cid:?}: {op:?}", i + 1);
        }
        self.h.client(id, cid, op);
        Ok(())
    }
}

/// The clock a node message carries, if any.
pub(super) fn message_clock(msg: &PeerMessage) -> Option<&shoal::Clock> {
    match msg {
        PeerMessage::Replicate { clock, .. }
        | PeerMessage::Repair { clock, .. }
        | PeerMessage::Handoff { clock, .. }
        | PeerMessage::HandoffAck { clock, .. }
        | PeerMessage::Reap { clock, .. } => Some(clock),
        PeerMessage::ReadReply { clock, .. } => clock.as_ref(),
        _ => None,
    }
}
