//! Who is who: nodes, and the actors that name writes.
//!
//! A **node** (`NodeId`) is a member of the cluster: a small integer chosen when the node is
//! added, used for placement and addressing. An **actor** (`ActorId`) is what a dot
//! `(actor, counter)` names: the issuer of a write. They are different on purpose: a node
//! writes under an actor that changes whenever it could otherwise issue a dot it already
//! issued (a new data directory, a key whose history it lost; see the core's documentation),
//! so one node may appear under several actors in a key's history, and an actor must never be
//! reused for a different write history.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of a node in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl From<u64> for NodeId {
    fn from(v: u64) -> Self {
        NodeId(v)
    }
}

/// The issuer of writes: the actor of the dots in version vectors and DVVSets.
///
/// A node's actors share its `identity` (a random 64-bit number, kept as long as the node's
/// data directory is known to be its own) and differ by `epoch`: every time the node starts a
/// new history for a key — it has no clock for the key, or none with its own entry — it takes
/// a fresh epoch from a durable counter lease, so a key re-created after its history was lost
/// or dropped can never reissue an old dot (Riak's per-key actor epochs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    /// The node identity this actor belongs to.
    pub identity: u64,
    /// Which of that identity's per-key epochs.
    pub epoch: u64,
}

impl ActorId {
    /// The actor of `identity` in `epoch`.
    pub const fn new(identity: u64, epoch: u64) -> Self {
        ActorId { identity, epoch }
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{}", self.identity, self.epoch)
    }
}
