//! shoal-model: the protocol as a stateright model (being written).

#![deny(unsafe_code, missing_docs)]
