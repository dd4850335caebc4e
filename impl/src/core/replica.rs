//! The replica: stores and serves a key's clock.
//!
//! A replica merges every clock it receives into its own with `sync`, which keeps exactly the
//! values neither side's history has superseded, so the order in which replicas hear of
//! writes does not matter. It acknowledges a replicated write only after the merged clock is
//! durable.

use super::{AfterPersist, Core, Store};
use crate::node_id::NodeId;
use crate::protocol::{Clock, PeerMessage, RequestId};
use bytes::Bytes;

impl<S: Store> Core<S> {
    pub(super) fn on_replicate(&mut self, from: NodeId, req: RequestId, key: Bytes, clock: Clock) {
        let skey = self.storage_key(&key);
        let Ok(local) = self.load(&skey) else {
            // Unreadable storage: send no ack; the coordinator counts us as not answering.
            return;
        };
        match merged(local.as_ref(), &clock) {
            // Already durable here (and no write of it pending): acknowledge at once.
            None if !self.unsynced.contains_key(&skey) => {
                self.send(from, PeerMessage::ReplicateAck { req })
            }
            None => {
                let current = local.unwrap_or(clock);
                self.persist(skey, current, AfterPersist::ReplicaAck { to: from, req });
            }
            Some(new) => self.persist(skey, new, AfterPersist::ReplicaAck { to: from, req }),
        }
    }

    pub(super) fn on_repair(&mut self, key: Bytes, clock: Clock) {
        let skey = self.storage_key(&key);
        if let Ok(local) = self.load(&skey) {
            if let Some(new) = merged(local.as_ref(), &clock) {
                self.persist(skey, new, AfterPersist::Nothing);
            }
        }
    }

    pub(super) fn on_read(&mut self, from: NodeId, req: RequestId, key: Bytes) {
        let skey = self.storage_key(&key);
        if let Ok(clock) = self.load(&skey) {
            self.send(from, PeerMessage::ReadReply { req, clock });
        }
    }
}

/// The merge of `incoming` into `local`, or `None` when it changes nothing.
pub(super) fn merged(local: Option<&Clock>, incoming: &Clock) -> Option<Clock> {
    match local {
        None => Some(incoming.clone()),
        Some(local) => {
            let new = local.sync(incoming);
            (new != *local).then_some(new)
        }
    }
}
