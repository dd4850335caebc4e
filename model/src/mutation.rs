//! Deliberate bugs, one per mechanism the properties rely on, to show each property has teeth.
//!
//! A mutation switches off or breaks exactly one rule of the protocol. Checking a configuration
//! with a mutation must make a property fail; the tests in `tests/mutations.rs` pin which one.
//! Without a mutation (the default) none of these code paths is taken.

use serde::{Deserialize, Serialize};

/// One deliberate bug.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Mutation {
    /// The coordinator acknowledges a put once stored locally, without waiting for `W`.
    AckBeforeW,
    /// The get coordinator answers after `R - 1` replies.
    ReadBelowR,
    /// Replica writes are not saved: a crash forgets what was acknowledged.
    VolatileStore,
    /// Hints are not restored on recovery.
    DropHintsOnRecovery,
    /// The coordinator counts acknowledgements, not distinct replicas: a duplicate counts twice.
    CountDuplicateAcks,
    /// A replica replaces its clock with an incoming one instead of merging.
    OverwriteOnReplicate,
    /// Reaping forgets the key's causal context along with the tombstone.
    ReapForgetsContext,
    /// A put's reply hands back the new clock's whole causal context, which may cover
    /// concurrent siblings the client never saw.
    ReplyWholeContext,
    /// Forgetting removes a history after a single agreeing round, without the grace.
    ForgetAfterOneRound,
    /// Forgetting rounds ignore hints: a node holding (or having just handed off) a hint for
    /// the key does not stop the round agreeing.
    ForgetIgnoresHints,
    /// Anti-entropy pushes a values-free history to a replica that holds nothing of the key
    /// (which may have forgotten it).
    SyncRespreadsHistory,
    /// A server that forgot a key starts its next write of it under the same actor, reissuing
    /// the dots the forgotten history covered (no fresh epoch).
    ForgetReusesDots,
    /// A server whose data directory was wiped or restored from a backup keeps its identity,
    /// continuing the counters of what the directory still holds (`restore.rs`).
    RestoreKeepsIdentity,
}
