//! Messages between nodes and between the client API and the core.
//!
//! Peer messages travel as postcard inside length-prefixed frames (see [`crate::transport`]);
//! every clock and context in them is validated while it is decoded, so a malformed message is
//! refused at the edge.

use crate::dvvset::{DvvSet, VersionVector};
use crate::ids::NodeId;
use crate::value::Value;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Version of the peer protocol, exchanged in the handshake; peers must agree exactly.
pub const PROTOCOL_VERSION: u32 = 4;

/// A key's versions as stored and replicated.
pub type Clock = DvvSet<Value>;

/// Identifies a request within the node that coordinates it; replies echo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// What a client asked for, after the HTTP layer parsed and validated it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientOp {
    /// Read a key, waiting for `r` replicas (cluster default when `None`).
    Get {
        /// The key.
        key: Bytes,
        /// Read quorum for this request.
        r: Option<usize>,
        /// How many of the `r` answers must come from primary replicas (Riak's `pr`); 0 or
        /// `None`: answers from fallbacks count too.
        pr: Option<usize>,
    },
    /// Write `value` (a tombstone for a delete), superseding what `context` covers.
    Put {
        /// The key.
        key: Bytes,
        /// New content; [`Value::Tombstone`] deletes.
        value: Value,
        /// What the client had read; empty for a blind write.
        context: VersionVector,
        /// Write quorum for this request.
        w: Option<usize>,
        /// How many of the `w` durable copies must be on primary replicas (Riak's `pw`); 0 or
        /// `None`: copies held as hints by fallbacks count too.
        pw: Option<usize>,
    },
}

impl ClientOp {
    /// The key the operation is about.
    pub fn key(&self) -> &Bytes {
        match self {
            ClientOp::Get { key, .. } | ClientOp::Put { key, .. } => key,
        }
    }
}

/// The outcome of a client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// A read's merged answer: the live values (empty: absent or deleted) and the context.
    Found {
        /// Siblings, tombstones removed.
        values: Vec<Bytes>,
        /// Causal history of everything read (covers tombstones too).
        context: VersionVector,
    },
    /// A write reached `W` replicas durably.
    Stored {
        /// A context that covers the new value and only what the client had seen.
        context: VersionVector,
        /// How many values (siblings, tombstones included) the key holds after the write.
        siblings: usize,
    },
    /// Fewer than the required replicas answered in time. A write may still be stored.
    Unavailable {
        /// Replicas required (`R` or `W`).
        required: usize,
        /// Replicas that answered.
        answered: usize,
    },
    /// The request was refused before any replica was involved.
    Invalid(String),
    /// The write would leave the key with more siblings or bytes than a clock may hold; the
    /// client must merge the siblings first. Nothing was stored.
    TooLarge(String),
    /// The write's context names versions the coordinating replica does not hold (it is
    /// behind, or the context was altered). Nothing was stored; the replica catches up, and
    /// the client should read again and retry.
    Stale(String),
}

/// Messages between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Coordinator → replica: merge this clock into yours and acknowledge once durable. With
    /// a `hint`, the receiver is a fallback standing in for that unreachable replica: it keeps
    /// the clock as a hint and hands it over later.
    Replicate {
        /// The coordinator's request.
        req: RequestId,
        /// The key.
        key: Bytes,
        /// The coordinator's new clock for the key.
        clock: Clock,
        /// The replica this copy is meant for, when sent to a fallback (sloppy quorum).
        hint: Option<NodeId>,
    },
    /// Replica → coordinator: the replicated clock is durable here.
    ReplicateAck {
        /// The coordinator's request.
        req: RequestId,
        /// The key, so an acknowledgement is matched on sender, request and key.
        key: Bytes,
    },
    /// Coordinator → replica: send me your clock for `key`.
    Read {
        /// The coordinator's request.
        req: RequestId,
        /// The key.
        key: Bytes,
    },
    /// Replica → coordinator: my clock for the key (`None`: never written here).
    ReadReply {
        /// The coordinator's request.
        req: RequestId,
        /// The key, so an answer is matched on sender, request and key.
        key: Bytes,
        /// The replica's clock.
        clock: Option<Clock>,
    },
    /// Read repair: merge this clock into yours (no answer).
    Repair {
        /// The key.
        key: Bytes,
        /// The merged clock the coordinator read.
        clock: Clock,
    },
    /// A node outside a key's preference list hands a write to a node in it.
    Forward {
        /// The forwarding node's request.
        req: RequestId,
        /// The client's operation.
        op: ClientOp,
    },
    /// The answer to a [`PeerMessage::Forward`].
    ForwardReply {
        /// The forwarding node's request.
        req: RequestId,
        /// The outcome.
        reply: ClientReply,
    },
    /// Hint holder → replica: a clock held for you while you were unreachable; merge it and
    /// acknowledge once durable.
    Handoff {
        /// The key.
        key: Bytes,
        /// The hinted clock.
        clock: Clock,
    },
    /// Replica → hint holder: the handed-off clock is durable here; drop the hint if it has
    /// not changed since.
    HandoffAck {
        /// The key.
        key: Bytes,
        /// The clock that was handed off.
        clock: Clock,
    },
    /// Anti-entropy, initiator → replica: my hash-tree branches of `partition`.
    AaeBranches {
        /// Names the exchange.
        exchange: u64,
        /// The partition.
        partition: u32,
        /// Branch hashes, in order.
        branches: Vec<u64>,
    },
    /// Anti-entropy, replica → initiator: my hashes of every segment in the branches that
    /// differ (none: the trees agree).
    AaeSegments {
        /// Names the exchange.
        exchange: u64,
        /// The partition.
        partition: u32,
        /// `(segment, hash)`.
        segments: Vec<(u16, u64)>,
    },
    /// Anti-entropy, initiator → replica: my keys in the segments that differ, with the hash
    /// of each one's clock.
    AaeKeys {
        /// Names the exchange.
        exchange: u64,
        /// The partition.
        partition: u32,
        /// The segments that differ.
        segments: Vec<u16>,
        /// `(key, clock hash)`.
        keys: Vec<(Bytes, u64)>,
    },
    /// Anti-entropy, replica → initiator: send me your clocks of these keys (as `Repair`s).
    AaeFetch {
        /// The partition.
        partition: u32,
        /// Keys the replica holds differently.
        keys: Vec<Bytes>,
        /// Keys the replica holds nothing of: a history without values (a forgotten delete
        /// elsewhere) is not sent back for these (see `crate::core::forget`).
        lacking: Vec<Bytes>,
    },
    /// Every replica acknowledged this tombstone-only clock: if it is still exactly what you
    /// hold, drop the tombstones and keep the causal history (no answer).
    Reap {
        /// The key.
        key: Bytes,
        /// The clock every replica acknowledged.
        clock: Clock,
    },
    /// Forgetting a deleted key, coordinator → every node: what do you hold of `key`?
    ForgetCheck {
        /// Names the round.
        round: u64,
        /// The key.
        key: Bytes,
    },
    /// The answer to a [`PeerMessage::ForgetCheck`].
    ForgetCheckReply {
        /// The round.
        round: u64,
        /// The key.
        key: Bytes,
        /// The clock this node stores for the key.
        clock: Option<Clock>,
        /// Whether this node holds a hint for the key, or may have sent one within a
        /// message's lifetime.
        hinted: bool,
    },
    /// Every node agreed twice, a grace period apart: if your clock of `key` is still exactly
    /// this history without values, remove it (no answer).
    Forget {
        /// The key.
        key: Bytes,
        /// The history every primary held.
        clock: Clock,
    },
}

impl PeerMessage {
    /// The key a message is about, for those that name one.
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            PeerMessage::Replicate { key, .. }
            | PeerMessage::ReplicateAck { key, .. }
            | PeerMessage::Read { key, .. }
            | PeerMessage::ReadReply { key, .. }
            | PeerMessage::Repair { key, .. }
            | PeerMessage::Handoff { key, .. }
            | PeerMessage::HandoffAck { key, .. }
            | PeerMessage::Reap { key, .. }
            | PeerMessage::ForgetCheck { key, .. }
            | PeerMessage::ForgetCheckReply { key, .. }
            | PeerMessage::Forget { key, .. } => Some(key),
            PeerMessage::Forward { op, .. } => Some(op.key()),
            PeerMessage::ForwardReply { .. }
            | PeerMessage::AaeBranches { .. }
            | PeerMessage::AaeSegments { .. }
            | PeerMessage::AaeKeys { .. }
            | PeerMessage::AaeFetch { .. } => None,
        }
    }
}
