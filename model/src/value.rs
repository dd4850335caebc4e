//! What clients write and how requests are named.
//!
//! Every write puts a *unique* value, named by the client and its request number, so that the
//! properties can follow each write through the system: whether it is stored, superseded or
//! lost. A delete writes a tombstone value the same way. The value's identity is all the model
//! needs of its contents.

use crate::dvv::NodeId;
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use stateright::{Rewrite, RewritePlan};
use std::collections::BTreeMap;

/// A key; the model uses one or two.
pub type Key = u8;

/// A version vector, a causal history: for each server, the largest counter of its writes
/// seen. The context a client carries is one, as is a DVVSet's causal context.
pub type VersionVector = BTreeMap<NodeId, u8>;

/// A value: one write's content (data or a tombstone), named by who wrote it; `tomb` marks a
/// delete's tombstone.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Value {
    /// The client that wrote it.
    pub client: Id,
    /// The client's request number (1-based) that wrote it.
    pub seq: u8,
    /// The key it was written to.
    pub key: Key,
    /// Whether this is a delete's tombstone.
    pub tomb: bool,
}

impl Rewrite<Id> for Value {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        Value {
            client: self.client.rewrite(plan),
            ..*self
        }
    }
}

/// A request's name: unique per request, used for replies and deduplication.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct RequestId {
    /// The client that sent it.
    pub client: Id,
    /// The client's request number, starting at 1.
    pub seq: u8,
}

impl Rewrite<Id> for RequestId {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        RequestId {
            client: self.client.rewrite(plan),
            seq: self.seq,
        }
    }
}
