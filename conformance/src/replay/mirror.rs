//! The model, re-run alongside a trace: the model's whole state before every step.
//!
//! A trace records what the model *observed* (messages, replies, saved stores), which is what
//! the node is compared with. Some of the driver's decisions need the model's volatile state
//! too, which a trace does not carry: which requests a server is still coordinating (to fire
//! a node's deadline only when no earlier request of the model's would fire with it) and
//! whom each server suspects (the model's failure detector, which the driver hands to the
//! node's). The mirror re-executes each event as the stateright action it came from and checks
//! that the result is the trace's observation, so the two can never drift apart unnoticed.

use shoal_model::actor::{Choice, State};
use shoal_model::config::Config;
use shoal_model::model::{build, ShoalModel};
use shoal_model::msg::Msg;
use shoal_model::properties::SysState;
use shoal_model::server::ServerState;
use shoal_model::trace::build::{replicas, Action};
use shoal_model::trace::{Envelope, Event, Step};
use stateright::actor::{ActorModelAction, Envelope as NetEnvelope, Id};
use stateright::Model;

/// The model of a trace's configuration and its current state.
pub struct Mirror {
    model: ShoalModel,
    state: SysState,
    lossy: bool,
}

impl Mirror {
    /// The model of `cfg` in its initial state.
    pub fn new(cfg: &Config) -> Result<Mirror, String> {
        let model = build(cfg);
        let state = model
            .init_states()
            .into_iter()
            .next()
            .ok_or("the model has no initial state")?;
        Ok(Mirror {
            model,
            state,
            lossy: cfg.lossy,
        })
    }

    /// The state before the next step.
    pub fn state(&self) -> &SysState {
        &self.state
    }

    /// The messages in flight, each once.
    pub fn network(&self) -> Vec<Envelope> {
        self.state
            .network
            .iter_deliverable()
            .map(|e| Envelope {
                from: e.src.into(),
                to: e.dst.into(),
                msg: e.msg.clone(),
            })
            .collect()
    }

    /// Server `s`'s state, if it is up.
    pub fn server(&self, s: u8) -> Option<&ServerState> {
        let i = usize::from(s);
        if self.state.crashed.get(i).copied().unwrap_or(true) {
            return None;
        }
        match self.state.actor_states.get(i).map(|a| &**a) {
            Some(State::Server(s)) => Some(s),
            _ => None,
        }
    }

    /// Takes `step`'s event and checks the result is what the trace observed.
    pub fn apply(&mut self, step: &Step) -> Result<(), String> {
        let actions: Vec<Action> = match &step.event {
            Event::Request {
                client,
                coordinator,
                ..
            } => vec![ActorModelAction::SelectRandom {
                actor: Id::from(*client),
                key: "coordinator".into(),
                random: Choice::Coordinator(Id::from(*coordinator)),
            }],
            Event::Deliver(e) => vec![deliver(e)],
            Event::Drop(e) if self.lossy => vec![ActorModelAction::Drop(NetEnvelope {
                src: Id::from(e.from),
                dst: Id::from(e.to),
                msg: e.msg.clone(),
            })],
            // Without a lossy network a drop is a loss by the receiver (`lose`): it received
            // the message, held it, and chose to lose it.
            Event::Drop(e) => vec![
                deliver(e),
                ActorModelAction::SelectRandom {
                    actor: Id::from(e.to),
                    key: "lose".into(),
                    random: Choice::Lose,
                },
            ],
            Event::Timer { node, timer, .. } => {
                vec![ActorModelAction::Timeout(Id::from(*node), timer.clone())]
            }
            Event::Crash { node } => vec![ActorModelAction::Crash(Id::from(*node))],
            Event::Recover { node } => vec![ActorModelAction::Recover(Id::from(*node))],
            Event::Restore { node, wipe } => vec![ActorModelAction::SelectRandom {
                actor: Id::from(*node),
                key: "restore".into(),
                random: if *wipe { Choice::Wipe } else { Choice::Restore },
            }],
        };
        for action in actions {
            self.take(action)?;
        }
        // A delivered replication message the receiver held for the choice under `lose`,
        // then kept.
        if let Event::Deliver(e) = &step.event {
            if self.holds(e.to) {
                self.take(ActorModelAction::SelectRandom {
                    actor: Id::from(e.to),
                    key: "lose".into(),
                    random: Choice::Keep,
                })?;
            }
        }
        if replicas(&self.state) != step.observed.replicas {
            return Err("the model, re-run, does not reach the trace's stores".into());
        }
        Ok(())
    }

    fn take(&mut self, action: Action) -> Result<(), String> {
        let text = format!("{action:?}");
        self.state = self
            .model
            .next_state(&self.state, action)
            .ok_or_else(|| format!("the model cannot take {text}"))?;
        Ok(())
    }

    fn holds(&self, actor: usize) -> bool {
        matches!(
            self.state.actor_states.get(actor).map(|a| &**a),
            Some(State::Server(s)) if s.pending.is_some()
        )
    }
}

fn deliver(e: &Envelope) -> Action {
    let msg: Msg = e.msg.clone();
    ActorModelAction::Deliver {
        src: Id::from(e.from),
        dst: Id::from(e.to),
        msg,
    }
}
