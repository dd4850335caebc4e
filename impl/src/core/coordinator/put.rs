//! A quorum put: update the coordinator's clock, persist it, then replicate it; answer once
//! `W` copies are durable.
//!
//! The new clock carries a dot of this node's, so it is replicated only once the
//! coordinator's own copy is durable (see [`crate::core::actors`]). Copies go to the targets
//! sloppy quorum chose ([`super::targets`]); the coordinator counts its own copy once durable,
//! and every other target's only once that target acknowledged its durable copy; an
//! acknowledgement from a node that is not a target, for another key, or a second one from the
//! same node, counts for nothing. `pw` counts only copies on primaries. When the deadline comes
//! before `W` with sloppy quorum on, the targets that stayed silent are suspected and fallbacks
//! stand in for them once, with a fresh deadline; a second deadline fails the put. A delete
//! whose result holds only tombstones waits on, after answering, until every primary
//! acknowledged it, and then has its tombstones reaped (see [`crate::core::reap`]).

use super::targets::{self, Target};
use super::{answer, Coordinator, Kind, Waiter};
use crate::core::local_store::{Holds, Then};
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
    pub(super) pw: usize,
}

/// A put waiting for `required` durable copies (`required_primaries` of them on primaries).
#[derive(Clone, Debug)]
pub(super) struct PutState {
    key: Bytes,
    /// The new clock.
    clock: Clock,
    /// Whether the clock was sent to the other targets (once the own copy was durable).
    sent: bool,
    /// The key's primaries.
    primaries: Vec<NodeId>,
    /// Where copies go, this node included.
    targets: Vec<Target>,
    acked: Vec<NodeId>,
    required: usize,
    required_primaries: usize,
    /// Whether fallbacks already stood in for silent targets (at the start or a deadline).
    hinted: bool,
    /// Context to hand back: covers the new value and what the client had seen.
    reply_context: VersionVector,
    /// Values the key holds after this write.
    siblings: usize,
    /// Whether the client has been answered (a delete waits on for every primary).
    replied: bool,
    /// For a write that leaves only tombstones: to be reaped once every primary has it.
    reap: bool,
}

impl PutState {
    /// `(required, answered)` if the client has not been answered yet.
    pub(super) fn unanswered(&self) -> Option<(usize, usize)> {
        (!self.replied).then_some((self.required, self.acked.len()))
    }

    /// The targets that have not acknowledged.
    pub(super) fn silent(&self) -> Vec<NodeId> {
        self.targets
            .iter()
            .map(|t| t.node)
            .filter(|n| !self.acked.contains(n))
            .collect()
    }

    fn primaries_acked(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.hint.is_none() && self.acked.contains(&t.node))
            .count()
    }

    /// The put reached its deadline unanswered: with sloppy quorum, stand fallbacks in for the
    /// silent targets once and keep waiting (`true`); otherwise give up (`false`).
    pub(super) fn stand_in<S: Store>(&mut self, env: &mut Env<S>, req: RequestId) -> bool {
        if self.replied || self.hinted || !env.config.sloppy_quorum || !self.sent {
            return false;
        }
        self.hinted = true;
        let silent: Vec<Target> = self
            .targets
            .iter()
            .copied()
            .filter(|t| !self.acked.contains(&t.node) && t.node != env.id)
            .collect();
        let mut added = false;
        for t in silent {
            let owner = t.hint.unwrap_or(t.node);
            let Some(f) = targets::stand_in(env, &self.key, &self.primaries, &self.targets) else {
                break;
            };
            self.targets.push(Target {
                node: f,
                hint: Some(owner),
            });
            added = true;
            if f == env.id {
                // Only a coordinator that is itself a fallback stands in for itself, and it
                // already holds its copy: nothing to send.
                continue;
            }
            let msg = PeerMessage::Replicate {
                req,
                key: self.key.clone(),
                clock: self.clock.clone(),
                hint: Some(owner),
            };
            env.out.send(f, msg);
        }
        added
    }
}

impl Coordinator {
    /// Applies the write to the local clock (or, for a coordinator standing in for
    /// unreachable primaries, to nothing, under a fresh epoch), persists the coordinator's
    /// copy, and replicates once it is durable.
    pub(super) fn start_put<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        waiter: Waiter,
        write: Write,
        primaries: Vec<NodeId>,
        targets: Vec<Target>,
    ) {
        let Write {
            key,
            value,
            context,
            w,
            pw,
        } = write;
        let me = env.id;
        let own = targets.iter().find(|t| t.node == me).copied();
        let skey = env.storage_key(&key);
        let local = match own.and_then(|t| t.hint) {
            // A fallback has no history of the key: a fresh epoch makes the dot new.
            Some(_) => None,
            None => match env.store.load(&skey) {
                Ok(local) => local,
                // An unreadable record is a lost history: start the key afresh under a new
                // epoch (the write replaces the record; the other replicas still hold what it
                // held).
                Err(StoreError::Corrupt(_)) => None,
                Err(StoreError::Engine(_)) => {
                    let reply = ClientReply::Unavailable {
                        required: w,
                        answered: 0,
                    };
                    return answer(env, waiter, reply);
                }
            },
        };
        // The context may only name versions this replica holds: a context that names others
        // (this replica is behind, or the context was altered to name versions no node ever
        // made) would make the new clock's history cover dots that may be issued later, and
        // replicas would take those later writes for old ones. Refuse it, and catch up.
        let known = match own.and_then(|t| t.hint) {
            Some(_) => env.store.hints_for(&skey).ok().flatten(),
            None => local.clone(),
        };
        if !known
            .map(|k| k.join())
            .unwrap_or_default()
            .descends(&context)
        {
            let reason = "the context names versions this replica has not received (it is behind, or the context was altered); read the key again and retry".to_string();
            answer(env, waiter, ClientReply::Stale(reason));
            self.start_catch_up(env, now, key);
            return;
        }
        let actor = self.actors.actor_for(local.as_ref(), env.store, env.out);
        let clock = local.unwrap_or_default().update(&context, value, actor);
        let (values, bytes) = (clock.size(), crate::core::clock_size_estimate(&clock));
        if values > MAX_SIBLINGS || bytes > MAX_CLOCK_BYTES {
            let reason = format!(
                "the key would hold {values} values (limit {MAX_SIBLINGS}) of about {bytes} bytes (limit {MAX_CLOCK_BYTES}); read it and write back a merged value with its context"
            );
            return answer(env, waiter, ClientReply::TooLarge(reason));
        }
        if let Err(e) = clock.check() {
            let reason = format!("the write would make a clock no node can read back ({e}); read the key and write back a merged value with its context");
            return answer(env, waiter, ClientReply::TooLarge(reason));
        }
        let reply_context = reply_context(&clock, &context, actor);
        let tombstones_only = Holds::of(Some(&clock)) == Holds::Tombstones;
        // A put that chose fallbacks at its start has gone sloppy already: like the model's,
        // it does not stand fallbacks in again, and its deadline fails it.
        let started_sloppy = targets.iter().any(|t| t.hint.is_some());
        let state = PutState {
            key: key.clone(),
            clock: clock.clone(),
            sent: false,
            primaries,
            targets,
            acked: Vec::new(),
            required: w,
            required_primaries: pw,
            hinted: started_sloppy,
            reply_context,
            siblings: clock.size(),
            replied: false,
            reap: env.config.reap_tombstones && tombstones_only,
        };
        let req = self.register(env, now, waiter, Kind::Put(state));
        let then = Then::CountOwnCopy(req);
        match own.and_then(|t| t.hint) {
            Some(owner) => env.store.persist_hint(env.out, owner, skey, clock, then),
            None => env.store.persist(env.out, skey, clock, then),
        }
    }

    /// The coordinator's own copy is durable: it counts towards `W`, and the new clock may now
    /// leave the node.
    pub(crate) fn own_copy_durable<S: Store>(&mut self, env: &mut Env<S>, req: RequestId) {
        let me = env.id;
        let Some(Kind::Put(p)) = self.requests.get_mut(&req).map(|r| &mut r.kind) else {
            return;
        };
        if !p.sent {
            p.sent = true;
            for t in p.targets.iter().filter(|t| t.node != me) {
                let msg = PeerMessage::Replicate {
                    req,
                    key: p.key.clone(),
                    clock: p.clock.clone(),
                    hint: t.hint,
                };
                env.out.send(t.node, msg);
            }
        }
        if !p.acked.contains(&me) {
            p.acked.push(me);
        }
        self.check_put(env, req);
    }

    /// A target reports its copy durable.
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
        let target = p.targets.iter().any(|t| t.node == from);
        if p.key == key && target && !p.acked.contains(&from) {
            p.acked.push(from);
            env.stats.replica_responses += 1;
        }
        self.check_put(env, req);
    }

    /// Answers the client once `W` copies (`pw` of them on primaries) are durable — or
    /// "unavailable" once every target has answered and that is still too few; a delete that
    /// left only tombstones waits on until every primary holds it, then has them reaped.
    fn check_put<S: Store>(&mut self, env: &mut Env<S>, req: RequestId) {
        let Some(request) = self.requests.get_mut(&req) else {
            return;
        };
        let Kind::Put(p) = &mut request.kind else {
            return;
        };
        let enough = p.acked.len() >= p.required && p.primaries_acked() >= p.required_primaries;
        let all_targets = p.targets.iter().all(|t| p.acked.contains(&t.node));
        let reply = if p.replied {
            None
        } else if enough {
            Some(ClientReply::Stored {
                context: p.reply_context.clone(),
                siblings: p.siblings,
            })
        } else if all_targets {
            // Every target answered and it is not enough: nothing more can come.
            Some(ClientReply::Unavailable {
                required: p.required,
                answered: p.acked.len(),
            })
        } else {
            None
        };
        if reply.is_some() {
            p.replied = true;
        }
        let reap_now = p.reap && p.primaries_acked() == p.primaries.len();
        let complete = all_targets || (p.replied && !p.reap) || reap_now;
        let reap = reap_now.then(|| (p.primaries.clone(), p.key.clone(), p.clock.clone()));
        let waiter = request.waiter.clone();
        if let Some(reply) = reply {
            answer(env, waiter, reply);
        }
        if complete {
            self.finish(req);
        }
        if let Some((primaries, key, clock)) = reap {
            reap::send_reaps(env, &primaries, key, clock);
        }
    }
}

/// The context handed back after a put. It must cover the new value (so the client's next
/// write replaces it) but nothing the client has not seen: when the new clock also holds
/// siblings, a context covering our dot could cover an unseen sibling of the same actor, and
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
