//! The core's outputs, queued in the order the mechanisms produced them.
//!
//! Every mechanism writes its effects here and nowhere else; the shell drains the queue with
//! [`super::Core::poll_effect`] after each input. The order is the contract: a message that
//! depends on a write is queued only once the write was reported durable (see
//! [`super::local_store`]), so executing effects in queue order never lets it out early.

use crate::ids::NodeId;
use crate::protocol::{ClientReply, Clock, PeerMessage};
use std::collections::VecDeque;

/// Identifies a client request inside the shell that submitted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// Identifies a write the core asked the shell to make durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersistId(pub u64);

/// Something the shell must do on the core's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send `msg` to peer `to` (never to this node itself).
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: PeerMessage,
    },
    /// Answer client request `client`.
    Reply {
        /// The request.
        client: ClientId,
        /// The answer.
        reply: ClientReply,
    },
    /// Make `write` durable, then call [`super::Core::handle_persisted`] with `id`. Writes
    /// must be applied in the order they are emitted (a later write may depend on an earlier
    /// one, like a clock on the epoch lease it uses); they may be grouped into one commit, and
    /// completions reported only once the data is durable per the configured mode.
    Persist {
        /// Completion token.
        id: PersistId,
        /// What to store.
        write: Write,
    },
}

/// A write to durable storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Store `clock` under `key` in the data keyspace (it replaces what is there).
    Clock {
        /// Storage key (see [`super::storage_key`]).
        key: Vec<u8>,
        /// The full clock.
        clock: Clock,
    },
    /// Record that no epoch at or beyond this one has been used (see [`super::actors`]).
    EpochLease(u64),
    /// Store `clock` as the hint held for `owner` under `key` (it replaces what is there).
    Hint {
        /// The node the hint is for.
        owner: NodeId,
        /// Storage key.
        key: Vec<u8>,
        /// The full hinted clock.
        clock: Clock,
    },
    /// Remove a key's clock altogether (a fully deleted key whose history may be forgotten).
    DropClock {
        /// Storage key.
        key: Vec<u8>,
    },
    /// Remove the hint held for `owner` under `key`.
    DropHint {
        /// The node the hint was for.
        owner: NodeId,
        /// Storage key.
        key: Vec<u8>,
    },
}

/// The queue of effects.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    effects: VecDeque<Effect>,
}

impl Outbox {
    /// Queues a message to a peer.
    pub(crate) fn send(&mut self, to: NodeId, msg: PeerMessage) {
        self.effects.push_back(Effect::Send { to, msg });
    }

    /// Queues a client's answer.
    pub(crate) fn reply(&mut self, client: ClientId, reply: ClientReply) {
        self.effects.push_back(Effect::Reply { client, reply });
    }

    /// Queues a write (only [`super::local_store::LocalStore`] calls this).
    pub(crate) fn persist(&mut self, id: PersistId, write: Write) {
        self.effects.push_back(Effect::Persist { id, write });
    }

    /// The next effect, oldest first.
    pub(crate) fn pop(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }
}
