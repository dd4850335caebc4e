//! shoal: a Dynamo-style key-value store node.
//!
//! The library holds the pieces the node is built from: causality ([`DvvSet`], the per-key
//! clock), placement ([`Ring`]), the pure protocol [`Core`], and around it the I/O shell that
//! [`start`] assembles (fjall [`Storage`], TCP between nodes, the HTTP API of [`router`]).
//! [`client`] is the client side of the HTTP contract. The `shoal` binary is a thin command
//! line over this library; `docs/ARCHITECTURE.md` maps every module.
//!
//! Modules are private; what the binary, the tests and the conformance crate use is
//! re-exported here, so the compiler can show what nothing uses.

#![deny(unsafe_code, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod client;
mod config;
mod core;
mod driver;
mod dvvset;
mod http;
mod identity;
mod ids;
mod metrics;
mod node;
mod protocol;
pub mod recorder;
mod ring;
mod storage;
mod tls;
mod transport;
mod value;

pub use crate::config::{defaults, ConfigError, Durability, Member, NodeConfig, SecretError};
pub use crate::core::{
    clock_size_estimate, storage_key, ClientId, Core, CoreConfig, Effect, Incarnation, PeerHealth,
    PersistId, Stats, Store, StoreError, Time, Write, EPOCH_LEASE_BLOCK, MAX_CLOCK_BYTES,
    MAX_KEY_LEN, MAX_PENDING_PERSISTS, MAX_SIBLINGS,
};
pub use crate::dvvset::{
    DecodeError, Dot, DvvSet, VersionVector, MAX_CONTEXT_LEN, MAX_COUNTER, MAX_ENTRIES, MAX_VALUES,
};
pub use crate::http::router;
pub use crate::identity::{default_identity_file, FreshIdentity};
pub use crate::ids::{ActorId, NodeId};
pub use crate::node::{start, NodeHandle, StartError};
pub use crate::protocol::{ClientOp, ClientReply, Clock, PeerMessage, RequestId};
pub use crate::ring::{key_hash, Balance, NodeLoad, NodeSpec, Ring, RingError};
pub use crate::storage::{Storage, StorageError};
pub use crate::transport::{FaultSpec, Frame, Secret, MAX_FRAME, PRE_AUTH_FRAME};
pub use crate::value::Value;
pub use crate::{
    config::TlsConfig,
    tls::{dev_certificates, DevCertificates, HttpsAcceptor, HttpsListener, TlsError},
};
