//! From a path of the model — states and the actions between them — to a [`Trace`].
//!
//! Each action becomes one [`Event`]; what the step observed is read off the states on either
//! side: the messages it sent (the multiset difference of the network), the reply a client
//! received, and every server's store. Two of stateright's actions are not events of the
//! system and are translated: a client's random choice of coordinator is its request, and a
//! server's choice under bounded loss (`lose`) is the delivery or drop of the message it held —
//! the delivery that made it hold the message is no step of its own.

use super::{Envelope, Event, Observed, Placement, Replica, Source, Step, Trace, TraceSettings};
use super::{FORMAT, VERSION};
use crate::actor::{Choice, State, Timer};
use crate::config::Config;
use crate::msg::Msg;
use crate::properties::{stores, SysState};
use stateright::actor::{ActorModelAction, Network};
use std::collections::BTreeMap;

/// One of the model's actions.
pub type Action = ActorModelAction<Msg, Timer, Choice>;

/// Every server's saved store (its in-memory one if up).
pub fn replicas(state: &SysState) -> Vec<Replica> {
    stores(state)
        .into_iter()
        .enumerate()
        .map(|(node, s)| Replica {
            node,
            crashed: state.crashed.get(node).copied().unwrap_or(false),
            data: s.data.clone(),
            hints: s
                .hints
                .iter()
                .map(|((o, k), v)| (*o, *k, v.clone()))
                .collect(),
        })
        .collect()
}

fn envelope(src: stateright::actor::Id, dst: stateright::actor::Id, msg: &Msg) -> Envelope {
    Envelope {
        from: src.into(),
        to: dst.into(),
        msg: msg.clone(),
    }
}

/// The envelopes in flight, with their multiplicities.
fn in_flight(state: &SysState) -> BTreeMap<Envelope, usize> {
    match &state.network {
        Network::UnorderedNonDuplicating(multiset) => multiset
            .iter()
            .map(|(e, n)| (envelope(e.src, e.dst, &e.msg), *n))
            .collect(),
        other => other
            .iter_deliverable()
            .map(|e| (envelope(e.src, e.dst, e.msg), 1))
            .collect(),
    }
}

/// The messages a step sent: after minus (before minus the one delivered), as multisets.
fn sent(prev: &SysState, next: &SysState, delivered: Option<&Envelope>) -> Vec<Envelope> {
    let mut before = in_flight(prev);
    if let (Some(e), Network::UnorderedNonDuplicating(_)) = (delivered, &prev.network) {
        if let Some(n) = before.get_mut(e) {
            *n = n.saturating_sub(1);
        }
    }
    let mut out = Vec::new();
    for (e, n) in in_flight(next) {
        let had = before.get(&e).copied().unwrap_or(0);
        for _ in had..n {
            out.push(e.clone());
        }
    }
    out
}

/// The message a server holds undecided under bounded loss, if any.
fn held(state: &SysState, actor: usize) -> Option<Envelope> {
    match state.actor_states.get(actor).map(|a| &**a) {
        Some(State::Server(s)) => s
            .pending
            .as_deref()
            .map(|(src, msg)| envelope(*src, actor.into(), msg)),
        _ => None,
    }
}

fn event(prev: &SysState, action: &Action, sent: &[Envelope]) -> Event {
    match action {
        ActorModelAction::Deliver { src, dst, msg } => Event::Deliver(envelope(*src, *dst, msg)),
        ActorModelAction::Drop(e) => Event::Drop(envelope(e.src, e.dst, &e.msg)),
        ActorModelAction::Timeout(id, timer) => {
            let request = match (timer, prev.actor_states.get(usize::from(*id)).map(|a| &**a)) {
                (Timer::Deadline(slot), Some(State::Server(s))) => s.request_in_slot(*slot),
                _ => None,
            };
            Event::Timer {
                node: (*id).into(),
                timer: timer.clone(),
                request,
            }
        }
        ActorModelAction::Crash(id) => Event::Crash { node: (*id).into() },
        ActorModelAction::Recover(id) => Event::Recover { node: (*id).into() },
        ActorModelAction::SelectRandom { actor, random, .. } => {
            let actor: usize = (*actor).into();
            if let Choice::Restore | Choice::Wipe = random {
                return Event::Restore {
                    node: actor,
                    wipe: *random == Choice::Wipe,
                };
            }
            if let Some(env) = held(prev, actor) {
                return match random {
                    Choice::Lose => Event::Drop(env),
                    _ => Event::Deliver(env),
                };
            }
            let coordinator = match random {
                Choice::Coordinator(c) => (*c).into(),
                _ => actor,
            };
            let op = match prev.actor_states.get(actor).map(|a| &**a) {
                Some(State::Client(c)) => c.current(),
                _ => None,
            };
            let msg = sent.iter().find(|e| e.from == actor).map(|e| e.msg.clone());
            match (op, msg) {
                (Some(op), Some(msg)) => Event::Request {
                    client: actor,
                    coordinator,
                    op,
                    msg,
                },
                _ => Event::Timer {
                    node: actor,
                    timer: Timer::Client,
                    request: None,
                },
            }
        }
    }
}

/// Whether `action` left its receiver holding the message undecided (`lose`).
fn holds(next: &SysState, action: &Action) -> bool {
    let ActorModelAction::Deliver { dst, .. } = action else {
        return false;
    };
    held(next, usize::from(*dst)).is_some()
}

/// The step from `prev` to `next` by `action`, or `None` if it is no event (a message
/// received and held undecided under `lose`).
pub fn step(prev: &SysState, action: &Action, next: &SysState) -> Option<Step> {
    if holds(next, action) {
        return None;
    }
    let delivered = match action {
        ActorModelAction::Deliver { src, dst, msg } => Some(envelope(*src, *dst, msg)),
        _ => None,
    };
    let sent = sent(prev, next, delivered.as_ref());
    let reply = delivered.filter(|e| e.msg.answers().is_some());
    Some(Step {
        event: event(prev, action, &sent),
        observed: Observed {
            sent,
            reply,
            replicas: replicas(next),
        },
    })
}

impl Trace {
    /// A trace of `cfg` with no steps yet, whose servers start from `initial`.
    pub fn start(cfg: &Config, source: Source, initial: Vec<Replica>) -> Trace {
        Trace {
            format: FORMAT.into(),
            version: VERSION,
            config: cfg.name.clone(),
            settings: TraceSettings::of(cfg),
            placement: Placement::of(cfg),
            source,
            initial,
            steps: Vec::new(),
        }
    }

    /// Translates a path — each state with the action taken from it, the last with none —
    /// into a trace.
    pub fn from_pairs(cfg: &Config, source: Source, pairs: &[(SysState, Option<Action>)]) -> Trace {
        let initial = pairs.first().map(|(s, _)| replicas(s)).unwrap_or_default();
        let mut t = Trace::start(cfg, source, initial);
        for w in pairs.windows(2) {
            if let (prev, Some(action)) = (&w[0].0, &w[0].1) {
                t.steps.extend(step(prev, action, &w[1].0));
            }
        }
        t
    }
}
