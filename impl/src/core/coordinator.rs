//! The coordinator: quorum puts and gets (Dynamo §4.5).
//!
//! A put is coordinated by a node in the key's preference list (any other node forwards it
//! there): the coordinator applies the client's write to its own clock (`DvvSet::update`),
//! persists it, replicates the new clock to the other `N − 1` replicas, and acknowledges once
//! `W` replicas — itself included — report the write durable. A get asks all `N` replicas and
//! answers with the merge (`sync`) of the first `R` answers. With `R + W > N` every read
//! quorum intersects every write quorum, so a get that starts after a put was acknowledged
//! sees that put (absent failures and sloppy writes).

use super::{AfterPersist, Core, Store, Time, Waiter};
use crate::dvvset::VersionVector;
use crate::node_id::NodeId;
use crate::protocol::{ClientOp, ClientReply, Clock, PeerMessage, RequestId};
use crate::value::Value;
use bytes::Bytes;
use std::collections::BTreeMap;

/// A request coordinated (or forwarded) by this node.
#[derive(Clone, Debug)]
pub(super) struct Request {
    pub(super) waiter: Waiter,
    pub(super) deadline: Time,
    pub(super) kind: Kind,
}

/// What the request is waiting for.
#[derive(Clone, Debug)]
pub(super) enum Kind {
    /// A put: waiting for `required` durable copies among `replicas`.
    Put {
        replicas: Vec<NodeId>,
        acked: Vec<NodeId>,
        required: usize,
        /// Context to hand back: covers the new value and what the client had seen.
        reply_context: VersionVector,
        /// Values the key holds after this write.
        siblings: usize,
        /// Whether the client has been answered (a delete waits on for every replica).
        replied: bool,
        /// For a write that leaves only tombstones: the key and its clock, to be reaped once
        /// every replica has acknowledged it.
        reap: Option<(Bytes, Clock)>,
    },
    /// A get: collecting answers from `replicas`; `replied` once `required` answered.
    Get {
        key: Bytes,
        replicas: Vec<NodeId>,
        answers: BTreeMap<NodeId, Option<Clock>>,
        required: usize,
        replied: bool,
    },
    /// A write handed to a node in the preference list.
    Forward { required: usize },
}

impl<S: Store> Core<S> {
    /// Starts coordinating `op` for `waiter`.
    pub(super) fn coordinate(&mut self, now: Time, waiter: Waiter, op: ClientOp) {
        let n = self.config.n;
        match op {
            ClientOp::Get { key, r } => {
                let r = r.unwrap_or(self.config.r);
                if r == 0 || r > n {
                    return self.answer(
                        waiter,
                        ClientReply::Invalid(format!("r must be between 1 and N = {n}")),
                    );
                }
                self.start_get(now, waiter, key, r);
            }
            ClientOp::Put {
                key,
                value,
                context,
                w,
            } => {
                let w = w.unwrap_or(self.config.w);
                if w == 0 || w > n {
                    return self.answer(
                        waiter,
                        ClientReply::Invalid(format!("w must be between 1 and N = {n}")),
                    );
                }
                if self.draining || self.persists.len() >= super::MAX_PENDING_PERSISTS {
                    let reply = ClientReply::Unavailable {
                        required: w,
                        answered: 0,
                    };
                    return self.answer(waiter, reply);
                }
                let replicas = self.ring.preference_list(self.ring.partition_of(&key), n);
                if replicas.contains(&self.id) {
                    self.start_put(now, waiter, key, value, context, w, replicas);
                } else if let (Waiter::Client(_), Some(&target)) = (&waiter, replicas.first()) {
                    // Only a replica may give the write its dot: hand it to the first one.
                    self.stats.forwarded += 1;
                    let req = self.new_request(now, waiter, Kind::Forward { required: w });
                    let op = ClientOp::Put {
                        key,
                        value,
                        context,
                        w: Some(w),
                    };
                    self.send(target, PeerMessage::Forward { req, op });
                } else {
                    // A forwarded write to a node that is not a replica: the rings disagree.
                    // Refuse rather than forward again, so a request can never loop.
                    self.answer(
                        waiter,
                        ClientReply::Invalid("this node is not a replica of the key".into()),
                    );
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_put(
        &mut self,
        now: Time,
        waiter: Waiter,
        key: Bytes,
        value: Value,
        context: VersionVector,
        w: usize,
        replicas: Vec<NodeId>,
    ) {
        let skey = self.storage_key(&key);
        let local = match self.load(&skey) {
            Ok(c) => c.unwrap_or_default(),
            Err(_) => {
                return self.answer(
                    waiter,
                    ClientReply::Unavailable {
                        required: w,
                        answered: 0,
                    },
                )
            }
        };
        let clock = local.update(&context, value, self.actor);
        let (values, bytes) = (clock.size(), super::clock_size_estimate(&clock));
        if values > super::MAX_SIBLINGS || bytes > super::MAX_CLOCK_BYTES {
            return self.answer(
                waiter,
                ClientReply::TooLarge(format!(
                    "the key would hold {values} values (limit {}) of about {bytes} bytes (limit {}); read it and write back a merged value with its context",
                    super::MAX_SIBLINGS,
                    super::MAX_CLOCK_BYTES
                )),
            );
        }
        let reply_context = reply_context(&clock, &context, self.actor);
        let me = self.id;
        let sends: Vec<NodeId> = replicas.iter().copied().filter(|n| *n != me).collect();
        let tombstones_only = clock.size() > 0 && clock.values().iter().all(|v| v.is_tombstone());
        let reap =
            (self.config.reap_tombstones && tombstones_only).then(|| (key.clone(), clock.clone()));
        let req = self.new_request(
            now,
            waiter,
            Kind::Put {
                replicas,
                acked: Vec::new(),
                required: w,
                reply_context,
                siblings: clock.size(),
                replied: false,
                reap,
            },
        );
        // Replicate while our own copy is being synced: the actor id's epoch guarantees the
        // new dot is never reissued even if this node crashes before its copy is durable.
        for to in sends {
            self.send(
                to,
                PeerMessage::Replicate {
                    req,
                    key: key.clone(),
                    clock: clock.clone(),
                },
            );
        }
        self.persist(skey, clock, AfterPersist::CoordinatorPut(req));
    }

    /// The coordinator's own copy is durable: it counts towards `W`.
    pub(super) fn on_local_put_durable(&mut self, _now: Time, req: RequestId) {
        let me = self.id;
        if let Some(Kind::Put { acked, .. }) = self.requests.get_mut(&req).map(|r| &mut r.kind) {
            if !acked.contains(&me) {
                acked.push(me);
            }
            self.check_put(req);
        }
    }

    pub(super) fn on_replicate_ack(&mut self, from: NodeId, req: RequestId) {
        let Some(Kind::Put {
            replicas, acked, ..
        }) = self.requests.get_mut(&req).map(|r| &mut r.kind)
        else {
            return;
        };
        if replicas.contains(&from) && !acked.contains(&from) {
            acked.push(from);
            self.stats.replica_responses += 1;
        }
        self.check_put(req);
    }

    /// Answers the client once `W` copies are durable; a delete that left only tombstones
    /// waits on until every replica holds it, then has them reaped (see [`super::reap`]).
    fn check_put(&mut self, req: RequestId) {
        let Some(request) = self.requests.get_mut(&req) else {
            return;
        };
        let Kind::Put {
            replicas,
            acked,
            required,
            reply_context,
            siblings,
            replied,
            reap,
        } = &mut request.kind
        else {
            return;
        };
        let answer = (!*replied && acked.len() >= *required).then(|| ClientReply::Stored {
            context: reply_context.clone(),
            siblings: *siblings,
        });
        if answer.is_some() {
            *replied = true;
        }
        let everyone = acked.len() == replicas.len();
        let complete = everyone || (*replied && reap.is_none());
        let reap_now = if everyone { reap.take() } else { None };
        let targets = replicas.clone();
        let waiter = request.waiter.clone();
        if let Some(reply) = answer {
            self.answer(waiter, reply);
        }
        if complete {
            self.finish(req);
        }
        if let Some((key, clock)) = reap_now {
            self.send_reaps(&targets, key, clock);
        }
    }

    fn start_get(&mut self, now: Time, waiter: Waiter, key: Bytes, r: usize) {
        let replicas = self
            .ring
            .preference_list(self.ring.partition_of(&key), self.config.n);
        let me = self.id;
        let req = self.new_request(
            now,
            waiter,
            Kind::Get {
                key: key.clone(),
                replicas: replicas.clone(),
                answers: BTreeMap::new(),
                required: r,
                replied: false,
            },
        );
        for node in &replicas {
            if *node != me {
                self.send(
                    *node,
                    PeerMessage::Read {
                        req,
                        key: key.clone(),
                    },
                );
            }
        }
        if replicas.contains(&me) {
            let skey = self.storage_key(&key);
            if let Ok(local) = self.load(&skey) {
                self.record_answer(now, req, me, local);
            }
        }
    }

    pub(super) fn on_read_reply(
        &mut self,
        now: Time,
        from: NodeId,
        req: RequestId,
        clock: Option<Clock>,
    ) {
        self.stats.replica_responses += 1;
        self.record_answer(now, req, from, clock);
    }

    fn record_answer(&mut self, _now: Time, req: RequestId, from: NodeId, clock: Option<Clock>) {
        let Some(request) = self.requests.get_mut(&req) else {
            return;
        };
        let Kind::Get {
            replicas,
            answers,
            required,
            replied,
            ..
        } = &mut request.kind
        else {
            return;
        };
        if !replicas.contains(&from) || answers.contains_key(&from) {
            return;
        }
        answers.insert(from, clock);
        let reply = if !*replied && answers.len() >= *required {
            *replied = true;
            Some(found(answers.values()))
        } else {
            None
        };
        let complete = answers.len() == replicas.len();
        let waiter = request.waiter.clone();
        if let Some(reply) = reply {
            self.answer(waiter, reply);
        }
        if complete {
            if let Some(request) = self.finish(req) {
                self.repair_after_get(request);
            }
        }
    }

    pub(super) fn on_forward_reply(&mut self, req: RequestId, reply: ClientReply) {
        if matches!(
            self.requests.get(&req).map(|r| &r.kind),
            Some(Kind::Forward { .. })
        ) {
            if let Some(request) = self.finish(req) {
                self.answer(request.waiter, reply);
            }
        }
    }

    /// A request's deadline passed: answer "unavailable" if it has not answered yet.
    pub(super) fn on_deadline(&mut self, req: RequestId) {
        let Some(request) = self.requests.remove(&req) else {
            return;
        };
        let unavailable = match &request.kind {
            Kind::Put {
                acked,
                required,
                replied,
                ..
            } => (!*replied).then_some((*required, acked.len())),
            Kind::Get {
                answers,
                required,
                replied,
                ..
            } => (!*replied).then_some((*required, answers.len())),
            Kind::Forward { required } => Some((*required, 0)),
        };
        if let Some((required, answered)) = unavailable {
            self.stats.timeouts += 1;
            self.answer(
                request.waiter.clone(),
                ClientReply::Unavailable { required, answered },
            );
        }
        self.repair_after_get(request);
    }
}

/// The merged answer of a get: live values of the merged clock and its history.
fn found<'a>(answers: impl Iterator<Item = &'a Option<Clock>>) -> ClientReply {
    let merged = Clock::sync_all(answers.flatten());
    ClientReply::Found {
        values: merged
            .values()
            .into_iter()
            .filter_map(|v| v.data().cloned())
            .collect(),
        context: merged.join(),
    }
}

/// The context handed back after a put. It must cover the new value (so the client's next
/// write replaces it) but nothing the client has not seen: when the new clock also holds
/// siblings, a context covering our dot could cover an unseen sibling of the same node, and
/// then the client's own context is returned instead (its next write becomes a sibling of
/// this one rather than silently replacing a value it never read).
fn reply_context(clock: &Clock, context: &VersionVector, me: NodeId) -> VersionVector {
    if clock.size() == 1 {
        return clock.join();
    }
    let counter = clock.join().get(me);
    let candidate =
        VersionVector::from_pairs(context.pairs().iter().copied().chain([(me, counter)]));
    let covers_unseen = clock.dotted_values().into_iter().any(|(dot, _)| {
        dot.is_some_and(|d| !(d.node == me && d.counter == counter) && candidate.covers(d))
    });
    if covers_unseen {
        context.clone()
    } else {
        candidate
    }
}
