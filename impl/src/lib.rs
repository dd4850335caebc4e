//! shoal: a Dynamo-style key-value store node.
//!
//! The library holds the pieces the node is built from: causality ([`dvvset`]), placement
//! ([`ring`]) and, around them, the protocol core and its I/O shell. The `shoal` binary is a
//! thin command line over this library.

#![deny(unsafe_code, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod config;
pub mod core;
pub mod dvvset;
pub mod http;
pub mod metrics;
pub mod node;
pub mod node_id;
pub mod protocol;
pub mod ring;
pub mod storage;
pub mod transport;
pub mod value;

pub use dvvset::{Dot, DvvSet, VersionVector};
pub use node_id::NodeId;
pub use ring::{NodeSpec, Ring};
pub use value::Value;
