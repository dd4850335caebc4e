//! shoal's replication protocol as an exhaustively checked stateright model.
//!
//! This crate is the *specification* of shoal: Dynamo-style servers on a fixed ring that
//! coordinate puts and gets with `R`/`W` quorums, each request with its own deadline (a server
//! outside a key's preference list forwards puts), version values with dotted version vector
//! sets, and keep data available with sloppy quorum and hinted handoff, read repair,
//! anti-entropy and tombstone reaping — under a network that reorders, drops and duplicates,
//! servers that crash and recover with their durable store, and a failure detector that may
//! suspect anyone. It is small and plain on purpose (ordered maps, no optimisation) and shares
//! no code with the node (`impl/`), yet describes the node: where they differ the model states
//! the node's behaviour, and the conformance crate replays its traces against the node's core.
//!
//! Map: [`value`] values and requests, [`dvv`] the DVVSet and the classic vector clock,
//! [`clock`] a key's clock under either scheme, [`ring`] placement, [`msg`] the messages,
//! [`server`] and [`client`] the actors, [`history`] the ghost variables, [`properties`] what
//! is checked, [`config`] the named configurations and their overrides, [`model`] the
//! assembly, [`check`] the run, [`trace`] the traces for replay (their format, the exhaustive
//! export, seeded walks) and their rendering.
//!
//! Vocabulary, shared with the node: a *value* is one write's content (data or a tombstone);
//! a *dot* `(actor, counter)` names one write, the actor being a server ([`dvv::NodeId`]); a
//! *version vector* is a causal history, and the *context* a client carries is one; a *clock*
//! is a key's DVVSet (version vector and dotted siblings) or, in the classic scheme, its
//! siblings with per-sibling vector clocks; a *request* is named by a
//! [`value::RequestId`].
#![deny(unsafe_code, missing_docs)]

pub mod actor;
pub mod check;
pub mod client;
pub mod clock;
pub mod config;
pub mod dvv;
pub mod history;
pub mod model;
pub mod msg;
pub mod mutation;
pub mod pairs;
pub mod properties;
pub mod ring;
pub mod server;
pub mod trace;
pub mod value;
