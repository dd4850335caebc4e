//! Actors: under which actor a coordinator issues a key's next dot, so that no dot is ever
//! issued twice.
//!
//! A dot `(actor, counter)` must name one write for ever; a coordinator picks the counter as
//! one more than the largest its clock for the key (or the client's context) holds for the
//! actor. That is safe exactly when the coordinator's clock holds every dot the actor ever
//! issued for the key. Three rules make it so:
//!
//! - **Persist before you send.** A coordinator's new dot leaves the node — in a `Replicate`,
//!   a read answer, a reply's context — only once its own copy is durable ([`super::local_store`]
//!   hides undurable own writes from reads), so a crash can only forget dots nobody saw. The
//!   actor identity survives crashes: version vectors do not grow per restart.
//! - **Per-key actor epochs** (Riak ≥ 2.1, after its kv679 bugs). A node's actors are
//!   `(identity, epoch)`. For a key whose local clock has an entry of this identity, the
//!   coordinator continues the newest such epoch; for a key it holds no clock for, or none
//!   with its own entry — a new key, a key whose history was lost or dropped, an unreadable
//!   record — it takes a fresh epoch. A key re-created after losing its history therefore
//!   starts a new actor instead of reissuing the old one's dots, and the growth of actors is
//!   confined to such keys.
//! - **A durable counter lease for epochs.** Epochs come from a counter the shell made durable
//!   up to a lease; before issuing an epoch at or beyond it, the core writes a new lease
//!   through the same ordered writer, ahead of the write that uses the epoch, so the lease is
//!   durable before any dot of that epoch can leave. After a crash the node resumes at the
//!   lease. A node whose data directory may not be its own (wiped, restored from a backup,
//!   copied) takes a fresh identity; the shell decides that at start (`storage.rs`).

use super::local_store::LocalStore;
use super::outbox::Outbox;
use super::Store;
use crate::ids::ActorId;
use crate::protocol::Clock;

/// Epochs reserved by one lease write.
pub const EPOCH_LEASE_BLOCK: u64 = 10_000;

/// Who this incarnation of the node is: what its dots and request ids are named after. The
/// shell establishes it (and makes it durable) before the node serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incarnation {
    /// The identity of the node's data: the `identity` of all its actors.
    pub identity: u64,
    /// The first epoch this incarnation may use: every earlier one may have been issued.
    pub first_epoch: u64,
    /// A number no earlier start of this node used: request ids are drawn from it, so a late
    /// reply to an earlier incarnation's request is never taken for a new one's.
    pub boot: u64,
}

/// The identity's epochs: the next one to hand out and how far the durable lease reaches.
pub(crate) struct Actors {
    identity: u64,
    next_epoch: u64,
    lease: u64,
}

impl Actors {
    /// The actors of `incarnation`; nothing is leased yet beyond its first epoch.
    pub(crate) fn new(incarnation: &Incarnation) -> Self {
        Actors {
            identity: incarnation.identity,
            next_epoch: incarnation.first_epoch,
            lease: incarnation.first_epoch,
        }
    }

    /// The identity of every actor of this node.
    pub(crate) fn identity(&self) -> u64 {
        self.identity
    }

    /// The actor for the next write of a key whose local clock is `local`: the newest of this
    /// identity's epochs in it, else a fresh epoch (extending the lease first if needed).
    pub(crate) fn actor_for<S: Store>(
        &mut self,
        local: Option<&Clock>,
        store: &mut LocalStore<S>,
        out: &mut Outbox,
    ) -> ActorId {
        let own = local.and_then(|clock| {
            clock
                .ids()
                .into_iter()
                .filter(|a| a.identity == self.identity)
                .max()
        });
        if let Some(actor) = own {
            return actor;
        }
        if self.next_epoch >= self.lease {
            self.lease = self.next_epoch.saturating_add(EPOCH_LEASE_BLOCK);
            store.persist_lease(out, self.lease);
        }
        let actor = ActorId::new(self.identity, self.next_epoch);
        self.next_epoch += 1;
        actor
    }
}
