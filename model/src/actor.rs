//! The actor type stateright runs: a server or a client, sharing message and storage types.

use crate::client::{Client, ClientState};
use crate::config::{Op, Settings};
use crate::msg::Msg;
use crate::server::{Server, ServerState, Store};
use serde::{Deserialize, Serialize};
use stateright::actor::{Actor, Id, Out};
use stateright::{Rewrite, RewritePlan};
use std::borrow::Cow;

/// The timers. None carries a client's `Id`: stateright's symmetry reduction reindexes the
/// actors' timer sets but never rewrites a timer's value, so a timer naming a client would be
/// wrong in the representative state. A request's deadline names a server-local slot instead.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum Timer {
    /// The deadline of the request a server coordinates (or forwards) in this slot: the
    /// smallest slot free among its requests when the request started, kept with the request.
    Deadline(u8),
    /// A server offers its hints to their owners.
    Handoff,
    /// A server pushes its changed keys to its peers.
    AntiEntropy,
    /// A server looks at whether to start a forgetting round for the key (`forget`).
    Forget(crate::value::Key),
    /// A message lifetime has passed: a server stops answering "hinted" for the hints it
    /// handed off and for having just restarted (`forget`).
    Expire,
    /// A client gives up on its request.
    Client,
}

/// A nondeterministic choice an actor offers (stateright's `choose_random`: every option is
/// explored).
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum Choice {
    /// A client sends its next request to this coordinator.
    Coordinator(Id),
    /// A server processes the replication message it has just received.
    Keep,
    /// A server loses it instead (the bounded-loss fault, `lose`).
    Lose,
    /// The operator restores a server's data directory from its backup (`restore`).
    Restore,
    /// The operator wipes a server's data directory (`restore`).
    Wipe,
}

impl Rewrite<Id> for Choice {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            Choice::Coordinator(id) => Choice::Coordinator(id.rewrite(plan)),
            other => other.clone(),
        }
    }
}

/// One actor of the model.
#[derive(Clone, Debug)]
pub enum Wiring {
    /// A server with the configuration.
    Server(Settings),
    /// A client with the configuration and its script.
    Client(Settings, Vec<Op>),
}

/// An actor's state. Servers order before clients and by ring index among themselves, so the
/// sorting that stateright's symmetry reduction does permutes only clients.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
// Stateright keeps each actor's state behind an `Arc` already; boxing the server's as well
// would add an allocation to every state the checker clones.
#[allow(clippy::large_enum_variant)]
pub enum State {
    /// A server's state.
    Server(ServerState),
    /// A client's state.
    Client(ClientState),
}

impl Rewrite<Id> for State {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            State::Server(s) => State::Server(s.rewrite(plan)),
            State::Client(c) => State::Client(c.rewrite(plan)),
        }
    }
}

/// Runs `f` on the inner state, writing back only if it changed (keeps no-ops detectable).
fn with_inner<T: Clone + PartialEq, F>(
    st: &mut Cow<State>,
    get: fn(&State) -> Option<&T>,
    wrap: fn(T) -> State,
    f: F,
) where
    F: FnOnce(&mut Cow<T>),
{
    let Some(inner) = get(st) else {
        return;
    };
    let mut cow = Cow::Borrowed(inner);
    f(&mut cow);
    if let Cow::Owned(next) = cow {
        *st = Cow::Owned(wrap(next));
    }
}

fn as_server(s: &State) -> Option<&ServerState> {
    match s {
        State::Server(s) => Some(s),
        State::Client(_) => None,
    }
}

fn as_client(s: &State) -> Option<&ClientState> {
    match s {
        State::Client(c) => Some(c),
        State::Server(_) => None,
    }
}

impl Actor for Wiring {
    type Msg = Msg;
    type Timer = Timer;
    type State = State;
    type Storage = Store;
    type Random = Choice;

    fn on_start(&self, id: Id, storage: &Option<Store>, o: &mut Out<Self>) -> State {
        match self {
            Wiring::Server(cfg) => {
                let me = u8::try_from(usize::from(id)).unwrap_or(u8::MAX);
                State::Server(Server { cfg }.start(me, storage, o))
            }
            Wiring::Client(cfg, script) => State::Client(Client { cfg }.start(script, o)),
        }
    }

    fn on_msg(&self, id: Id, st: &mut Cow<State>, src: Id, msg: Msg, o: &mut Out<Self>) {
        match self {
            Wiring::Server(cfg) => with_inner(st, as_server, State::Server, |s| {
                Server { cfg }.on_msg(s, src, msg, o)
            }),
            Wiring::Client(cfg, _) => with_inner(st, as_client, State::Client, |c| {
                Client { cfg }.on_msg(c, id, msg, o)
            }),
        }
    }

    fn on_timeout(&self, _id: Id, st: &mut Cow<State>, timer: &Timer, o: &mut Out<Self>) {
        match self {
            Wiring::Server(cfg) => with_inner(st, as_server, State::Server, |s| {
                Server { cfg }.on_timeout(s, timer, o)
            }),
            Wiring::Client(cfg, _) => with_inner(st, as_client, State::Client, |c| {
                Client { cfg }.on_timeout(c, o)
            }),
        }
    }

    fn on_random(&self, id: Id, st: &mut Cow<State>, random: &Choice, o: &mut Out<Self>) {
        match (self, random) {
            (Wiring::Client(cfg, _), Choice::Coordinator(coord)) => {
                with_inner(st, as_client, State::Client, |c| {
                    Client { cfg }.on_choice(c, id, *coord, o)
                });
            }
            (Wiring::Server(cfg), Choice::Restore | Choice::Wipe) => {
                with_inner(st, as_server, State::Server, |s| {
                    Server { cfg }.on_restore(s, random == &Choice::Wipe, o)
                });
            }
            (Wiring::Server(cfg), Choice::Keep | Choice::Lose) => {
                with_inner(st, as_server, State::Server, |s| {
                    Server { cfg }.on_choice(s, random == &Choice::Lose, o)
                });
            }
            _ => {}
        }
    }

    fn name(&self) -> String {
        match self {
            Wiring::Server(_) => "server".into(),
            Wiring::Client(..) => "client".into(),
        }
    }
}
