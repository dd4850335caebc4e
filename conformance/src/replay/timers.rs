//! Timers: the model fires them nondeterministically; a node's fire when its clock passes
//! them. The driver moves a node's clock only at the model's timer events, and so that what
//! the model fires is what comes due.
//!
//! - **A request's deadline** (`Deadline(slot)` with the request): the node's deadline is the
//!   request's start time plus the timeout (a sloppy put's second one: the first deadline plus
//!   the timeout), and the driver moves the node's clock to exactly that instant. Every
//!   request started earlier on that node comes due with it, so if the model still has one of
//!   those pending, the node cannot follow ([`Reason::DeadlineOrder`]). The timeout is long
//!   (`REQUEST_TIMEOUT`), so no deadline passes by accident.
//! - **Hinted handoff** (`Handoff`): the model offers every hint to its owner. The node's
//!   round is due (its interval is 1 ms); the driver tells the holder's detector the owners
//!   are up, as a reconnecting transport would (the model's offer consults no suspicion), and
//!   moves its clock past the node's resend interval, so every hint is offered.
//! - **Anti-entropy** (`AntiEntropy`): the model pushes its clocks of shared keys to each peer
//!   in a `Sync`, which the peer merges on delivery. The node has no such message: its
//!   replicas compare hash trees per partition and exchange only the keys that differ, both
//!   ways. The driver runs, for each peer the model pushed to, the node's own exchanges with
//!   that peer (the holder's detector sees only that peer up, so its round-robin picks it)
//!   over every partition of the pushed keys, delivering the exchange's messages at once;
//!   an exchange that found its trees differing compares again at its next round before it
//!   moves keys, so a partition counts as exchanged once the initiator completed it.
//!   The initiator's `Repair`s to the peer are that push's counterpart, held until the model
//!   delivers or drops the `Sync`; the peer's `Repair`s the other way are dropped (the
//!   model's push is one way; a lost repair is a loss the node tolerates). The node's rounds
//!   also come due at other timers: exchanges started then are dropped, as are the reads of
//!   anti-entropy's reap checks (the model has no such checks).
//! - **A client giving up** (`Client`): nothing on the node; a late answer is not taken.

use super::driver::{Bundle, Driver, START_TICK};
use super::matching::{is_exchange, Flight};
use super::placement::node_id;
use super::{Reason, Stop};
use crate::harness::InFlight;
use crate::store::TestStore;
use shoal::{NodeId, PeerMessage};
use shoal_model::actor::Timer;
use shoal_model::clock::Clock as MClock;
use shoal_model::msg::Msg;
use shoal_model::trace::{Envelope, Step};
use shoal_model::value::RequestId as MReq;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The node's resend interval for an unacknowledged hint, and a little more.
const HANDOFF_WAIT: Duration = Duration::from_millis(5_001);

/// Longer than the node's anti-entropy exchange timeout: an exchange started (and dropped)
/// at another timer no longer blocks a new one.
const EXCHANGE_WAIT: Duration = Duration::from_millis(10_001);

impl<S: TestStore> Driver<'_, S> {
    pub(super) fn timer(
        &mut self,
        i: usize,
        node: usize,
        timer: &Timer,
        request: Option<MReq>,
        step: &Step,
    ) -> Result<(), Stop> {
        // Not a `match`: the model gains timers (forgetting's) the replay does not map yet.
        if let Timer::Deadline(_) = timer {
            let Some(req) = request else {
                return Err(self.broken(i, "a deadline without its request"));
            };
            self.deadline(i, Self::server(node), req)
        } else if *timer == Timer::Client {
            Ok(())
        } else if *timer == Timer::Handoff {
            self.handoff(Self::server(node));
            Ok(())
        } else if *timer == Timer::AntiEntropy {
            self.anti_entropy(i, Self::server(node), step)
        } else {
            Err(self.unsupported(Reason::ModelTimer, i, format!("{timer:?} at server {node}")))
        }
    }

    fn deadline(&mut self, i: usize, x: u8, req: MReq) -> Result<(), Stop> {
        let Some(&at) = self.deadlines.get(&(x, req)) else {
            return Err(self.broken(i, format!("the deadline of {req:?} at {x}, never started")));
        };
        if let Some(s) = self.mirror.server(x) {
            let pending = s
                .puts
                .keys()
                .chain(s.gets.keys())
                .chain(s.forwards.keys())
                .filter(|r| **r != req);
            for r in pending {
                if self.deadlines.get(&(x, *r)).is_some_and(|t| *t <= at) {
                    return Err(self.unsupported(
                        Reason::DeadlineOrder,
                        i,
                        format!("server {x} fires {req:?}'s deadline before {r:?}'s, which started earlier"),
                    ));
                }
            }
        }
        // The node's suspicions age with its clock; the model's last until an answer. Just
        // before the deadline, hand the node the model's detector again, so the deadline
        // acts on the same suspicions as the model's.
        let id = node_id(x);
        if let Some(before) = at.checked_sub(Duration::from_micros(1)) {
            self.h.advance_to(id, before);
            self.sync_detectors();
        }
        self.h.advance_to(id, at);
        Ok(())
    }

    fn handoff(&mut self, x: u8) {
        let id = node_id(x);
        let owners: BTreeSet<NodeId> = self
            .h
            .nodes
            .get(&id)
            .map(|n| {
                n.store
                    .all_hints()
                    .into_iter()
                    .map(|((o, _), _)| o)
                    .collect()
            })
            .unwrap_or_default();
        self.links(id, |p| owners.contains(&p).then_some(true));
        let to = self.now(id) + HANDOFF_WAIT;
        self.h.advance_to(id, to);
    }

    /// Tells node `id`'s detector, per peer, that its link is up or down (`None`: leave it).
    fn links(&mut self, id: NodeId, up: impl Fn(NodeId) -> Option<bool>) {
        let peers: Vec<NodeId> = (0..self.servers)
            .map(node_id)
            .filter(|p| *p != id)
            .collect();
        let Some(node) = self.h.nodes.get_mut(&id) else {
            return;
        };
        let now = node.now;
        if let Some(core) = node.core.as_mut() {
            for p in peers {
                if let Some(u) = up(p) {
                    core.handle_link(now, p, u, u.then_some(1));
                }
            }
        }
    }

    fn anti_entropy(&mut self, i: usize, x: u8, step: &Step) -> Result<(), Stop> {
        let pushes: Vec<(u8, BTreeSet<u32>)> = step
            .observed
            .sent
            .iter()
            .filter_map(|e| match &e.msg {
                Msg::Sync { entries } if Self::server(e.from) == x => Some((
                    Self::server(e.to),
                    entries.keys().map(|k| self.place.partition(*k)).collect(),
                )),
                _ => None,
            })
            .collect();
        let xid = node_id(x);
        for (y, needed) in pushes {
            let yid = node_id(y);
            if !self.h.is_up(yid) {
                return Err(self.unsupported(
                    Reason::SyncToDown,
                    i,
                    format!("server {x} pushes to {y}, which is down"),
                ));
            }
            self.links(xid, |p| Some(p == yid));
            let mut done: BTreeSet<u32> = BTreeSet::new();
            let mut repairs: Vec<InFlight> = Vec::new();
            // Every partition, each needing a confirming round too.
            let rounds = 2 * self.place.ring.partitions() as usize + 2;
            for round in 0..rounds {
                let by = if round == 0 {
                    EXCHANGE_WAIT
                } else {
                    START_TICK
                };
                let to = self.now(xid) + by;
                let mark: Vec<Flight> = self.h.network.iter().map(Flight::of).collect();
                self.h.advance_to(xid, to);
                if let Some(p) = self.exchange(xid, yid, &mark, &mut repairs) {
                    done.insert(p);
                }
                if needed.is_subset(&done) {
                    break;
                }
            }
            self.links(xid, |_| Some(true));
            if !needed.is_subset(&done) {
                return Err(self.broken(
                    i,
                    format!("the node's anti-entropy at {x} never exchanged {needed:?} with {y}"),
                ));
            }
            self.bundles.push(Bundle {
                from: x,
                to: y,
                entries: None,
                repairs,
                fresh: true,
            });
        }
        Ok(())
    }

    /// Runs the exchange node `x` just started (or confirmed) with `y` as far as it goes this
    /// round: returns its partition if the exchange completed. Only messages not in `mark`
    /// (sent since) are touched.
    fn exchange(
        &mut self,
        x: NodeId,
        y: NodeId,
        mark: &[Flight],
        repairs: &mut Vec<InFlight>,
    ) -> Option<u32> {
        let mut partition = None;
        // Only this exchange runs at `x`: it completed if `x`'s completions changed.
        let completions = |d: &Self| d.h.core(x).map(|c| c.aae_completed());
        let before = completions(self);
        loop {
            let mut old = mark.to_vec();
            let fresh: Vec<bool> = self
                .h
                .network
                .iter()
                .map(|m| match old.iter().position(|o| *o == Flight::of(m)) {
                    Some(p) => {
                        old.remove(p);
                        false
                    }
                    None => true,
                })
                .collect();
            let between = |m: &InFlight| (m.from == x && m.to == y) || (m.from == y && m.to == x);
            let next = self.h.network.iter().enumerate().find(|(j, m)| {
                fresh.get(*j).copied().unwrap_or(false)
                    && between(m)
                    && (is_exchange(&m.msg) || matches!(m.msg, PeerMessage::Repair { .. }))
            });
            let Some((j, m)) = next else {
                return partition.filter(|_| completions(self) != before);
            };
            let m = m.clone();
            match &m.msg {
                PeerMessage::AaeBranches { partition: p, .. } => {
                    partition = Some(*p);
                    self.deliver_at(j);
                }
                PeerMessage::Repair { .. } if m.from == x => {
                    repairs.push(self.h.network.swap_remove(j));
                }
                PeerMessage::Repair { .. } => self.drop_at(j),
                _ => self.deliver_at(j),
            }
        }
    }

    /// The model delivers its push `e`: its node counterpart, the held repairs, arrive.
    pub(super) fn deliver_sync(
        &mut self,
        i: usize,
        e: &Envelope,
        entries: &BTreeMap<u8, MClock>,
    ) -> Result<(), Stop> {
        let Some(b) = self.bundle_of(e, entries) else {
            return Err(self.broken(i, "the model delivers a push the node never exchanged"));
        };
        let repairs = if self.duplicating {
            self.bundles[b].repairs.clone()
        } else {
            self.bundles.remove(b).repairs
        };
        for r in repairs {
            self.h.network.push(r);
            let at = self.h.network.len() - 1;
            self.consumed.push(Flight::of(&self.h.network[at]));
            self.h.deliver(at, false);
        }
        Ok(())
    }
}
