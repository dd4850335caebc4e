//! A server: replica, coordinator, hint holder and anti-entropy peer in one actor.
//!
//! **Replica.** A server merges every clock it receives into its durable store with `sync`
//! and saves the store (`o.save`) in the same step in which it acknowledges — *persist before
//! you acknowledge* — so a crash keeps exactly what was acknowledged. Everything else
//! (coordinations, suspicions, timers) is volatile and lost on a crash.
//!
//! **Coordinator.** A put is applied to the coordinator's own clock with the client's context
//! (`update`), stored, and the result replicated to the rest of the preference list; the client
//! gets `PutOk` once `W` *distinct* replicas (the coordinator included) stored it. A get reads
//! every replica and answers with the merge of the first `R` clocks (the coordinator's own
//! included when it is a replica). With `R + W > N` and no write going to a fallback, the `R`
//! readers intersect the `W` writers. With forwarding, a server outside a key's preference
//! list hands a put to the list's first node and relays its answer.
//!
//! **Deadlines, failure detector and sloppy quorum.** Each request has its own deadline, a
//! timer that models a timeout: when a put's fires before `W` acknowledgements, the
//! coordinator suspects the preference-list nodes that have not answered — rightly if they
//! crashed, wrongly if their messages are only slow — and, with sloppy quorum, writes to the
//! next unsuspected fallbacks with a hint naming the owner; its next deadline fails it (`Fail`,
//! HTTP 503). A message from a peer clears suspicion.
//!
//! **Hinted handoff.** Hints are durable; the holder offers them to their owners and drops a
//! hint once its owner acknowledged storing exactly that clock.
//!
//! **Read repair.** Once every replica answered a get, or its deadline passed, every answering
//! replica whose clock differs from the merge of all answers is sent that merge.
//!
//! **Anti-entropy.** At the model's level: a replica whose store changed sends its clocks of
//! the keys it shares with a peer to that peer, which merges the differing ones. Because a
//! replica pushes after each change, once changes stop each pair has merged the other's final
//! state, and the join of both is what both hold: convergence (hash trees only make the
//! exchange cheaper and are abstracted away).
//!
//! **Reaping.** A delete whose tombstone-only clock all `N` primaries acknowledged is reaped:
//! each replica still holding exactly that clock drops the siblings and keeps the causal
//! context, so a stale copy of a deleted value arriving later is recognised as superseded.
//!
//! **Forgetting.** A reaped key's history is removed once two rounds of asking every server,
//! a grace apart, agreed that every primary holds exactly that history and no hint is around
//! (see `forget.rs`); a server's next write of a key it forgot takes a fresh epoch.
//!
//! **Where each mechanism lives.** This file holds the state, the entry points and the helpers
//! every mechanism shares (reading, storing and merging a key durably); `handle` only
//! dispatches each message to the mechanism that owns it:
//!
//! - `coordinator/`: client requests, each with its deadline (`mod.rs`): puts, their
//!   acknowledgements and replies (`put.rs`), gets and their quorum (`get.rs`), forwarding
//!   (`forward.rs`);
//! - `replica.rs`: storing a replicated or repaired clock, answering reads;
//! - `handoff.rs`: sloppy quorum's hinted writes, holding hints and handing them off;
//! - `read_repair.rs`: writing a get's merge back to the stale replicas;
//! - `anti_entropy.rs`: pushing changed keys to peers and merging theirs;
//! - `reap.rs`: reaping a tombstone all primaries hold;
//! - `forget.rs`: forgetting a reaped key's history once nothing older can come back;
//! - `restore.rs`: the operator's faults of wiping a data directory or restoring it from a
//!   backup, and the fresh identity a server takes when it finds its directory older;
//! - `loss.rs`: the bounded-loss fault (`lose`), holding a message until it is kept or lost.

use crate::actor::{Timer, Wiring};
use crate::clock::Clock;
use crate::config::Settings;
use crate::dvv::{Dot, NodeId};
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::value::{Key, RequestId, Value, VersionVector};
use serde::{Deserialize, Serialize};
use stateright::actor::{model_timeout, Id, Out};
use stateright::{Rewrite, RewritePlan};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

mod anti_entropy;
mod coordinator;
mod forget;
mod handoff;
mod loss;
mod read_repair;
mod reap;
mod replica;
mod restore;
#[cfg(test)]
mod tests;

/// What a server keeps on disk; it survives crashes (stateright `Storage`).
#[derive(Clone, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Store {
    /// The clocks of the keys this server replicates.
    pub data: BTreeMap<Key, Clock>,
    /// Clocks held for a suspected owner: `(owner, key)`.
    #[serde(with = "crate::pairs")]
    pub hints: BTreeMap<(NodeId, Key), Clock>,
    /// The last request number executed (coordinated or forwarded) per client, so a duplicated
    /// request is executed once (`dedup`).
    #[serde(with = "crate::pairs")]
    pub served: BTreeMap<Id, u8>,
    /// Ghost: values once stored here as siblings and since superseded (never read by the
    /// protocol; the "nothing comes back" property checks they stay gone).
    pub gone: BTreeSet<Value>,
    /// How often this server started, the first start included (bounds crashes through
    /// `within_boundary`; saved at every start, so a crash before any write is counted too).
    pub boots: u8,
    /// Ghost: replication messages this server lost (the bounded-loss fault; never read by the
    /// protocol, kept with the store so a crash does not renew the budget; 0 unless `lose`).
    pub lost: u8,
    /// Per key, the epoch of this server's next fresh actor (see [`crate::dvv::EPOCH_STRIDE`]):
    /// raised when the server forgets a key whose history holds one of its actors, so that a
    /// later write of the key never reissues a dot (the node's durable epoch lease). Absent:
    /// epoch 0.
    #[serde(default)]
    pub epochs: BTreeMap<Key, u8>,
    /// Ghost: the histories this server removed on a `Forget` (never read by the protocol;
    /// "a forgotten history is not spread again" checks it does not hold them again).
    #[serde(with = "crate::pairs", default)]
    pub forgot: BTreeMap<Key, BTreeSet<Clock>>,
    /// The data directory's copy of the identity record's generation: `boots` as of the last
    /// start. `boots` is the identity file's copy, kept outside the directory, so a start
    /// that finds this one behind knows the directory was wiped or restored (`restore.rs`).
    #[serde(default)]
    pub generation: u8,
    /// The first epoch of this server's current identity: every actor it writes under has at
    /// least this epoch. Raised past every epoch it ever used when it takes a fresh identity.
    #[serde(default)]
    pub floor: u8,
    /// The operator's backup: the data directory as this server last stopped (`restore` only).
    #[serde(default)]
    pub backup: Option<Box<Store>>,
    /// Ghost: every dot this server issued, with its key and the value it named (`restore`
    /// only; kept outside the data directory, so a restore does not roll it back).
    #[serde(with = "crate::pairs", default)]
    pub issued: BTreeMap<(Key, Dot), Value>,
    /// Ghost: this server issued a dot that already named another write.
    #[serde(default)]
    pub reissued: bool,
    /// How often the operator wiped or restored this server's directory (bounds the fault
    /// through `within_boundary`; kept outside the directory).
    #[serde(default)]
    pub restores: u8,
}

impl Store {
    /// The data directory's part of the store: what a backup holds and a restore brings back.
    /// The identity file's generation (`boots`), the backup itself and the ghosts of what
    /// happened (`lost`, `issued`, `reissued`, `restores`) live outside it.
    pub fn directory(&self) -> Store {
        Store {
            boots: 0,
            lost: 0,
            backup: None,
            issued: BTreeMap::new(),
            reissued: false,
            restores: 0,
            ..self.clone()
        }
    }

    /// This store with its data directory replaced by `dir`'s; what lies outside the
    /// directory stays.
    pub fn with_directory(&self, dir: &Store) -> Store {
        Store {
            boots: self.boots,
            lost: self.lost,
            backup: self.backup.clone(),
            issued: self.issued.clone(),
            reissued: self.reissued,
            restores: self.restores,
            ..dir.directory()
        }
    }
}

impl Rewrite<Id> for Store {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        Store {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, v.rewrite(plan)))
                .collect(),
            hints: self
                .hints
                .iter()
                .map(|(k, v)| (*k, v.rewrite(plan)))
                .collect(),
            served: self.served.rewrite(plan),
            gone: self.gone.rewrite(plan),
            boots: self.boots,
            lost: self.lost,
            epochs: self.epochs.clone(),
            forgot: self
                .forgot
                .iter()
                .map(|(k, cs)| (*k, cs.iter().map(|c| c.rewrite(plan)).collect()))
                .collect(),
            generation: self.generation,
            floor: self.floor,
            backup: self.backup.as_ref().map(|b| Box::new(b.rewrite(plan))),
            issued: self
                .issued
                .iter()
                .map(|(k, v)| (*k, v.rewrite(plan)))
                .collect(),
            reissued: self.reissued,
            restores: self.restores,
        }
    }
}

/// Who waits for a coordinated put's answer.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum Waiter {
    /// The client that sent the request (named by the request).
    Client,
    /// The server that forwarded it, answered with a `ForwardReply`.
    Forwarder(NodeId),
}

/// A put being coordinated.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct PutCoord {
    /// The slot of its deadline (`Timer::Deadline`).
    pub slot: u8,
    /// Who is answered.
    pub waiter: Waiter,
    /// The key.
    pub key: Key,
    /// The value written.
    pub value: Value,
    /// The client's context (the reply's context is computed from it).
    pub asked: VersionVector,
    /// The clock the coordinator stored and replicates.
    pub clock: Clock,
    /// Distinct servers that stored it durably (the coordinator included).
    pub acks: BTreeSet<NodeId>,
    /// Acknowledgements received, duplicates included: counted only under the
    /// `CountDuplicateAcks` bug, which uses it (otherwise 1, so duplicates add no states).
    pub ack_msgs: u8,
    /// Whether the sloppy round to fallbacks has been made.
    pub hinted: bool,
    /// Whether the client has been answered (the coordination may wait on to reap).
    pub replied: bool,
}

/// A get being coordinated.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct GetCoord {
    /// The slot of its deadline (`Timer::Deadline`).
    pub slot: u8,
    /// The key.
    pub key: Key,
    /// The clock each replica answered, one per replica (the coordinator's own included when
    /// it is a replica).
    pub replies: BTreeMap<NodeId, Clock>,
    /// Whether the client has been answered (the get waits on for read repair).
    pub replied: bool,
}

/// A put forwarded to the first node of its key's preference list.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct FwdCoord {
    /// The slot of its deadline (`Timer::Deadline`).
    pub slot: u8,
    /// The server it was forwarded to: only its answer counts.
    pub target: NodeId,
}

/// A forgetting round in progress (see `forget.rs`).
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct ForgetRound {
    /// The round's number: unique per server (its boot and how many rounds it started).
    pub id: u8,
    /// The servers that have not answered.
    pub waiting: BTreeSet<NodeId>,
    /// The primaries' answers (an empty clock: the primary holds none), this server's own
    /// included when it is one.
    #[serde(with = "crate::pairs")]
    pub clocks: BTreeMap<NodeId, Clock>,
    /// Whether some server holds, or may have just handed off, a hint for the key.
    pub hinted: bool,
}

/// What a key's forgetting coordinator remembers of its rounds (volatile, as in the node).
#[derive(Clone, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct ForgetCoord {
    /// Rounds started for the key by this incarnation (at most `forget_rounds`).
    pub started: u8,
    /// The history the last agreeing round agreed on, and that round's number: the first of
    /// the two rounds a forget needs.
    pub agreed: Option<(Clock, u8)>,
    /// The round in progress.
    pub round: Option<ForgetRound>,
}

/// A server's state: its durable store mirrored in memory plus volatile coordination state.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct ServerState {
    /// This server's ring index; first so that symmetry reduction never permutes servers.
    pub me: NodeId,
    /// The durable store (saved on every change).
    pub store: Store,
    /// Peers the local failure detector suspects.
    pub suspects: BTreeSet<NodeId>,
    /// Puts being coordinated.
    #[serde(with = "crate::pairs")]
    pub puts: BTreeMap<RequestId, PutCoord>,
    /// Gets being coordinated.
    #[serde(with = "crate::pairs")]
    pub gets: BTreeMap<RequestId, GetCoord>,
    /// Puts forwarded, waiting for the answer to relay.
    #[serde(with = "crate::pairs")]
    pub forwards: BTreeMap<RequestId, FwdCoord>,
    /// The store changed since the last anti-entropy push.
    pub dirty: bool,
    /// Hints changed since they were last offered to their owners.
    pub offer: bool,
    /// A replication message received but not yet processed or lost: the nondeterministic
    /// choice between the two is pending (only with `lose`; the server does nothing else
    /// meanwhile, so receiving and choosing act as one step).
    pub pending: Option<Box<(Id, Msg)>>,
    /// Forgetting rounds this server coordinates, per key (`forget`).
    #[serde(with = "crate::pairs")]
    pub forgets: BTreeMap<Key, ForgetCoord>,
    /// Keys whose hint this server dropped less than a message lifetime ago: a `Handoff` it
    /// sent may still be in flight, so it answers forgetting rounds "hinted" (`forget`).
    pub dropped: BTreeSet<Key>,
    /// The server restarted less than a message lifetime ago: what it sent before its crash
    /// may still be in flight, so it answers every forgetting round "hinted" (`forget`).
    pub young: bool,
}

impl Rewrite<Id> for ServerState {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        ServerState {
            me: self.me,
            store: self.store.rewrite(plan),
            suspects: self.suspects.clone(),
            puts: self
                .puts
                .iter()
                .map(|(r, p)| {
                    let mut p = p.clone();
                    p.clock = p.clock.rewrite(plan);
                    p.value = p.value.rewrite(plan);
                    (r.rewrite(plan), p)
                })
                .collect(),
            gets: self
                .gets
                .iter()
                .map(|(r, g)| {
                    let mut g = g.clone();
                    g.replies = g
                        .replies
                        .iter()
                        .map(|(n, v)| (*n, v.rewrite(plan)))
                        .collect();
                    (r.rewrite(plan), g)
                })
                .collect(),
            forwards: self
                .forwards
                .iter()
                .map(|(r, f)| (r.rewrite(plan), f.clone()))
                .collect(),
            dirty: self.dirty,
            offer: self.offer,
            pending: self
                .pending
                .as_ref()
                .map(|p| Box::new((p.0.rewrite(plan), p.1.rewrite(plan)))),
            forgets: self
                .forgets
                .iter()
                .map(|(k, f)| {
                    let mut f = f.clone();
                    f.agreed = f.agreed.map(|(c, r)| (c.rewrite(plan), r));
                    if let Some(r) = f.round.as_mut() {
                        r.clocks = r
                            .clocks
                            .iter()
                            .map(|(n, c)| (*n, c.rewrite(plan)))
                            .collect();
                    }
                    (*k, f)
                })
                .collect(),
            dropped: self.dropped.clone(),
            young: self.young,
        }
    }
}

fn id(node: NodeId) -> Id {
    Id::from(usize::from(node))
}

/// The server's behaviour, parameterised by the configuration.
pub struct Server<'a> {
    /// The configuration.
    pub cfg: &'a Settings,
}

impl Server<'_> {
    /// Boots from the durable store (`None` on first start); volatile state starts empty.
    pub fn start(&self, me: NodeId, storage: &Option<Store>, o: &mut Out<Wiring>) -> ServerState {
        let mut store = storage.clone().unwrap_or_default();
        if storage.is_some() && self.cfg.mutated(Mutation::DropHintsOnRecovery) {
            store.hints.clear();
        }
        store.boots = store.boots.saturating_add(1);
        if self.cfg.restore {
            self.check_identity(storage.is_some(), &mut store);
        }
        o.save(store.clone());
        let dirty = self.cfg.anti_entropy && !store.data.is_empty();
        let offer = self.cfg.sloppy && !store.hints.is_empty();
        if dirty {
            o.set_timer(Timer::AntiEntropy, model_timeout());
        }
        if offer {
            o.set_timer(Timer::Handoff, model_timeout());
        }
        // A restart (not the first start: nothing was sent before it) answers forgetting
        // rounds "hinted" for a message lifetime.
        let young = self.cfg.forget && store.boots > 1;
        if young {
            o.set_timer(Timer::Expire, model_timeout());
        }
        let s = ServerState {
            me,
            store,
            suspects: BTreeSet::new(),
            puts: BTreeMap::new(),
            gets: BTreeMap::new(),
            forwards: BTreeMap::new(),
            dirty,
            offer,
            pending: None,
            forgets: BTreeMap::new(),
            dropped: BTreeSet::new(),
            young,
        };
        for (&key, clock) in &s.store.data {
            if clock.is_reaped() {
                self.consider_forgetting(&s, key, o);
            }
        }
        if self.cfg.restore {
            self.offer_restore(&s, o);
        }
        s
    }

    fn local(&self, s: &ServerState, key: Key) -> Clock {
        s.store
            .data
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Clock::empty(self.cfg.scheme))
    }

    fn save(&self, s: &ServerState, o: &mut Out<Wiring>) {
        if !self.cfg.mutated(Mutation::VolatileStore) {
            o.save(s.store.clone());
        }
    }

    /// Replaces the stored clock of `key` (durably); returns whether it changed.
    fn store(&self, st: &mut Cow<ServerState>, key: Key, new: Clock, o: &mut Out<Wiring>) -> bool {
        let old = self.local(st, key);
        if old == new {
            return false;
        }
        let s = st.to_mut();
        let kept = new.values();
        s.store
            .gone
            .extend(old.values().into_iter().filter(|v| !kept.contains(v)));
        let history = new.is_reaped();
        s.store.data.insert(key, new);
        self.save(s, o);
        if self.cfg.anti_entropy && !s.dirty {
            s.dirty = true;
            o.set_timer(Timer::AntiEntropy, model_timeout());
        }
        if history && !old.is_reaped() {
            self.consider_forgetting(s, key, o);
        }
        true
    }

    /// Merges `incoming` into the stored clock of `key`.
    fn merge(&self, st: &mut Cow<ServerState>, key: Key, incoming: &Clock, o: &mut Out<Wiring>) {
        let new = if self.cfg.mutated(Mutation::OverwriteOnReplicate) {
            incoming.clone()
        } else {
            self.local(st, key).sync(incoming)
        };
        self.store(st, key, new, o);
    }

    /// Receives one message. With budget left (`lose`), a `Replicate` or `Repair` is held while
    /// the choice between processing and losing it is made; until then the server ignores
    /// other messages (they stay in flight).
    pub fn on_msg(&self, st: &mut Cow<ServerState>, src: Id, msg: Msg, o: &mut Out<Wiring>) {
        if st.pending.is_some() {
            return;
        }
        if self.losable(st, &msg) {
            self.hold(st, src, msg, o);
            return;
        }
        let from_server = usize::from(src) < usize::from(self.cfg.ring.servers);
        self.handle(st, src, msg, o);
        if self.cfg.forget
            && std::env::var("NOCONSUME").is_err()
            && from_server
            && matches!(st, Cow::Borrowed(_))
            && o.is_empty()
        {
            // A message that changes nothing is still delivered, and gone: stateright would
            // leave it in flight for ever, which with forgetting — a store can shrink, and a
            // message harmless now be harmful later — would model a message older than the
            // node's lifetime. Re-saving the unchanged store makes the delivery a step.
            o.save(st.store.clone());
        }
    }

    /// Resolves a held message: processes it, or loses it exactly as a dropped message (no
    /// state change, no acknowledgement) and counts the loss.
    pub fn on_choice(&self, st: &mut Cow<ServerState>, lose: bool, o: &mut Out<Wiring>) {
        if let Some((src, msg)) = self.resolve(st, lose, o) {
            self.handle(st, src, msg, o);
        }
    }

    /// Handles one message: any answer to a request of ours clears the sender's suspicion,
    /// then the mechanism that owns the message acts on it.
    fn handle(&self, st: &mut Cow<ServerState>, src: Id, msg: Msg, o: &mut Out<Wiring>) {
        self.trust(st, src, &msg);
        match msg {
            Msg::Put {
                req,
                key,
                context,
                value,
                ..
            } => self.client_put(st, req, key, &context, value, o),
            Msg::Forward {
                req,
                key,
                context,
                value,
            } => {
                if let Ok(from) = NodeId::try_from(usize::from(src)) {
                    self.put(st, Waiter::Forwarder(from), req, key, &context, value, o);
                }
            }
            Msg::ForwardReply { req, reply } => self.forward_reply(st, src, req, *reply, o),
            Msg::ReplicateAck { req } => self.replicate_ack(st, src, req, o),
            Msg::Get { req, key } => self.get(st, req, key, o),
            Msg::Read { req, key } => self.read(st, src, req, key, o),
            Msg::ReadReply { req, clock } => self.read_reply(st, src, req, clock, o),
            Msg::Replicate {
                req,
                key,
                clock,
                hint: None,
            } => self.replicate(st, src, req, key, &clock, o),
            Msg::Replicate {
                req,
                key,
                clock,
                hint: Some(owner),
            } => self.hold_hint(st, src, req, (owner, key), clock, o),
            Msg::Repair { key, clock, .. } => self.repair(st, key, &clock, o),
            Msg::Handoff { key, clock } => self.take_handoff(st, src, key, clock, o),
            Msg::HandoffAck { key, clock } => self.handoff_acked(st, src, key, &clock, o),
            Msg::Sync { entries } => self.sync(st, entries, o),
            Msg::Reap { key, clock, .. } => self.reap_if_current(st, key, &clock, o),
            Msg::ForgetCheck { round, key } => self.forget_check(st, src, round, key, o),
            Msg::ForgetCheckReply {
                round,
                key,
                clock,
                hinted,
            } => self.forget_reply(st, src, (round, key), clock, hinted, o),
            Msg::Forget { key, clock } => self.forget_if_current(st, key, &clock, o),
            Msg::GetOk { .. } | Msg::PutOk { .. } | Msg::PutStale { .. } | Msg::Fail { .. } => {}
        }
    }

    /// The failure detector trusts a peer again when it answers one of our requests.
    fn trust(&self, st: &mut Cow<ServerState>, src: Id, msg: &Msg) {
        let answer = matches!(
            msg,
            Msg::ReplicateAck { .. }
                | Msg::ReadReply { .. }
                | Msg::HandoffAck { .. }
                | Msg::ForwardReply { .. }
                | Msg::ForgetCheckReply { .. }
        );
        if let Ok(p) = NodeId::try_from(usize::from(src)) {
            if answer && st.suspects.contains(&p) {
                st.to_mut().suspects.remove(&p);
            }
        }
    }

    /// Handles a timer.
    pub fn on_timeout(&self, st: &mut Cow<ServerState>, timer: &Timer, o: &mut Out<Wiring>) {
        if st.pending.is_some() {
            // Not now (see `loss.rs`): renewing the timer makes the firing a no-op, so it stays
            // set.
            o.set_timer(timer.clone(), model_timeout());
            return;
        }
        match timer {
            Timer::Deadline(slot) => self.deadline(st, *slot, o),
            Timer::Handoff => self.offer_hints(st, o),
            Timer::AntiEntropy => self.push(st, o),
            Timer::Forget(key) => self.start_round(st, *key, o),
            Timer::Expire => self.expire(st),
            Timer::Client => {}
        }
    }
}
