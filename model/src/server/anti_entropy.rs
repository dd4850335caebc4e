//! Anti-entropy: replicas push their changed keys to each other and merge what differs.
//!
//! A replica whose store changed (`dirty`) sets the `AntiEntropy` timer; when it fires, it
//! sends each peer its clocks of the keys they share, and the peer merges those it
//! replicates — except a values-free history offered to a replica that holds nothing of the
//! key, which it leaves alone (it may have forgotten the key; see `forget.rs`). Because a
//! replica pushes after every change, once changes stop each pair of
//! replicas has merged the other's final state and both hold the join: convergence even when
//! a `Replicate` was lost. Hash trees would only make the exchange cheaper and are abstracted
//! away, as is the node's second comparison before it moves keys (it only delays a push);
//! a push is not repeated without a change, so runs still end.

use super::{id, Server, ServerState};
use crate::actor::Wiring;
use crate::clock::Clock;
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::value::Key;
use stateright::actor::Out;
use std::borrow::Cow;
use std::collections::BTreeMap;

impl Server<'_> {
    /// The `AntiEntropy` timer: push every shared key to each peer that replicates one.
    pub(super) fn push(&self, st: &mut Cow<ServerState>, o: &mut Out<Wiring>) {
        let s = st.to_mut();
        s.dirty = false;
        let ring = self.cfg.ring;
        for peer in 0..ring.servers {
            if peer == s.me {
                continue;
            }
            let entries: BTreeMap<Key, Clock> = s
                .store
                .data
                .iter()
                .filter(|(k, _)| ring.replicates(peer, **k))
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            if !entries.is_empty() {
                o.send(id(peer), Msg::Sync { entries });
            }
        }
    }

    /// A peer's push: merge the keys this server replicates.
    pub(super) fn sync(
        &self,
        st: &mut Cow<ServerState>,
        entries: BTreeMap<Key, Clock>,
        o: &mut Out<Wiring>,
    ) {
        let me = st.me;
        for (key, clock) in entries {
            // A history without values is not taken by a replica that holds nothing of the
            // key (the node's responder does not push it there): that replica may have
            // forgotten the key, and nothing it could hold needs the history to lose.
            let respread = self.cfg.mutated(Mutation::SyncRespreadsHistory);
            if clock.is_reaped() && !st.store.data.contains_key(&key) && !respread {
                continue;
            }
            if self.cfg.ring.replicates(me, key) {
                self.merge(st, key, &clock, o);
            }
        }
    }
}
