//! The local store: this node's clocks as the protocol sees them.
//!
//! Three layers answer a read, newest first: clocks handed to the shell but not yet reported
//! durable (*unsynced*: reads and read-modify-writes must see them before the disk does), a
//! byte-bounded cache of durable clocks (every write passes through here, so the cache always
//! equals the store where it has an entry), and the durable store itself behind the [`Store`]
//! trait. A write goes out as an [`super::Effect::Persist`] with a [`PersistId`]; when the shell
//! reports it durable, [`LocalStore::persisted`] hands back what was waiting on it (a
//! [`Then`]) so the mechanism that asked can take its next step — an acknowledgement or a
//! message leaves only after the write it depends on is durable.
//!
//! **What leaves the node is visible state.** While a write this node coordinated (a new dot
//! of its own) waits for the disk, [`LocalStore::visible`] answers with the durable clock
//! instead: a crash before the write is durable then forgets a dot that no one has seen, so
//! the node may issue it again (see [`super::actors`]).

use super::anti_entropy::tree::Delta;
use super::outbox::{Outbox, PersistId, Write};
use crate::dvvset::DecodeError;
use crate::ids::NodeId;
use crate::protocol::{Clock, RequestId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why the core could not read a stored clock.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed.
    #[error("storage read failed: {0}")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored bytes did not decode: disk corruption or a foreign file.
    #[error("stored clock is corrupt: {0}")]
    Corrupt(#[from] DecodeError),
}

/// Read access to durable clocks; the shell implements it over fjall.
pub trait Store {
    /// The durable clock stored under `storage_key`, if any.
    fn load(&self, storage_key: &[u8]) -> Result<Option<Clock>, StoreError>;

    /// The durable hint held for `owner` under `storage_key`, if any.
    fn load_hint(&self, owner: NodeId, storage_key: &[u8]) -> Result<Option<Clock>, StoreError>;

    /// Every hint held: owner and storage key (read once, at start).
    fn hints(&self) -> Result<Vec<(NodeId, Vec<u8>)>, StoreError>;

    /// Every key of `partition` with its durable clock (anti-entropy's scans: at start, and
    /// for the segments an exchange found different).
    fn scan(&self, partition: u32) -> Result<Vec<(bytes::Bytes, Clock)>, StoreError>;
}

/// The storage key of `key` in `partition`: the partition as two big-endian bytes, then the
/// key, so that a partition is one contiguous range (handoff and anti-entropy scan it).
pub fn storage_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + key.len());
    out.extend_from_slice(&(partition as u16).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// A cheap upper estimate of a clock's encoded size.
pub fn clock_size_estimate(clock: &Clock) -> usize {
    clock
        .values()
        .iter()
        .map(|v| v.data().map_or(0, |d| d.len()) + 16)
        .sum::<usize>()
        + 24 * clock.ids().len()
}

/// Weighs a cached clock by its estimated encoded size, so the cache is bounded in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClockWeight;

impl quick_cache::Weighter<Vec<u8>, Clock> for ClockWeight {
    fn weight(&self, key: &Vec<u8>, clock: &Clock) -> u64 {
        (key.len() + clock_size_estimate(clock)) as u64
    }
}

/// What waits for a write to become durable: the mechanism that asked for it resumes with
/// this once the shell reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// The coordinator's own copy of a put: count it towards `W`.
    CountOwnCopy(RequestId),
    /// A handed-off hint is durable here: acknowledge it to the holder.
    AcknowledgeHandoff {
        /// The hint holder.
        to: NodeId,
        /// The key.
        key: bytes::Bytes,
        /// The clock handed off.
        clock: Clock,
    },
    /// A replica's copy of a replicated write: acknowledge it to the coordinator.
    Acknowledge {
        /// The coordinator.
        to: NodeId,
        /// Its request.
        req: RequestId,
        /// The key written.
        key: bytes::Bytes,
    },
    /// Nothing waits (read repair, reaping).
    Nothing,
}

/// What a key's clock holds, as reaping and forgetting see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holds {
    /// No clock at all.
    Nothing,
    /// A causal history without values: a delete whose tombstones were reaped.
    History,
    /// Tombstones and nothing else: a delete not yet reaped.
    Tombstones,
    /// At least one live value.
    Values,
}

impl Holds {
    /// What `clock` holds.
    pub(crate) fn of(clock: Option<&Clock>) -> Holds {
        match clock {
            None => Holds::Nothing,
            Some(c) if c.size() == 0 => Holds::History,
            Some(c) if c.values().iter().all(|v| v.is_tombstone()) => Holds::Tombstones,
            Some(_) => Holds::Values,
        }
    }
}

/// What a durable write means for the rest of the core.
pub(crate) struct Persisted {
    /// What waited on it.
    pub(crate) then: Then,
    /// For a key's clock: its storage key, the change to its partition's hash tree, and
    /// what the key holds now.
    pub(crate) tree: Option<(Vec<u8>, Delta, Holds)>,
}

/// A write handed to the shell: where it goes, what waits, and for a key's clock the change
/// to its partition's hash tree and what it leaves the key holding.
type Pending = (Slot, Then, Option<(Delta, Holds)>, usize);

/// Where a pending write goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// A key's clock.
    Data(Vec<u8>),
    /// A hint for an owner.
    Hint(NodeId, Vec<u8>),
    /// The epoch lease.
    Lease,
}

/// A clock written (or removed) but not yet reported durable.
struct Unsynced {
    /// The newest clock handed to the shell for this key (`None`: removed).
    clock: Option<Clock>,
    /// Writes of this key the shell has not yet reported durable.
    pending: u32,
    /// Of those, writes this node coordinated: while any is pending, the clock holds a dot of
    /// ours that must not leave the node.
    own: u32,
}

/// This node's clocks: unsynced writes, a cache of durable ones, and the durable store; and
/// the hints it holds for other nodes (sloppy quorum), indexed by owner.
pub(crate) struct LocalStore<S> {
    store: S,
    unsynced: HashMap<Vec<u8>, Unsynced>,
    /// Hint writes and removals not yet durable: the newest state (`None`: removed).
    hints_unsynced: HashMap<(NodeId, Vec<u8>), (Option<Clock>, u32)>,
    /// Every hint held (durable or pending), by owner.
    hint_index: BTreeMap<NodeId, BTreeSet<Vec<u8>>>,
    cache: quick_cache::unsync::Cache<Vec<u8>, Clock, ClockWeight>,
    /// Pending writes: what they write to, what waits, and (for a key's clock) the change to
    /// its partition's hash tree and whether it leaves tombstones only.
    persists: HashMap<PersistId, Pending>,
    /// Estimated bytes of the writes waiting for the disk.
    pending_bytes: usize,
    next_persist: u64,
}

impl<S: Store> LocalStore<S> {
    /// A local store over `store`, caching up to `cache_bytes` of durable clocks.
    pub(crate) fn new(store: S, cache_bytes: u64) -> Self {
        let cache_bytes = cache_bytes.max(1 << 20);
        LocalStore {
            store,
            unsynced: HashMap::new(),
            hints_unsynced: HashMap::new(),
            hint_index: BTreeMap::new(),
            // Sized for clocks of about 1 KiB; the weight bounds the bytes whatever their size.
            cache: quick_cache::unsync::Cache::with_weighter(
                (cache_bytes / 1024) as usize,
                cache_bytes,
                ClockWeight,
            ),
            persists: HashMap::new(),
            pending_bytes: 0,
            next_persist: 1,
        }
    }

    /// The durable store underneath.
    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    /// The newest clock for a storage key: an unsynced write, else the durable one (from the
    /// cache when it has it).
    pub(crate) fn load(&mut self, skey: &[u8]) -> Result<Option<Clock>, StoreError> {
        if let Some(u) = self.unsynced.get(skey) {
            return Ok(u.clock.clone());
        }
        if let Some(clock) = self.cache.get(skey) {
            return Ok(Some(clock.clone()));
        }
        let stored = self.store.load(skey)?;
        if let Some(clock) = &stored {
            self.cache.insert(skey.to_vec(), clock.clone());
        }
        Ok(stored)
    }

    /// The clock this node may show others for `skey`: the newest one, unless a write this
    /// node coordinated is still waiting for the disk — then the durable one, so that no dot
    /// of ours leaves before it is durable here.
    pub(crate) fn visible(&mut self, skey: &[u8]) -> Result<Option<Clock>, StoreError> {
        match self.unsynced.get(skey) {
            Some(u) if u.own == 0 => Ok(u.clock.clone()),
            Some(_) => self.durable(skey),
            None => self.load(skey),
        }
    }

    /// The durable clock for `skey` (from the cache when it has it); it may be older than
    /// what the store holds while writes of the key are pending, never newer.
    fn durable(&mut self, skey: &[u8]) -> Result<Option<Clock>, StoreError> {
        if let Some(clock) = self.cache.get(skey) {
            return Ok(Some(clock.clone()));
        }
        self.store.load(skey)
    }

    /// Whether a write of `skey` is waiting for the disk.
    pub(crate) fn is_unsynced(&self, skey: &[u8]) -> bool {
        self.unsynced.contains_key(skey)
    }

    /// Hands `clock` to the shell to store under `skey`; `then` resumes once it is durable.
    pub(crate) fn persist(&mut self, out: &mut Outbox, skey: Vec<u8>, clock: Clock, then: Then) {
        let size = skey.len() + clock_size_estimate(&clock);
        let write = Write::Clock {
            key: skey.clone(),
            clock: clock.clone(),
        };
        self.hand_out(out, skey, Some(clock), then, write, size);
    }

    /// Hands the removal of `skey`'s clock to the shell (a forgotten delete, see
    /// [`super::forget`]).
    pub(crate) fn remove(&mut self, out: &mut Outbox, skey: Vec<u8>) {
        let write = Write::DropClock { key: skey.clone() };
        self.hand_out(out, skey, None, Then::Nothing, write, 0);
    }

    /// Records `clock` (`None`: removed) as the newest for `skey` until `write` is durable.
    fn hand_out(
        &mut self,
        out: &mut Outbox,
        skey: Vec<u8>,
        clock: Option<Clock>,
        then: Then,
        write: Write,
        size: usize,
    ) {
        // The tree follows durable state: the change from the newest clock handed out before
        // this one (or the durable one) to this one; applied in any order, the changes compose.
        let previous = self.load(&skey).ok().flatten();
        let key = skey.get(2..).unwrap_or_default();
        let delta = Delta::of(key, previous.as_ref(), clock.as_ref());
        let tree = Some((delta, Holds::of(clock.as_ref())));
        let id = self.next_id();
        let slot = self.unsynced.entry(skey.clone()).or_insert(Unsynced {
            clock: None,
            pending: 0,
            own: 0,
        });
        slot.clock = clock;
        slot.pending += 1;
        if matches!(then, Then::CountOwnCopy(_)) {
            slot.own += 1;
        }
        self.pending_bytes += size;
        self.persists
            .insert(id, (Slot::Data(skey), then, tree, size));
        out.persist(id, write);
    }

    /// Learns the hints the store holds (at start).
    pub(crate) fn load_hint_index(&mut self) -> Result<(), StoreError> {
        for (owner, skey) in self.store.hints()? {
            self.hint_index.entry(owner).or_default().insert(skey);
        }
        Ok(())
    }

    /// The hint held for `owner` under `skey`.
    pub(crate) fn load_hint(
        &self,
        owner: NodeId,
        skey: &[u8],
    ) -> Result<Option<Clock>, StoreError> {
        match self.hints_unsynced.get(&(owner, skey.to_vec())) {
            Some((clock, _)) => Ok(clock.clone()),
            None => self.store.load_hint(owner, skey),
        }
    }

    /// The merge of every hint held for `skey`, whoever it is for (what a fallback answers a
    /// read with).
    pub(crate) fn hints_for(&self, skey: &[u8]) -> Result<Option<Clock>, StoreError> {
        let mut merged: Option<Clock> = None;
        for (owner, keys) in &self.hint_index {
            if keys.contains(skey) {
                if let Some(clock) = self.load_hint(*owner, skey)? {
                    merged = Some(merged.map_or_else(|| clock.clone(), |m| m.sync(&clock)));
                }
            }
        }
        Ok(merged)
    }

    /// The owners this node holds hints for, and for each the storage keys.
    pub(crate) fn hint_index(&self) -> &BTreeMap<NodeId, BTreeSet<Vec<u8>>> {
        &self.hint_index
    }

    /// Hints held, all owners together.
    pub(crate) fn hint_count(&self) -> usize {
        self.hint_index.values().map(BTreeSet::len).sum()
    }

    /// Stores `clock` as the hint for `owner` under `skey`; `then` resumes once durable.
    pub(crate) fn persist_hint(
        &mut self,
        out: &mut Outbox,
        owner: NodeId,
        skey: Vec<u8>,
        clock: Clock,
        then: Then,
    ) {
        self.hint_index
            .entry(owner)
            .or_default()
            .insert(skey.clone());
        let id = self.next_id();
        let slot = self
            .hints_unsynced
            .entry((owner, skey.clone()))
            .or_insert((None, 0));
        slot.0 = Some(clock.clone());
        slot.1 += 1;
        let size = skey.len() + clock_size_estimate(&clock);
        self.pending_bytes += size;
        self.persists
            .insert(id, (Slot::Hint(owner, skey.clone()), then, None, size));
        out.persist(
            id,
            Write::Hint {
                owner,
                key: skey,
                clock,
            },
        );
    }

    /// Drops the hint for `owner` under `skey` (its owner holds it durably now).
    pub(crate) fn drop_hint(&mut self, out: &mut Outbox, owner: NodeId, skey: Vec<u8>) {
        if let Some(keys) = self.hint_index.get_mut(&owner) {
            keys.remove(&skey);
            if keys.is_empty() {
                self.hint_index.remove(&owner);
            }
        }
        let id = self.next_id();
        let slot = self
            .hints_unsynced
            .entry((owner, skey.clone()))
            .or_insert((None, 0));
        slot.0 = None;
        slot.1 += 1;
        self.persists.insert(
            id,
            (Slot::Hint(owner, skey.clone()), Then::Nothing, None, 0),
        );
        out.persist(id, Write::DropHint { owner, key: skey });
    }

    fn next_id(&mut self) -> PersistId {
        let id = PersistId(self.next_persist);
        self.next_persist += 1;
        id
    }

    /// Hands a new epoch lease to the shell (see [`super::actors`]); nothing waits on it but
    /// the writes queued after it, which the shell applies in order.
    pub(crate) fn persist_lease(&mut self, out: &mut Outbox, lease: u64) {
        let id = self.next_id();
        self.persists
            .insert(id, (Slot::Lease, Then::Nothing, None, 0));
        out.persist(id, Write::EpochLease(lease));
    }

    /// The shell reports write `id` durable: what waited on it, if the id was ours.
    pub(crate) fn persisted(&mut self, id: PersistId) -> Option<Persisted> {
        let (slot, then, tree, size) = self.persists.remove(&id)?;
        self.pending_bytes = self.pending_bytes.saturating_sub(size);
        let skey = match slot {
            Slot::Data(skey) => skey,
            Slot::Hint(owner, skey) => {
                let k = (owner, skey);
                if let Some(s) = self.hints_unsynced.get_mut(&k) {
                    s.1 = s.1.saturating_sub(1);
                    if s.1 == 0 {
                        self.hints_unsynced.remove(&k);
                    }
                }
                return Some(Persisted { then, tree: None });
            }
            Slot::Lease => return Some(Persisted { then, tree: None }),
        };
        let tree = tree.map(|(d, t)| (skey.clone(), d, t));
        if let Some(u) = self.unsynced.get_mut(&skey) {
            u.pending = u.pending.saturating_sub(1);
            if matches!(then, Then::CountOwnCopy(_)) {
                u.own = u.own.saturating_sub(1);
            }
            if u.pending == 0 {
                // The writer commits in order, so the last clock handed to it is what the
                // store now holds.
                if let Some(u) = self.unsynced.remove(&skey) {
                    match u.clock {
                        Some(clock) => self.cache.insert(skey, clock),
                        None => {
                            self.cache.remove(&skey);
                        }
                    }
                }
            }
        }
        Some(Persisted { then, tree })
    }

    /// Writes handed to the shell and not yet reported durable.
    pub(crate) fn pending(&self) -> usize {
        self.persists.len()
    }

    /// Their estimated bytes.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// A mark for [`LocalStore::durable_up_to`]: every write handed out from now on is after it.
    pub(crate) fn mark(&self) -> u64 {
        self.next_persist
    }

    /// Whether every write handed to the shell before `mark` has been reported durable.
    pub(crate) fn durable_up_to(&self, mark: u64) -> bool {
        !self.persists.keys().any(|id| id.0 < mark)
    }
}
