//! A quorum put: update the coordinator's clock, persist it, then replicate it; answer once
//! `W` replicas hold it durably.
//!
//! The new clock carries a dot of this node's, so it is replicated only once the
//! coordinator's own copy is durable (see [`crate::core::actors`]). The coordinator counts its
//! own copy then, and every other replica's only once that replica acknowledged its durable
//! copy; an acknowledgement from a node outside the preference list, for another key, or a
//! second one from the same node, counts for nothing. A delete whose result holds only tombstones waits on, after answering, until every
//! replica acknowledged it, and then has its tombstones reaped (see [`crate::core::reap`]).

use super::{answer, Coordinator, Kind, Waiter};
use crate::core::local_store::Then;
use crate::core::{reap, Env, Store, StoreError, Time, MAX_CLOCK_BYTES, MAX_SIBLINGS};
use crate::dvvset::VersionVector;
use crate::ids::{ActorId, NodeId};
use crate::protocol::{ClientReply, Clock, PeerMessage, RequestId};
use crate::value::Value;
use bytes::Bytes;

/// A client's write, validated.
pub(super) struct Write {
    pub(super) key: Bytes,
    pub(super) value: Value,
    pub(super) context: VersionVector,
    pub(super) w: usize,
}

/// A put waiting for `required` durable copies among `replicas`.
#[derive(Clone, Debug)]
pub(super) struct PutState {
    key: Bytes,
    /// The new clock, replicated once the coordinator's copy is durable (then dropped).
    clock: Option<Clock>,
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
}

impl PutState {
    /// `(required, answered)` if the client has not been answered yet.
    pub(super) fn unanswered(&self) -> Option<(usize, usize)> {
        (!self.replied).then_some((self.required, self.acked.len()))
    }

    /// The replicas that have not acknowledged.
    pub(super) fn silent(&self) -> Vec<NodeId> {
        let acked = &self.acked;
        self.replicas
            .iter()
            .copied()
            .filter(|r| !acked.contains(r))
            .collect()
    }
}

impl Coordinator {
    /// Applies the write to the local clock, replicates it and persists the coordinator's copy.
    pub(super) fn start_put<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        waiter: Waiter,
        write: Write,
        replicas: Vec<NodeId>,
    ) {
        let Write {
            key,
            value,
            context,
            w,
        } = write;
        let skey = env.storage_key(&key);
        let local = match env.store.load(&skey) {
            Ok(local) => local,
            // An unreadable record is a lost history: start the key afresh under a new epoch
            // (the write replaces the record; the other replicas still hold what it held).
            Err(StoreError::Corrupt(_)) => None,
            Err(StoreError::Engine(_)) => {
                let reply = ClientReply::Unavailable {
                    required: w,
                    answered: 0,
                };
                return answer(env, waiter, reply);
            }
        };
        let actor = self.actors.actor_for(local.as_ref(), env.store, env.out);
        let clock = local.unwrap_or_default().update(&context, value, actor);
        let (values, bytes) = (clock.size(), crate::core::clock_size_estimate(&clock));
        if values > MAX_SIBLINGS || bytes > MAX_CLOCK_BYTES {
            let reason = format!(
                "the key would hold {values} values (limit {MAX_SIBLINGS}) of about {bytes} bytes (limit {MAX_CLOCK_BYTES}); read it and write back a merged value with its context"
            );
            return answer(env, waiter, ClientReply::TooLarge(reason));
        }
        let reply_context = reply_context(&clock, &context, actor);
        let tombstones_only = clock.size() > 0 && clock.values().iter().all(|v| v.is_tombstone());
        let reap =
            (env.config.reap_tombstones && tombstones_only).then(|| (key.clone(), clock.clone()));
        let state = PutState {
            key,
            clock: Some(clock.clone()),
            replicas,
            acked: Vec::new(),
            required: w,
            reply_context,
            siblings: clock.size(),
            replied: false,
            reap,
        };
        let req = self.register(env, now, waiter, Kind::Put(state));
        env.store
            .persist(env.out, skey, clock, Then::CountOwnCopy(req));
    }

    /// The coordinator's own copy is durable: it counts towards `W`, and the new clock may now
    /// leave the node.
    pub(crate) fn own_copy_durable<S: Store>(&mut self, env: &mut Env<S>, req: RequestId) {
        let me = env.id;
        let Some(Kind::Put(p)) = self.requests.get_mut(&req).map(|r| &mut r.kind) else {
            return;
        };
        if let Some(clock) = p.clock.take() {
            for to in p.replicas.iter().filter(|n| **n != me) {
                let msg = PeerMessage::Replicate {
                    req,
                    key: p.key.clone(),
                    clock: clock.clone(),
                };
                env.out.send(*to, msg);
            }
        }
        if !p.acked.contains(&me) {
            p.acked.push(me);
        }
        self.check_put(env, req);
    }

    /// A replica reports its copy durable.
    pub(crate) fn on_replicate_ack<S: Store>(
        &mut self,
        env: &mut Env<S>,
        from: NodeId,
        req: RequestId,
        key: &[u8],
    ) {
        let Some(Kind::Put(p)) = self.requests.get_mut(&req).map(|r| &mut r.kind) else {
            return;
        };
        if p.key == key && p.replicas.contains(&from) && !p.acked.contains(&from) {
            p.acked.push(from);
            env.stats.replica_responses += 1;
        }
        self.check_put(env, req);
    }

    /// Answers the client once `W` copies are durable; a delete that left only tombstones
    /// waits on until every replica holds it, then has them reaped.
    fn check_put<S: Store>(&mut self, env: &mut Env<S>, req: RequestId) {
        let Some(request) = self.requests.get_mut(&req) else {
            return;
        };
        let Kind::Put(p) = &mut request.kind else {
            return;
        };
        let reply = (!p.replied && p.acked.len() >= p.required).then(|| ClientReply::Stored {
            context: p.reply_context.clone(),
            siblings: p.siblings,
        });
        if reply.is_some() {
            p.replied = true;
        }
        let everyone = p.acked.len() == p.replicas.len();
        let complete = everyone || (p.replied && p.reap.is_none());
        let reap_now = if everyone { p.reap.take() } else { None };
        let targets = p.replicas.clone();
        let waiter = request.waiter.clone();
        if let Some(reply) = reply {
            answer(env, waiter, reply);
        }
        if complete {
            self.finish(req);
        }
        if let Some((key, clock)) = reap_now {
            reap::send_reaps(env, &targets, key, clock);
        }
    }
}

/// The context handed back after a put. It must cover the new value (so the client's next
/// write replaces it) but nothing the client has not seen: when the new clock also holds
/// siblings, a context covering our dot could cover an unseen sibling of the same node, and
/// then the client's own context is returned instead (its next write becomes a sibling of
/// this one rather than silently replacing a value it never read).
fn reply_context(clock: &Clock, context: &VersionVector, me: ActorId) -> VersionVector {
    if clock.size() == 1 {
        return clock.join();
    }
    let counter = clock.join().get(me);
    let candidate =
        VersionVector::from_pairs(context.pairs().iter().copied().chain([(me, counter)]));
    let covers_unseen = clock.dotted_values().into_iter().any(|(dot, _)| {
        dot.is_some_and(|d| !(d.actor == me && d.counter == counter) && candidate.covers(d))
    });
    if covers_unseen {
        context.clone()
    } else {
        candidate
    }
}
