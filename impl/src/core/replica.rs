//! The replica: stores and serves a key's clock.
//!
//! A replica merges every clock it receives into its own with `sync`, which keeps exactly the
//! values neither side's history has superseded, so the order in which replicas hear of
//! writes does not matter, and a duplicated message changes nothing. It acknowledges a
//! replicated write only after the merged clock is durable. A fallback standing in for an
//! unreachable replica merges into the hint it holds for that replica instead, and a replica
//! merges a handed-off hint like any replicated write.

use super::local_store::Then;
use super::{Env, Store};
use crate::ids::NodeId;
use crate::protocol::{Clock, PeerMessage, RequestId};
use bytes::Bytes;

/// A coordinator's new clock for `key`: merge it (into the hint for `hint`'s owner when this
/// node stands in for it) and acknowledge once durable.
pub(super) fn on_replicate<S: Store>(
    env: &mut Env<S>,
    from: NodeId,
    req: RequestId,
    key: Bytes,
    clock: Clock,
    hint: Option<NodeId>,
) {
    let skey = env.storage_key(&key);
    if let Some(owner) = hint {
        return hold_hint(env, from, req, key, clock, owner, skey);
    }
    let Ok(local) = env.store.load(&skey) else {
        // Unreadable storage: send no ack; the coordinator counts us as not answering.
        return;
    };
    let then = Then::Acknowledge {
        to: from,
        req,
        key: key.clone(),
    };
    match merged(local.as_ref(), &clock) {
        // Already durable here (and no write of it pending): acknowledge at once.
        Merge::Unchanged if !env.store.is_unsynced(&skey) => {
            env.out.send(from, PeerMessage::ReplicateAck { req, key })
        }
        // Already here but not yet durable: acknowledge once the same clock is.
        Merge::Unchanged => {
            let current = local.unwrap_or(clock);
            env.store.persist(env.out, skey, current, then);
        }
        Merge::Changed(new) => env.store.persist(env.out, skey, new, then),
        Merge::Refused => env.stats.rejected_messages += 1,
    }
}

/// Keeps `clock` as (part of) the hint held for `owner`; acknowledges once durable.
fn hold_hint<S: Store>(
    env: &mut Env<S>,
    from: NodeId,
    req: RequestId,
    key: Bytes,
    clock: Clock,
    owner: NodeId,
    skey: Vec<u8>,
) {
    let Ok(held) = env.store.load_hint(owner, &skey) else {
        return;
    };
    let then = Then::Acknowledge {
        to: from,
        req,
        key: key.clone(),
    };
    // Nothing new in it: the held hint stays as it is (re-written, so the acknowledgement
    // still waits for it to be durable).
    let new = match merged(held.as_ref(), &clock) {
        Merge::Changed(new) => new,
        Merge::Unchanged => held.unwrap_or(clock),
        Merge::Refused => {
            env.stats.rejected_messages += 1;
            return;
        }
    };
    env.store.persist_hint(env.out, owner, skey, new, then);
}

/// A hint handed back by the node that held it for us: merge it, acknowledge once durable.
pub(super) fn on_handoff<S: Store>(env: &mut Env<S>, from: NodeId, key: Bytes, clock: Clock) {
    let skey = env.storage_key(&key);
    let Ok(local) = env.store.load(&skey) else {
        return;
    };
    let then = Then::AcknowledgeHandoff {
        to: from,
        key: key.clone(),
        clock: clock.clone(),
    };
    match merged(local.as_ref(), &clock) {
        Merge::Unchanged if !env.store.is_unsynced(&skey) => {
            env.out.send(from, PeerMessage::HandoffAck { key, clock })
        }
        Merge::Unchanged => {
            let current = local.unwrap_or_else(|| clock.clone());
            env.store.persist(env.out, skey, current, then);
        }
        Merge::Changed(new) => env.store.persist(env.out, skey, new, then),
        Merge::Refused => env.stats.rejected_messages += 1,
    }
}

/// A clock sent by read repair: merge it, answer nothing.
pub(super) fn on_repair<S: Store>(env: &mut Env<S>, key: Bytes, clock: Clock) {
    let skey = env.storage_key(&key);
    if let Ok(local) = env.store.load(&skey) {
        match merged(local.as_ref(), &clock) {
            Merge::Changed(new) => env.store.persist(env.out, skey, new, Then::Nothing),
            Merge::Unchanged => {}
            Merge::Refused => env.stats.rejected_messages += 1,
        }
    }
}

/// A coordinator asks for our clock of `key`: we answer with what we may show (no dot of
/// ours that is not yet durable).
pub(super) fn on_read<S: Store>(env: &mut Env<S>, from: NodeId, req: RequestId, key: Bytes) {
    let skey = env.storage_key(&key);
    if let Ok(clock) = env.store.visible(&skey) {
        env.out
            .send(from, PeerMessage::ReadReply { req, key, clock });
    }
}

/// The merge of `incoming` into `local`, or `None` when it changes nothing — or when the
/// merge would break a limit every decoder enforces (counted and refused: nothing stored, no
/// acknowledgement, so no clock a node cannot read back is ever stored or sent).
pub(super) fn merged(local: Option<&Clock>, incoming: &Clock) -> Merge {
    let new = match local {
        None => incoming.clone(),
        Some(local) => {
            let new = local.sync(incoming);
            if new == *local {
                return Merge::Unchanged;
            }
            new
        }
    };
    match storable(&new) {
        Ok(()) => Merge::Changed(new),
        Err(_) => Merge::Refused,
    }
}

/// What a merge gives.
pub(super) enum Merge {
    /// Nothing new.
    Unchanged,
    /// The new clock.
    Changed(Clock),
    /// The result would break a limit: refuse the message.
    Refused,
}

/// Whether a merged clock may be stored and sent: the decoders' limits, and at most a frame.
pub(super) fn storable(clock: &Clock) -> Result<(), String> {
    clock.check().map_err(|e| e.to_string())?;
    let bytes = super::clock_size_estimate(clock);
    if bytes > 2 * super::MAX_CLOCK_BYTES {
        return Err(format!("{bytes} bytes"));
    }
    Ok(())
}
