//! What clients write and how requests are named.
//!
//! Every write puts a *unique* value, named by the client and its request number, so that the
//! properties can follow each write through the system: whether it is stored, superseded or
//! lost. A delete writes a tombstone value the same way. The value's identity is all the model
//! needs of its contents.

use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use stateright::{Rewrite, RewritePlan};
use std::collections::BTreeMap;

/// A key; the model uses one or two.
pub type Key = u8;

/// A version vector: a client's opaque context, or a DVVSet's causal context.
pub type Ctx = BTreeMap<u8, u8>;

/// One write, named by who wrote it; `tomb` marks a delete's tombstone.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Val {
    /// The client that wrote it.
    pub client: Id,
    /// The client's request number (1-based) that wrote it.
    pub seq: u8,
    /// The key it was written to.
    pub key: Key,
    /// Whether this is a delete's tombstone.
    pub tomb: bool,
}

impl Rewrite<Id> for Val {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        Val {
            client: self.client.rewrite(plan),
            ..*self
        }
    }
}

/// A client request's name: unique per request, used for replies and deduplication.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct ReqId {
    /// The client that sent it.
    pub client: Id,
    /// The client's request number, starting at 1.
    pub seq: u8,
}

impl Rewrite<Id> for ReqId {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        ReqId {
            client: self.client.rewrite(plan),
            seq: self.seq,
        }
    }
}
