//! shoal's replication protocol as an exhaustively checked stateright model.
//!
//! This crate is the *specification* of shoal: Dynamo-style servers on a fixed ring that
//! coordinate puts and gets with per-request `R`/`W` quorums, version values with dotted
//! version vector sets, and keep data available with sloppy quorum and hinted handoff, read
//! repair, anti-entropy and tombstone reaping — under a network that reorders, drops and
//! duplicates, servers that crash and recover with their durable store, and a failure detector
//! that may suspect anyone. It is small and plain on purpose (ordered maps, no optimisation)
//! and shares no code with the node (`impl/`); the conformance crate replays its traces.
//!
//! Map: [`dvv`] the clocks, [`ring`] placement, [`server`] and [`client`] the actors,
//! [`history`] the ghost variables, [`properties`] what is checked, [`config`] the named
//! configurations, [`model`] the assembly, [`check`] the run, [`trace`] the exported steps.
#![deny(unsafe_code, missing_docs)]

pub mod actor;
pub mod check;
pub mod client;
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
pub mod version;
