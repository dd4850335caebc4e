//! Read repair (Dynamo §4.7): after a get, replicas that answered with a stale or missing
//! version are sent the merged version.
//!
//! The coordinator waits, after answering the client, for the remaining replicas up to the
//! request deadline; then every replica whose answer differs from the merge of all answers
//! receives it as a `Repair` message, which it merges with `sync` like any replicated write.
//! Replicas that did not answer are left to anti-entropy.

use super::coordinator::{Kind, Request};
use super::{Core, Store};
use crate::protocol::{Clock, PeerMessage};

impl<S: Store> Core<S> {
    /// Sends the merged clock to every replica of a finished get that answered differently.
    pub(super) fn repair_after_get(&mut self, request: Request) {
        if !self.config.read_repair {
            return;
        }
        let Kind::Get { key, answers, .. } = request.kind else {
            return;
        };
        let merged_clock = Clock::sync_all(answers.values().flatten());
        if merged_clock.size() == 0 && merged_clock.join().is_empty() {
            return;
        }
        for (node, answer) in answers {
            if answer.as_ref() == Some(&merged_clock) {
                continue;
            }
            self.stats.read_repairs += 1;
            if node == self.id {
                // Merge into the current local clock, which may have moved since it answered.
                self.on_repair(key.clone(), merged_clock.clone());
            } else {
                self.send(
                    node,
                    PeerMessage::Repair {
                        key: key.clone(),
                        clock: merged_clock.clone(),
                    },
                );
            }
        }
    }
}
