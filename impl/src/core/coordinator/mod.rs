//! The coordinator: quorum puts and gets (Dynamo §4.5), each a request with a deadline.
//!
//! A put is coordinated by a node in the key's preference list (any other node forwards it
//! there, [`forward`]): the coordinator applies the client's write to its own clock
//! (`DvvSet::update`), persists it, replicates the new clock to the other `N − 1` replicas,
//! and acknowledges once `W` replicas — itself included — report the write durable ([`put`]).
//! A get asks all `N` replicas and answers with the merge (`sync`) of the first `R` answers,
//! then waits for the rest (or the deadline) to repair stale replicas ([`get`]). With
//! `R + W > N` every read quorum intersects every write quorum, so a get that starts after a
//! put was acknowledged sees that put (absent failures and sloppy writes).
//!
//! The coordinator owns its requests, their deadlines and the request ids; replicas and read
//! repair are operations on the local store it calls into.

mod forward;
mod get;
mod put;
mod targets;

use super::actors::{Actors, Incarnation};
use super::{Env, Store, Time};
use crate::core::ClientId;
use crate::ids::NodeId;
use crate::protocol::{ClientOp, ClientReply, PeerMessage, RequestId};
use std::collections::{BTreeSet, HashMap};

/// Who waits for a coordinated request's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Waiter {
    /// A client of this node.
    Client(ClientId),
    /// A node that forwarded the request here.
    Forwarded {
        /// The forwarding node.
        from: NodeId,
        /// Its request.
        req: RequestId,
    },
    /// Anti-entropy's reaper: a read of every primary to see whether a delete can be reaped.
    Reaper,
    /// A read whose repair brings this replica up to date (after a context ahead of it).
    CatchUp,
}

/// A request coordinated (or forwarded) by this node.
#[derive(Clone, Debug)]
struct Request {
    waiter: Waiter,
    deadline: Time,
    kind: Kind,
}

/// What a request is waiting for.
#[derive(Clone, Debug)]
enum Kind {
    Put(put::PutState),
    Get(get::GetState),
    Forward(forward::ForwardState),
}

/// The requests this node coordinates.
pub(crate) struct Coordinator {
    /// The actors this node issues dots under.
    actors: Actors,
    /// While set, no new write is coordinated here (a clean shutdown is draining).
    draining: bool,
    requests: HashMap<RequestId, Request>,
    deadlines: BTreeSet<(Time, RequestId)>,
    next_request: u64,
    /// Forwarded writes accepted recently, by forwarder and its request, with when: a
    /// duplicate (a transport resend) is not executed twice.
    forwards_seen: HashMap<(NodeId, RequestId), Time>,
    /// The same, oldest first, for expiry.
    forwards_order: std::collections::VecDeque<(Time, NodeId, RequestId)>,
}

impl Coordinator {
    /// The coordinator of `incarnation`. Request ids carry the incarnation's boot number in
    /// their top 24 bits, so they are distinct across the node's last 16 million starts.
    pub(crate) fn new(incarnation: &Incarnation) -> Self {
        Coordinator {
            actors: Actors::new(incarnation),
            draining: false,
            requests: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_request: (incarnation.boot << 40) | 1,
            forwards_seen: HashMap::new(),
            forwards_order: std::collections::VecDeque::new(),
        }
    }

    /// The identity of this node's actors.
    pub(crate) fn identity(&self) -> u64 {
        self.actors.identity()
    }

    /// Stops (or resumes) coordinating writes.
    pub(crate) fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Starts coordinating `op` for `waiter`.
    pub(crate) fn start<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        waiter: Waiter,
        op: ClientOp,
    ) {
        let n = env.config.n;
        let quorum = |value: Option<usize>, default: usize, name: &str| {
            let q = value.unwrap_or(default);
            if q == 0 || q > n {
                Err(format!("{name} must be between 1 and N = {n}"))
            } else {
                Ok(q)
            }
        };
        let strict = |value: Option<usize>, q: usize, name: &str, of: &str| match value {
            Some(p) if p > q => Err(format!("{name} must be at most {of} = {q}")),
            other => Ok(other.unwrap_or(0)),
        };
        match op {
            ClientOp::Get { key, r, pr } => {
                let checked = quorum(r, env.config.r, "r").and_then(|r| {
                    let pr = strict(pr, r, "pr", "r")?;
                    Ok((r, pr))
                });
                match checked {
                    Ok(q) => self.start_get(env, now, waiter, key, q),
                    Err(reason) => answer(env, waiter, ClientReply::Invalid(reason)),
                }
            }
            ClientOp::Put {
                key,
                value,
                context,
                w,
                pw,
            } => {
                let checked = quorum(w, env.config.w, "w").and_then(|w| {
                    let pw = strict(pw, w, "pw", "w")?;
                    Ok((w, pw))
                });
                let (w, pw) = match checked {
                    Ok(q) => q,
                    Err(reason) => return answer(env, waiter, ClientReply::Invalid(reason)),
                };
                if self.draining
                    || env.store.pending() >= super::MAX_PENDING_PERSISTS
                    || env.store.pending_bytes() >= super::MAX_PENDING_BYTES
                {
                    let reply = ClientReply::Unavailable {
                        required: w,
                        answered: 0,
                    };
                    return answer(env, waiter, reply);
                }
                let primaries = env.preference_list(&key);
                let targets = targets::choose(env, &key, &primaries);
                let me_target = targets.iter().any(|t| t.node == env.id);
                let primary_alive = primaries.iter().any(|p| env.detector.healthy(*p));
                let forwarded = matches!(waiter, Waiter::Forwarded { .. });
                let healthy_primaries = primaries
                    .iter()
                    .filter(|p| **p == env.id || env.detector.healthy(**p))
                    .count();
                if healthy_primaries < pw {
                    let reply = ClientReply::Unavailable {
                        required: pw,
                        answered: healthy_primaries,
                    };
                    return answer(env, waiter, reply);
                }
                if primaries.contains(&env.id) || (me_target && (!primary_alive || forwarded)) {
                    // A primary coordinates; so does a fallback when no primary is reachable
                    // (or when it was handed the write), standing in with its own copy.
                    let write = put::Write {
                        key,
                        value,
                        context,
                        w,
                        pw,
                    };
                    self.start_put(env, now, waiter, write, primaries, targets);
                } else if let (false, Some(target)) = (forwarded, forward_target(env, &primaries)) {
                    let op = ClientOp::Put {
                        key,
                        value,
                        context,
                        w: Some(w),
                        pw: Some(pw),
                    };
                    self.start_forward(env, now, waiter, target, op, w);
                } else {
                    // A forwarded write to a node that is neither a primary nor a fallback: the
                    // rings disagree. Refuse rather than forward again, so a request can never
                    // loop.
                    let reason = "this node is not a replica of the key".into();
                    answer(env, waiter, ClientReply::Invalid(reason));
                }
            }
        }
    }

    /// A write forwarded by `from` as its request `req`: coordinates it unless it was
    /// accepted already (a resent duplicate), within twice the request timeout.
    pub(crate) fn forwarded<S: Store>(
        &mut self,
        env: &mut Env<S>,
        now: Time,
        from: NodeId,
        req: RequestId,
        op: ClientOp,
    ) {
        let window = env.config.request_timeout * 2;
        while let Some(&(at, f, r)) = self.forwards_order.front() {
            if now.saturating_sub(at) < window {
                break;
            }
            self.forwards_order.pop_front();
            if self.forwards_seen.get(&(f, r)) == Some(&at) {
                self.forwards_seen.remove(&(f, r));
            }
        }
        if self.forwards_seen.contains_key(&(from, req)) {
            return;
        }
        self.forwards_seen.insert((from, req), now);
        self.forwards_order.push_back((now, from, req));
        self.start(env, now, Waiter::Forwarded { from, req }, op);
    }

    /// Registers a request with its deadline and returns its id.
    fn register(
        &mut self,
        env: &Env<impl Store>,
        now: Time,
        waiter: Waiter,
        kind: Kind,
    ) -> RequestId {
        let req = RequestId(self.next_request);
        self.next_request = self.next_request.wrapping_add(1);
        let deadline = now + env.config.request_timeout;
        self.deadlines.insert((deadline, req));
        self.requests.insert(
            req,
            Request {
                waiter,
                deadline,
                kind,
            },
        );
        req
    }

    /// Removes a finished request.
    fn finish(&mut self, req: RequestId) -> Option<Request> {
        let r = self.requests.remove(&req)?;
        self.deadlines.remove(&(r.deadline, req));
        Some(r)
    }

    /// Time has reached `now`: requests past their deadline answer "unavailable" if they have
    /// not answered yet (a put with sloppy quorum first gets fallbacks for its silent targets
    /// and a fresh deadline), finished gets repair what they read, and the targets that stayed
    /// silent are suspected (Dynamo §4.8.3).
    pub(crate) fn handle_timeout<S: Store>(&mut self, env: &mut Env<S>, now: Time) {
        while let Some(&(at, req)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(mut request) = self.requests.remove(&req) else {
                continue;
            };
            let silent = match &request.kind {
                Kind::Put(p) => p.silent(),
                Kind::Get(g) => g.silent(),
                Kind::Forward(f) => vec![f.target],
            };
            for peer in silent.into_iter().filter(|p| *p != env.id) {
                env.detector.suspect(now, peer);
            }
            if let Kind::Put(p) = &mut request.kind {
                if p.stand_in(env, req) {
                    let deadline = now + env.config.request_timeout;
                    request.deadline = deadline;
                    self.deadlines.insert((deadline, req));
                    self.requests.insert(req, request);
                    continue;
                }
            }
            let unanswered = match &request.kind {
                Kind::Put(p) => p.unanswered(),
                Kind::Get(g) => g.unanswered(),
                Kind::Forward(f) => Some((f.required, 0)),
            };
            if let Some((required, answered)) = unanswered {
                env.stats.timeouts += 1;
                let reply = ClientReply::Unavailable { required, answered };
                answer(env, request.waiter, reply);
            }
            if let Kind::Get(g) = request.kind {
                g.repair(env);
            }
        }
    }
}

/// Where a non-replica forwards a write: the first replica the failure detector believes
/// alive, or the first replica if it believes none is.
fn forward_target<S>(env: &Env<S>, replicas: &[NodeId]) -> Option<NodeId> {
    replicas
        .iter()
        .copied()
        .find(|r| env.detector.healthy(*r))
        .or_else(|| replicas.first().copied())
}

/// Sends `reply` to whoever waits for it: a local client, or the node that forwarded.
pub(crate) fn answer<S>(env: &mut Env<S>, waiter: Waiter, reply: ClientReply) {
    match waiter {
        Waiter::Client(client) => env.out.reply(client, reply),
        Waiter::Forwarded { from, req } => {
            env.out.send(from, PeerMessage::ForwardReply { req, reply })
        }
        Waiter::Reaper | Waiter::CatchUp => {}
    }
}
