//! Tombstone reaping: a delete's tombstone is removed only once every replica holds it.
//!
//! A delete is a write of a tombstone with the client's context. When the coordinator sees that
//! all `N` replicas acknowledged a clock holding nothing but tombstones, it asks each of them to
//! reap: a replica whose stored clock is still exactly that clock drops the tombstones and keeps
//! the causal history (the version vector). Keeping the history is what makes this safe: a
//! stale replica or a late message carrying a value the delete superseded is covered by that
//! history and is discarded by `sync`, so the deleted value cannot come back (removing the key
//! outright would let it). A replica whose clock moved on (a newer write) keeps what it has.

use super::{AfterPersist, Core, Store};
use crate::node_id::NodeId;
use crate::protocol::{Clock, PeerMessage};
use bytes::Bytes;

impl<S: Store> Core<S> {
    /// Every replica acknowledged the tombstone-only `clock`: ask each to reap it.
    pub(super) fn send_reaps(&mut self, replicas: &[NodeId], key: Bytes, clock: Clock) {
        for node in replicas {
            if *node == self.id {
                self.on_reap(key.clone(), clock.clone());
            } else {
                let msg = PeerMessage::Reap {
                    key: key.clone(),
                    clock: clock.clone(),
                };
                self.send(*node, msg);
            }
        }
    }

    /// Reaps `key` if its clock here is still exactly `clock`.
    pub(super) fn on_reap(&mut self, key: Bytes, clock: Clock) {
        let skey = self.storage_key(&key);
        let Ok(Some(local)) = self.load(&skey) else {
            return;
        };
        if local != clock || !local.values().iter().all(|v| v.is_tombstone()) {
            return;
        }
        let mut reaped = local;
        reaped.retain_values(|v| !v.is_tombstone());
        self.stats.reaped += 1;
        self.persist(skey, reaped, AfterPersist::Nothing);
    }
}
