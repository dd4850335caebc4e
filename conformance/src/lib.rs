//! shoal-conformance: the only crate that sees both the model (`shoal-model`) and the node
//! (`shoal`), and holds them together.
//!
//! - [`harness`]: the node's real protocol cores in one thread, every input explicit;
//! - [`store`]: an in-memory store for volume, and the node's real fjall store;
//! - [`abstraction`]: the one function from node state to the model's terms (writes and the
//!   causal order between them);
//! - [`history`]: a recorded history of a real run held to the model's invariants;
//! - [`replay`]: the node's cores driven through the model's traces, compared after every
//!   step through the abstraction;
//! - [`sim`]: the seeded simulation of a cluster of cores under faults, checking the model's
//!   invariants after every step.

#![deny(unsafe_code, missing_docs)]

pub mod abstraction;
pub mod harness;
pub mod history;
pub mod replay;
pub mod sim;
pub mod store;
