//! A server: replica, coordinator, hint holder and anti-entropy peer in one actor.
//!
//! **Replica.** A server merges every version it receives into its durable store with `sync`
//! and saves the store (`o.save`) in the same step in which it acknowledges — *persist before
//! you acknowledge* — so a crash keeps exactly what was acknowledged. Everything else
//! (coordinations, suspicions, timers) is volatile and lost on a crash.
//!
//! **Coordinator.** A put is applied to the coordinator's own version with the client's context
//! (`update`), stored, and the result replicated to the rest of the preference list; the client
//! gets `PutOk` once `W` *distinct* replicas (the coordinator included) stored it. A get reads
//! `R` replicas (the coordinator included) and answers with the merge of their versions. With
//! `R + W > N` and no write going to a fallback, the `R` readers intersect the `W` writers.
//!
//! **Failure detector and sloppy quorum.** The coordination timer models a timeout: when it
//! fires before `W` acknowledgements, the coordinator suspects the preference-list nodes that
//! have not answered — rightly if they crashed, wrongly if their messages are only slow — and,
//! with sloppy quorum, writes to the next unsuspected fallbacks with a hint naming the owner;
//! a second timeout fails the put (`Fail`, HTTP 503). A message from a peer clears suspicion.
//!
//! **Hinted handoff.** Hints are durable; the holder offers them to their owners and drops a
//! hint once its owner acknowledged storing exactly that version.
//!
//! **Read repair.** After a get, every answering replica whose version differs from the merge
//! is sent the merge.
//!
//! **Anti-entropy.** At the model's level: a replica whose store changed sends its versions of
//! the keys it shares with a peer to that peer, which merges the differing ones. Because a
//! replica pushes after each change, once changes stop each pair has merged the other's final
//! state, and the join of both is what both hold: convergence (hash trees only make the
//! exchange cheaper and are abstracted away).
//!
//! **Reaping.** A delete whose tombstone-only version all `N` primaries acknowledged is reaped:
//! each replica still holding exactly that version drops the siblings and keeps the causal
//! context, so a stale copy of a deleted value arriving later is recognised as superseded.

use crate::actor::{Choice, Timer, Wiring};
use crate::config::Settings;
use crate::dvv::Node;
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::value::{Key, ReqId, Val};
use crate::version::Version;
use serde::{Deserialize, Serialize};
use stateright::actor::{model_timeout, Id, Out};
use stateright::{Rewrite, RewritePlan};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// What a server keeps on disk; it survives crashes (stateright `Storage`).
#[derive(Clone, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Store {
    /// The versions of the keys this server replicates.
    pub data: BTreeMap<Key, Version>,
    /// Versions held for a suspected owner: `(owner, key)`.
    #[serde(with = "crate::pairs")]
    pub hints: BTreeMap<(Node, Key), Version>,
    /// The last request number executed per client, so a duplicated put is not applied twice.
    #[serde(with = "crate::pairs")]
    pub served: BTreeMap<Id, u8>,
    /// Ghost: values once stored here as siblings and since superseded (never read by the
    /// protocol; the "nothing comes back" property checks they stay gone).
    pub gone: BTreeSet<Val>,
    /// How often this server started, the first start included (bounds crashes through
    /// `within_boundary`; saved at every start, so a crash before any write is counted too).
    pub boots: u8,
    /// Ghost: replication messages this server lost (the bounded-loss fault; never read by the
    /// protocol, kept with the store so a crash does not renew the budget; 0 unless `lose`).
    pub lost: u8,
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
        }
    }
}

/// A put being coordinated.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct PutCoord {
    /// The key.
    pub key: Key,
    /// The version the coordinator stored and replicates.
    pub version: Version,
    /// Distinct servers that stored it durably (the coordinator included).
    pub acks: BTreeSet<Node>,
    /// Acknowledgements received, duplicates included (only the `CountDuplicateAcks` bug uses it).
    pub ack_msgs: u8,
    /// Whether the sloppy round to fallbacks has been made.
    pub hinted: bool,
    /// Whether the client has been answered (the coordination may wait on to reap).
    pub replied: bool,
}

/// A get being coordinated.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct GetCoord {
    /// The key.
    pub key: Key,
    /// The versions received per replica (the coordinator's own included).
    pub replies: BTreeMap<Node, Version>,
}

/// A server's state: its durable store mirrored in memory plus volatile coordination state.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct ServerState {
    /// This server's ring index; first so that symmetry reduction never permutes servers.
    pub me: Node,
    /// The durable store (saved on every change).
    pub store: Store,
    /// Peers the local failure detector suspects.
    pub suspects: BTreeSet<Node>,
    /// Puts being coordinated.
    #[serde(with = "crate::pairs")]
    pub puts: BTreeMap<ReqId, PutCoord>,
    /// Gets being coordinated.
    #[serde(with = "crate::pairs")]
    pub gets: BTreeMap<ReqId, GetCoord>,
    /// The store changed since the last anti-entropy push.
    pub dirty: bool,
    /// Hints changed since they were last offered to their owners.
    pub offer: bool,
    /// A replication message received but not yet processed or lost: the nondeterministic
    /// choice between the two is pending (only with `lose`; the server does nothing else
    /// meanwhile, so receiving and choosing act as one step).
    pub pending: Option<Box<(Id, Msg)>>,
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
                    p.version = p.version.rewrite(plan);
                    (r.rewrite(plan), p)
                })
                .collect(),
            gets: self
                .gets
                .iter()
                .map(|(r, g)| {
                    let replies = g
                        .replies
                        .iter()
                        .map(|(n, v)| (*n, v.rewrite(plan)))
                        .collect();
                    (
                        r.rewrite(plan),
                        GetCoord {
                            key: g.key,
                            replies,
                        },
                    )
                })
                .collect(),
            dirty: self.dirty,
            offer: self.offer,
            pending: self
                .pending
                .as_ref()
                .map(|p| Box::new((p.0.rewrite(plan), p.1.rewrite(plan)))),
        }
    }
}

fn id(node: Node) -> Id {
    Id::from(usize::from(node))
}

/// The server's behaviour, parameterised by the configuration.
pub struct Server<'a> {
    /// The configuration.
    pub cfg: &'a Settings,
}

impl Server<'_> {
    /// Boots from the durable store (`None` on first start); volatile state starts empty.
    pub fn start(&self, me: Node, storage: &Option<Store>, o: &mut Out<Wiring>) -> ServerState {
        let mut store = storage.clone().unwrap_or_default();
        if storage.is_some() && self.cfg.mutated(Mutation::DropHintsOnRecovery) {
            store.hints.clear();
        }
        store.boots = store.boots.saturating_add(1);
        o.save(store.clone());
        let dirty = self.cfg.anti_entropy && !store.data.is_empty();
        let offer = self.cfg.sloppy && !store.hints.is_empty();
        if dirty {
            o.set_timer(Timer::AntiEntropy, model_timeout());
        }
        if offer {
            o.set_timer(Timer::Handoff, model_timeout());
        }
        ServerState {
            me,
            store,
            suspects: BTreeSet::new(),
            puts: BTreeMap::new(),
            gets: BTreeMap::new(),
            dirty,
            offer,
            pending: None,
        }
    }

    fn local(&self, s: &ServerState, key: Key) -> Version {
        s.store
            .data
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Version::empty(self.cfg.clock))
    }

    fn save(&self, s: &ServerState, o: &mut Out<Wiring>) {
        if !self.cfg.mutated(Mutation::VolatileStore) {
            o.save(s.store.clone());
        }
    }

    /// Replaces the stored version of `key` (durably); returns whether it changed.
    fn store(
        &self,
        st: &mut Cow<ServerState>,
        key: Key,
        new: Version,
        o: &mut Out<Wiring>,
    ) -> bool {
        let old = self.local(st, key);
        if old == new {
            return false;
        }
        let s = st.to_mut();
        let kept = new.values();
        s.store
            .gone
            .extend(old.values().into_iter().filter(|v| !kept.contains(v)));
        s.store.data.insert(key, new);
        self.save(s, o);
        if self.cfg.anti_entropy && !s.dirty {
            s.dirty = true;
            o.set_timer(Timer::AntiEntropy, model_timeout());
        }
        true
    }

    /// Merges `incoming` into the stored version of `key`.
    fn merge(&self, st: &mut Cow<ServerState>, key: Key, incoming: &Version, o: &mut Out<Wiring>) {
        let new = if self.cfg.mutated(Mutation::OverwriteOnReplicate) {
            incoming.clone()
        } else {
            self.local(st, key).sync(incoming)
        };
        self.store(st, key, new, o);
    }

    fn arm(&self, o: &mut Out<Wiring>) {
        if !self.cfg.timeouts {
            return;
        }
        o.set_timer(Timer::Coordination, model_timeout());
    }

    fn disarm_if_idle(&self, s: &ServerState, o: &mut Out<Wiring>) {
        if self.cfg.timeouts && s.puts.is_empty() && s.gets.is_empty() {
            o.cancel_timer(Timer::Coordination);
        }
    }

    /// Receives one message. With budget left (`lose`), a `Replicate` or `Repair` is held while
    /// the choice between processing and losing it is made; until then the server ignores
    /// other messages (they stay in flight).
    pub fn on_msg(&self, st: &mut Cow<ServerState>, src: Id, msg: Msg, o: &mut Out<Wiring>) {
        if st.pending.is_some() {
            return;
        }
        let losable = matches!(msg, Msg::Replicate { .. } | Msg::Repair { .. });
        if losable && st.store.lost < self.cfg.lose {
            st.to_mut().pending = Some(Box::new((src, msg)));
            o.choose_random("lose", vec![Choice::Keep, Choice::Lose]);
            return;
        }
        self.handle(st, src, msg, o);
    }

    /// Resolves a held message: processes it, or loses it exactly as a dropped message (no
    /// state change, no acknowledgement) and counts the loss.
    pub fn on_choice(&self, st: &mut Cow<ServerState>, lose: bool, o: &mut Out<Wiring>) {
        let Some(held) = st.to_mut().pending.take() else {
            return;
        };
        let (src, msg) = *held;
        if lose {
            let s = st.to_mut();
            s.store.lost = s.store.lost.saturating_add(1);
            self.save(s, o);
        } else {
            self.handle(st, src, msg, o);
        }
    }

    /// Handles one message.
    fn handle(&self, st: &mut Cow<ServerState>, src: Id, msg: Msg, o: &mut Out<Wiring>) {
        let ring = self.cfg.ring;
        let peer = usize::from(src);
        // The failure detector trusts a peer again when it answers one of our requests.
        let answer = matches!(
            msg,
            Msg::ReplicateAck { .. } | Msg::ReadReply { .. } | Msg::HandoffAck { .. }
        );
        if let Ok(p) = Node::try_from(peer) {
            if answer && st.suspects.contains(&p) {
                st.to_mut().suspects.remove(&p);
            }
        }
        let me = st.me;
        match msg {
            Msg::Put {
                req, key, ctx, val, ..
            } => {
                if st
                    .store
                    .served
                    .get(&req.client)
                    .is_some_and(|&s| s >= req.seq)
                {
                    return;
                }
                let version = self.local(st, key).update(&ctx, me, val);
                if self.cfg.dedup {
                    st.to_mut().store.served.insert(req.client, req.seq);
                }
                if !self.store(st, key, version.clone(), o) && self.cfg.dedup {
                    self.save(st, o);
                }
                let mut coord = PutCoord {
                    key,
                    version: version.clone(),
                    acks: BTreeSet::from([me]),
                    ack_msgs: 1,
                    hinted: false,
                    replied: false,
                };
                let s = st.to_mut();
                for p in ring.preference(key) {
                    if p == me {
                        continue;
                    }
                    if s.suspects.contains(&p) && self.cfg.sloppy {
                        coord.hinted = true;
                        self.send_hinted(s, req, key, &version, &[p], o);
                    } else {
                        o.send(
                            id(p),
                            Msg::Replicate {
                                req,
                                key,
                                version: version.clone(),
                                hint: None,
                            },
                        );
                    }
                }
                s.puts.insert(req, coord);
                self.arm(o);
                self.progress_put(s, req, o);
            }
            Msg::ReplicateAck { req } => {
                if !st.puts.contains_key(&req) {
                    return;
                }
                let s = st.to_mut();
                if let (Some(c), Ok(node)) = (s.puts.get_mut(&req), Node::try_from(peer)) {
                    c.acks.insert(node);
                    c.ack_msgs = c.ack_msgs.saturating_add(1);
                }
                self.progress_put(s, req, o);
            }
            Msg::Get { req, key } => {
                if st
                    .store
                    .served
                    .get(&req.client)
                    .is_some_and(|&s| s >= req.seq)
                    || st.gets.contains_key(&req)
                {
                    return;
                }
                let local = self.local(st, key);
                let s = st.to_mut();
                if self.cfg.dedup {
                    s.store.served.insert(req.client, req.seq);
                    self.save(s, o);
                }
                for p in ring.preference(key) {
                    if p != me {
                        o.send(id(p), Msg::Read { req, key });
                    }
                }
                let replies = BTreeMap::from([(me, local)]);
                s.gets.insert(req, GetCoord { key, replies });
                self.arm(o);
                self.progress_get(st, req, o);
            }
            Msg::Read { req, key } => {
                let version = self.local(st, key);
                o.send(src, Msg::ReadReply { req, version });
            }
            Msg::ReadReply { req, version } => {
                if !st.gets.contains_key(&req) {
                    return;
                }
                if let (Some(g), Ok(node)) = (st.to_mut().gets.get_mut(&req), Node::try_from(peer))
                {
                    g.replies.insert(node, version);
                }
                self.progress_get(st, req, o);
            }
            Msg::Replicate {
                req,
                key,
                version,
                hint,
            } => {
                match hint {
                    None => self.merge(st, key, &version, o),
                    Some(owner) => {
                        let old = st.store.hints.get(&(owner, key)).cloned();
                        let new = old
                            .clone()
                            .map_or_else(|| version.clone(), |h| h.sync(&version));
                        if old.as_ref() != Some(&new) {
                            let s = st.to_mut();
                            s.store.hints.insert((owner, key), new);
                            self.save(s, o);
                            if !s.offer {
                                s.offer = true;
                                o.set_timer(Timer::Handoff, model_timeout());
                            }
                        }
                    }
                }
                o.send(src, Msg::ReplicateAck { req });
            }
            Msg::Repair { key, version } => self.merge(st, key, &version, o),
            Msg::Handoff { key, version } => {
                self.merge(st, key, &version, o);
                o.send(src, Msg::HandoffAck { key, version });
            }
            Msg::HandoffAck { key, version } => {
                let Ok(owner) = Node::try_from(peer) else {
                    return;
                };
                if st.store.hints.get(&(owner, key)) == Some(&version) {
                    let s = st.to_mut();
                    s.store.hints.remove(&(owner, key));
                    self.save(s, o);
                }
            }
            Msg::Sync { entries } => {
                for (key, version) in entries {
                    if ring.replicates(me, key) {
                        self.merge(st, key, &version, o);
                    }
                }
            }
            Msg::Reap { key, version } => {
                if st.store.data.get(&key) == Some(&version) {
                    self.reap(st, key, &version, o);
                }
            }
            Msg::GetOk { .. } | Msg::PutOk { .. } | Msg::Fail { .. } => {}
        }
    }

    fn reap(&self, st: &mut Cow<ServerState>, key: Key, version: &Version, o: &mut Out<Wiring>) {
        if self.cfg.mutated(Mutation::ReapForgetsContext) {
            let s = st.to_mut();
            s.store.gone.extend(version.values());
            s.store.data.remove(&key);
            self.save(s, o);
        } else {
            self.store(st, key, version.reaped(), o);
        }
    }

    fn send_hinted(
        &self,
        s: &ServerState,
        req: ReqId,
        key: Key,
        version: &Version,
        owners: &[Node],
        o: &mut Out<Wiring>,
    ) {
        let mut stand_ins = self
            .cfg
            .ring
            .fallbacks(key)
            .into_iter()
            .filter(|f| !s.suspects.contains(f) && *f != s.me);
        for &owner in owners {
            if let Some(f) = stand_ins.next() {
                o.send(
                    id(f),
                    Msg::Replicate {
                        req,
                        key,
                        version: version.clone(),
                        hint: Some(owner),
                    },
                );
            }
        }
    }

    /// Answers the client once `W` replicas stored the put, and reaps a delete once all `N`
    /// primaries hold it.
    fn progress_put(&self, s: &mut ServerState, req: ReqId, o: &mut Out<Wiring>) {
        let Some(c) = s.puts.get_mut(&req) else {
            return;
        };
        let stored = if self.cfg.mutated(Mutation::CountDuplicateAcks) {
            usize::from(c.ack_msgs)
        } else {
            c.acks.len()
        };
        let enough = stored >= usize::from(self.cfg.w) || self.cfg.mutated(Mutation::AckBeforeW);
        if !c.replied && enough {
            c.replied = true;
            o.send(req.client, Msg::PutOk { req });
        }
        let pref = self.cfg.ring.preference(c.key);
        let all_primaries = pref.iter().all(|p| c.acks.contains(p));
        let reapable = self.cfg.reap && c.version.only_tombstones();
        if c.replied && (!reapable || all_primaries) {
            let c = s.puts.remove(&req).unwrap_or_else(|| unreachable!());
            if reapable {
                for p in pref {
                    let m = Msg::Reap {
                        key: c.key,
                        version: c.version.clone(),
                    };
                    o.send(id(p), m);
                }
            }
            self.disarm_if_idle(s, o);
        }
    }

    /// Answers the client once `R` replicas replied, then repairs the stale ones.
    fn progress_get(&self, st: &mut Cow<ServerState>, req: ReqId, o: &mut Out<Wiring>) {
        let Some(g) = st.gets.get(&req) else {
            return;
        };
        let needed = if self.cfg.mutated(Mutation::ReadBelowR) {
            usize::from(self.cfg.r).saturating_sub(1).max(1)
        } else {
            usize::from(self.cfg.r)
        };
        if g.replies.len() < needed {
            return;
        }
        let g = st
            .to_mut()
            .gets
            .remove(&req)
            .unwrap_or_else(|| unreachable!());
        let merged = g
            .replies
            .values()
            .fold(Version::empty(self.cfg.clock), |acc, v| acc.sync(v));
        o.send(
            req.client,
            Msg::GetOk {
                req,
                values: merged.values(),
                ctx: merged.context(),
            },
        );
        if self.cfg.read_repair {
            for (&node, v) in &g.replies {
                if *v == merged {
                    continue;
                }
                if node == st.me {
                    self.merge(st, g.key, &merged, o);
                } else {
                    let m = Msg::Repair {
                        key: g.key,
                        version: merged.clone(),
                    };
                    o.send(id(node), m);
                }
            }
        }
        self.disarm_if_idle(st, o);
    }

    /// Handles a timer.
    pub fn on_timeout(&self, st: &mut Cow<ServerState>, timer: &Timer, o: &mut Out<Wiring>) {
        if st.pending.is_some() {
            // Not now: renewing the timer makes the firing a no-op, so it stays set.
            o.set_timer(timer.clone(), model_timeout());
            return;
        }
        match timer {
            Timer::Coordination => self.timeout_coordinations(st, o),
            Timer::Handoff => {
                let s = st.to_mut();
                s.offer = false;
                for (&(owner, key), version) in &s.store.hints {
                    let m = Msg::Handoff {
                        key,
                        version: version.clone(),
                    };
                    o.send(id(owner), m);
                }
            }
            Timer::AntiEntropy => {
                let s = st.to_mut();
                s.dirty = false;
                let ring = self.cfg.ring;
                for peer in 0..ring.servers {
                    if peer == s.me {
                        continue;
                    }
                    let entries: BTreeMap<Key, Version> = s
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
            Timer::Client => {}
        }
    }

    /// A coordination timeout: suspect the silent, go sloppy once, else fail.
    fn timeout_coordinations(&self, st: &mut Cow<ServerState>, o: &mut Out<Wiring>) {
        let s = st.to_mut();
        for (req, g) in std::mem::take(&mut s.gets) {
            let _ = g;
            o.send(req.client, Msg::Fail { req, put: false });
        }
        let reqs: Vec<ReqId> = s.puts.keys().copied().collect();
        for req in reqs {
            let Some(c) = s.puts.get(&req).cloned() else {
                continue;
            };
            let silent: Vec<Node> = self
                .cfg
                .ring
                .preference(c.key)
                .into_iter()
                .filter(|p| !c.acks.contains(p))
                .collect();
            if c.replied {
                s.puts.remove(&req);
            } else if self.cfg.sloppy && !c.hinted {
                s.suspects.extend(silent.iter().copied());
                self.send_hinted(s, req, c.key, &c.version, &silent, o);
                if let Some(c) = s.puts.get_mut(&req) {
                    c.hinted = true;
                }
            } else {
                s.suspects.extend(silent.iter().copied());
                s.puts.remove(&req);
                o.send(req.client, Msg::Fail { req, put: true });
            }
        }
        if !s.puts.is_empty() {
            self.arm(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Ctx;
    use crate::version::Clock;
    use stateright::actor::Command;

    fn settings(w: u8) -> Settings {
        Settings {
            sloppy: true,
            reap: true,
            timeouts: true,
            ..Settings::plain(4, 3, 1, w)
        }
    }

    fn client() -> Id {
        Id::from(7)
    }

    /// The client's first request, a blind put of key 0.
    fn first_req() -> ReqId {
        ReqId {
            client: client(),
            seq: 1,
        }
    }

    /// The version a first blind put of key 0 by the client creates at server 0.
    fn first_write() -> Version {
        Version::empty(Clock::Dvv).update(
            &Ctx::new(),
            0,
            Val {
                client: client(),
                seq: 1,
                key: 0,
                tomb: false,
            },
        )
    }

    fn put(seq: u8, tomb: bool) -> Msg {
        let req = ReqId {
            client: client(),
            seq,
        };
        Msg::Put {
            req,
            key: 0,
            ctx: Ctx::new(),
            val: Val {
                client: client(),
                seq,
                key: 0,
                tomb,
            },
            seen: BTreeSet::new(),
        }
    }

    fn boot(cfg: &Settings, me: Node) -> ServerState {
        Server { cfg }.start(me, &None, &mut Out::new())
    }

    #[test]
    fn the_store_is_saved_before_the_put_is_acknowledged() {
        let cfg = settings(1);
        let s = boot(&cfg, 0);
        let mut st = Cow::Borrowed(&s);
        let mut o = Out::new();
        Server { cfg: &cfg }.on_msg(&mut st, client(), put(1, false), &mut o);
        let save = o.iter().position(
            |c| matches!(c, Command::Save(store) if store.data.get(&0).is_some_and(|v| v.values().len() == 1)),
        );
        let ack = o
            .iter()
            .position(|c| matches!(c, Command::Send(to, Msg::PutOk { .. }) if *to == client()));
        assert!(save.is_some() && ack.is_some() && save < ack, "{o:?}");
        let replicas = o
            .iter()
            .filter(|c| matches!(c, Command::Send(_, Msg::Replicate { hint: None, .. })))
            .count();
        assert_eq!(replicas, 2, "the rest of the preference list");
    }

    #[test]
    fn a_duplicated_ack_does_not_count_twice_towards_w() {
        let cfg = settings(3);
        let server = Server { cfg: &cfg };
        let s = boot(&cfg, 0);
        let mut st = Cow::Borrowed(&s);
        server.on_msg(&mut st, client(), put(1, false), &mut Out::new());
        let req = first_req();
        let acked = |o: &Out<Wiring>| {
            o.iter()
                .any(|c| matches!(c, Command::Send(_, Msg::PutOk { .. })))
        };
        for _ in 0..2 {
            let mut o = Out::new();
            server.on_msg(&mut st, Id::from(1), Msg::ReplicateAck { req }, &mut o);
            assert!(!acked(&o), "two acks from one replica are not W = 3");
        }
        let mut o = Out::new();
        server.on_msg(&mut st, Id::from(2), Msg::ReplicateAck { req }, &mut o);
        assert!(acked(&o));
    }

    #[test]
    fn a_lost_replicate_changes_nothing_but_the_budget_and_is_not_acknowledged() {
        let mut cfg = settings(1);
        cfg.lose = 1;
        let server = Server { cfg: &cfg };
        let version = first_write();
        let req = first_req();
        let m = Msg::Replicate {
            req,
            key: 0,
            version,
            hint: None,
        };
        let s = boot(&cfg, 1);
        let mut st = Cow::Borrowed(&s);
        let mut o = Out::new();
        server.on_msg(&mut st, Id::from(0), m.clone(), &mut o);
        assert!(st.pending.is_some(), "held until the choice");
        assert!(o
            .iter()
            .any(|c| matches!(c, Command::ChooseRandom(_, r) if r.len() == 2)));
        let mut blocked = st.clone();
        server.on_msg(&mut blocked, Id::from(2), m.clone(), &mut Out::new());
        assert_eq!(blocked, st, "nothing else is received meanwhile");
        let mut o = Out::new();
        server.on_choice(&mut st, true, &mut o);
        assert!(st.pending.is_none() && st.store.data.is_empty());
        assert_eq!(st.store.lost, 1);
        assert!(!o.iter().any(|c| matches!(c, Command::Send(..))), "no ack");
        let mut o = Out::new();
        server.on_msg(&mut st, Id::from(0), m, &mut o);
        assert!(st.pending.is_none(), "budget spent: processed at once");
        assert_eq!(st.store.data[&0].values().len(), 1);
        assert!(o
            .iter()
            .any(|c| matches!(c, Command::Send(_, Msg::ReplicateAck { .. }))));
    }

    #[test]
    fn a_timeout_suspects_the_silent_and_writes_to_a_fallback_with_a_hint() {
        let cfg = settings(3);
        let server = Server { cfg: &cfg };
        let s = boot(&cfg, 0);
        let mut st = Cow::Borrowed(&s);
        server.on_msg(&mut st, client(), put(1, false), &mut Out::new());
        let mut o = Out::new();
        server.on_timeout(&mut st, &Timer::Coordination, &mut o);
        assert_eq!(st.suspects, BTreeSet::from([1, 2]));
        let hinted: Vec<(Id, Option<Node>)> = o
            .iter()
            .filter_map(|c| match c {
                Command::Send(to, Msg::Replicate { hint, .. }) => Some((*to, *hint)),
                _ => None,
            })
            .collect();
        assert_eq!(
            hinted,
            vec![(Id::from(3), Some(1))],
            "one fallback for two owners"
        );
        let mut o = Out::new();
        server.on_timeout(&mut st, &Timer::Coordination, &mut o);
        assert!(o
            .iter()
            .any(|c| matches!(c, Command::Send(_, Msg::Fail { put: true, .. }))));
        assert!(st.puts.is_empty());
    }

    #[test]
    fn a_hint_is_kept_durably_until_its_owner_acknowledges_that_version() {
        let cfg = settings(1);
        let server = Server { cfg: &cfg };
        let version = first_write();
        let s = boot(&cfg, 3);
        let mut st = Cow::Borrowed(&s);
        let req = first_req();
        let mut o = Out::new();
        let m = Msg::Replicate {
            req,
            key: 0,
            version: version.clone(),
            hint: Some(1),
        };
        server.on_msg(&mut st, Id::from(0), m, &mut o);
        assert!(o
            .iter()
            .any(|c| matches!(c, Command::Save(s) if s.hints.contains_key(&(1, 0)))));
        assert!(st.store.data.is_empty(), "a hint is not the holder's data");
        let stale = Version::empty(Clock::Dvv);
        let m = Msg::HandoffAck {
            key: 0,
            version: stale,
        };
        server.on_msg(&mut st, Id::from(1), m, &mut Out::new());
        assert!(st.store.hints.contains_key(&(1, 0)), "not that version");
        let m = Msg::HandoffAck { key: 0, version };
        server.on_msg(&mut st, Id::from(2), m.clone(), &mut Out::new());
        assert!(st.store.hints.contains_key(&(1, 0)), "not from the owner");
        server.on_msg(&mut st, Id::from(1), m, &mut Out::new());
        assert!(st.store.hints.is_empty());
    }

    #[test]
    fn reaping_applies_only_to_the_version_all_replicas_acknowledged() {
        let cfg = settings(1);
        let server = Server { cfg: &cfg };
        let s = boot(&cfg, 0);
        let mut st = Cow::Borrowed(&s);
        server.on_msg(&mut st, client(), put(1, true), &mut Out::new());
        let tomb = st.store.data[&0].clone();
        server.on_msg(&mut st, client(), put(2, false), &mut Out::new());
        let m = Msg::Reap {
            key: 0,
            version: tomb,
        };
        server.on_msg(&mut st, Id::from(0), m, &mut Out::new());
        assert_eq!(st.store.data[&0].values().len(), 2, "a newer write arrived");
        let current = st.store.data[&0].clone();
        let m = Msg::Reap {
            key: 0,
            version: current.clone(),
        };
        server.on_msg(&mut st, Id::from(0), m, &mut Out::new());
        assert!(st.store.data[&0].is_reaped());
        assert_eq!(st.store.data[&0].context(), current.context());
    }
}
