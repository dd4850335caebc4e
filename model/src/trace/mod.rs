//! Serializable traces: a run of the model as steps the conformance crate can replay.
//!
//! stateright's actions are not serializable, so a path is translated into [`Step`]s. Each
//! step is one event — a client issuing a request to the coordinator it chose, a message
//! delivered or dropped, a timer firing, a server crashing or recovering — together with what
//! the model observed right after it: the messages the step sent, the reply a client received,
//! and every server's stored clocks (values with their causality: dots and causal context
//! for DVVSets, per-sibling clocks for the classic scheme) and hints. Actors are numbered as in
//! the model: servers `0..servers`, then clients.
//!
//! This module is the format — the serde types, the translation from a checker path and the
//! JSON file — which the conformance crate reads; [`render`] prints a trace for people.

use crate::actor::{Choice, State, Timer, Wiring};
use crate::clock::Clock;
use crate::config::Op;
use crate::dvv::NodeId;
use crate::model::ShoalModel;
use crate::msg::Msg;
use crate::properties::{stores, SysState};
use crate::value::Key;
use serde::{Deserialize, Serialize};
use stateright::actor::ActorModelAction;
use stateright::Path;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub mod render;

/// A message with its endpoints (actor indices).
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// The message.
    pub msg: Msg,
}

/// What happened in one step.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A client sent its next operation to the coordinator it chose.
    Request {
        /// The client.
        client: usize,
        /// The chosen coordinator.
        coordinator: usize,
        /// The script operation.
        op: Op,
        /// The request message (key, value, context as the model abstracts it).
        msg: Msg,
    },
    /// A message was delivered.
    Deliver(Envelope),
    /// A message was lost.
    Drop(Envelope),
    /// A timer fired.
    Timer {
        /// The actor whose timer fired.
        node: usize,
        /// Which timer.
        timer: Timer,
    },
    /// A server crashed: volatile state and timers are lost, its saved store is kept.
    Crash {
        /// The server.
        node: usize,
    },
    /// A server restarted from its saved store.
    Recover {
        /// The server.
        node: usize,
    },
}

/// A server's durable state as observed after a step.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// The server's index.
    pub node: usize,
    /// Whether it is down.
    pub crashed: bool,
    /// Stored clocks per key.
    pub data: BTreeMap<Key, Clock>,
    /// Hints held: `(owner, key, clock)`.
    pub hints: Vec<(NodeId, Key, Clock)>,
}

/// What the model observed right after a step.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Messages the step sent (new in the network).
    pub sent: Vec<Envelope>,
    /// The reply a client received in this step, if any.
    pub reply: Option<Envelope>,
    /// Every server's store.
    pub replicas: Vec<Replica>,
}

/// One step of a trace.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The event.
    pub event: Event,
    /// What was observed after it.
    pub observed: Observed,
}

/// A run of the model: the configuration, why it was exported, and its steps.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The configuration's name.
    pub config: String,
    /// The property whose counterexample (or example) this is.
    pub property: String,
    /// The servers' store before the first step (empty unless the model is extended).
    pub initial: Vec<Replica>,
    /// The steps.
    pub steps: Vec<Step>,
}

fn replicas(state: &SysState) -> Vec<Replica> {
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

fn envelopes(state: &SysState) -> Vec<Envelope> {
    state
        .network
        .iter_deliverable()
        .map(|e| Envelope {
            from: e.src.into(),
            to: e.dst.into(),
            msg: e.msg.clone(),
        })
        .collect()
}

type Action = ActorModelAction<Msg, Timer, Choice>;

fn event(prev: &SysState, action: &Action, sent: &[Envelope]) -> Event {
    let env = |e: &stateright::actor::Envelope<Msg>| Envelope {
        from: e.src.into(),
        to: e.dst.into(),
        msg: e.msg.clone(),
    };
    match action {
        ActorModelAction::Deliver { src, dst, msg } => Event::Deliver(Envelope {
            from: (*src).into(),
            to: (*dst).into(),
            msg: msg.clone(),
        }),
        ActorModelAction::Drop(e) => Event::Drop(env(e)),
        ActorModelAction::Timeout(id, timer) => Event::Timer {
            node: (*id).into(),
            timer: timer.clone(),
        },
        ActorModelAction::Crash(id) => Event::Crash { node: (*id).into() },
        ActorModelAction::Recover(id) => Event::Recover { node: (*id).into() },
        ActorModelAction::SelectRandom { actor, random, .. } => {
            let client: usize = (*actor).into();
            // A server's choice resolves the message it held (`lose`): delivered or dropped.
            if let Some(State::Server(s)) = prev.actor_states.get(client).map(|a| &**a) {
                if let Some((src, msg)) = s.pending.as_deref() {
                    let env = Envelope {
                        from: (*src).into(),
                        to: client,
                        msg: msg.clone(),
                    };
                    return match random {
                        Choice::Lose => Event::Drop(env),
                        _ => Event::Deliver(env),
                    };
                }
            }
            let coordinator = match random {
                Choice::Coordinator(c) => (*c).into(),
                _ => client,
            };
            let op = match prev.actor_states.get(client).map(|a| &**a) {
                Some(State::Client(c)) => c.current(),
                _ => None,
            };
            let msg = sent
                .iter()
                .find(|e| e.from == client)
                .map(|e| e.msg.clone());
            match (op, msg) {
                (Some(op), Some(msg)) => Event::Request {
                    client,
                    coordinator,
                    op,
                    msg,
                },
                _ => Event::Timer {
                    node: client,
                    timer: Timer::Client,
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
    matches!(
        next.actor_states.get(usize::from(*dst)).map(|a| &**a),
        Some(State::Server(s)) if s.pending.is_some()
    )
}

impl Trace {
    /// Translates a checker path into a trace.
    pub fn from_path(_model: &ShoalModel, property: &str, path: Path<SysState, Action>) -> Trace {
        let pairs = path.into_vec();
        let initial = pairs.first().map(|(s, _)| replicas(s)).unwrap_or_default();
        let mut steps = Vec::new();
        for w in pairs.windows(2) {
            let (prev, Some(action)) = (&w[0].0, &w[0].1) else {
                continue;
            };
            let next = &w[1].0;
            if holds(next, action) {
                // Receiving a message it then holds undecided is no event yet: the choice
                // that follows is its delivery or its drop.
                continue;
            }
            let before = envelopes(prev);
            let sent: Vec<Envelope> = envelopes(next)
                .into_iter()
                .filter(|e| !before.contains(e))
                .collect();
            let reply = match action {
                ActorModelAction::Deliver { src, dst, msg }
                    if matches!(
                        msg,
                        Msg::GetOk { .. } | Msg::PutOk { .. } | Msg::Fail { .. }
                    ) =>
                {
                    Some(Envelope {
                        from: (*src).into(),
                        to: (*dst).into(),
                        msg: msg.clone(),
                    })
                }
                _ => None,
            };
            steps.push(Step {
                event: event(prev, action, &sent),
                observed: Observed {
                    sent,
                    reply,
                    replicas: replicas(next),
                },
            });
        }
        Trace {
            config: _model.cfg.name.clone(),
            property: property.into(),
            initial,
            steps,
        }
    }

    /// The trace as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Writes the trace as JSON into `dir`, named after its configuration and property
    /// (`<config>-<property>.json`, non-alphanumerics in the property replaced by `-`), and
    /// returns the file's path.
    pub fn write_to(&self, dir: &std::path::Path) -> std::io::Result<PathBuf> {
        let file = dir.join(format!(
            "{}-{}.json",
            self.config,
            self.property
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
        std::fs::write(&file, self.to_json())?;
        Ok(file)
    }
}

/// Whether actor `i` is a client in the given model.
pub fn is_client(model: &ShoalModel, i: usize) -> bool {
    matches!(model.actors.get(i), Some(Wiring::Client(..)))
}
