//! Ghost history: what clients wrote and were told, recorded from messages as they pass.
//!
//! The properties need facts no single state shows: which writes were acknowledged, what each
//! write meant to supersede (the values its context was read from), which tombstones were
//! reaped, what was acknowledged when a get started, which write each dot names, and whether a
//! put's reply handed back a context it should not have. stateright keeps such auxiliary
//! variables in the model's history, updated from messages sent and received (Lamport's
//! auxiliary variables); no actor ever reads it.

use crate::clock::Clock;
use crate::config::Config;
use crate::dvv::{covers, Dot};
use crate::msg::Msg;
use crate::value::{Key, RequestId, Value, VersionVector};
use serde::Serialize;
use stateright::actor::{Envelope, Id};
use stateright::{Rewrite, RewritePlan};
use std::collections::{BTreeMap, BTreeSet};

/// The model's auxiliary variables.
#[derive(Clone, Debug, Default, Eq, Hash, PartialEq, Serialize)]
pub struct History {
    /// Every write issued, with the values its context was read from (what it supersedes).
    #[serde(serialize_with = "crate::pairs::serialize")]
    pub writes: BTreeMap<Value, BTreeSet<Value>>,
    /// Writes whose coordinator sent `PutOk`.
    pub acked: BTreeSet<Value>,
    /// Tombstones reaped somewhere: they still supersede what they deleted.
    pub reaped: BTreeSet<Value>,
    /// For gets in progress (strict-quorum configurations only): the writes to the key that
    /// were acknowledged when the get was sent.
    #[serde(serialize_with = "crate::pairs::serialize")]
    pub get_starts: BTreeMap<RequestId, BTreeSet<Value>>,
    /// The write each dot names, per key, learnt from the clocks that pass (`Replicate`, and
    /// the new clock a `PutOk` carries as a ghost; DVVSet only).
    #[serde(serialize_with = "crate::pairs::serialize")]
    pub dots: BTreeMap<(Key, Dot), Value>,
    /// A get returned neither an earlier acknowledged write nor a successor of it.
    pub stale_read: bool,
    /// A put's reply context covered a write the client had not seen (one neither its request
    /// context covered nor already superseded by a value of the new clock).
    pub overreach: bool,
    /// A put whose value was its clock's only sibling got a reply context not covering it.
    pub misses_own: bool,
    /// A forwarded put was acknowledged to its forwarder.
    pub forwarded: bool,
    /// A hint reached its owner.
    pub handed_off: bool,
    /// Read repair changed a replica.
    pub repaired: bool,
    /// A put was answered with `Fail`.
    pub put_failed: bool,
    /// A put was refused for a context ahead of its coordinator (`PutStale`).
    pub stale_refused: bool,
    /// Writes covered by a history a coordinator decided to forget (its `Forget`): gone for
    /// good, legitimately (they were deleted), and never to be live again.
    pub forgotten: BTreeSet<Value>,
    /// Server-to-server messages in flight that carry values, with their multiplicity (only with `forget`): a
    /// mirror of the network, kept so that a forgetting round's end can note what was then
    /// in flight (the network itself is not visible to these hooks).
    #[serde(serialize_with = "crate::pairs::serialize")]
    pub inflight: BTreeMap<Envelope<Msg>, u8>,
    /// Per client, the last request a server received (only with `forget`).
    #[serde(serialize_with = "crate::pairs::serialize")]
    pub started: BTreeMap<Id, u8>,
    /// Per forgetting round `(coordinator, round)` that ended, what the grace after it waits
    /// for (only with `forget`; see [`Grace`]).
    #[serde(serialize_with = "crate::pairs::serialize")]
    pub graces: BTreeMap<(u8, u8), Grace>,
}

/// What must be gone before a second forgetting round may start, the first having ended:
/// the node's grace (at least a request timeout plus a message lifetime) guarantees that
/// every message queued before the first round ended has been delivered or expired, and that
/// every request that started before it has finished, its messages delivered too.
#[derive(Clone, Debug, Default, Eq, Hash, PartialEq, Serialize)]
pub struct Grace {
    /// Messages still in flight that were in flight when the round ended, or were sent since
    /// by a request that started before it ended. A delivery counts against the oldest copy
    /// of identical messages first (which copy of two identical messages arrives is not
    /// observable).
    #[serde(serialize_with = "crate::pairs::serialize")]
    pub msgs: BTreeMap<Envelope<Msg>, u8>,
    /// Per client, the last request started when the round ended: those up to it are old.
    #[serde(serialize_with = "crate::pairs::serialize")]
    pub started: BTreeMap<Id, u8>,
}

impl Grace {
    /// Whether request `req` started before the round ended.
    pub fn old(&self, req: RequestId) -> bool {
        self.started.get(&req.client).is_some_and(|s| req.seq <= *s)
    }
}

fn rewrite_envelopes<S>(
    m: &BTreeMap<Envelope<Msg>, u8>,
    plan: &RewritePlan<Id, S>,
) -> BTreeMap<Envelope<Msg>, u8> {
    m.iter()
        .map(|(e, n)| {
            let e = Envelope {
                src: e.src.rewrite(plan),
                dst: e.dst.rewrite(plan),
                msg: e.msg.rewrite(plan),
            };
            (e, *n)
        })
        .collect()
}

impl Rewrite<Id> for History {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        History {
            writes: self
                .writes
                .iter()
                .map(|(v, s)| (v.rewrite(plan), s.rewrite(plan)))
                .collect(),
            acked: self.acked.rewrite(plan),
            dots: self
                .dots
                .iter()
                .map(|(d, v)| (*d, v.rewrite(plan)))
                .collect(),
            reaped: self.reaped.rewrite(plan),
            get_starts: self
                .get_starts
                .iter()
                .map(|(r, s)| (r.rewrite(plan), s.rewrite(plan)))
                .collect(),
            forgotten: self.forgotten.rewrite(plan),
            inflight: rewrite_envelopes(&self.inflight, plan),
            started: self.started.rewrite(plan),
            graces: self
                .graces
                .iter()
                .map(|(k, g)| {
                    let g = Grace {
                        msgs: rewrite_envelopes(&g.msgs, plan),
                        started: g.started.rewrite(plan),
                    };
                    (*k, g)
                })
                .collect(),
            ..*self
        }
    }
}

impl History {
    /// Everything `live` supersedes, transitively, plus the reaped tombstones, the forgotten
    /// writes and all they superseded (a reaped tombstone was deliberately removed once all
    /// replicas held it; a forgotten write was covered by a deleted key's history).
    pub fn superseded_by(&self, live: &BTreeSet<Value>) -> BTreeSet<Value> {
        let mut out: BTreeSet<Value> = self.reaped.union(&self.forgotten).copied().collect();
        let mut todo: Vec<Value> = live.iter().chain(&out).copied().collect();
        while let Some(v) = todo.pop() {
            for s in self.writes.get(&v).into_iter().flatten() {
                if out.insert(*s) {
                    todo.push(*s);
                }
            }
        }
        out
    }

    /// Whether `a` is in the causal past of `b` by the clients' contexts.
    pub fn precedes(&self, a: Value, b: Value) -> bool {
        let mut todo = vec![b];
        let mut seen = BTreeSet::new();
        while let Some(v) = todo.pop() {
            for s in self.writes.get(&v).into_iter().flatten() {
                if *s == a {
                    return true;
                }
                if seen.insert(*s) {
                    todo.push(*s);
                }
            }
        }
        false
    }

    fn acked_on(&self, key: Key) -> BTreeSet<Value> {
        self.acked
            .iter()
            .filter(|v| v.key == key)
            .copied()
            .collect()
    }

    fn write_of(&self, req: RequestId) -> Option<Value> {
        self.writes
            .keys()
            .find(|v| v.client == req.client && v.seq == req.seq)
            .copied()
    }
}

impl History {
    /// Learns the dots of `clock`'s siblings; returns whether any was new.
    fn learn_dots(&mut self, clock: &Clock) -> bool {
        let mut new = false;
        for (d, v) in clock.dotted() {
            new |= self.dots.insert((v.key, d), v).is_none();
        }
        new
    }

    /// Whether `clock` names a dot not yet learnt.
    fn knows_dots(&self, clock: &Clock) -> bool {
        clock
            .dotted()
            .iter()
            .all(|(d, v)| self.dots.contains_key(&(v.key, *d)))
    }

    /// Judges a put's reply context (DVVSet only): it must cover the new write when that is
    /// the clock's only sibling, and never a write the client did not see — one its request
    /// context (`asked`) did not cover, unless a value of the new clock already superseded it
    /// (as the history of contexts tells, reaped tombstones included), so that covering it
    /// again supersedes nothing.
    fn judge_reply(
        &mut self,
        value: Value,
        context: &VersionVector,
        written: &Clock,
        asked: &VersionVector,
    ) {
        self.learn_dots(written);
        let Some(dot) = written.dot_of(value) else {
            return;
        };
        if written.size() == 1 && !covers(context, dot) {
            self.misses_own = true;
        }
        let excused = self.superseded_by(&written.values());
        let unseen = self.dots.range((value.key, (0, 0))..).any(|(&(k, d), w)| {
            k == value.key
                && covers(context, d)
                && *w != value
                && !covers(asked, d)
                && !excused.contains(w)
        });
        if unseen {
            self.overreach = true;
        }
    }

    /// A put was acknowledged (to its client, or to the server that forwarded it).
    fn acknowledge(&self, reply: &Msg) -> Option<History> {
        let Msg::PutOk {
            req,
            context,
            written,
            asked,
            ..
        } = reply
        else {
            return None;
        };
        let value = self.write_of(*req)?;
        if self.acked.contains(&value) {
            return None;
        }
        let mut h = self.clone();
        h.acked.insert(value);
        h.judge_reply(value, context, written, asked);
        Some(h)
    }
}

fn between_servers(cfg: &Config, env: &Envelope<&Msg>) -> bool {
    let servers = cfg.servers();
    usize::from(env.src) < servers && usize::from(env.dst) < servers
}

/// Whether a server-to-server message carries a value some server may store or act on: the
/// only messages the grace of forgetting must see gone (one without values cannot bring a
/// write back).
fn carries_values(cfg: &Config, env: &Envelope<&Msg>) -> bool {
    between_servers(cfg, env) && env.msg.holds().iter().any(|c| c.size() > 0)
}

/// The forgetting bookkeeping of a message sent (with `forget`): the mirror of the network,
/// the messages of requests older than a round's end, and the writes a `Forget` covers.
fn forget_out(cfg: &Config, h: &History, env: &Envelope<&Msg>) -> Option<History> {
    if !cfg.settings.forget || !between_servers(cfg, env) {
        return None;
    }
    let mut h = h.clone();
    if carries_values(cfg, env) {
        let e = env.to_cloned_msg();
        *h.inflight.entry(e.clone()).or_insert(0) += 1;
        if let Some(req) = env.msg.request() {
            for g in h.graces.values_mut().filter(|g| g.old(req)) {
                *g.msgs.entry(e.clone()).or_insert(0) += 1;
            }
        }
    }
    if let Msg::Forget { key, clock } = env.msg {
        let vv = clock.context();
        let covered: Vec<Value> = h
            .dots
            .iter()
            .filter(|((k, d), _)| k == key && covers(&vv, *d))
            .map(|(_, v)| *v)
            .collect();
        h.forgotten.extend(covered);
    }
    Some(h)
}

/// The forgetting bookkeeping of a message delivered (with `forget`): the mirror of the
/// network (a delivery removes the oldest copy), requests started, and, at each answer to a
/// forgetting round, what the grace after it must wait for — the last answer's note is the
/// round's end.
fn forget_in(cfg: &Config, h: &History, env: &Envelope<&Msg>) -> Option<History> {
    if !cfg.settings.forget {
        return None;
    }
    let mut h = h.clone();
    let to_server = usize::from(env.dst) < cfg.servers();
    match env.msg {
        Msg::Put { req, .. } | Msg::Get { req, .. } if to_server => {
            let last = h.started.entry(req.client).or_insert(0);
            *last = (*last).max(req.seq);
        }
        _ => {}
    }
    if !between_servers(cfg, env) {
        return Some(h);
    }
    if carries_values(cfg, env) {
        let e = env.to_cloned_msg();
        let take = |m: &mut BTreeMap<Envelope<Msg>, u8>| {
            if let Some(n) = m.get_mut(&e) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&e);
                }
            }
        };
        take(&mut h.inflight);
        for g in h.graces.values_mut() {
            take(&mut g.msgs);
        }
    }
    if let Msg::ForgetCheckReply { round, .. } = env.msg {
        let coordinator = u8::try_from(usize::from(env.dst)).unwrap_or(u8::MAX);
        let g = Grace {
            msgs: h.inflight.clone(),
            started: h.started.clone(),
        };
        h.graces.insert((coordinator, *round), g);
    }
    Some(h)
}

/// Records a message as it is sent.
pub fn record_out(cfg: &Config, h: &History, env: Envelope<&Msg>) -> Option<History> {
    let base = forget_out(cfg, h, &env);
    let now = base.as_ref().unwrap_or(h);
    record_out_plain(cfg, now, env).or(base)
}

/// Records a message as it is delivered (and changed its receiver).
pub fn record_in(cfg: &Config, h: &History, env: Envelope<&Msg>) -> Option<History> {
    let base = forget_in(cfg, h, &env);
    let now = base.as_ref().unwrap_or(h);
    record_in_plain(cfg, now, env).or(base)
}

fn record_out_plain(cfg: &Config, h: &History, env: Envelope<&Msg>) -> Option<History> {
    match env.msg {
        Msg::Put { value, seen, .. } if !h.writes.contains_key(value) => {
            let mut h = h.clone();
            h.writes.insert(*value, seen.clone());
            Some(h)
        }
        Msg::Get { req, key } if cfg.strict_quorum() => {
            let mut h = h.clone();
            h.get_starts.insert(*req, h.acked_on(*key));
            Some(h)
        }
        Msg::Replicate { clock, .. } if !h.knows_dots(clock) => {
            let mut h = h.clone();
            h.learn_dots(clock);
            Some(h)
        }
        Msg::PutOk { .. } => h.acknowledge(env.msg),
        Msg::ForwardReply { reply, .. } => match &**reply {
            Msg::PutOk { .. } => h.acknowledge(reply),
            Msg::Fail { put: true, .. } if !h.put_failed => Some(History {
                put_failed: true,
                ..h.clone()
            }),
            Msg::PutStale { .. } if !h.stale_refused => Some(History {
                stale_refused: true,
                ..h.clone()
            }),
            _ => None,
        },
        Msg::PutStale { .. } if !h.stale_refused => Some(History {
            stale_refused: true,
            ..h.clone()
        }),
        Msg::Fail { put: true, .. } if !h.put_failed => Some(History {
            put_failed: true,
            ..h.clone()
        }),
        // The decision to reap, made once all `N` primaries hold the tombstone (the
        // coordinator reaps its own copy in the same step).
        Msg::Reap { clock, .. } => {
            let new: BTreeSet<Value> = clock.values().difference(&h.reaped).copied().collect();
            if new.is_empty() {
                return None;
            }
            let mut h = h.clone();
            h.reaped.extend(new);
            Some(h)
        }
        _ => None,
    }
}

fn record_in_plain(_cfg: &Config, h: &History, env: Envelope<&Msg>) -> Option<History> {
    match env.msg {
        Msg::GetOk { req, seen, .. } => {
            let before = h.get_starts.get(req)?;
            let mut h = h.clone();
            let known = h.superseded_by(seen);
            if before
                .iter()
                .any(|a| !seen.contains(a) && !known.contains(a))
            {
                h.stale_read = true;
            }
            h.get_starts.remove(req);
            Some(h)
        }
        Msg::Handoff { .. } if !h.handed_off => Some(History {
            handed_off: true,
            ..h.clone()
        }),
        Msg::Repair { .. } if !h.repaired => Some(History {
            repaired: true,
            ..h.clone()
        }),
        Msg::ForwardReply { reply, .. } if !h.forwarded && matches!(**reply, Msg::PutOk { .. }) => {
            Some(History {
                forwarded: true,
                ..h.clone()
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seq: u8) -> Value {
        Value {
            client: Id::from(9),
            seq,
            key: 0,
            tomb: false,
        }
    }

    #[test]
    fn supersession_is_transitive_and_includes_reaped_tombstones() {
        let mut h = History::default();
        h.writes.insert(v(1), BTreeSet::new());
        h.writes.insert(v(2), BTreeSet::from([v(1)]));
        h.writes.insert(v(3), BTreeSet::from([v(2)]));
        assert_eq!(
            h.superseded_by(&BTreeSet::from([v(3)])),
            BTreeSet::from([v(1), v(2)])
        );
        assert!(h.precedes(v(1), v(3)) && !h.precedes(v(3), v(1)));
        assert!(h.superseded_by(&BTreeSet::new()).is_empty());
        h.reaped.insert(v(2));
        assert_eq!(
            h.superseded_by(&BTreeSet::new()),
            BTreeSet::from([v(1), v(2)])
        );
    }
}
