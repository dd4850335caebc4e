//! Hinted handoff (Dynamo §4.6): a fallback hands the hints it holds back to their owners.
//!
//! A fallback stores a sloppy write durably as a hint naming the primary it stood in for
//! (see [`super::local_store`]), and acknowledges it only once durable. Every
//! [`CoreConfig::handoff_interval`](super::CoreConfig) this node offers the hints of each owner
//! the failure detector believes alive, at most [`CoreConfig::handoff_batch`](super::CoreConfig)
//! outstanding per owner (throttled, so a returning node is not flooded); the owner merges a
//! handed-off clock into its own with `sync` like any replicated write and acknowledges it once
//! durable, echoing the clock. The holder drops the hint only if it still holds exactly that
//! clock — a hint that grew meanwhile is offered again. Hints are durable and indexed at start,
//! so handoff resumes after a crash of either side; a lost offer or acknowledgement is offered
//! again after [`RESEND_AFTER`].

use super::{Env, Store, Time};
use crate::ids::NodeId;
use crate::protocol::{Clock, PeerMessage};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;

/// How long an offered hint waits for its acknowledgement before it is offered again.
pub const RESEND_AFTER: Duration = Duration::from_secs(5);

/// Offers in flight and when to offer next.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// `(owner, storage key)` → when it was offered.
    offered: HashMap<(NodeId, Vec<u8>), Time>,
    /// The next round, while hints are held.
    next: Option<Time>,
    /// Storage keys whose hint was dropped, and when: a `Handoff` sent before may still be
    /// in flight for a message lifetime (see [`super::forget`]).
    dropped: HashMap<Vec<u8>, Time>,
}

impl Handoff {
    /// When the next round is due.
    pub(crate) fn next_round(&self) -> Option<Time> {
        self.next
    }

    /// A hint is held: make sure a round is scheduled.
    pub(crate) fn hint_held(&mut self, now: Time, interval: Duration) {
        if self.next.is_none() {
            self.next = Some(now + interval);
        }
    }

    /// Whether a hint for `skey` was dropped within `lifetime` before `now`.
    pub(crate) fn dropped_within(&self, skey: &[u8], now: Time, lifetime: Duration) -> bool {
        self.dropped
            .get(skey)
            .is_some_and(|at| now < *at + lifetime)
    }

    /// A round: offer each reachable owner its hints, within the per-owner budget.
    pub(crate) fn round<S: Store>(&mut self, env: &mut Env<S>, now: Time) {
        let lifetime = env.config.message_lifetime;
        self.dropped.retain(|_, at| now < *at + lifetime);
        if self.next.is_none_or(|t| t > now) {
            return;
        }
        self.next = None;
        let batch = env.config.handoff_batch;
        let owners: Vec<(NodeId, Vec<Vec<u8>>)> = env
            .store
            .hint_index()
            .iter()
            .map(|(o, keys)| (*o, keys.iter().cloned().collect()))
            .collect();
        for (owner, keys) in owners {
            if !env.detector.healthy(owner) {
                continue;
            }
            let outstanding = self
                .offered
                .iter()
                .filter(|((o, _), at)| *o == owner && now.saturating_sub(**at) < RESEND_AFTER)
                .count();
            let mut budget = batch.saturating_sub(outstanding);
            for skey in keys {
                if budget == 0 {
                    break;
                }
                let offered = self.offered.get(&(owner, skey.clone()));
                if offered.is_some_and(|at| now.saturating_sub(*at) < RESEND_AFTER) {
                    continue;
                }
                let Ok(Some(clock)) = env.store.load_hint(owner, &skey) else {
                    continue;
                };
                let key = Bytes::copy_from_slice(skey.get(2..).unwrap_or_default());
                env.out.send(owner, PeerMessage::Handoff { key, clock });
                self.offered.insert((owner, skey), now);
                env.stats.handoffs_offered += 1;
                budget -= 1;
            }
        }
        if env.store.hint_count() > 0 {
            self.next = Some(now + env.config.handoff_interval);
        }
    }

    /// The owner holds `clock` for `key` durably: drop the hint if it is still that clock.
    pub(crate) fn acknowledged<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        owner: NodeId,
        key: &[u8],
        clock: &Clock,
    ) {
        let skey = env.storage_key(key);
        self.offered.remove(&(owner, skey.clone()));
        if env.store.load_hint(owner, &skey).ok().flatten().as_ref() == Some(clock) {
            self.dropped.insert(skey.clone(), now);
            env.store.drop_hint(env.out, owner, skey);
            env.stats.hints_handed_off += 1;
        }
    }
}
