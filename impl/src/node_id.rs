//! Node identifiers.
//!
//! A node's id is a small integer chosen when the node is added to the cluster. It is what a
//! dot `(node, counter)` names, so it must never be reused for a different node: a reused id
//! would make the new node's writes look like the old node's history.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of a node in the cluster; also the actor id in dots and version vectors.
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
