//! Replay: the node's real cores driven through the model's traces, compared after every step.
//!
//! A trace (`shoal_model::trace`, format in `model/README.md`) is a run of the model: each step
//! an event — a client's request, a message delivered or dropped, a timer, a crash or a
//! recovery — with what the model observed after it (the messages it sent, the reply a client
//! got, every server's saved store). [`replay`] runs the same events against a cluster of the
//! node's real [`shoal::Core`]s in a [`Harness`](crate::harness::Harness) — over the real fjall
//! store in temporary directories or the in-memory one — with a ring built from the trace's
//! placement, and after every step compares the model's observation with the node's state
//! through one abstraction function ([`crate::abstraction`] for the node, [`view`] for the
//! model: writes live and writes covered, never dots). It stops at the first difference.
//!
//! Model server `s` is node `NodeId(s + 1)`. How each event maps onto the node, and why, is
//! in `driver.rs` (events, messages, replies) and `timers.rs` (deadlines, handoff,
//! anti-entropy); `mirror.rs` re-runs the model beside the node for the volatile state a trace
//! does not carry. Where the node cannot follow a trace the replay ends as
//! [`Stop::Unsupported`] with a [`Reason`] — counted and printed, never skipped silently.

mod driver;
mod matching;
pub mod mirror;
pub mod placement;
mod report;
pub mod sources;
mod timers;
pub mod view;

use crate::store::{FjallStore, MemStore};
use shoal_model::clock::Scheme;
use shoal_model::trace::Trace;
use std::fmt;

pub use sources::{Source, Tally};

/// Which store the replayed cores run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The in-memory store (volume).
    Mem,
    /// The node's real fjall store, one temporary directory per node.
    Fjall,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<StoreKind, String> {
        match s {
            "mem" => Ok(StoreKind::Mem),
            "fjall" => Ok(StoreKind::Fjall),
            other => Err(format!("unknown store {other:?} (mem or fjall)")),
        }
    }
}

/// Why the node cannot follow a trace (or the rest of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The trace's configuration runs Dynamo's classic clock; the node has DVVSets only.
    ClassicClock,
    /// The trace's configuration has a deliberate bug switched on.
    Mutation,
    /// The placement cannot be expressed as a ring.
    Placement,
    /// The model fires a request's deadline while an earlier-started request of the same
    /// server is still pending: the node's deadlines are times, so they fire in start order.
    DeadlineOrder,
    /// The node refused a put whose context names versions the coordinator does not hold
    /// (`ClientReply::Stale`, HTTP 409); the model does not have that refusal yet.
    StaleContext,
    /// A node's hinted-handoff round fired at a step where the model fired another timer
    /// (the node's background rounds are due whenever its clock moves).
    HandoffRound,
    /// The model's anti-entropy pushes (`Sync`) to a server that is down: the node's exchange
    /// needs both ends up.
    SyncToDown,
    /// The model redelivers a duplicated message to a server after it restarted; the node's
    /// transport does not resend what the old incarnation received.
    CopyNotResent,
    /// The model fires a timer the replay does not map onto the node yet (forgetting deleted
    /// keys' histories, which the model is gaining).
    ModelTimer,
    /// The operator wipes or restores a data directory: the node's answer, a fresh identity,
    /// is decided by its shell (`identity.rs`), which the replay's harness does not run.
    Restore,
}

impl Reason {
    /// Every reason, in order.
    pub const ALL: [Reason; 10] = [
        Reason::ClassicClock,
        Reason::Mutation,
        Reason::Placement,
        Reason::DeadlineOrder,
        Reason::StaleContext,
        Reason::HandoffRound,
        Reason::SyncToDown,
        Reason::CopyNotResent,
        Reason::ModelTimer,
        Reason::Restore,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::ClassicClock => "classic clock",
            Reason::Mutation => "mutation",
            Reason::Placement => "placement",
            Reason::DeadlineOrder => "deadline out of start order",
            Reason::StaleContext => "stale context",
            Reason::HandoffRound => "handoff round at another timer",
            Reason::SyncToDown => "anti-entropy push to a server that is down",
            Reason::CopyNotResent => "duplicate redelivered after a restart",
            Reason::ModelTimer => "model timer not mapped",
            Reason::Restore => "wiped or restored directory",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The model and the node differ: where, what, and both sides' state.
#[derive(Clone, Debug)]
pub struct Divergence {
    /// The step (0-based) after which they differ.
    pub step: usize,
    /// What differs.
    pub what: String,
    /// The trace's prefix up to the step and both sides' state, for people.
    pub report: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "divergence at step {}: {}", self.step + 1, self.what)?;
        f.write_str(&self.report)
    }
}

/// Why a replay stopped before the end of its trace.
#[derive(Clone, Debug)]
pub enum Stop {
    /// The node cannot follow the trace from this step on.
    Unsupported {
        /// Why.
        reason: Reason,
        /// The step (0-based).
        step: usize,
        /// Details.
        detail: String,
    },
    /// The node and the model differ.
    Diverged(Box<Divergence>),
    /// The driver could not interpret the trace (a bug of the replay, not of either side).
    Broken {
        /// The step (0-based).
        step: usize,
        /// What went wrong.
        detail: String,
    },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Unsupported {
                reason,
                step,
                detail,
            } => write!(f, "unsupported at step {}: {reason}: {detail}", step + 1),
            Stop::Diverged(d) => d.fmt(f),
            Stop::Broken { step, detail } => {
                write!(f, "replay broken at step {}: {detail}", step + 1)
            }
        }
    }
}

/// How a replay ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Steps replayed and found equal.
    pub steps: usize,
    /// `Ok` when every step of the trace was replayed and equal.
    pub result: Result<(), Stop>,
}

/// Replays `trace` against the node's cores on `store`.
pub fn replay(trace: &Trace, store: StoreKind) -> Outcome {
    let early = |reason, detail: String| Outcome {
        steps: 0,
        result: Err(Stop::Unsupported {
            reason,
            step: 0,
            detail,
        }),
    };
    if trace.settings.scheme == Scheme::Classic {
        return early(Reason::ClassicClock, "the node keeps DVVSets only".into());
    }
    if let Some(m) = trace.settings.mutation {
        return early(Reason::Mutation, format!("{m:?}"));
    }
    let place = match placement::Placement::build(
        trace.settings.servers,
        usize::from(trace.settings.n),
        &trace.placement,
    ) {
        Ok(p) => p,
        Err(e) => return early(Reason::Placement, e),
    };
    let servers = usize::from(trace.settings.servers);
    match store {
        StoreKind::Mem => {
            let stores = (0..servers).map(|_| MemStore::default()).collect();
            driver::run(trace, place, stores)
        }
        StoreKind::Fjall => {
            let q = place.ring.partitions();
            let stores = (0..servers).map(|_| FjallStore::new(q)).collect();
            driver::run(trace, place, stores)
        }
    }
}
