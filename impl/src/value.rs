//! What a sibling holds: client bytes, or a tombstone left by a delete.
//!
//! A delete is a write like any other — it carries a context and gets a dot — so it
//! supersedes exactly what the deleting client saw and stays concurrent with the rest.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One sibling's content.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    /// A value written by a client.
    Data(Bytes),
    /// The mark of a delete; hidden from clients, kept until every replica holds it.
    Tombstone,
}

impl Value {
    /// Whether this is a delete marker.
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Value::Tombstone)
    }

    /// The client bytes, if this is not a tombstone.
    pub fn data(&self) -> Option<&Bytes> {
        match self {
            Value::Data(b) => Some(b),
            Value::Tombstone => None,
        }
    }
}
