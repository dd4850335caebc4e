//! The comparison: the model's messages, replies and stores against the node's, through the
//! abstraction.
//!
//! After every step, each message the model sent must have one node message it matches (same
//! ends, same kind, the same key, the node request id bound to the model's request, and
//! clocks and contexts equal as writes live and covered), each reply a model server sent a
//! client must have the node reply to that client's request, and every server's saved data
//! and hints must abstract to the node's store. Node messages left over are a difference,
//! except the node's own background traffic the model abstracts away: anti-entropy exchange
//! messages of rounds the model did not fire and the reads of anti-entropy's reap checks
//! (dropped: the network may lose anything), and copies a duplicating network already holds.

use super::driver::{Driver, REQUEST_TIMEOUT};
use super::placement::{node_id, server_of};
use super::view::{model_abstract, node_abstract, node_covered, show_writes, write_of};
use super::{Divergence, Reason, Stop};
use crate::abstraction::{Abstract, WriteId};
use crate::harness::InFlight;
use crate::store::TestStore;
use shoal::{ClientOp, ClientReply, NodeId, PeerMessage, RequestId as NodeReq, Value};
use shoal_model::actor::Timer;
use shoal_model::clock::Clock as MClock;
use shoal_model::msg::Msg;
use shoal_model::trace::{Envelope, Event, Replica, Step};
use shoal_model::value::{RequestId as MReq, Value as MValue};
use std::collections::BTreeMap;

/// A message in flight without the harness's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Flight {
    from: NodeId,
    to: NodeId,
    msg: PeerMessage,
}

impl Flight {
    pub(super) fn of(m: &InFlight) -> Flight {
        Flight {
            from: m.from,
            to: m.to,
            msg: m.msg.clone(),
        }
    }

    fn is(&self, m: &InFlight) -> bool {
        self.from == m.from && self.to == m.to && self.msg == m.msg
    }
}

/// A request binding a match would make: the model's request at a coordinator and the node's
/// id for it.
type Bind = Option<((u8, MReq), NodeReq)>;

/// Why a message or reply does not match.
pub(super) enum Mismatch {
    /// A real difference, described.
    Differs(String),
    /// The node refused a stale context.
    Stale(String),
}

fn differs<T>(what: impl Into<String>) -> Result<T, Mismatch> {
    Err(Mismatch::Differs(what.into()))
}

/// Whether the node message is anti-entropy's exchange traffic.
pub(super) fn is_exchange(msg: &PeerMessage) -> bool {
    matches!(
        msg,
        PeerMessage::AaeBranches { .. }
            | PeerMessage::AaeSegments { .. }
            | PeerMessage::AaeKeys { .. }
            | PeerMessage::AaeFetch { .. }
    )
}

fn kind(msg: &PeerMessage) -> String {
    let text = format!("{msg:?}");
    text.split([' ', '{', '(']).next().unwrap_or("?").to_owned()
}

impl<S: TestStore> Driver<'_, S> {
    /// The abstraction of a model clock of `key`.
    fn m_abs(&self, key: u8, c: &MClock) -> Result<Abstract, Mismatch> {
        model_abstract(&self.mdots, key, Some(c)).map_err(Mismatch::Differs)
    }

    /// The abstraction of a node clock of `key`.
    fn n_abs(&self, key: u8, c: Option<&shoal::Clock>) -> Result<Abstract, Mismatch> {
        node_abstract(&self.ndots, key, c).map_err(Mismatch::Differs)
    }

    fn same_clock(&self, key: u8, m: &MClock, n: Option<&shoal::Clock>) -> Result<(), Mismatch> {
        let (a, b) = (self.m_abs(key, m)?, self.n_abs(key, n)?);
        if a == b {
            Ok(())
        } else {
            differs(format!("clocks differ: model {a}, node {b}"))
        }
    }

    fn node_key(&self, key: &[u8]) -> Result<u8, Mismatch> {
        self.place
            .model_key(key)
            .map_or_else(|| differs("a key the trace does not use"), Ok)
    }

    fn same_key(&self, m: u8, n: &[u8]) -> Result<(), Mismatch> {
        if self.node_key(n)? == m {
            Ok(())
        } else {
            differs(format!("another key than {m}"))
        }
    }

    /// The key of a model request, from the client request that started it.
    fn key_of(&self, req: &MReq) -> Option<u8> {
        self.requests
            .get(&(usize::from(req.client), req.seq))
            .map(|r| r.key)
    }

    /// The node request id bound to model request `req` at coordinator `x`: equal to `n`, or
    /// bound to it now if `bind` and nothing is bound yet.
    fn same_req(&self, x: u8, req: &MReq, n: NodeReq, bind: bool) -> Result<Bind, Mismatch> {
        if self
            .stale_bindings
            .get(&(x, *req))
            .is_some_and(|old| old.contains(&n))
        {
            // A message of an incarnation that crashed since.
            return Ok(None);
        }
        match self.bindings.get(&(x, *req)) {
            Some(b) if *b == n => Ok(None),
            Some(b) => differs(format!("request {b:?}, not {n:?}")),
            None if !bind => differs("a request the node never started"),
            None if self.bindings.iter().any(|((s, _), b)| *s == x && *b == n) => {
                differs(format!("node request {n:?} is another model request's"))
            }
            None => Ok(Some(((x, *req), n))),
        }
    }

    /// Whether node message `n` is the model's `e`; with `bind`, a request message may bind
    /// its node request id to the model's request.
    pub(super) fn match_msg(
        &self,
        e: &Envelope,
        n: &InFlight,
        bind: bool,
    ) -> Result<Bind, Mismatch> {
        if n.from != node_id(Self::server(e.from)) || n.to != node_id(Self::server(e.to)) {
            return differs("other ends");
        }
        let (from, to) = (Self::server(e.from), Self::server(e.to));
        match (&e.msg, &n.msg) {
            (Msg::Read { req, key }, PeerMessage::Read { req: nr, key: nk }) => {
                self.same_key(*key, nk)?;
                self.same_req(from, req, *nr, bind)
            }
            (
                Msg::ReadReply { req, clock },
                PeerMessage::ReadReply {
                    req: nr,
                    key: nk,
                    clock: nc,
                },
            ) => {
                let b = self.same_req(to, req, *nr, false)?;
                let key = self.node_key(nk)?;
                self.same_clock(key, clock, nc.as_ref())?;
                Ok(b)
            }
            (
                Msg::Replicate {
                    req,
                    key,
                    clock,
                    hint,
                },
                PeerMessage::Replicate {
                    req: nr,
                    key: nk,
                    clock: nc,
                    hint: nh,
                },
            ) => {
                self.same_key(*key, nk)?;
                if hint.map(node_id) != *nh {
                    return differs(format!("hint {hint:?} vs {nh:?}"));
                }
                self.same_clock(*key, clock, Some(nc))?;
                self.same_req(from, req, *nr, bind)
            }
            (Msg::ReplicateAck { req }, PeerMessage::ReplicateAck { req: nr, key: nk }) => {
                if let Some(k) = self.key_of(req) {
                    self.same_key(k, nk)?;
                }
                self.same_req(to, req, *nr, false)
            }
            (Msg::Repair { key, clock, .. }, PeerMessage::Repair { key: nk, clock: nc })
            | (Msg::Reap { key, clock, .. }, PeerMessage::Reap { key: nk, clock: nc })
            | (Msg::Handoff { key, clock, .. }, PeerMessage::Handoff { key: nk, clock: nc })
            | (
                Msg::HandoffAck { key, clock, .. },
                PeerMessage::HandoffAck { key: nk, clock: nc },
            ) => {
                self.same_key(*key, nk)?;
                self.same_clock(*key, clock, Some(nc))?;
                Ok(None)
            }
            (
                Msg::Forward {
                    req,
                    key,
                    context,
                    value,
                },
                PeerMessage::Forward {
                    req: nr,
                    op:
                        ClientOp::Put {
                            key: nk,
                            value: nv,
                            context: nc,
                            ..
                        },
                },
            ) => {
                self.same_key(*key, nk)?;
                self.same_value(value, nv)?;
                let (m, n) = (
                    self.mdots.covered(*key, context),
                    node_covered(&self.ndots, *key, nc),
                );
                if m != n {
                    return differs(format!(
                        "contexts cover {} vs {}",
                        show_writes(&m),
                        show_writes(&n)
                    ));
                }
                self.same_req(from, req, *nr, bind)
            }
            (
                Msg::ForwardReply { req, reply },
                PeerMessage::ForwardReply {
                    req: nr,
                    reply: nreply,
                },
            ) => {
                let b = self.same_req(to, req, *nr, false)?;
                let key = self.key_of(req).unwrap_or_default();
                self.same_reply(key, reply, nreply)?;
                Ok(b)
            }
            (m, n) => differs(format!("{} vs {}", msg_kind(m), kind(n))),
        }
    }

    fn same_value(&self, m: &MValue, n: &Value) -> Result<(), Mismatch> {
        let w = write_of(m);
        let ok = match n {
            Value::Tombstone => w.tomb,
            Value::Data(b) => WriteId::parse(b) == Some(w),
        };
        if ok {
            Ok(())
        } else {
            differs(format!("value {w} vs {n:?}"))
        }
    }

    /// Whether the node's answer is the model's (for a request on `key`).
    pub(super) fn same_reply(&self, key: u8, m: &Msg, n: &ClientReply) -> Result<(), Mismatch> {
        match (m, n) {
            // The model's own refusal of a stale context, once it has one (any client answer
            // that is not a get's, a put's or a failure).
            (m, ClientReply::Stale(_))
                if m.answers().is_some()
                    && !matches!(m, Msg::GetOk { .. } | Msg::PutOk { .. } | Msg::Fail { .. }) =>
            {
                Ok(())
            }
            (_, ClientReply::Stale(reason))
                if matches!(m, Msg::PutOk { .. } | Msg::Fail { .. }) =>
            {
                Err(Mismatch::Stale(reason.clone()))
            }
            (
                Msg::GetOk {
                    values, context, ..
                },
                ClientReply::Found {
                    values: nv,
                    context: nc,
                },
            ) => {
                let live: std::collections::BTreeSet<WriteId> =
                    values.iter().map(write_of).collect();
                let nlive: Option<std::collections::BTreeSet<WriteId>> =
                    nv.iter().map(|b| WriteId::parse(b)).collect();
                if nlive.as_ref() != Some(&live) {
                    return differs(format!(
                        "get answers {} vs the node's {nv:?}",
                        show_writes(&live)
                    ));
                }
                let (a, b) = (
                    self.mdots.covered(key, context),
                    node_covered(&self.ndots, key, nc),
                );
                if a != b {
                    return differs(format!(
                        "get contexts cover {} vs {}",
                        show_writes(&a),
                        show_writes(&b)
                    ));
                }
                Ok(())
            }
            (
                Msg::PutOk {
                    context, siblings, ..
                },
                ClientReply::Stored {
                    context: nc,
                    siblings: ns,
                },
            ) => {
                if usize::from(*siblings) != *ns {
                    return differs(format!("put leaves {siblings} siblings vs {ns}"));
                }
                let (a, b) = (
                    self.mdots.covered(key, context),
                    node_covered(&self.ndots, key, nc),
                );
                if a != b {
                    return differs(format!(
                        "put contexts cover {} vs {}",
                        show_writes(&a),
                        show_writes(&b)
                    ));
                }
                Ok(())
            }
            (Msg::Fail { .. }, ClientReply::Unavailable { .. }) => Ok(()),
            (m, n) => differs(format!("{} vs {n:?}", msg_kind(m))),
        }
    }

    pub(super) fn diverged(&self, step: usize, what: String) -> Stop {
        let report = self.report(step);
        Stop::Diverged(Box::new(Divergence { step, what, report }))
    }

    fn mismatch(&self, step: usize, what: String, m: Mismatch) -> Stop {
        match m {
            Mismatch::Differs(d) => self.diverged(step, format!("{what}: {d}")),
            Mismatch::Stale(r) => self.unsupported(Reason::StaleContext, step, r),
        }
    }

    /// Compares what the step sent on both sides.
    /// `in_model_network` is what the model had in flight before the step, on a duplicating
    /// network (a set: a message sent again while in flight is not sent anew).
    pub(super) fn compare_sent(
        &mut self,
        i: usize,
        step: &Step,
        before: &[Flight],
        in_model_network: &[Envelope],
    ) -> Result<(), Stop> {
        // The node's new messages: the network now, minus what was there and is still.
        let mut old: Vec<Flight> = before.to_vec();
        for c in &self.consumed {
            if let Some(p) = old.iter().position(|o| o == c) {
                old.remove(p);
            }
        }
        let mut fresh: Vec<InFlight> = Vec::new();
        for m in &self.h.network {
            match old.iter().position(|o| o.is(m)) {
                Some(p) => {
                    old.remove(p);
                }
                None => fresh.push(m.clone()),
            }
        }
        let mut replies = std::mem::take(&mut self.h.replies);
        for e in &step.observed.sent {
            if self.is_client(e.from) {
                continue;
            }
            if self.is_client(e.to) {
                self.match_reply(i, e, &mut replies)?;
                continue;
            }
            if let Msg::Sync { entries } = &e.msg {
                self.match_sync(i, e, entries)?;
                continue;
            }
            let mut found = None;
            let mut why = Vec::new();
            for (j, f) in fresh.iter().enumerate() {
                match self.match_msg(e, f, true) {
                    Ok(b) => {
                        found = Some((j, b));
                        break;
                    }
                    Err(Mismatch::Differs(d))
                        if f.from == node_id(Self::server(e.from))
                            && f.to == node_id(Self::server(e.to)) =>
                    {
                        why.push(d)
                    }
                    Err(_) => {}
                }
            }
            match found {
                Some((j, b)) => {
                    fresh.remove(j);
                    if let Some((k, v)) = b {
                        self.bindings.insert(k, v);
                    }
                }
                None => {
                    return Err(self.diverged(
                        i,
                        format!(
                            "the model sent {} → {} {}, the node nothing like it ({})",
                            e.from,
                            e.to,
                            show_msg(&e.msg),
                            if why.is_empty() {
                                "no message between them".into()
                            } else {
                                why.join("; ")
                            }
                        ),
                    ))
                }
            }
        }
        for b in &self.bundles {
            if b.fresh && b.entries.is_none() {
                return Err(self.diverged(
                    i,
                    format!(
                        "the node's exchange {} → {} repaired {} keys; the model pushed nothing",
                        b.from,
                        b.to,
                        b.repairs.len()
                    ),
                ));
            }
        }
        let timer_step = matches!(step.event, Event::Timer { .. });
        for f in fresh {
            let idx = self
                .h
                .network
                .iter()
                .position(|m| Flight::of(m) == Flight::of(&f));
            let copies = self
                .h
                .network
                .iter()
                .filter(|m| Flight::of(m) == Flight::of(&f))
                .count();
            let unbound_read = matches!(&f.msg, PeerMessage::Read { req, .. }
                if !self.bindings.iter().any(|((s, _), b)| node_id(*s) == f.from && b == req));
            let stray = is_exchange(&f.msg)
                || (self.duplicating && copies > 1)
                || (timer_step && self.anti_entropy && unbound_read);
            if stray {
                if let Some(p) = idx {
                    self.drop_at(p);
                }
                continue;
            }
            // Sent again while the model still has it in flight: the model's set absorbed it;
            // the node's copy stands for it (its earlier one may have gone with a restart).
            if in_model_network
                .iter()
                .any(|e| self.match_msg(e, &f, false).is_ok())
            {
                continue;
            }
            if matches!(f.msg, PeerMessage::Handoff { .. })
                && !matches!(
                    step.event,
                    Event::Timer {
                        timer: Timer::Handoff,
                        ..
                    }
                )
            {
                return Err(self.unsupported(
                    Reason::HandoffRound,
                    i,
                    format!("{} → {}: {}", f.from, f.to, kind(&f.msg)),
                ));
            }
            return Err(self.diverged(
                i,
                format!(
                    "the node sent {} → {} {:?}; the model did not",
                    f.from, f.to, f.msg
                ),
            ));
        }
        if let Some((n, cid, reply)) = replies.first() {
            return Err(self.diverged(
                i,
                format!("node {n} answered its client {cid:?} with {reply:?}; the model answered no one"),
            ));
        }
        Ok(())
    }

    fn match_reply(
        &mut self,
        i: usize,
        e: &Envelope,
        replies: &mut Vec<(NodeId, shoal::ClientId, ClientReply)>,
    ) -> Result<(), Stop> {
        let Some(req) = e.msg.answers() else {
            return Err(self.broken(i, format!("a server sends a client {:?}", e.msg)));
        };
        let at = (usize::from(req.client), req.seq);
        let Some(r) = self.requests.get(&at).copied() else {
            return Err(self.broken(i, format!("an answer to {req:?}, never asked")));
        };
        let x = node_id(Self::server(e.from));
        let Some(p) = replies.iter().position(|(n, c, _)| *n == x && *c == r.cid) else {
            return Err(self.diverged(
                i,
                format!(
                    "the model answered client {} with {}; the node did not answer",
                    e.to,
                    show_msg(&e.msg)
                ),
            ));
        };
        let (_, _, reply) = replies.remove(p);
        if let Err(m) = self.same_reply(r.key, &e.msg, &reply) {
            return Err(self.mismatch(i, format!("the answer to client {}", e.to), m));
        }
        self.answers.insert(at, reply);
        Ok(())
    }

    /// The model's anti-entropy push `e` against the node exchange's repairs made this step.
    fn match_sync(
        &mut self,
        i: usize,
        e: &Envelope,
        entries: &BTreeMap<u8, MClock>,
    ) -> Result<(), Stop> {
        let (x, y) = (Self::server(e.from), Self::server(e.to));
        let Some(b) = self
            .bundles
            .iter()
            .position(|b| b.fresh && b.entries.is_none() && b.from == x && b.to == y)
        else {
            return Err(self.diverged(
                i,
                format!("the model pushed {x} → {y}; the node exchanged nothing"),
            ));
        };
        let xid = node_id(x);
        for (key, clock) in entries {
            let repair = self.bundles[b].repairs.iter().find_map(|m| match &m.msg {
                PeerMessage::Repair { key: k, clock } if self.place.model_key(k) == Some(*key) => {
                    Some(clock.clone())
                }
                _ => None,
            });
            let node = match repair {
                Some(c) => Some(c),
                None => self
                    .h
                    .nodes
                    .get(&xid)
                    .and_then(|n| n.store.load(&self.place.storage_key(*key)).ok().flatten()),
            };
            if let Err(m) = self.same_clock(*key, clock, node.as_ref()) {
                return Err(self.mismatch(
                    i,
                    format!("anti-entropy push {x} → {y} of key {key}"),
                    m,
                ));
            }
        }
        for m in &self.bundles[b].repairs {
            if let PeerMessage::Repair { key, .. } = &m.msg {
                if !self
                    .place
                    .model_key(key)
                    .is_some_and(|k| entries.contains_key(&k))
                {
                    return Err(self.diverged(
                        i,
                        format!(
                            "the node's exchange {x} → {y} repaired a key the model's push lacks"
                        ),
                    ));
                }
            }
        }
        self.bundles[b].entries = Some(entries.clone());
        Ok(())
    }

    /// The bundle standing for the model's push `e`.
    pub(super) fn bundle_of(&self, e: &Envelope, entries: &BTreeMap<u8, MClock>) -> Option<usize> {
        let (x, y) = (Self::server(e.from), Self::server(e.to));
        self.bundles
            .iter()
            .position(|b| b.from == x && b.to == y && b.entries.as_ref() == Some(entries))
    }

    /// Compares every server's saved data and hints with its node's store.
    pub(super) fn compare_stores(&self, i: usize, replicas: &[Replica]) -> Result<(), Stop> {
        for r in replicas {
            let s = u8::try_from(r.node).unwrap_or(u8::MAX);
            let Some(node) = self.h.nodes.get(&node_id(s)) else {
                return Err(self.broken(i, format!("no node for server {s}")));
            };
            for key in self.place.model_keys() {
                let n = node.store.load(&self.place.storage_key(key)).ok().flatten();
                let m = r.data.get(&key);
                let a = model_abstract(&self.mdots, key, m);
                let b = node_abstract(&self.ndots, key, n.as_ref());
                if a != b {
                    return Err(self.diverged(
                        i,
                        format!(
                            "server {s} stores key {key} as {}; node {} as {}",
                            show(&a),
                            node_id(s),
                            show(&b)
                        ),
                    ));
                }
            }
            let mut mh: BTreeMap<(u8, u8), Result<Abstract, String>> = BTreeMap::new();
            for (owner, key, c) in &r.hints {
                mh.insert((*owner, *key), model_abstract(&self.mdots, *key, Some(c)));
            }
            let mut nh: BTreeMap<(u8, u8), Result<Abstract, String>> = BTreeMap::new();
            for ((owner, skey), c) in node.store.all_hints() {
                let key = self
                    .place
                    .model_keys()
                    .into_iter()
                    .find(|k| self.place.storage_key(*k) == skey);
                match (server_of(owner), key) {
                    (Some(o), Some(k)) => {
                        nh.insert((o, k), node_abstract(&self.ndots, k, Some(&c)));
                    }
                    _ => {
                        return Err(self.diverged(
                            i,
                            format!(
                                "node {} holds a hint for {owner} the model cannot name",
                                node_id(s)
                            ),
                        ))
                    }
                }
            }
            if mh != nh {
                let show_h = |h: &BTreeMap<(u8, u8), Result<Abstract, String>>| {
                    h.iter()
                        .map(|((o, k), a)| format!("for {o} key {k}: {}", show(a)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(self.diverged(
                    i,
                    format!(
                        "server {s} holds hints [{}]; node {} [{}]",
                        show_h(&mh),
                        node_id(s),
                        show_h(&nh)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// After a timer step: a put whose deadline sent it to fallbacks waits a new timeout.
    pub(super) fn after_timer(&mut self, step: &Step) {
        if let Event::Timer {
            node,
            timer: Timer::Deadline(_),
            request: Some(req),
        } = &step.event
        {
            let x = Self::server(*node);
            let pending = self
                .mirror
                .server(x)
                .is_some_and(|s| s.puts.contains_key(req));
            if pending {
                let id = node_id(x);
                self.deadlines
                    .insert((x, *req), self.now(id) + REQUEST_TIMEOUT);
            }
        }
    }
}

fn show(a: &Result<Abstract, String>) -> String {
    match a {
        Ok(a) => a.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

fn msg_kind(m: &Msg) -> String {
    let text = format!("{m:?}");
    text.split([' ', '{', '(']).next().unwrap_or("?").to_owned()
}

/// A model message, briefly.
pub(super) fn show_msg(m: &Msg) -> String {
    match m {
        Msg::GetOk {
            values, context, ..
        } => format!(
            "GetOk {} ctx {context:?}",
            show_writes(&values.iter().map(write_of).collect())
        ),
        Msg::PutOk {
            context, siblings, ..
        } => format!("PutOk ctx {context:?} siblings {siblings}"),
        other => format!("{other:?}"),
    }
}
