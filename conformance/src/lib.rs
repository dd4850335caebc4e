//! shoal-conformance: the only crate that sees both the model (`shoal-model`) and the node
//! (`shoal`). It will hold the traces they share and replay them against the node's core;
//! until then it only states the dependency that keeps the two honest.

#![deny(unsafe_code, missing_docs)]
