//! Who is who: nodes, and the actors that name writes.
//!
//! A **node** (`NodeId`) is a member of the cluster: a small integer chosen when the node is
//! added, used for placement and addressing. An **actor** (`ActorId`) is what a dot
//! `(actor, counter)` names: the issuer of a write. They are different on purpose: a node
//! writes under an actor id that changes whenever it could otherwise issue a dot it already
//! issued (see the core's documentation), so one node may appear under several actors in a
//! key's history, and an actor id must never be reused for a different issuer.

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId(pub u64);

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{:x}", self.0)
    }
}
