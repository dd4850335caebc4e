//! Read repair (Dynamo §4.7): after a get, replicas that answered with a stale or missing
//! version are sent the merged version.
//!
//! The coordinator waits, after answering the client, for the remaining replicas up to the
//! request deadline; then every replica whose answer differs from the merge of all answers
//! receives it as a `Repair` message, which it merges with `sync` like any replicated write.
//! Replicas that did not answer are not repaired here: a later read repairs them.

use super::{replica, Env, Store};
use crate::ids::NodeId;
use crate::protocol::{Clock, PeerMessage};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Sends the merge of `answers` to every primary among `primaries` that answered differently
/// (a fallback's answer is the hints it holds, which it hands over itself).
pub(super) fn after_get<S: Store>(
    env: &mut Env<S>,
    key: Bytes,
    answers: BTreeMap<NodeId, Option<Clock>>,
    primaries: &[NodeId],
) {
    if !env.config.read_repair {
        return;
    }
    let merged_clock = Clock::sync_all(answers.values().flatten());
    if merged_clock.size() == 0 && merged_clock.join().is_empty() {
        return;
    }
    // A merge no node could store is not sent anywhere.
    if replica::storable(&merged_clock).is_err() {
        env.stats.rejected_messages += 1;
        return;
    }
    for (node, answer) in answers {
        if answer.as_ref() == Some(&merged_clock) || !primaries.contains(&node) {
            continue;
        }
        env.stats.read_repairs += 1;
        if node == env.id {
            // Merge into the current local clock, which may have moved since it answered.
            replica::on_repair(env, key.clone(), merged_clock.clone());
        } else {
            let msg = PeerMessage::Repair {
                key: key.clone(),
                clock: merged_clock.clone(),
            };
            env.out.send(node, msg);
        }
    }
}
