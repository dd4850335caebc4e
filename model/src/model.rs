//! Assembles a configuration into a stateright `ActorModel`.
//!
//! Servers are actors `0..servers`, clients follow. The network is stateright's unordered one
//! (reordering), duplicating or not, lossy or not. Crashes are bounded in total through
//! `within_boundary` (each restart is counted in the durable store), as is the number of
//! messages in flight, so that every space is finite.

use crate::actor::{State, Wiring};
use crate::config::Config;
use crate::history::{record_in, record_out, History};
use crate::properties::{for_config, stores, SysState};
use stateright::actor::{ActorModel, LossyNetwork, Network};

/// The model of one configuration.
pub type ShoalModel = ActorModel<Wiring, Config, History>;

/// Whether a state is inside the explored space: only servers crash, at most `crashes` times
/// in all, and at most `max_network` messages are in flight.
pub fn within_boundary(cfg: &Config, state: &SysState) -> bool {
    let restarts: usize = stores(state)
        .iter()
        .map(|s| usize::from(s.boots.saturating_sub(1)))
        .sum();
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
        && cfg.max_network.is_none_or(|m| state.network.len() <= m)
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
