//! Runs the checker on a configuration and judges each property's outcome.
//!
//! The exhaustive search is stateright's depth-first search with symmetry reduction
//! (interchangeable clients are explored once); its counts are the model's fingerprint that
//! the tests pin.

use crate::config::Config;
use crate::model::{build, ShoalModel};
use crate::properties::SysState;
use crate::trace::{Source, Trace};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Representative};
use std::time::{Duration, Instant};

/// How one property fared.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The property's name.
    pub name: &'static str,
    /// Always, sometimes or eventually.
    pub expectation: Expectation,
    /// Whether the property holds (an example was found, for "sometimes").
    pub ok: bool,
    /// The counterexample, or the example of a "sometimes" property.
    pub trace: Option<Trace>,
}

/// The result of checking one configuration.
#[derive(Clone, Debug)]
pub struct Report {
    /// The configuration's name.
    pub config: String,
    /// States generated (including revisits).
    pub generated: usize,
    /// Distinct states (up to symmetry).
    pub unique: usize,
    /// Deepest path explored.
    pub max_depth: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Per property, in declaration order.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// Whether every property holds.
    pub fn ok(&self) -> bool {
        self.outcomes.iter().all(|o| o.ok)
    }

    /// The outcome of the property called `name`.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }
}

/// The canonical member of a state's symmetry class: clients sorted by state (servers never
/// move, see [`crate::actor::State`]). Skips the rewrite when the clients are already sorted.
pub fn representative(state: &SysState) -> SysState {
    if state.actor_states.windows(2).all(|w| w[0] <= w[1]) {
        state.clone()
    } else {
        state.representative()
    }
}

/// Checks `cfg` exhaustively with `threads` threads.
pub fn check(cfg: &Config, threads: usize) -> Report {
    check_bounded(cfg, threads, None)
}

/// Checks `cfg` until `property` has a discovery (or the space is exhausted): for mutations.
pub fn check_until(cfg: &Config, threads: usize, property: &'static str) -> Report {
    run(cfg, threads, None, Some(property))
}

/// Checks `cfg`, stopping after about `max_states` states if given (then not exhaustive).
pub fn check_bounded(cfg: &Config, threads: usize, max_states: Option<usize>) -> Report {
    run(cfg, threads, max_states, None)
}

fn run(
    cfg: &Config,
    threads: usize,
    max_states: Option<usize>,
    until: Option<&'static str>,
) -> Report {
    let model: ShoalModel = build(cfg);
    let start = Instant::now();
    let mut builder = model.checker().threads(threads.max(1));
    if let Some(n) = max_states {
        builder = builder.target_state_count(n);
    }
    if let Some(p) = until {
        builder = builder.finish_when(HasDiscoveries::AnyOf([p].into()));
    }
    let checker = builder.symmetry_fn(representative).spawn_dfs().join();
    let elapsed = start.elapsed();
    let model = checker.model();
    let discoveries = checker.discoveries();
    let outcomes = model
        .properties()
        .into_iter()
        .map(|p| {
            let found = discoveries.get(p.name);
            let ok = match p.expectation {
                Expectation::Sometimes => found.is_some(),
                _ => found.is_none(),
            };
            let trace = found.map(|path| {
                let property = p.name.to_string();
                let source = match p.expectation {
                    Expectation::Sometimes => Source::Example { property },
                    _ => Source::Counterexample { property },
                };
                Trace::from_pairs(cfg, source, &path.clone().into_vec())
            });
            Outcome {
                name: p.name,
                expectation: p.expectation,
                ok,
                trace,
            }
        })
        .collect();
    Report {
        config: cfg.name.clone(),
        generated: checker.state_count(),
        unique: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        outcomes,
    }
}
