//! Exhaustive export: every path of the model's state graph to a depth, as traces.
//!
//! The conformance crate replays these against the node to show it does whatever the model
//! does in every run up to a length, not only in the runs a checker happened to report. The
//! exploration is breadth-first over the *plain* state graph — no symmetry reduction, so that
//! a trace is a real run with its real actors — with a set of visited states, so that each
//! state is reached by one path only, its shortest (the first found; actions are taken in
//! stateright's sorted order, so the exploration is deterministic).
//!
//! One trace is emitted per *frontier* state, its path being the path that first reached it:
//! every state at the depth, and every state before it with no enabled action (the run
//! ended). A state all of whose successors were first reached by other paths ends no trace,
//! though those successors do. Identical traces (two paths may differ only in what a trace
//! does not show, e.g. a ghost or a volatile field) are emitted once; a cap bounds how many are
//! emitted.

use super::build::Action;
use super::{Source, Trace};
use crate::config::Config;
use crate::model::{build, ShoalModel};
use crate::properties::SysState;
use stateright::Model;
use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// A state reached, with the way it was first reached.
struct Node {
    state: SysState,
    parent: Option<usize>,
    action: Option<Action>,
    depth: usize,
}

/// A deterministic 64-bit fingerprint (std's SipHash with its fixed keys).
fn fingerprint<T: Hash>(t: &T) -> u64 {
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// The breadth-first export of one configuration, as an iterator of distinct traces.
pub struct Exhaustive {
    cfg: Config,
    model: ShoalModel,
    depth: usize,
    max: Option<usize>,
    nodes: Vec<Node>,
    visited: HashSet<u64>,
    queue: VecDeque<usize>,
    emitted: HashSet<u64>,
    frontier: usize,
}

impl Exhaustive {
    /// Explores `cfg` breadth-first to `depth` actions, yielding at most `max` traces.
    pub fn new(cfg: &Config, depth: usize, max: Option<usize>) -> Exhaustive {
        let model = build(cfg);
        let mut e = Exhaustive {
            cfg: cfg.clone(),
            depth,
            max,
            nodes: Vec::new(),
            visited: HashSet::new(),
            queue: VecDeque::new(),
            emitted: HashSet::new(),
            frontier: 0,
            model,
        };
        for state in e.model.init_states() {
            if e.visited.insert(fingerprint(&state)) {
                e.queue.push_back(e.nodes.len());
                e.nodes.push(Node {
                    state,
                    parent: None,
                    action: None,
                    depth: 0,
                });
            }
        }
        e
    }

    /// States visited so far.
    pub fn visited(&self) -> usize {
        self.nodes.len()
    }

    /// Frontier states found so far (each ends a trace, before identical traces are merged).
    pub fn frontier(&self) -> usize {
        self.frontier
    }

    /// The path to node `i`, as states with the action taken from each.
    fn path(&self, i: usize) -> Vec<(SysState, Option<Action>)> {
        let mut out = Vec::new();
        let mut at = Some(i);
        let mut next_action: Option<Action> = None;
        while let Some(j) = at {
            let n = &self.nodes[j];
            out.push((n.state.clone(), next_action.take()));
            next_action = n.action.clone();
            at = n.parent;
        }
        out.reverse();
        out
    }

    /// Expands node `i`; returns whether it is a frontier state (at the depth, or with no
    /// enabled action).
    fn expand(&mut self, i: usize) -> bool {
        let depth = self.nodes[i].depth;
        if depth >= self.depth {
            return true;
        }
        let mut actions = Vec::new();
        self.model.actions(&self.nodes[i].state, &mut actions);
        let mut terminal = true;
        for action in actions {
            let Some(next) = self.model.next_state(&self.nodes[i].state, action.clone()) else {
                continue;
            };
            if !Model::within_boundary(&self.model, &next) {
                continue;
            }
            terminal = false;
            if !self.visited.insert(fingerprint(&next)) {
                continue;
            }
            self.queue.push_back(self.nodes.len());
            self.nodes.push(Node {
                state: next,
                parent: Some(i),
                action: Some(action),
                depth: depth + 1,
            });
        }
        terminal
    }
}

impl Iterator for Exhaustive {
    type Item = Trace;

    fn next(&mut self) -> Option<Trace> {
        if self.max.is_some_and(|m| self.emitted.len() >= m) {
            return None;
        }
        while let Some(i) = self.queue.pop_front() {
            if !self.expand(i) {
                continue;
            }
            self.frontier += 1;
            let source = Source::Exhaustive { depth: self.depth };
            let trace = Trace::from_pairs(&self.cfg, source, &self.path(i));
            if self.emitted.insert(fingerprint(&trace)) {
                return Some(trace);
            }
        }
        None
    }
}

/// The distinct traces of `cfg` to `depth`, at most `max` of them (see [`Exhaustive`]).
pub fn exhaustive(cfg: &Config, depth: usize, max: Option<usize>) -> Vec<Trace> {
    Exhaustive::new(cfg, depth, max).collect()
}
