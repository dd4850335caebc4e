//! The messages of the protocol: client requests and replies, and server-to-server traffic.
//!
//! Messages carry whole versions, never deltas, so that a duplicated or reordered message is
//! harmless: every receiver merges with `sync`, which is idempotent, commutative and
//! associative. The only field that is not protocol is `Put::seen`, a ghost the properties use
//! (the values the client's context was read from); no server ever looks at it.

use crate::dvv::Node;
use crate::value::{Ctx, Key, ReqId, Val};
use crate::version::Version;
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
        req: ReqId,
        /// The key.
        key: Key,
    },
    /// Client → coordinator: write `val` (a tombstone for a delete) superseding what `ctx`
    /// covers; an empty `ctx` is a blind write.
    Put {
        /// The request.
        req: ReqId,
        /// The key.
        key: Key,
        /// The context of the client's last get of `key` (empty: blind).
        ctx: Ctx,
        /// The value written.
        val: Val,
        /// Ghost: the values the client's last get returned, i.e. what it means to supersede.
        seen: BTreeSet<Val>,
    },
    /// Coordinator → client: the merged siblings (tombstones included) and their context.
    GetOk {
        /// The request answered.
        req: ReqId,
        /// The siblings; none, or only tombstones, means not found.
        values: BTreeSet<Val>,
        /// The opaque context for a following put.
        ctx: Ctx,
    },
    /// Coordinator → client: the put is stored durably on `W` replicas.
    PutOk {
        /// The request answered.
        req: ReqId,
    },
    /// Coordinator → client: too few replicas answered in time (HTTP 503).
    Fail {
        /// The request answered.
        req: ReqId,
        /// Whether it was a put or delete (else a get).
        put: bool,
    },
    /// Coordinator → replica: send your version of `key`.
    Read {
        /// The client request being coordinated.
        req: ReqId,
        /// The key.
        key: Key,
    },
    /// Replica → coordinator: my version of the key (empty when absent).
    ReadReply {
        /// The client request being coordinated.
        req: ReqId,
        /// The replica's version.
        version: Version,
    },
    /// Coordinator → replica (or fallback with a hint): store this version durably.
    Replicate {
        /// The client request being coordinated.
        req: ReqId,
        /// The key.
        key: Key,
        /// The coordinator's version after the put.
        version: Version,
        /// The intended owner when sent to a fallback (sloppy quorum).
        hint: Option<Node>,
    },
    /// Replica → coordinator: stored durably.
    ReplicateAck {
        /// The client request being coordinated.
        req: ReqId,
    },
    /// Get coordinator → stale replica: merge the newer version (read repair).
    Repair {
        /// The key.
        key: Key,
        /// The merged version the get returned.
        version: Version,
    },
    /// Hint holder → owner: the version held for you while you were suspected.
    Handoff {
        /// The key.
        key: Key,
        /// The hinted version.
        version: Version,
    },
    /// Owner → hint holder: stored; drop the hint if it is unchanged.
    HandoffAck {
        /// The key.
        key: Key,
        /// The hinted version that was stored.
        version: Version,
    },
    /// Replica → replica: my versions of the keys we share (anti-entropy exchange).
    Sync {
        /// The sender's version of each shared key it holds.
        entries: BTreeMap<Key, Version>,
    },
    /// Delete coordinator → replicas: all N hold this tombstone; reap it if still current.
    Reap {
        /// The key.
        key: Key,
        /// The tombstone-only version all N replicas acknowledged.
        version: Version,
    },
}

fn rw<S>(v: &Version, plan: &RewritePlan<Id, S>) -> Version {
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
                ctx,
                val,
                seen,
            } => Msg::Put {
                req: req.rewrite(plan),
                key: *key,
                ctx: ctx.clone(),
                val: val.rewrite(plan),
                seen: seen.rewrite(plan),
            },
            Msg::GetOk { req, values, ctx } => Msg::GetOk {
                req: req.rewrite(plan),
                values: values.rewrite(plan),
                ctx: ctx.clone(),
            },
            Msg::PutOk { req } => Msg::PutOk {
                req: req.rewrite(plan),
            },
            Msg::Fail { req, put } => Msg::Fail {
                req: req.rewrite(plan),
                put: *put,
            },
            Msg::Read { req, key } => Msg::Read {
                req: req.rewrite(plan),
                key: *key,
            },
            Msg::ReadReply { req, version } => Msg::ReadReply {
                req: req.rewrite(plan),
                version: rw(version, plan),
            },
            Msg::Replicate {
                req,
                key,
                version,
                hint,
            } => Msg::Replicate {
                req: req.rewrite(plan),
                key: *key,
                version: rw(version, plan),
                hint: *hint,
            },
            Msg::ReplicateAck { req } => Msg::ReplicateAck {
                req: req.rewrite(plan),
            },
            Msg::Repair { key, version } => Msg::Repair {
                key: *key,
                version: rw(version, plan),
            },
            Msg::Handoff { key, version } => Msg::Handoff {
                key: *key,
                version: rw(version, plan),
            },
            Msg::HandoffAck { key, version } => Msg::HandoffAck {
                key: *key,
                version: rw(version, plan),
            },
            Msg::Sync { entries } => Msg::Sync {
                entries: entries.iter().map(|(k, v)| (*k, rw(v, plan))).collect(),
            },
            Msg::Reap { key, version } => Msg::Reap {
                key: *key,
                version: rw(version, plan),
            },
        }
    }
}

impl Msg {
    /// The version this message carries to be stored: in flight, it counts as a copy. A
    /// `ReadReply` does not: it is stored nowhere unless read repair writes the merge back.
    pub fn carried(&self) -> Option<&Version> {
        match self {
            Msg::Replicate { version, .. }
            | Msg::Repair { version, .. }
            | Msg::Handoff { version, .. } => Some(version),
            _ => None,
        }
    }

    /// All versions the message carries to be stored, anti-entropy's several included.
    pub fn carried_all(&self) -> Vec<&Version> {
        match self {
            Msg::Sync { entries } => entries.values().collect(),
            _ => self.carried().into_iter().collect(),
        }
    }
}
