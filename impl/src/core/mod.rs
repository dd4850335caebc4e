//! The protocol core: a deterministic state machine with no I/O.
//!
//! The rule, as in quinn-proto: inputs are the `handle_*` methods, each told the current time
//! `now` explicitly; outputs are drained with [`Core::poll_effect`] (messages to send, replies
//! to clients, writes to make durable) and [`Core::poll_timeout`] (when to call
//! [`Core::handle_timeout`] next). The core never touches a socket, a clock, a random number
//! or the disk's write path; it reads stored clocks through the [`Store`] trait, and a write
//! happens only when the shell executes an [`Effect::Persist`] and reports back with
//! [`Core::handle_persisted`].
//!
//! **Persist before you acknowledge** (raft-rs's rule for `Ready`): a replica's acknowledgement
//! is emitted only after the shell reported its write durable, and a coordinator counts its
//! own copy towards `W` only once it is durable.
//!
//! **Dots are never reused.** A coordinator names its writes with an *actor id* chosen by the
//! shell for each incarnation of the node: a random 64-bit id, made durable before the node
//! serves and kept across a restart only when the previous incarnation shut down cleanly with
//! every write it coordinated durable (as Riak 2.0's per-vnode epochs do). A coordinator that
//! crashed before its own copy was durable may have forgotten a dot it already sent to
//! replicas; after the restart it writes under a new actor id, so it can never issue that dot
//! again for a different value — nor can a rebuilt disk, or a client that forged a context
//! naming a future actor. This is what lets a coordinator send a new version to the replicas
//! while its own write is still being synced, keeping one fsync, not two, on a put's critical
//! path. Request ids are drawn from the actor id too, so a late reply to a request of an
//! earlier incarnation cannot be mistaken for an answer to a new one.
//!
//! **Bounded state.** A write whose result would exceed [`MAX_SIBLINGS`] values or
//! [`MAX_CLOCK_BYTES`] is refused (the client must merge siblings first), keeping every stored
//! clock decodable and every message below the transport's frame limit; and when
//! [`MAX_PENDING_PERSISTS`] writes wait for the disk, new client writes get "unavailable"
//! instead of growing memory.
//!
//! The mechanisms live one per module, named as in the Dynamo paper: [`coordinator`] (quorum
//! puts and gets, forwarding), [`replica`] (storing and serving a key's clock) and
//! [`read_repair`], [`reap`] (removing tombstones once every replica holds them).

pub mod coordinator;
pub mod read_repair;
pub mod reap;
pub mod replica;

use crate::node_id::NodeId;
use crate::protocol::{ClientOp, ClientReply, Clock, PeerMessage, RequestId};
use crate::ring::Ring;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// Time as the core sees it: a duration since an arbitrary epoch chosen by the shell (a
/// simulation can start at zero).
pub type Time = Duration;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Identifies a client request inside the shell that submitted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// Identifies a write the core asked the shell to make durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersistId(pub u64);

/// Cluster settings the core needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    /// Replicas per key.
    pub n: usize,
    /// Default read quorum.
    pub r: usize,
    /// Default write quorum.
    pub w: usize,
    /// How long a request waits for its quorum before answering "unavailable".
    pub request_timeout: Duration,
    /// Whether gets repair stale replicas they read.
    pub read_repair: bool,
    /// Whether a delete that every replica acknowledged has its tombstones reaped.
    pub reap_tombstones: bool,
    /// Bytes of durable clocks kept in memory (by [`clock_size_estimate`]), sparing the
    /// storage engine's lookups and the decoding on hot keys.
    pub cache_bytes: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            n: 3,
            r: 2,
            w: 2,
            request_timeout: Duration::from_secs(2),
            read_repair: true,
            reap_tombstones: true,
            cache_bytes: 64 << 20,
        }
    }
}

/// Why the core could not read a stored clock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed.
    #[error("storage read failed: {0}")]
    Io(String),
    /// Stored bytes did not decode: disk corruption or a foreign file.
    #[error("stored clock is corrupt: {0}")]
    Corrupt(String),
}

/// Read access to durable clocks; the shell implements it over fjall.
pub trait Store {
    /// The durable clock stored under `storage_key`, if any.
    fn load(&self, storage_key: &[u8]) -> Result<Option<Clock>, StoreError>;
}

/// The storage key of `key` in `partition`: the partition as two big-endian bytes, then the
/// key, so that a partition is one contiguous range (handoff and anti-entropy scan it).
pub fn storage_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + key.len());
    out.extend_from_slice(&(partition as u16).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Most values (siblings and tombstones) a write may leave a key with; well below the decoder's
/// [`crate::dvvset::MAX_VALUES`] so that merging two replicas' clocks stays decodable.
pub const MAX_SIBLINGS: usize = 1024;

/// Largest estimated encoded size of a key's clock a write may produce: half the transport's
/// frame limit, so that even the merge of two such clocks travels.
pub const MAX_CLOCK_BYTES: usize = crate::transport::MAX_FRAME / 2;

/// Writes waiting for the disk beyond which new client writes are refused as unavailable.
pub const MAX_PENDING_PERSISTS: usize = 64 * 1024;

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
pub struct ClockWeight;

impl quick_cache::Weighter<Vec<u8>, Clock> for ClockWeight {
    fn weight(&self, key: &Vec<u8>, clock: &Clock) -> u64 {
        (key.len() + clock_size_estimate(clock)) as u64
    }
}

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
    /// Make `clock` durable under `key`, then call [`Core::handle_persisted`] with `id`.
    /// Writes may be grouped into one commit; completions must be reported in any order
    /// only after the data is durable per the configured mode.
    Persist {
        /// Completion token.
        id: PersistId,
        /// Storage key (see [`storage_key`]).
        key: Vec<u8>,
        /// The full clock to store (it replaces what is there).
        clock: Clock,
    },
}

/// Counters the shell exports as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Replica answers (acks and read replies) received by coordinators here.
    pub replica_responses: u64,
    /// Repair messages sent by read repair.
    pub read_repairs: u64,
    /// Writes forwarded to a node in the key's preference list.
    pub forwarded: u64,
    /// Peer messages ignored because they were invalid (e.g. an oversized key).
    pub rejected_messages: u64,
    /// Requests that timed out before reaching their quorum.
    pub timeouts: u64,
    /// Keys whose tombstones this node reaped.
    pub reaped: u64,
}

/// Who waits for a coordinated request's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Waiter {
    /// A client of this node.
    Client(ClientId),
    /// A node that forwarded the request here.
    Forwarded { from: NodeId, req: RequestId },
}

/// What to do once a persist completes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AfterPersist {
    /// The coordinator's own copy of a put is durable: count it and replicate.
    CoordinatorPut(RequestId),
    /// A replicated copy is durable: acknowledge to the coordinator.
    ReplicaAck { to: NodeId, req: RequestId },
    /// Nothing waits (read repair).
    Nothing,
}

/// A node's protocol state. `S` reads durable clocks.
pub struct Core<S> {
    id: NodeId,
    /// The id this incarnation writes dots under (see the module documentation).
    actor: NodeId,
    /// While set, no new write is coordinated here (a clean shutdown is draining).
    draining: bool,
    ring: Ring,
    config: CoreConfig,
    store: S,
    /// Clocks written but not yet reported durable, with the number of pending persists: reads
    /// and read-modify-writes must see them before the disk does.
    unsynced: HashMap<Vec<u8>, (Clock, u32)>,
    /// Durable clocks recently read or written. Every write to the store passes through this
    /// core, so the cache always equals the store where it has an entry.
    cache: quick_cache::unsync::Cache<Vec<u8>, Clock, ClockWeight>,
    persists: HashMap<PersistId, (Vec<u8>, AfterPersist)>,
    requests: HashMap<RequestId, coordinator::Request>,
    timers: BTreeSet<(Time, RequestId)>,
    effects: VecDeque<Effect>,
    next_request: RequestId,
    next_persist: u64,
    stats: Stats,
}

impl<S: Store> Core<S> {
    /// A core for node `id` whose incarnation writes under `actor`, holding `ring` and reading
    /// durable clocks from `store`. The shell must have made `actor` durable and must never
    /// reuse it after an unclean stop (see the module documentation).
    pub fn new(id: NodeId, actor: NodeId, ring: Ring, config: CoreConfig, store: S) -> Self {
        let cache_bytes = config.cache_bytes.max(1 << 20);
        Core {
            id,
            actor,
            draining: false,
            ring,
            config,
            store,
            unsynced: HashMap::new(),
            // Sized for clocks of about 1 KiB; the weight bounds the bytes whatever their size.
            cache: quick_cache::unsync::Cache::with_weighter(
                (cache_bytes / 1024) as usize,
                cache_bytes,
                ClockWeight,
            ),
            persists: HashMap::new(),
            requests: HashMap::new(),
            timers: BTreeSet::new(),
            effects: VecDeque::new(),
            // The actor id's low half, shifted up: distinct per incarnation (see module doc).
            next_request: actor.0 << 32 | 1,
            next_persist: 1,
            stats: Stats::default(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The actor id this incarnation names its writes with.
    pub fn actor(&self) -> NodeId {
        self.actor
    }

    /// The ring this node places keys with.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The cluster settings.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Writes handed to the shell that it has not yet reported durable.
    pub fn pending_persists(&self) -> usize {
        self.persists.len()
    }

    /// Stops (or resumes) coordinating writes. Returns a mark for [`Core::durable_up_to`]: once
    /// every write handed out before the mark is durable, every dot this incarnation issued is
    /// durable here and its actor id may be reused (later writes are replica writes, repairs
    /// and reaps, which issue no dots, so a busy peer cannot hold a shutdown up).
    pub fn set_draining(&mut self, draining: bool) -> u64 {
        self.draining = draining;
        self.next_persist
    }

    /// Whether every write handed to the shell before `mark` has been reported durable.
    pub fn durable_up_to(&self, mark: u64) -> bool {
        !self.persists.keys().any(|id| id.0 < mark)
    }

    /// Requests still in flight (coordinated here or forwarded from here).
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// The store the core reads from (the shell writes to it).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Input: a client request. The answer comes out as an [`Effect::Reply`].
    pub fn handle_client(&mut self, now: Time, client: ClientId, op: ClientOp) {
        self.coordinate(now, Waiter::Client(client), op);
    }

    /// Input: a message from peer `from`.
    pub fn handle_peer(&mut self, now: Time, from: NodeId, msg: PeerMessage) {
        if from == self.id || !self.ring.contains(from) {
            self.stats.rejected_messages += 1;
            return;
        }
        match msg {
            PeerMessage::Replicate { req, key, clock } => {
                if self.valid_key(&key) {
                    self.on_replicate(from, req, key, clock);
                }
            }
            PeerMessage::Repair { key, clock } => {
                if self.valid_key(&key) {
                    self.on_repair(key, clock);
                }
            }
            PeerMessage::Read { req, key } => {
                if self.valid_key(&key) {
                    self.on_read(from, req, key);
                }
            }
            PeerMessage::Reap { key, clock } => {
                if self.valid_key(&key) {
                    self.on_reap(key, clock);
                }
            }
            PeerMessage::ReplicateAck { req } => self.on_replicate_ack(from, req),
            PeerMessage::ReadReply { req, clock } => self.on_read_reply(now, from, req, clock),
            PeerMessage::Forward { req, op } => {
                if self.valid_key(op.key()) {
                    self.coordinate(now, Waiter::Forwarded { from, req }, op);
                }
            }
            PeerMessage::ForwardReply { req, reply } => self.on_forward_reply(req, reply),
        }
    }

    /// Input: the writes named by `ids` are durable.
    pub fn handle_persisted(&mut self, now: Time, ids: impl IntoIterator<Item = PersistId>) {
        for id in ids {
            let Some((key, after)) = self.persists.remove(&id) else {
                continue;
            };
            if let Some((_, pending)) = self.unsynced.get_mut(&key) {
                *pending -= 1;
                if *pending == 0 {
                    // The writer commits in order, so the last clock handed to it is what
                    // the store now holds.
                    if let Some((clock, _)) = self.unsynced.remove(&key) {
                        self.cache.insert(key.clone(), clock);
                    }
                }
            }
            match after {
                AfterPersist::CoordinatorPut(req) => self.on_local_put_durable(now, req),
                AfterPersist::ReplicaAck { to, req } => {
                    self.send(to, PeerMessage::ReplicateAck { req })
                }
                AfterPersist::Nothing => {}
            }
        }
    }

    /// Input: time has reached `now`; requests past their deadline give up.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(&(at, req)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.on_deadline(req);
        }
    }

    /// Output: the next thing the shell must do, if any.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Output: when [`Core::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.first().map(|(at, _)| *at)
    }

    fn valid_key(&mut self, key: &[u8]) -> bool {
        let ok = !key.is_empty() && key.len() <= MAX_KEY_LEN;
        if !ok {
            self.stats.rejected_messages += 1;
        }
        ok
    }

    fn storage_key(&self, key: &[u8]) -> Vec<u8> {
        storage_key(self.ring.partition_of(key), key)
    }

    /// The newest clock for a storage key: an unsynced write, else the durable one (from the
    /// cache when it has it).
    fn load(&mut self, skey: &[u8]) -> Result<Option<Clock>, StoreError> {
        if let Some((clock, _)) = self.unsynced.get(skey) {
            return Ok(Some(clock.clone()));
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

    fn persist(&mut self, skey: Vec<u8>, clock: Clock, after: AfterPersist) {
        let id = PersistId(self.next_persist);
        self.next_persist += 1;
        let slot = self
            .unsynced
            .entry(skey.clone())
            .or_insert_with(|| (clock.clone(), 0));
        slot.0 = clock.clone();
        slot.1 += 1;
        self.persists.insert(id, (skey.clone(), after));
        self.effects.push_back(Effect::Persist {
            id,
            key: skey,
            clock,
        });
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        self.effects.push_back(Effect::Send { to, msg });
    }

    fn answer(&mut self, waiter: Waiter, reply: ClientReply) {
        match waiter {
            Waiter::Client(client) => self.effects.push_back(Effect::Reply { client, reply }),
            Waiter::Forwarded { from, req } => {
                self.send(from, PeerMessage::ForwardReply { req, reply })
            }
        }
    }

    fn new_request(&mut self, now: Time, waiter: Waiter, kind: coordinator::Kind) -> RequestId {
        let req = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        let deadline = now + self.config.request_timeout;
        self.timers.insert((deadline, req));
        self.requests.insert(
            req,
            coordinator::Request {
                waiter,
                deadline,
                kind,
            },
        );
        req
    }

    fn finish(&mut self, req: RequestId) -> Option<coordinator::Request> {
        let r = self.requests.remove(&req)?;
        self.timers.remove(&(r.deadline, req));
        Some(r)
    }
}

#[cfg(test)]
mod tests;
