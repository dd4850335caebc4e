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
//! **Dots are never reused.** A coordinator names a write with an actor `(identity, epoch)`:
//! the node's stable identity, and per key the newest epoch of that identity in the key's
//! clock, or a fresh epoch from a durable lease for a key with no history here. A write's own
//! copy is durable before any message carries its dot, so a crash forgets only dots no one saw
//! (see [`actors`]). Request ids carry the boot number, so a late reply to an earlier
//! incarnation's request is never taken for a new one's.
//!
//! **Bounded state.** A write whose result would exceed [`MAX_SIBLINGS`] values or
//! [`MAX_CLOCK_BYTES`] is refused (the client must merge siblings first), keeping every stored
//! clock decodable and every message below the transport's frame limit; and when
//! [`MAX_PENDING_PERSISTS`] writes wait for the disk, new client writes get "unavailable"
//! instead of growing memory.
//!
//! **One room per mechanism.** [`Core`] only routes inputs and collects effects. Each
//! mechanism lives in its own module, named as in the Dynamo paper, and owns its state:
//! [`local_store`] (unsynced writes, the clock cache, pending persists), [`coordinator`]
//! (requests, deadlines, request ids: quorum puts and gets, forwarding), and operations on the
//! local store: [`replica`] (storing and serving a key's clock), [`read_repair`] and [`reap`]
//! (removing tombstones once every replica holds them); [`handoff`] (hints back to their
//! owners), [`anti_entropy`] (hash-tree exchanges between replicas), [`forget`] (removing a
//! deleted key's history once nothing older can come back), [`detector`] (who is alive) and
//! [`actors`] (which actor names a new write). Every mechanism reaches the rest of the
//! node only through an [`Env`]: the node's id, ring and settings, the local store, the
//! [`outbox`] of effects and the counters. A new mechanism is a new module with its own state
//! struct, one field in [`Core`], and one arm per input it handles.

mod actors;
pub mod anti_entropy;
mod coordinator;
mod detector;
mod forget;
mod handoff;
mod local_store;
mod outbox;
mod read_repair;
mod reap;
mod replica;

pub use actors::{Incarnation, EPOCH_LEASE_BLOCK};
pub use detector::PeerHealth;
pub use local_store::{clock_size_estimate, storage_key, Store, StoreError};
pub use outbox::{ClientId, Effect, PersistId, Write};

use crate::ids::NodeId;
use crate::protocol::{ClientOp, PeerMessage};
use crate::ring::Ring;
use anti_entropy::AntiEntropy;
use coordinator::{Coordinator, Waiter};
use detector::Detector;
use forget::Forget;
use handoff::Handoff;
use local_store::{Holds, LocalStore, Then};
use outbox::Outbox;
use std::time::Duration;

/// Time as the core sees it: a duration since an arbitrary epoch chosen by the shell (a
/// simulation can start at zero).
pub type Time = Duration;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Most values (siblings and tombstones) a write may leave a key with; well below the decoder's
/// [`crate::dvvset::MAX_VALUES`] so that merging two replicas' clocks stays decodable.
pub const MAX_SIBLINGS: usize = 1024;

/// Largest estimated encoded size of a key's clock a write may produce (8 MiB): half the
/// transport's frame limit, so that even the merge of two such clocks travels.
pub const MAX_CLOCK_BYTES: usize = 8 << 20;

/// Writes waiting for the disk beyond which new client writes are refused as unavailable.
pub const MAX_PENDING_PERSISTS: usize = 64 * 1024;

/// Bytes of writes waiting for the disk beyond which new client writes are refused as
/// unavailable (and the shell stops feeding the core anything but durability reports).
pub const MAX_PENDING_BYTES: usize = 256 << 20;

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
    /// Whether requests use fallbacks for unreachable replicas (sloppy quorum, Dynamo §4.6).
    pub sloppy_quorum: bool,
    /// How often hints are offered to their owners.
    pub handoff_interval: Duration,
    /// Hints offered to one owner and not yet acknowledged, at most.
    pub handoff_batch: usize,
    /// How often anti-entropy starts an exchange (zero: never).
    pub aae_interval: Duration,
    /// How long a deleted key's history must be seen unchanged on every primary, with no
    /// hint anywhere, before it is forgotten (`None`: never; see [`forget`]). At least
    /// `request_timeout + message_lifetime`, or older copies of the key could come back.
    pub forget_after: Option<Duration>,
    /// The longest a peer message can take from being queued to reaching a core: the
    /// transport's message lifetime plus the handshake deadline (see [`forget`]).
    pub message_lifetime: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        use crate::config::defaults;
        CoreConfig {
            n: defaults::N,
            r: defaults::R,
            w: defaults::W,
            request_timeout: Duration::from_millis(defaults::REQUEST_TIMEOUT_MS),
            read_repair: true,
            reap_tombstones: true,
            cache_bytes: defaults::CACHE_BYTES,
            sloppy_quorum: true,
            handoff_interval: Duration::from_millis(defaults::HANDOFF_INTERVAL_MS),
            handoff_batch: defaults::HANDOFF_BATCH,
            aae_interval: Duration::from_millis(defaults::AAE_INTERVAL_MS),
            forget_after: Some(Duration::from_millis(defaults::DELETE_GRACE_MS)),
            message_lifetime: Duration::from_millis(
                defaults::MESSAGE_TTL_MS + defaults::HANDSHAKE_TIMEOUT_MS,
            ),
        }
    }
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
    /// Hints offered to their owners (offers, resends included).
    pub handoffs_offered: u64,
    /// Hints their owners acknowledged, and so dropped here.
    pub hints_handed_off: u64,
    /// Hints held now (a gauge, filled in by [`Core::stats`]).
    pub hints_held: u64,
    /// Anti-entropy exchanges this node started.
    pub aae_exchanges: u64,
    /// Anti-entropy exchanges completed (trees equal, or differing keys sent).
    pub aae_exchanges_completed: u64,
    /// Keys anti-entropy pushed or asked for.
    pub aae_keys_repaired: u64,
    /// Anti-entropy exchanges whose differences were gone when compared again (in flight).
    pub aae_unconfirmed: u64,
    /// Per partition this node replicates: how long ago its last anti-entropy exchange
    /// completed (`None`: never, since this node started).
    pub aae_ages: Vec<(u32, Option<Duration>)>,
    /// Rounds this node started to forget deleted keys' histories.
    pub forget_rounds: u64,
    /// Deleted keys' histories this node removed.
    pub forgotten: u64,
}

/// The rest of the node, as a mechanism sees it: who we are, where keys live, the settings,
/// the local store, where effects go and the counters. Borrowed from [`Core`] for one input.
pub(crate) struct Env<'a, S> {
    /// This node.
    pub(crate) id: NodeId,
    /// The ring.
    pub(crate) ring: &'a Ring,
    /// The settings.
    pub(crate) config: &'a CoreConfig,
    /// The local store.
    pub(crate) store: &'a mut LocalStore<S>,
    /// Where effects go.
    pub(crate) out: &'a mut Outbox,
    /// Counters.
    pub(crate) stats: &'a mut Stats,
    /// What this node believes about its peers.
    pub(crate) detector: &'a mut Detector,
}

impl<S> Env<'_, S> {
    /// Where `key` is stored locally.
    pub(crate) fn storage_key(&self, key: &[u8]) -> Vec<u8> {
        storage_key(self.ring.partition_of(key), key)
    }

    /// The `N` replicas of `key`.
    pub(crate) fn preference_list(&self, key: &[u8]) -> Vec<NodeId> {
        self.ring
            .preference_list(self.ring.partition_of(key), self.config.n)
    }
}

/// The rooms of the core, borrowed together with an [`Env`] for one input.
struct Rooms<'a> {
    coordinator: &'a mut Coordinator,
    handoff: &'a mut Handoff,
    aae: &'a mut AntiEntropy,
    forget: &'a mut Forget,
}

/// Whether a key from a peer is one a client could have written.
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN
}

/// A node's protocol state. `S` reads durable clocks.
pub struct Core<S> {
    id: NodeId,
    ring: Ring,
    config: CoreConfig,
    store: LocalStore<S>,
    coordinator: Coordinator,
    detector: Detector,
    handoff: Handoff,
    aae: AntiEntropy,
    forget: Forget,
    out: Outbox,
    stats: Stats,
    /// The latest time an input carried.
    now: Time,
}

impl<S: Store> Core<S> {
    /// A core for node `id` in `incarnation`, holding `ring` and reading durable clocks from
    /// `store`. The shell must have made the incarnation durable (see [`Incarnation`]). Scans
    /// the partitions this node replicates to build anti-entropy's trees. Fails only if the
    /// store cannot be read.
    pub fn new(
        id: NodeId,
        incarnation: Incarnation,
        ring: Ring,
        config: CoreConfig,
        store: S,
    ) -> Result<Self, StoreError> {
        let partitions: Vec<u32> = (0..ring.partitions())
            .filter(|p| ring.preference_list(*p, config.n).contains(&id))
            .collect();
        let mut aae = AntiEntropy::build(&store, partitions, incarnation.boot)?;
        let forget = Forget::new(aae.take_histories(), incarnation.boot);
        let mut store = LocalStore::new(store, config.cache_bytes);
        store.load_hint_index()?;
        let mut handoff = Handoff::default();
        if store.hint_count() > 0 {
            // Resume handing off at once.
            handoff.hint_held(Duration::ZERO, Duration::ZERO);
        }
        Ok(Core {
            id,
            ring,
            store,
            config,
            coordinator: Coordinator::new(&incarnation),
            detector: Detector::default(),
            handoff,
            aae,
            forget,
            out: Outbox::default(),
            stats: Stats::default(),
            now: Duration::ZERO,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The identity of the actors this node names its writes with.
    pub fn identity(&self) -> u64 {
        self.coordinator.identity()
    }

    /// The ring this node places keys with.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Stats {
        let aae = self.aae.stats();
        let completed = self.aae.completed();
        let aae_ages = self
            .aae
            .partitions()
            .iter()
            .map(|p| (*p, completed.get(p).map(|t| self.now.saturating_sub(*t))))
            .collect();
        Stats {
            hints_held: self.store.hint_count() as u64,
            aae_exchanges: aae.exchanges,
            aae_exchanges_completed: aae.exchanges_completed,
            aae_keys_repaired: aae.keys_repaired,
            aae_unconfirmed: aae.unconfirmed,
            aae_ages,
            forget_rounds: self.forget.stats().rounds,
            forgotten: self.forget.stats().forgotten,
            ..self.stats.clone()
        }
    }

    /// Writes handed to the shell that it has not yet reported durable.
    pub fn pending_persists(&self) -> usize {
        self.store.pending()
    }

    /// Whether so much waits for the disk that the shell should feed the core nothing but
    /// durability reports until it drains.
    pub fn saturated(&self) -> bool {
        self.store.pending() >= MAX_PENDING_PERSISTS
            || self.store.pending_bytes() >= MAX_PENDING_BYTES
    }

    /// Stops (or resumes) coordinating writes. Returns a mark for [`Core::durable_up_to`]: once
    /// every write handed out before the mark is durable, every dot this incarnation issued is
    /// durable here and its actor id may be reused (later writes are replica writes, repairs
    /// and reaps, which issue no dots, so a busy peer cannot hold a shutdown up).
    pub fn set_draining(&mut self, draining: bool) -> u64 {
        self.coordinator.set_draining(draining);
        self.store.mark()
    }

    /// Whether every write handed to the shell before `mark` has been reported durable.
    pub fn durable_up_to(&self, mark: u64) -> bool {
        self.store.durable_up_to(mark)
    }

    /// Requests still in flight (coordinated here or forwarded from here).
    pub fn in_flight(&self) -> usize {
        self.coordinator.in_flight()
    }

    /// The store the core reads from (the shell writes to it).
    pub fn store(&self) -> &S {
        self.store.store()
    }

    /// After any input: a held hint needs a handoff round scheduled, and anti-entropy its
    /// next round.
    fn settle(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.detector.tick(now);
        if self.store.hint_count() > 0 {
            self.handoff.hint_held(now, self.config.handoff_interval);
        }
        self.aae.schedule(now, self.config.aae_interval);
        self.forget
            .schedule(now, self.config.forget_after.is_some());
    }

    /// For each partition this node replicates and has completed an exchange of: when.
    pub fn aae_completed(&self) -> Vec<(u32, Time)> {
        self.aae.completed().iter().map(|(p, t)| (*p, *t)).collect()
    }

    /// The root hash of `partition`'s anti-entropy tree, if this node replicates it.
    pub fn aae_root(&self, partition: u32) -> Option<u64> {
        self.aae.root(partition)
    }

    /// Splits the core into its rooms and everything a mechanism may use.
    fn parts(&mut self) -> (Rooms<'_>, Env<'_, S>) {
        let env = Env {
            id: self.id,
            ring: &self.ring,
            config: &self.config,
            store: &mut self.store,
            out: &mut self.out,
            stats: &mut self.stats,
            detector: &mut self.detector,
        };
        let rooms = Rooms {
            coordinator: &mut self.coordinator,
            handoff: &mut self.handoff,
            aae: &mut self.aae,
            forget: &mut self.forget,
        };
        (rooms, env)
    }

    /// Input: a client request. The answer comes out as an [`Effect::Reply`].
    pub fn handle_client(&mut self, now: Time, client: ClientId, op: ClientOp) {
        let (Rooms { coordinator, .. }, mut env) = self.parts();
        coordinator.start(&mut env, now, Waiter::Client(client), op);
        self.settle(now);
    }

    /// Input: a message from peer `from`. Messages from strangers or about invalid keys are
    /// counted and ignored.
    pub fn handle_peer(&mut self, now: Time, from: NodeId, msg: PeerMessage) {
        if from == self.id || !self.ring.contains(from) {
            self.stats.rejected_messages += 1;
            return;
        }
        if msg
            .key()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
        {
            self.stats.rejected_messages += 1;
            return;
        }
        self.detector.heard_from(now, from);
        let (
            Rooms {
                coordinator,
                handoff,
                aae,
                forget,
            },
            mut env,
        ) = self.parts();
        let env = &mut env;
        match msg {
            PeerMessage::Replicate {
                req,
                key,
                clock,
                hint,
            } => replica::on_replicate(env, from, req, key, clock, hint),
            PeerMessage::Handoff { key, clock } => replica::on_handoff(env, from, key, clock),
            PeerMessage::HandoffAck { key, clock } => {
                handoff.acknowledged(env, now, from, &key, &clock)
            }
            PeerMessage::AaeBranches {
                exchange,
                partition,
                branches,
            } => aae.on_branches(env, from, exchange, partition, &branches),
            PeerMessage::AaeSegments {
                exchange,
                partition,
                segments,
            } => aae.on_segments(env, now, from, exchange, partition, &segments),
            PeerMessage::AaeKeys {
                partition,
                segments,
                keys,
                ..
            } => {
                if keys.iter().all(|(k, _)| valid_key(k)) {
                    aae.on_keys(env, from, partition, &segments, &keys)
                }
            }
            PeerMessage::AaeFetch { keys, lacking, .. } => {
                if keys.iter().chain(&lacking).all(|k| valid_key(k)) {
                    aae.on_fetch(env, from, keys, lacking)
                }
            }
            PeerMessage::Repair { key, clock } => replica::on_repair(env, key, clock),
            PeerMessage::Read { req, key } => replica::on_read(env, from, req, key),
            PeerMessage::Reap { key, clock } => reap::on_reap(env, key, clock),
            PeerMessage::ForgetCheck { round, key } => {
                forget.on_check(env, handoff, now, from, round, key)
            }
            PeerMessage::ForgetCheckReply {
                round,
                key,
                clock,
                hinted,
            } => forget.on_reply(env, now, from, round, &key, clock, hinted),
            PeerMessage::Forget { key, clock } => forget.on_forget_message(env, key, clock),
            PeerMessage::ReplicateAck { req, key } => {
                coordinator.on_replicate_ack(env, from, req, &key)
            }
            PeerMessage::ReadReply { req, key, clock } => {
                coordinator.on_read_reply(env, from, req, &key, clock)
            }
            PeerMessage::Forward { req, op } => coordinator.forwarded(env, now, from, req, op),
            PeerMessage::ForwardReply { req, reply } => {
                coordinator.on_forward_reply(env, from, req, reply)
            }
        }
        self.settle(now);
    }

    /// Input: the writes named by `ids` are durable; whatever waited on each takes its step.
    pub fn handle_persisted(&mut self, now: Time, ids: impl IntoIterator<Item = PersistId>) {
        for id in ids {
            let Some(done) = self.store.persisted(id) else {
                continue;
            };
            if let Some((skey, delta, holds)) = done.tree {
                self.aae.written(&skey, delta, holds == Holds::Tombstones);
                self.forget.written(&skey, holds, now);
            }
            let (Rooms { coordinator, .. }, mut env) = self.parts();
            match done.then {
                Then::CountOwnCopy(req) => coordinator.own_copy_durable(&mut env, req),
                Then::Acknowledge { to, req, key } => {
                    env.out.send(to, PeerMessage::ReplicateAck { req, key })
                }
                Then::AcknowledgeHandoff { to, key, clock } => {
                    env.out.send(to, PeerMessage::HandoffAck { key, clock })
                }
                Then::Nothing => {}
            }
        }
        self.settle(now);
    }

    /// Input: the transport's connection to `peer` came up (with the peer's `boot`) or went
    /// down. Feeds the failure detector.
    pub fn handle_link(&mut self, now: Time, peer: NodeId, up: bool, boot: Option<u64>) {
        if peer != self.id && self.ring.contains(peer) {
            self.detector.link(now, peer, up, boot);
        }
    }

    /// Input: a message to `peer` could not even be queued (its buffer is full): suspect it
    /// until it is heard from again.
    pub fn handle_unreachable(&mut self, now: Time, peer: NodeId) {
        if peer != self.id && self.ring.contains(peer) {
            self.detector.suspect(now, peer);
        }
    }

    /// What this node believes about each peer it has heard of.
    pub fn peer_health(&self) -> Vec<(NodeId, PeerHealth)> {
        self.detector.snapshot()
    }

    /// Input: time has reached `now`; requests past their deadline give up.
    pub fn handle_timeout(&mut self, now: Time) {
        let (
            Rooms {
                coordinator,
                handoff,
                aae,
                forget,
            },
            mut env,
        ) = self.parts();
        coordinator.handle_timeout(&mut env, now);
        handoff.round(&mut env, now);
        for key in aae.round(&mut env, now) {
            coordinator.start_reap_check(&mut env, now, key);
        }
        forget.tick(&mut env, handoff, now);
        self.settle(now);
    }

    /// Output: the next thing the shell must do, if any.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    /// Output: when [`Core::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.coordinator.next_deadline(),
            self.handoff.next_round(),
            self.aae.next_round(),
            self.forget.next_tick(),
            self.detector.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests;
