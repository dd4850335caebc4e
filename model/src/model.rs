//! Assembles a configuration into a stateright `ActorModel`.
//!
//! Servers are actors `0..servers`, clients follow. The network is stateright's unordered one
//! (reordering), duplicating or not, lossy or not. Crashes are bounded in total through
//! `within_boundary` (each restart is counted in the durable store), as is the number of
//! messages in flight, so that every space is finite.

use crate::actor::{State, Wiring};
use crate::config::Config;
use crate::history::{record_in, record_out, History};
use crate::msg::Msg;
use crate::properties::{for_config, stores, SysState};
use crate::server::ServerState;
use stateright::actor::{ActorModel, LossyNetwork, Network};

/// The model of one configuration.
pub type ShoalModel = ActorModel<Wiring, Config, History>;

/// Whether a state is inside the explored space: only servers crash, at most `crashes` times
/// in all, directories are wiped or restored at most `restores` times, and at most
/// `max_network` messages are in flight.
pub fn within_boundary(cfg: &Config, state: &SysState) -> bool {
    // A restore starts the server again too, but is bounded on its own.
    let restarts: usize = stores(state)
        .iter()
        .map(|s| usize::from(s.boots.saturating_sub(1).saturating_sub(s.restores)))
        .sum();
    let restores: usize = stores(state).iter().map(|s| usize::from(s.restores)).sum();
    let down = state.crashed.iter().filter(|c| **c).count();
    // stateright may crash any actor: only servers crash in this model.
    let clients_up = state
        .crashed
        .iter()
        .enumerate()
        .all(|(i, c)| !*c || is_server(state, i));
    // A server does not crash while it holds a received message undecided (`lose`): that
    // would be a loss outside the budget.
    let no_crash_pending = state
        .actor_states
        .iter()
        .zip(&state.crashed)
        .all(|(a, c)| !*c || !matches!(&**a, State::Server(s) if s.pending.is_some()));
    clients_up
        && no_crash_pending
        && restarts + down <= usize::from(cfg.crashes)
        && restores <= usize::from(cfg.restores)
        && cfg.max_network.is_none_or(|m| state.network.len() <= m)
        && (!cfg.settings.forget || (grace_kept(state) && handoffs_known(cfg, state)))
}

/// The servers that are up, with their states.
fn up_servers(state: &SysState) -> impl Iterator<Item = &ServerState> {
    state
        .actor_states
        .iter()
        .zip(&state.crashed)
        .filter(|(_, c)| !**c)
        .filter_map(|(a, _)| match &**a {
            State::Server(s) => Some(s),
            State::Client(_) => None,
        })
}

/// The grace of forgetting, as what it guarantees (the model has no time): a forgetting round
/// that follows an agreeing one — the second round, which may forget — runs only once every
/// message queued before the first round ended, or sent by a request that started before it
/// ended, is gone (delivered: the model's network neither drops nor duplicates under
/// `forget`), and every such request has finished. In the node the grace is at least a
/// request timeout (no request holds what it read longer) plus a message lifetime (the
/// transport drops older messages). A state where a second round runs without that is outside
/// the explored space, so the coordinator's step that started it is never taken there.
fn grace_kept(state: &SysState) -> bool {
    let h = &state.history;
    let second_rounds = up_servers(state).flat_map(|s| {
        s.forgets
            .values()
            .filter(|f| f.round.is_some())
            .filter_map(move |f| f.agreed.as_ref().map(|(_, first)| (s.me, *first)))
    });
    for (me, first) in second_rounds {
        let Some(g) = h.graces.get(&(me, first)) else {
            continue;
        };
        if !g.msgs.is_empty() {
            return false;
        }
        let open_old = up_servers(state).any(|s| {
            s.puts.keys().any(|r| g.old(*r))
                || s.gets.keys().any(|r| g.old(*r))
                || s.forwards.keys().any(|r| g.old(*r))
        });
        if open_old {
            return false;
        }
    }
    true
}

/// A server answers forgetting rounds "hinted" for a message lifetime after it dropped a hint
/// and after it restarted (`dropped`, `young`), because a `Handoff` it sent may still be in
/// flight; the lifetime passing is the `Expire` timer. As for the grace, the model states
/// what the lifetime guarantees: `Expire` never leaves a `Handoff` of a key in flight from a
/// server that neither holds a hint for the key nor counts itself hinted.
fn handoffs_known(cfg: &Config, state: &SysState) -> bool {
    state.network.iter_deliverable().all(|env| {
        let Msg::Handoff { key, .. } = env.msg else {
            return true;
        };
        let i = usize::from(env.src);
        if i >= cfg.servers() || state.crashed.get(i).copied().unwrap_or(false) {
            return true;
        }
        match state.actor_states.get(i).map(|a| &**a) {
            Some(State::Server(s)) => {
                s.young || s.dropped.contains(key) || s.store.hints.keys().any(|(_, k)| k == key)
            }
            _ => true,
        }
    })
}

/// Builds the model of `cfg` with its properties.
pub fn build(cfg: &Config) -> ShoalModel {
    let servers = (0..cfg.settings.ring.servers).map(|_| Wiring::Server(cfg.settings));
    let clients = cfg
        .scripts
        .iter()
        .map(|s| Wiring::Client(cfg.settings, s.clone()));
    let network = if cfg.duplicating {
        Network::new_unordered_duplicating([])
    } else {
        Network::new_unordered_nonduplicating([])
    };
    let mut model = ActorModel::new(cfg.clone(), History::default())
        .actors(servers)
        .actors(clients)
        .init_network(network)
        .lossy_network(if cfg.lossy {
            LossyNetwork::Yes
        } else {
            LossyNetwork::No
        })
        .max_crashes(usize::from(cfg.crashes.min(1)))
        .record_msg_out(record_out)
        .record_msg_in(record_in)
        .within_boundary(within_boundary);
    for (expectation, name, condition) in for_config(&model) {
        model = model.property(expectation, name, condition);
    }
    model
}

/// Whether actor `i` of a state is a server.
pub fn is_server(state: &SysState, i: usize) -> bool {
    matches!(
        state.actor_states.get(i).map(|a| &**a),
        Some(State::Server(_))
    )
}
