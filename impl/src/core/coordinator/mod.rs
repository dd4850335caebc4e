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
        match op {
            ClientOp::Get { key, r } => {
                let r = r.unwrap_or(env.config.r);
                if r == 0 || r > n {
                    let reason = format!("r must be between 1 and N = {n}");
                    return answer(env, waiter, ClientReply::Invalid(reason));
                }
                self.start_get(env, now, waiter, key, r);
            }
            ClientOp::Put {
                key,
                value,
                context,
                w,
            } => {
                let w = w.unwrap_or(env.config.w);
                if w == 0 || w > n {
                    let reason = format!("w must be between 1 and N = {n}");
                    return answer(env, waiter, ClientReply::Invalid(reason));
                }
                if self.draining || env.store.pending() >= super::MAX_PENDING_PERSISTS {
                    let reply = ClientReply::Unavailable {
                        required: w,
                        answered: 0,
                    };
                    return answer(env, waiter, reply);
                }
                let replicas = env.preference_list(&key);
                if replicas.contains(&env.id) {
                    let write = put::Write {
                        key,
                        value,
                        context,
                        w,
                    };
                    self.start_put(env, now, waiter, write, replicas);
                } else if let (Waiter::Client(_), Some(target)) =
                    (&waiter, forward_target(env, &replicas))
                {
                    let op = ClientOp::Put {
                        key,
                        value,
                        context,
                        w: Some(w),
                    };
                    self.start_forward(env, now, waiter, target, op, w);
                } else {
                    // A forwarded write to a node that is not a replica: the rings disagree.
                    // Refuse rather than forward again, so a request can never loop.
                    let reason = "this node is not a replica of the key".into();
                    answer(env, waiter, ClientReply::Invalid(reason));
                }
            }
        }
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
    /// not answered yet, and finished gets repair what they read.
    pub(crate) fn handle_timeout<S: Store>(&mut self, env: &mut Env<S>, now: Time) {
        while let Some(&(at, req)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(request) = self.requests.remove(&req) else {
                continue;
            };
            let unanswered = match &request.kind {
                Kind::Put(p) => p.unanswered(),
                Kind::Get(g) => g.unanswered(),
                Kind::Forward(f) => Some((f.required, 0)),
            };
            // Replicas that let the request reach its deadline are suspected (Dynamo §4.8.3).
            let silent = match &request.kind {
                Kind::Put(p) => p.silent(),
                Kind::Get(g) => g.silent(),
                Kind::Forward(f) => vec![f.target],
            };
            for peer in silent.into_iter().filter(|p| *p != env.id) {
                env.detector.suspect(now, peer);
            }
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
    }
}
