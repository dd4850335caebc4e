//! The checks of a simulated run: the clients' answers, the invariants over every copy in the
//! system after each step, and convergence once the faults stop.

use super::{carried, key_bytes, kind, Sim, Violation, WriteOrRead};
use crate::abstraction::{Abstract, WriteId};
use crate::store::TestStore;
use shoal::{ClientReply, Clock, NodeId, Write};
use std::collections::BTreeSet;
use std::time::Duration;

impl Sim {
    /// Takes the clients' answers and checks every invariant on the node's state.
    pub(super) fn observe(&mut self, step: usize) -> Result<(), Violation> {
        for (_, cid, reply) in std::mem::take(&mut self.h.replies) {
            let Some(c) = self
                .clients
                .iter()
                .position(|c| c.waiting.is_some_and(|(w, _)| w == cid))
            else {
                continue;
            };
            let Some((_, what)) = self.clients[c].waiting.take() else {
                continue;
            };
            self.report.answered += 1;
            match (what, reply) {
                (WriteOrRead::Read(key), ClientReply::Found { values, context }) => {
                    let read: Vec<WriteId> =
                        values.iter().filter_map(|v| WriteId::parse(v)).collect();
                    if read.len() != values.len() {
                        return Err(self.violation(
                            step,
                            format!("a read returned unknown values: {values:?}"),
                        ));
                    }
                    self.check_concurrent(step, &read, "a read's siblings")?;
                    self.clients[c].context.insert(key, context);
                }
                (WriteOrRead::Write(write), ClientReply::Stored { context, siblings }) => {
                    self.history.acked.insert(write);
                    self.report.acked += 1;
                    let durable = self.durable_copies(write);
                    if durable < self.cfg.w {
                        let key = key_bytes(write.key);
                        let skey = shoal::storage_key(self.h.ring().partition_of(&key), &key);
                        let mut detail = String::new();
                        for (id, n) in &self.h.nodes {
                            for (k, c) in n.store.all() {
                                if k == skey {
                                    detail.push_str(&format!("\n  {id} data: {c:?}"));
                                }
                            }
                            for ((o, k), c) in n.store.all_hints() {
                                if k == skey {
                                    detail.push_str(&format!("\n  {id} hint for {o}: {c:?}"));
                                }
                            }
                        }
                        return Err(self.violation(step, format!("{write} (dot {:?}) was acknowledged with {durable} durable copies, fewer than W = {}:{detail}", self.dots.dot_of(write), self.cfg.w)));
                    }
                    let covered = self.dots.covered_by(&context);
                    let saw = self
                        .history
                        .supersedes
                        .get(&write)
                        .cloned()
                        .unwrap_or_default();
                    // Covering a write the writer never saw is harmless only if another write
                    // had already superseded it, or if it is a tombstone (then covering it
                    // hides no data).
                    let unseen_live = |x: &&WriteId| {
                        **x != write
                            && !x.tomb
                            && !saw.contains(x)
                            && !self
                                .history
                                .supersedes
                                .iter()
                                .any(|(y, s)| y != *x && s.contains(x))
                    };
                    if let Some(extra) = covered.iter().find(unseen_live) {
                        let show = |s: &BTreeSet<WriteId>| {
                            s.iter()
                                .map(|w| w.to_string())
                                .collect::<Vec<_>>()
                                .join(" ")
                        };
                        let history: Vec<String> = self
                            .history
                            .supersedes
                            .iter()
                            .filter(|(w, _)| w.key == write.key)
                            .map(|(w, s)| format!("{w} over {{{}}}", show(s)))
                            .collect();
                        return Err(self.violation(step, format!("the context returned for {write} (siblings {siblings}) covers {extra}, which its writer had not seen; it covers {{{}}}, the writer saw {{{}}}; writes of the key: {}", show(&covered), show(&saw), history.join("; "))));
                    }
                    if siblings == 1 && !covered.contains(&write) {
                        return Err(self.violation(step, format!("the context returned for {write}, the key's only value, does not cover it")));
                    }
                    self.clients[c].context.insert(write.key, context);
                }
                _ => {}
            }
        }
        self.check_state(step)
    }

    /// On how many nodes `write` (or a successor of it) is durable, as data or as a hint.
    fn durable_copies(&self, write: WriteId) -> usize {
        let Some(dot) = self.dots.dot_of(write) else {
            return 0;
        };
        let key = key_bytes(write.key);
        let skey = shoal::storage_key(self.h.ring().partition_of(&key), &key);
        self.h
            .nodes
            .values()
            .filter(|n| {
                let data = n
                    .store
                    .all()
                    .into_iter()
                    .any(|(k, c)| k == skey && c.join().covers(dot));
                let hint = n
                    .store
                    .all_hints()
                    .into_iter()
                    .any(|((_, k), c)| k == skey && c.join().covers(dot));
                data || hint
            })
            .count()
    }

    /// No two of `values` where one was written with a context covering the other.
    fn check_concurrent(
        &self,
        step: usize,
        values: &[WriteId],
        what: &str,
    ) -> Result<(), Violation> {
        for a in values {
            for b in values {
                if a != b
                    && self
                        .history
                        .supersedes
                        .get(b)
                        .is_some_and(|s| s.contains(a))
                {
                    return Err(self.violation(
                        step,
                        format!("{what}: {a} and {b} are siblings but {b} was written over {a}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The invariants over every copy in the system.
    fn check_state(&mut self, step: usize) -> Result<(), Violation> {
        self.h.expire();
        let mut copies: Vec<(String, Clock)> = Vec::new();
        let mut durable: Vec<((NodeId, Vec<u8>), Clock)> = Vec::new();
        for (id, node) in &self.h.nodes {
            for (skey, clock) in node.store.all() {
                durable.push(((*id, skey), clock.clone()));
                copies.push((format!("{id} store"), clock));
            }
            for ((owner, _), clock) in node.store.all_hints() {
                copies.push((format!("{id} hint for {owner}"), clock));
            }
            for (_, w) in &node.pending {
                if let Write::Clock { clock, .. } | Write::Hint { clock, .. } = w {
                    copies.push((format!("{id} unsynced"), clock.clone()));
                }
            }
        }
        for m in &self.h.network {
            if let Some(clock) = carried(&m.msg) {
                copies.push((
                    format!("{} → {} {}", m.from, m.to, kind(&m.msg)),
                    clock.clone(),
                ));
            }
        }
        // A history-only record that disappeared was forgotten: what it covered is retired.
        let stored: BTreeSet<&(NodeId, Vec<u8>)> = durable.iter().map(|(at, _)| at).collect();
        let forgotten: Vec<(NodeId, Vec<u8>)> = self
            .last
            .iter()
            .filter(|(at, abs)| abs.live.is_empty() && !stored.contains(at))
            .map(|(at, _)| at.clone())
            .collect();
        for at in forgotten {
            if let Some(abs) = self.last.remove(&at) {
                self.history.retired.extend(abs.covered);
                self.report.forgotten += 1;
            }
        }
        let mut present: BTreeSet<WriteId> = BTreeSet::new();
        let mut histories: BTreeSet<WriteId> = BTreeSet::new();
        for (where_, clock) in &copies {
            let abs = self
                .dots
                .abstract_clock(clock)
                .map_err(|e| self.violation(step, format!("{where_}: {e}")))?;
            let live: Vec<WriteId> = abs.live.iter().copied().collect();
            self.check_concurrent(step, &live, where_)?;
            if let Some(back) = live.iter().find(|w| self.history.retired.contains(w)) {
                return Err(self.violation(
                    step,
                    format!(
                        "{back} came back in {where_} after a history covering it was forgotten"
                    ),
                ));
            }
            present.extend(abs.live);
            histories.extend(abs.covered);
        }
        // A present value, or a delete whose history remains, supersedes what its writer saw.
        let superseding = present
            .iter()
            .chain(histories.iter().filter(|w| w.tomb))
            .flat_map(|x| self.history.supersedes.get(x).into_iter().flatten())
            .copied()
            .collect::<BTreeSet<WriteId>>();
        for w in &self.history.acked {
            let kept = present.contains(w)
                || (w.tomb && histories.contains(w))
                || superseding.contains(w)
                || self.history.retired.contains(w);
            if !kept {
                return Err(self.violation(step, format!("acknowledged write {w} is lost: no copy holds it and no present write superseded it")));
            }
        }
        // Nothing a replica dropped comes back to it.
        for (at, clock) in durable {
            let now = self.dots.abstract_clock(&clock).unwrap_or_default();
            if let Some(before) = self.last.get(&at) {
                let dropped: Vec<WriteId> = before.live.difference(&now.live).copied().collect();
                self.history
                    .gone
                    .entry(at.clone())
                    .or_default()
                    .extend(dropped);
            }
            if let Some(gone) = self.history.gone.get(&at) {
                if let Some(back) = now.live.iter().find(|w| gone.contains(w)) {
                    return Err(self.violation(
                        step,
                        format!(
                            "{back} came back to node {} after it was dropped there",
                            at.0
                        ),
                    ));
                }
            }
            self.last.insert(at, now);
        }
        Ok(())
    }

    /// The faults stop: every node up, every message delivered, every write durable, time
    /// moving; then every primary of every key must hold the same clock and no hint be left.
    pub(super) fn settle(&mut self, ids: &[NodeId]) -> Result<(), Violation> {
        for id in ids {
            if !self.h.is_up(*id) {
                self.h.start(*id);
                self.log(format!("restart {id} (faults over)"));
            }
        }
        let step = self.cfg.max_steps;
        for round in 0..400 {
            for _ in 0..20 {
                if self.h.network.is_empty() {
                    break;
                }
                while !self.h.network.is_empty() {
                    let m = self.h.network[0].clone();
                    self.note_forward_delivery(&m.msg, m.from);
                    self.h.deliver(0, false);
                    self.learn_step();
                }
                for id in ids {
                    self.h.complete_all(*id);
                }
                self.learn_step();
            }
            self.observe(step)?;
            if round % 10 == 9 && self.converged().is_ok() {
                return Ok(());
            }
            let global = self.global_now();
            for id in ids {
                let own = self.h.nodes.get(id).map_or(Duration::ZERO, |n| n.now);
                let from = if self.cfg.forget.is_some() {
                    global
                } else {
                    own
                };
                self.h.advance_to(*id, from + Duration::from_millis(200));
            }
            self.learn_step();
        }
        self.converged().map_err(|e| {
            self.violation(
                step,
                format!("replicas did not converge once the faults stopped: {e}"),
            )
        })
    }

    /// Whether every primary of every key holds the same clock and no hint is left; when
    /// forgetting, also that every deleted key's history has been forgotten.
    fn converged(&self) -> Result<(), String> {
        for (id, node) in &self.h.nodes {
            if let Some(((owner, skey), _)) = node.store.all_hints().into_iter().next() {
                return Err(format!("{id} still holds a hint for {owner} ({skey:?})"));
            }
            if self.cfg.forget.is_some() {
                if let Some((skey, _)) = node.store.all().into_iter().find(|(_, c)| c.size() == 0) {
                    return Err(format!(
                        "{id} still holds the history of a deleted key ({skey:?})"
                    ));
                }
            }
        }
        for k in 0..self.cfg.keys {
            let key = key_bytes(k);
            let partition = self.h.ring().partition_of(&key);
            let skey = shoal::storage_key(partition, &key);
            let primaries = self.h.ring().preference_list(partition, self.cfg.n);
            let views: Vec<(NodeId, Abstract)> = primaries
                .iter()
                .map(|p| {
                    let clock = self
                        .h
                        .nodes
                        .get(p)
                        .and_then(|n| n.store.all().into_iter().find(|(s, _)| *s == skey))
                        .map(|(_, c)| c);
                    let abs = clock
                        .map(|c| self.dots.abstract_clock(&c).unwrap_or_default())
                        .unwrap_or_default();
                    // A history without values and no record read the same, and neither
                    // can bring anything back: forgetting may not have reached every primary.
                    let abs = if self.cfg.forget.is_some() && abs.live.is_empty() {
                        Abstract::default()
                    } else {
                        abs
                    };
                    (*p, abs)
                })
                .collect();
            if let Some(w) = views.windows(2).find(|w| w[0].1 != w[1].1) {
                return Err(format!(
                    "key{k}: {} holds {}, {} holds {}",
                    w[0].0, w[0].1, w[1].0, w[1].1
                ));
            }
        }
        Ok(())
    }
}
