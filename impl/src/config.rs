//! Node configuration: a TOML file, with command-line overrides applied by `shoal serve`.
//!
//! ```toml
//! id = 1
//! http = "127.0.0.1:8701"
//! peer = "127.0.0.1:9701"
//! data_dir = "shoal-data/n1"
//! secret_file = "shoal-data/secret"   # the cluster secret, the same file content on every node
//! partitions = 64
//! n = 3
//! r = 2
//! w = 2
//! durability = "sync"        # or "buffered": acknowledge before fsync (weaker, see docs)
//! request_timeout_ms = 2000
//! max_value_bytes = 1048576
//!
//! [tls]                       # optional; without it, plain TCP (see docs/TLS.md)
//! cert = "certs/n1.pem"       # this node's certificate chain (PEM), its own certificate first
//! key = "certs/n1.key"        # its private key (PEM: PKCS#8, PKCS#1 or SEC1)
//! ca = "certs/ca.pem"         # the CA bundle (PEM) a peer's certificate must chain to
//! peers = true                # mutual TLS between nodes (needs cert, key and ca)
//! clients = true              # the HTTP API over HTTPS (needs cert and key)
//! peer_name = "n{id}.shoal"   # optional: the name a peer's certificate must carry
//!                             # ({id} = its node id); default: the IP of its `peer` address
//!
//! [[nodes]]
//! id = 1
//! peer = "127.0.0.1:9701"
//! http = "127.0.0.1:8701"
//! zone = "a"                  # optional
//! ```
//!
//! TLS is optional and off by default. Peer TLS is mutual: each node presents its certificate
//! and accepts only peers whose certificate chains to `ca`, and the cluster secret is still
//! checked inside the encrypted connection, so a leaked certificate alone does not admit a
//! node. Files are read and checked when the node starts (see the node's `tls` module).

use crate::core::CoreConfig;
use crate::ids::NodeId;
use crate::ring::{NodeSpec, Ring, RingError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every default setting, in one place: the file's, the flags', and the core's.
pub mod defaults {
    /// Partition count `Q`.
    pub const PARTITIONS: u32 = 64;
    /// Replicas per key `N`.
    pub const N: usize = 3;
    /// Read quorum `R`.
    pub const R: usize = 2;
    /// Write quorum `W`.
    pub const W: usize = 2;
    /// How long a request waits for its quorum, in milliseconds.
    pub const REQUEST_TIMEOUT_MS: u64 = 2000;
    /// Largest value accepted, in bytes.
    pub const MAX_VALUE_BYTES: usize = 1 << 20;
    /// Bytes of durable clocks the core keeps in memory.
    pub const CACHE_BYTES: u64 = 64 << 20;
    /// How often hints are offered to their owners, in milliseconds.
    pub const HANDOFF_INTERVAL_MS: u64 = 100;
    /// Hints offered to one owner and not yet acknowledged, at most.
    pub const HANDOFF_BATCH: usize = 256;
    /// How often anti-entropy starts an exchange, in milliseconds.
    pub const AAE_INTERVAL_MS: u64 = 500;
    /// Client requests a node works on at once; beyond, `503` with `Retry-After`.
    pub const MAX_IN_FLIGHT: usize = 1024;
    /// Bytes of client request bodies a node holds at once (admitted requests).
    pub const REQUEST_BYTES: usize = 256 << 20;
    /// Bytes of one memtable of stored clocks (fjall's default). The store holds at most five
    /// (one filling, four sealed waiting for their flush; a fifth stalls writes).
    pub const MEMTABLE_BYTES: u64 = 64 << 20;
    /// Bytes of peer messages waiting for the core.
    pub const PEER_INPUT_BYTES: usize = 256 << 20;
    /// Longest request timeout accepted, in milliseconds (one hour).
    pub const MAX_REQUEST_TIMEOUT_MS: u64 = 3_600_000;
    /// A peer message's lifetime, in milliseconds: one not delivered within it is dropped.
    pub const MESSAGE_TTL_MS: u64 = 60_000;
    /// How long a peer handshake may take, in milliseconds; it bounds how much younger than
    /// it is a message can look to its receiver.
    pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
    /// How long a deleted key's history must stay unchanged everywhere before it is
    /// forgotten, in milliseconds (one hour; 0: never forget).
    pub const DELETE_GRACE_MS: u64 = 3_600_000;
}

/// When a replica may acknowledge a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After `fdatasync` of the journal (group commit: writes that arrive together share one).
    #[default]
    Sync,
    /// After the write reached the operating system's buffers, before fsync: survives a crash
    /// of the process, not of the machine. An explicit, weaker option; never the default.
    Buffered,
}

/// A member of the static cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its node id.
    pub id: u64,
    /// Its peer (node-to-node) address.
    pub peer: SocketAddr,
    /// Its client HTTP address, reported by `/admin/nodes`.
    pub http: SocketAddr,
    /// Optional zone for placement.
    #[serde(default)]
    pub zone: Option<String>,
}

fn default_partitions() -> u32 {
    defaults::PARTITIONS
}
fn default_n() -> usize {
    defaults::N
}
fn default_r() -> usize {
    defaults::R
}
fn default_w() -> usize {
    defaults::W
}
fn default_timeout() -> u64 {
    defaults::REQUEST_TIMEOUT_MS
}
fn default_max_value() -> usize {
    defaults::MAX_VALUE_BYTES
}
fn default_true() -> bool {
    true
}
fn default_message_ttl() -> u64 {
    defaults::MESSAGE_TTL_MS
}
fn default_delete_grace() -> u64 {
    defaults::DELETE_GRACE_MS
}
fn default_max_in_flight() -> usize {
    defaults::MAX_IN_FLIGHT
}
fn default_request_bytes() -> usize {
    defaults::REQUEST_BYTES
}
fn default_aae_interval() -> u64 {
    defaults::AAE_INTERVAL_MS
}
fn default_memtable_bytes() -> u64 {
    defaults::MEMTABLE_BYTES
}

/// Everything one node needs to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's id; must appear in `nodes`.
    pub id: u64,
    /// Where the client HTTP API listens.
    pub http: SocketAddr,
    /// Where peers connect.
    pub peer: SocketAddr,
    /// Where fjall keeps this node's data.
    pub data_dir: PathBuf,
    /// The file holding the cluster secret peers authenticate each other with (at least 16
    /// bytes; surrounding whitespace is ignored). Every node of a cluster reads the same one.
    pub secret_file: PathBuf,
    /// The identity file kept beside the data directory (default `<data_dir>.identity`);
    /// it tells a restored or copied data directory from the node's own (see the node's
    /// `identity` module). Never copy it with the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// Partition count `Q` (a power of two, the same on every node).
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Replicas per key.
    #[serde(default = "default_n")]
    pub n: usize,
    /// Default read quorum.
    #[serde(default = "default_r")]
    pub r: usize,
    /// Default write quorum.
    #[serde(default = "default_w")]
    pub w: usize,
    /// When replicas acknowledge writes.
    #[serde(default)]
    pub durability: Durability,
    /// How long a request waits for its quorum.
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    /// Largest value accepted, in bytes (larger: 413).
    #[serde(default = "default_max_value")]
    pub max_value_bytes: usize,
    /// Whether requests use fallbacks for unreachable replicas (sloppy quorum). On by
    /// default, as in Dynamo: writes stay available while `W` nodes of the ring are up.
    #[serde(default = "default_true")]
    pub sloppy_quorum: bool,
    /// A peer message's lifetime: one not delivered within it is dropped and counted (see
    /// `transport::Limits::message_ttl`). At least `request_timeout_ms`.
    #[serde(default = "default_message_ttl")]
    pub message_ttl_ms: u64,
    /// How long a deleted key's history must stay unchanged on every primary, with no hint
    /// anywhere, before it is forgotten (0: never). At least `request_timeout_ms +
    /// message_ttl_ms + 10000`, so no older copy of the key can still be on its way.
    #[serde(default = "default_delete_grace")]
    pub delete_grace_ms: u64,
    /// Client requests worked on at once; beyond, `503` with `Retry-After`.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Bytes of client request bodies held at once; a request that would exceed it waits
    /// outside (`503` with `Retry-After`).
    #[serde(default = "default_request_bytes")]
    pub request_bytes: usize,
    /// Bytes of one memtable of the stored clocks; the store holds up to five before writes
    /// stall, so this bounds the storage engine's write buffers (at least 1 MiB).
    #[serde(default = "default_memtable_bytes")]
    pub memtable_bytes: u64,
    /// How often anti-entropy starts an exchange with a replica, in milliseconds; 0 switches
    /// anti-entropy off (for measuring its cost; replicas then heal only by reads and hints).
    #[serde(default = "default_aae_interval")]
    pub anti_entropy_interval_ms: u64,
    /// Append every client operation's invocation and completion to this file as JSON lines
    /// (see `shoal::recorder`); for tests and audits, off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_history: Option<PathBuf>,
    /// TLS for peer and client traffic (`[tls]`); absent: plain TCP.
    #[serde(default, skip_serializing_if = "TlsConfig::is_empty")]
    pub tls: TlsConfig,
    /// The static membership.
    pub nodes: Vec<Member>,
}

/// The `[tls]` table: certificate files and which traffic they protect. Every field is
/// optional; nothing enabled means plain TCP, as without the table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// This node's certificate chain (PEM), its own certificate first, then intermediates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The CA bundle (PEM) a peer's certificate must chain to, on both ends of a peer
    /// connection. Required with `peers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Mutual TLS between nodes: dialers verify the acceptor's certificate, acceptors require
    /// and verify the dialer's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub peers: bool,
    /// Serve the client HTTP API over HTTPS (client certificates are not asked for).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clients: bool,
    /// The name a peer's certificate must carry, `{id}` standing for the peer's node id (e.g.
    /// `n{id}.shoal.internal`). Default: the IP address of the peer's `peer` address, which
    /// its certificate must then list as an IP subject alternative name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
}

impl TlsConfig {
    /// Whether nothing is set (the table can be left out).
    pub fn is_empty(&self) -> bool {
        self == &TlsConfig::default()
    }

    /// Whether any traffic is to be encrypted.
    pub fn enabled(&self) -> bool {
        self.peers || self.clients
    }
}

/// Why the cluster secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read the cluster secret {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The secret is too short to resist guessing.
    #[error("the cluster secret in {path} is {len} bytes; at least {} are required (`shoal dev` writes one; or `head -c 32 /dev/urandom | base64 > FILE`)", crate::transport::MIN_SECRET)]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a node configuration.
    #[error("invalid configuration {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<toml::de::Error>,
    },
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The membership does not form a ring.
    #[error("invalid ring: {0}")]
    Ring(#[from] RingError),
}

impl NodeConfig {
    /// A configuration with every default setting.
    pub fn new(
        id: u64,
        http: SocketAddr,
        peer: SocketAddr,
        data_dir: PathBuf,
        secret_file: PathBuf,
        nodes: Vec<Member>,
    ) -> NodeConfig {
        NodeConfig {
            id,
            http,
            peer,
            data_dir,
            secret_file,
            identity_file: None,
            partitions: defaults::PARTITIONS,
            n: defaults::N,
            r: defaults::R,
            w: defaults::W,
            durability: Durability::default(),
            request_timeout_ms: defaults::REQUEST_TIMEOUT_MS,
            max_value_bytes: defaults::MAX_VALUE_BYTES,
            sloppy_quorum: true,
            message_ttl_ms: defaults::MESSAGE_TTL_MS,
            delete_grace_ms: defaults::DELETE_GRACE_MS,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            request_bytes: defaults::REQUEST_BYTES,
            memtable_bytes: defaults::MEMTABLE_BYTES,
            anti_entropy_interval_ms: defaults::AAE_INTERVAL_MS,
            record_history: None,
            tls: TlsConfig::default(),
            nodes,
        }
    }

    /// Reads a configuration file (see [`NodeConfig::validate`] for the checks).
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Ok(config)
    }

    /// Checks the settings against each other and builds the ring.
    pub fn validate(&self) -> Result<Ring, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.request_timeout_ms == 0
            || self.request_timeout_ms > defaults::MAX_REQUEST_TIMEOUT_MS
        {
            return invalid(format!(
                "request_timeout_ms = {} must be between 1 and {} (one hour)",
                self.request_timeout_ms,
                defaults::MAX_REQUEST_TIMEOUT_MS
            ));
        }
        if self.message_ttl_ms < self.request_timeout_ms {
            return invalid(format!(
                "message_ttl_ms = {} must be at least request_timeout_ms = {}, or replicas could not answer a request in time",
                self.message_ttl_ms, self.request_timeout_ms
            ));
        }
        let min_grace = self.min_delete_grace_ms();
        if self.delete_grace_ms != 0 && self.delete_grace_ms < min_grace {
            return invalid(format!(
                "delete_grace_ms = {} must be 0 (never forget) or at least {min_grace} (request_timeout_ms + message_ttl_ms + 10000), or an older copy of a forgotten key could still arrive",
                self.delete_grace_ms
            ));
        }
        // A value must fit in a clock with room to spare, or every put would be refused.
        let value_limit = crate::core::MAX_CLOCK_BYTES / 2;
        if self.max_value_bytes == 0 || self.max_value_bytes > value_limit {
            return invalid(format!(
                "max_value_bytes = {} must be between 1 and {value_limit} (half the largest clock a key may hold)",
                self.max_value_bytes
            ));
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight must be at least 1".into());
        }
        if self.request_bytes < self.max_value_bytes {
            return invalid(format!(
                "request_bytes = {} must be at least max_value_bytes = {}, or no write fits",
                self.request_bytes, self.max_value_bytes
            ));
        }
        if self.anti_entropy_interval_ms > defaults::MAX_REQUEST_TIMEOUT_MS {
            return invalid(format!(
                "anti_entropy_interval_ms = {} must be at most {} (0 switches it off)",
                self.anti_entropy_interval_ms,
                defaults::MAX_REQUEST_TIMEOUT_MS
            ));
        }
        if self.memtable_bytes < 1 << 20 {
            return invalid(format!(
                "memtable_bytes = {} must be at least 1048576 (1 MiB)",
                self.memtable_bytes
            ));
        }
        if !self.nodes.iter().any(|m| m.id == self.id) {
            return Err(ConfigError::Invalid(format!(
                "node id {} is not among the configured nodes",
                self.id
            )));
        }
        if self.n == 0 || self.n > self.nodes.len() {
            return Err(ConfigError::Invalid(format!(
                "n = {} must be between 1 and the number of nodes ({})",
                self.n,
                self.nodes.len()
            )));
        }
        for (name, q) in [("r", self.r), ("w", self.w)] {
            if q == 0 || q > self.n {
                return Err(ConfigError::Invalid(format!(
                    "{name} = {q} must be between 1 and n = {}",
                    self.n
                )));
            }
        }
        if self.http == self.peer {
            return invalid(format!(
                "http and peer must be different addresses, both are {}",
                self.http
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut addrs = std::collections::BTreeSet::new();
        for m in &self.nodes {
            if !ids.insert(m.id) {
                return invalid(format!("node id {} appears twice in [[nodes]]", m.id));
            }
            for a in [m.peer, m.http] {
                if !addrs.insert(a) {
                    return invalid(format!("address {a} appears twice in [[nodes]]"));
                }
            }
        }
        if let Some(me) = self.nodes.iter().find(|m| m.id == self.id) {
            if me.peer.port() != self.peer.port() {
                return invalid(format!(
                    "this node's peer address {} does not match its [[nodes]] entry {}",
                    self.peer, me.peer
                ));
            }
        }
        let specs = self
            .nodes
            .iter()
            .map(|m| NodeSpec {
                id: NodeId(m.id),
                zone: m.zone.clone(),
                weight: 1,
            })
            .collect();
        Ok(Ring::new(self.partitions, specs)?)
    }

    /// The cluster secret, read from `secret_file`.
    pub fn secret(&self) -> Result<crate::transport::Secret, SecretError> {
        let path = &self.secret_file;
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.clone(),
            source,
        })?;
        let trimmed = bytes.trim_ascii().to_vec();
        let len = trimmed.len();
        crate::transport::Secret::new(trimmed).ok_or(SecretError::TooShort {
            path: path.clone(),
            len,
        })
    }

    /// The identity file: the configured one, or `<data_dir>.identity`.
    pub fn identity_file(&self) -> PathBuf {
        self.identity_file
            .clone()
            .unwrap_or_else(|| crate::identity::default_identity_file(&self.data_dir))
    }

    /// The core's share of the settings.
    pub fn core_config(&self) -> CoreConfig {
        CoreConfig {
            n: self.n,
            r: self.r,
            w: self.w,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            sloppy_quorum: self.sloppy_quorum,
            forget_after: (self.delete_grace_ms > 0)
                .then(|| Duration::from_millis(self.delete_grace_ms)),
            message_lifetime: Duration::from_millis(
                self.message_ttl_ms + defaults::HANDSHAKE_TIMEOUT_MS,
            ),
            aae_interval: Duration::from_millis(self.anti_entropy_interval_ms),
            ..CoreConfig::default()
        }
    }

    /// The shortest `delete_grace_ms` that is safe with these timeouts: a coordinator's
    /// request, a message's lifetime, and a margin for the handshake's bound on how young a
    /// message can look and for clocks that run at slightly different rates.
    pub fn min_delete_grace_ms(&self) -> u64 {
        self.request_timeout_ms
            .saturating_add(self.message_ttl_ms)
            .saturating_add(2 * defaults::HANDSHAKE_TIMEOUT_MS)
    }

    /// The transport's limits for these settings.
    pub fn transport_limits(&self) -> crate::transport::Limits {
        crate::transport::Limits {
            message_ttl: Duration::from_millis(self.message_ttl_ms),
            handshake_timeout: Duration::from_millis(defaults::HANDSHAKE_TIMEOUT_MS),
            ..crate::transport::Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let nodes = (1..=3)
            .map(|i| Member {
                id: i,
                peer: addr(9700 + i as u16),
                http: addr(8700 + i as u16),
                zone: None,
            })
            .collect();
        NodeConfig::new(1, addr(8701), addr(9701), "d".into(), "s".into(), nodes)
    }

    fn refused(change: impl FnOnce(&mut NodeConfig), says: &str) {
        let mut c = config();
        change(&mut c);
        match c.validate() {
            Err(e) => assert!(e.to_string().contains(says), "{e}"),
            Ok(_) => panic!("accepted a configuration that should say {says:?}"),
        }
    }

    #[test]
    fn a_configuration_that_cannot_work_is_refused_with_the_setting_named() {
        assert!(config().validate().is_ok());
        refused(|c| c.request_timeout_ms = 0, "request_timeout_ms = 0");
        refused(|c| c.request_timeout_ms = u64::MAX, "request_timeout_ms");
        refused(|c| c.max_value_bytes = 64 << 20, "max_value_bytes");
        refused(|c| c.max_value_bytes = 0, "max_value_bytes");
        refused(|c| c.max_in_flight = 0, "max_in_flight");
        refused(|c| c.request_bytes = 1, "request_bytes");
        refused(|c| c.memtable_bytes = 4096, "memtable_bytes");
        refused(
            |c| c.anti_entropy_interval_ms = u64::MAX,
            "anti_entropy_interval_ms",
        );
        refused(|c| c.http = c.peer, "different addresses");
        refused(|c| c.nodes[1].id = 1, "appears twice");
        refused(|c| c.nodes[2].peer = c.nodes[1].peer, "appears twice");
        refused(|c| c.n = 4, "n = 4");
        refused(|c| c.w = 0, "w = 0");
        refused(|c| c.partitions = 3, "power of two");
        refused(|c| c.id = 9, "not among");
    }
}
