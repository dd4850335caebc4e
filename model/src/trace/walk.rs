//! Seeded random walks: long runs of any configuration, reproducible from a seed.
//!
//! Where the exhaustive export stops at a small depth, a walk goes on until the run ends (no
//! action is enabled) or a step cap, choosing uniformly among the enabled actions at each
//! state (stateright's sorted order, so the choice is deterministic). The generator is
//! splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014),
//! written inline so that a seed means the same walk for ever, whatever a crate's next
//! version does. Walk `i` of a batch seeded `s` has the seed `s + i`, recorded in its source,
//! so any one walk can be reproduced alone.

use super::build::Action;
use super::{Source, Trace};
use crate::config::Config;
use crate::model::{build, ShoalModel};
use crate::properties::SysState;
use stateright::Model;

/// The splitmix64 generator.
#[derive(Clone, Copy, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number uniformly below `n` (`n > 0`; Lemire's multiply-shift, whose bias is at most
    /// `n / 2^64`).
    pub fn below(&mut self, n: usize) -> usize {
        let wide = u128::from(self.next_u64()) * n as u128;
        usize::try_from(wide >> 64).unwrap_or(0)
    }
}

/// The enabled actions at `state` with the states they lead to (inside the boundary).
fn successors(model: &ShoalModel, state: &SysState) -> Vec<(Action, SysState)> {
    let mut actions = Vec::new();
    model.actions(state, &mut actions);
    actions
        .into_iter()
        .filter_map(|a| {
            let next = model.next_state(state, a.clone())?;
            Model::within_boundary(model, &next).then_some((a, next))
        })
        .collect()
}

fn walk_model(cfg: &Config, model: &ShoalModel, seed: u64, max_steps: usize) -> Trace {
    let mut rng = SplitMix64(seed);
    let mut pairs = Vec::new();
    let Some(mut state) = model.init_states().into_iter().next() else {
        return Trace::from_pairs(cfg, Source::Walk { seed }, &pairs);
    };
    for _ in 0..max_steps {
        let mut next = successors(model, &state);
        if next.is_empty() {
            break;
        }
        let (action, after) = next.swap_remove(rng.below(next.len()));
        pairs.push((state, Some(action)));
        state = after;
    }
    pairs.push((state, None));
    Trace::from_pairs(cfg, Source::Walk { seed }, &pairs)
}

/// One random walk of `cfg` from `seed`, of at most `max_steps` actions.
pub fn walk(cfg: &Config, seed: u64, max_steps: usize) -> Trace {
    walk_model(cfg, &build(cfg), seed, max_steps)
}

/// `count` walks of `cfg`, the `i`-th from seed `seed + i`.
pub fn walks(cfg: &Config, count: u64, seed: u64, max_steps: usize) -> Vec<Trace> {
    let model = build(cfg);
    (0..count)
        .map(|i| walk_model(cfg, &model, seed.wrapping_add(i), max_steps))
        .collect()
}
