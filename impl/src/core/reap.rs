//! Tombstone reaping: a delete's tombstone is removed only once every replica holds it.
//!
//! A delete is a write of a tombstone with the client's context. When the coordinator sees that
//! all `N` replicas acknowledged a clock holding nothing but tombstones, it asks each of them to
//! reap: a replica whose stored clock is still exactly that clock drops the tombstones and keeps
//! the causal history (the version vector). Keeping the history is what makes this safe: a
//! stale replica or a late message carrying a value the delete superseded is covered by that
//! history and is discarded by `sync`, so the deleted value cannot come back (removing the key
//! outright would let it). A replica whose clock moved on (a newer write) keeps what it has.

use super::local_store::Then;
use super::{Env, Store};
use crate::ids::NodeId;
use crate::protocol::{Clock, PeerMessage};
use bytes::Bytes;

/// Every replica acknowledged the tombstone-only `clock`: ask each to reap it.
pub(crate) fn send_reaps<S: Store>(
    env: &mut Env<S>,
    replicas: &[NodeId],
    key: Bytes,
    clock: Clock,
) {
    for node in replicas {
        if *node == env.id {
            on_reap(env, key.clone(), clock.clone());
        } else {
            let msg = PeerMessage::Reap {
                key: key.clone(),
                clock: clock.clone(),
            };
            env.out.send(*node, msg);
        }
    }
}

/// Reaps `key` if its clock here is still exactly `clock`.
pub(super) fn on_reap<S: Store>(env: &mut Env<S>, key: Bytes, clock: Clock) {
    let skey = env.storage_key(&key);
    let Ok(Some(local)) = env.store.load(&skey) else {
        return;
    };
    if local != clock || !local.values().iter().all(|v| v.is_tombstone()) {
        return;
    }
    let mut reaped = local;
    reaped.retain_values(|v| !v.is_tombstone());
    env.stats.reaped += 1;
    env.store.persist(env.out, skey, reaped, Then::Nothing);
}
