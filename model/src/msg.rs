//! The messages of the protocol: client requests and replies, and server-to-server traffic.
//!
//! Messages carry whole clocks, never deltas, so that a duplicated or reordered message is
//! harmless: every receiver merges with `sync`, which is idempotent, commutative and
//! associative. A few fields are not protocol but *ghosts* the properties use, which no
//! server ever reads: `Put::seen` and `GetOk::seen` (the values a get returned, tombstones
//! included: what a following put means to supersede), `PutOk::written` and `PutOk::asked`
//! (the coordinator's new clock and the put's request context, against which the reply's
//! context is judged).

use crate::clock::Clock;
use crate::dvv::NodeId;
use crate::value::{Key, RequestId, Value, VersionVector};
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use stateright::{Rewrite, RewritePlan};
use std::collections::{BTreeMap, BTreeSet};

/// A message between two actors.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum Msg {
    /// Client → coordinator: read `key`.
    Get {
        /// The request.
        req: RequestId,
        /// The key.
        key: Key,
    },
    /// Client → coordinator: write `value` (a tombstone for a delete) superseding what
    /// `context` covers; an empty `context` is a blind write.
    Put {
        /// The request.
        req: RequestId,
        /// The key.
        key: Key,
        /// The context of the client's last get of `key` (empty: blind).
        context: VersionVector,
        /// The value written.
        value: Value,
        /// Ghost: the values the client's last get returned, i.e. what it means to supersede.
        seen: BTreeSet<Value>,
    },
    /// Coordinator → client: the live values of the merged clock and its context.
    GetOk {
        /// The request answered.
        req: RequestId,
        /// The live siblings (tombstones removed, as the node answers); none means not found.
        values: BTreeSet<Value>,
        /// The opaque context for a following put: the merged clock's causal context.
        context: VersionVector,
        /// Ghost: every sibling of the merged clock, tombstones included (what the client saw,
        /// and what a put with `context` supersedes).
        seen: BTreeSet<Value>,
    },
    /// Coordinator → client: the put is stored durably on `W` replicas.
    PutOk {
        /// The request answered.
        req: RequestId,
        /// A context covering the new value and nothing the client did not see: the new
        /// clock's causal context if the value is its only sibling; otherwise the request's
        /// context plus the new dot, unless that would cover another sibling, in which case
        /// the request's context alone (the node's `reply_context`).
        context: VersionVector,
        /// How many siblings (tombstones included) the key holds after the write.
        siblings: u8,
        /// Ghost: the coordinator's clock after the put.
        written: Clock,
        /// Ghost: the put's request context.
        asked: VersionVector,
    },
    /// Coordinator → client: the put's context names versions the coordinator's clock does
    /// not hold (HTTP 409, the node's `Stale`): nothing was stored, and the coordinator reads
    /// the key from every primary so that read repair brings it up to date. A client treats it
    /// like a failure.
    PutStale {
        /// The request answered.
        req: RequestId,
    },
    /// Coordinator → client: too few replicas answered in time (HTTP 503).
    Fail {
        /// The request answered.
        req: RequestId,
        /// Whether it was a put or delete (else a get).
        put: bool,
    },
    /// Server outside the key's preference list → the list's first node: coordinate this
    /// client put (or delete) and answer me.
    Forward {
        /// The client's request.
        req: RequestId,
        /// The key.
        key: Key,
        /// The client's context.
        context: VersionVector,
        /// The value written.
        value: Value,
    },
    /// The coordinator of a forwarded put → the forwarding server: the answer to relay to the
    /// client (a `PutOk` or a `Fail`).
    ForwardReply {
        /// The client's request.
        req: RequestId,
        /// The client reply.
        reply: Box<Msg>,
    },
    /// Coordinator → replica: send your clock of `key`.
    Read {
        /// The client request being coordinated.
        req: RequestId,
        /// The key.
        key: Key,
    },
    /// Replica → coordinator: my clock of the key (empty when absent).
    ReadReply {
        /// The client request being coordinated.
        req: RequestId,
        /// The replica's clock.
        clock: Clock,
    },
    /// Coordinator → replica (or fallback with a hint): store this clock durably.
    Replicate {
        /// The client request being coordinated.
        req: RequestId,
        /// The key.
        key: Key,
        /// The coordinator's clock after the put.
        clock: Clock,
        /// The intended owner when sent to a fallback (sloppy quorum).
        hint: Option<NodeId>,
    },
    /// Replica → coordinator: stored durably.
    ReplicateAck {
        /// The client request being coordinated.
        req: RequestId,
    },
    /// Get coordinator → stale replica: merge the newer clock (read repair).
    Repair {
        /// The key.
        key: Key,
        /// The merged clock the get returned.
        clock: Clock,
        /// Ghost (only with `forget`): the get that sent it, so that the grace can require
        /// what requests older than a forgetting round sent to be gone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<RequestId>,
    },
    /// Hint holder → owner: the clock held for you while you were suspected.
    Handoff {
        /// The key.
        key: Key,
        /// The hinted clock.
        clock: Clock,
    },
    /// Owner → hint holder: stored; drop the hint if it is unchanged.
    HandoffAck {
        /// The key.
        key: Key,
        /// The hinted clock that was stored.
        clock: Clock,
    },
    /// Replica → replica: my clocks of the keys we share (anti-entropy exchange).
    Sync {
        /// The sender's clock of each shared key it holds.
        entries: BTreeMap<Key, Clock>,
    },
    /// Delete coordinator → replicas: all N hold this tombstone; reap it if still current.
    Reap {
        /// The key.
        key: Key,
        /// The tombstone-only clock all N replicas acknowledged.
        clock: Clock,
        /// Ghost (only with `forget`): the delete that sent it (see `Repair`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<RequestId>,
    },
    /// A key's forgetting coordinator → every other server: what do you hold of `key`?
    ForgetCheck {
        /// The round (unique per coordinator: its boot and the round's number).
        round: u8,
        /// The key.
        key: Key,
    },
    /// Server → forgetting coordinator: my clock of the key (empty when I hold none) and
    /// whether I hold a hint for it, handed one off within a message lifetime, or restarted
    /// within one.
    ForgetCheckReply {
        /// The round answered.
        round: u8,
        /// The key.
        key: Key,
        /// The server's clock of the key (empty: none).
        clock: Clock,
        /// Whether a hint for the key may be held or in flight from this server.
        hinted: bool,
    },
    /// Forgetting coordinator → primaries: two rounds a grace apart agreed on this values-free
    /// history; remove the key if you still hold exactly it.
    Forget {
        /// The key.
        key: Key,
        /// The history agreed on.
        clock: Clock,
    },
}

fn rw<S>(v: &Clock, plan: &RewritePlan<Id, S>) -> Clock {
    v.rewrite(plan)
}

impl Rewrite<Id> for Msg {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            Msg::Get { req, key } => Msg::Get {
                req: req.rewrite(plan),
                key: *key,
            },
            Msg::Put {
                req,
                key,
                context,
                value,
                seen,
            } => Msg::Put {
                req: req.rewrite(plan),
                key: *key,
                context: context.clone(),
                value: value.rewrite(plan),
                seen: seen.rewrite(plan),
            },
            Msg::GetOk {
                req,
                values,
                context,
                seen,
            } => Msg::GetOk {
                req: req.rewrite(plan),
                values: values.rewrite(plan),
                context: context.clone(),
                seen: seen.rewrite(plan),
            },
            Msg::PutOk {
                req,
                context,
                siblings,
                written,
                asked,
            } => Msg::PutOk {
                req: req.rewrite(plan),
                context: context.clone(),
                siblings: *siblings,
                written: rw(written, plan),
                asked: asked.clone(),
            },
            Msg::Forward {
                req,
                key,
                context,
                value,
            } => Msg::Forward {
                req: req.rewrite(plan),
                key: *key,
                context: context.clone(),
                value: value.rewrite(plan),
            },
            Msg::ForwardReply { req, reply } => Msg::ForwardReply {
                req: req.rewrite(plan),
                reply: Box::new(reply.rewrite(plan)),
            },
            Msg::Fail { req, put } => Msg::Fail {
                req: req.rewrite(plan),
                put: *put,
            },
            Msg::PutStale { req } => Msg::PutStale {
                req: req.rewrite(plan),
            },
            Msg::Read { req, key } => Msg::Read {
                req: req.rewrite(plan),
                key: *key,
            },
            Msg::ReadReply { req, clock } => Msg::ReadReply {
                req: req.rewrite(plan),
                clock: rw(clock, plan),
            },
            Msg::Replicate {
                req,
                key,
                clock,
                hint,
            } => Msg::Replicate {
                req: req.rewrite(plan),
                key: *key,
                clock: rw(clock, plan),
                hint: *hint,
            },
            Msg::ReplicateAck { req } => Msg::ReplicateAck {
                req: req.rewrite(plan),
            },
            Msg::Repair { key, clock, req } => Msg::Repair {
                key: *key,
                clock: rw(clock, plan),
                req: req.map(|r| r.rewrite(plan)),
            },
            Msg::Handoff { key, clock } => Msg::Handoff {
                key: *key,
                clock: rw(clock, plan),
            },
            Msg::HandoffAck { key, clock } => Msg::HandoffAck {
                key: *key,
                clock: rw(clock, plan),
            },
            Msg::Sync { entries } => Msg::Sync {
                entries: entries.iter().map(|(k, v)| (*k, rw(v, plan))).collect(),
            },
            Msg::Reap { key, clock, req } => Msg::Reap {
                key: *key,
                clock: rw(clock, plan),
                req: req.map(|r| r.rewrite(plan)),
            },
            Msg::ForgetCheck { round, key } => Msg::ForgetCheck {
                round: *round,
                key: *key,
            },
            Msg::ForgetCheckReply {
                round,
                key,
                clock,
                hinted,
            } => Msg::ForgetCheckReply {
                round: *round,
                key: *key,
                clock: rw(clock, plan),
                hinted: *hinted,
            },
            Msg::Forget { key, clock } => Msg::Forget {
                key: *key,
                clock: rw(clock, plan),
            },
        }
    }
}

impl Msg {
    /// The clock this message carries to be stored: in flight, it counts as a copy. A
    /// `ReadReply` does not: it is stored nowhere unless read repair writes the merge back.
    pub fn carried(&self) -> Option<&Clock> {
        match self {
            Msg::Replicate { clock, .. }
            | Msg::Repair { clock, .. }
            | Msg::Handoff { clock, .. } => Some(clock),
            _ => None,
        }
    }

    /// The request a client reply answers (`GetOk`, `PutOk`, `PutStale`, `Fail`), if it is one.
    pub fn answers(&self) -> Option<RequestId> {
        match self {
            Msg::GetOk { req, .. }
            | Msg::PutOk { req, .. }
            | Msg::PutStale { req }
            | Msg::Fail { req, .. } => Some(*req),
            _ => None,
        }
    }

    /// The client request a server-to-server message belongs to, if any: the request it
    /// coordinates, forwards or answers for (`Repair` and `Reap` name it only with `forget`).
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Msg::Forward { req, .. }
            | Msg::ForwardReply { req, .. }
            | Msg::Read { req, .. }
            | Msg::ReadReply { req, .. }
            | Msg::Replicate { req, .. }
            | Msg::ReplicateAck { req } => Some(*req),
            Msg::Repair { req, .. } | Msg::Reap { req, .. } => *req,
            _ => None,
        }
    }

    /// Every clock a server-to-server message carries that some server may store or act on:
    /// what [`Msg::carried_all`] carries, and the clocks of read answers (which a coordinator
    /// merges and repairs with) and forgetting answers. A `Reap`, a `Forget` and a
    /// `HandoffAck` name a clock only to compare it.
    pub fn holds(&self) -> Vec<&Clock> {
        match self {
            Msg::ReadReply { clock, .. } | Msg::ForgetCheckReply { clock, .. } => vec![clock],
            _ => self.carried_all(),
        }
    }

    /// All clocks the message carries to be stored, anti-entropy's several included.
    pub fn carried_all(&self) -> Vec<&Clock> {
        match self {
            Msg::Sync { entries } => entries.values().collect(),
            _ => self.carried().into_iter().collect(),
        }
    }
}
