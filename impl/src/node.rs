//! The tokio shell around the core, assembled: storage, the peer listener and dialers, the
//! group-commit writer and the [`Driver`] task that runs the core.
//!
//! One task runs the core; everything else talks to it through one bounded channel of
//! [`Input`]s: HTTP handlers (client requests), peer connections (messages) and the storage
//! writer (durability reports). The driver carries out the core's effects: per-peer queues,
//! client reply channels and the group-commit writer.
//!
//! TLS settings are loaded and checked first, before the data directory is opened or a port
//! bound, so a bad certificate stops the start with a clear error and touches nothing.

use crate::config::NodeConfig;
use crate::core::{Core, PeerHealth, PersistId, Stats};
use crate::driver::{fatal, Driver};
use crate::ids::NodeId;
use crate::metrics::Metrics;
use crate::protocol::{ClientOp, ClientReply, PeerMessage};
use crate::ring::Ring;
use crate::storage::Storage;
use crate::transport;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Inputs queued for the core task.
pub enum Input {
    /// A client request and where to send its answer.
    Client {
        /// The operation.
        op: ClientOp,
        /// Where the answer goes.
        reply: oneshot::Sender<ClientReply>,
    },
    /// A message from a peer, with its share of the peer input budget (released once the
    /// core took it) and when it outlives the message lifetime (then it is dropped, not
    /// handled: see [`crate::transport::Limits::message_ttl`]).
    Peer {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: PeerMessage,
        /// Its share of the input budget.
        permit: Option<OwnedSemaphorePermit>,
        /// When it must no longer reach the core.
        expires: std::time::Instant,
    },
    /// The transport's connection to a peer came up or went down.
    Link(transport::Event),
    /// A request for the core's counters and what it believes of its peers.
    Stats(oneshot::Sender<(Stats, Vec<(NodeId, PeerHealth)>)>),
    /// Stop coordinating writes and answer once every write handed to storage is durable.
    Drain(oneshot::Sender<()>),
}

/// Capacity of the core's input queue: when full, HTTP handlers and peer readers wait.
const INPUT_QUEUE: usize = 8192;

/// The core's input queue, as the transport's way to deliver peer messages. Each message
/// first takes its size from a byte budget (KiB permits), and a reader waits while the budget
/// is spent: what peers have queued for the core is bounded in bytes, and the wait pushes
/// back on the senders through TCP.
#[derive(Clone)]
struct CoreInbox {
    inputs: mpsc::Sender<Input>,
    budget: Arc<Semaphore>,
}

impl transport::Deliver for CoreInbox {
    async fn deliver(
        &self,
        from: NodeId,
        msg: PeerMessage,
        size: usize,
        expires: std::time::Instant,
    ) -> bool {
        let kib = u32::try_from(size.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let Ok(permit) = self.budget.clone().acquire_many_owned(kib).await else {
            return false;
        };
        self.inputs
            .send(Input::Peer {
                from,
                msg,
                permit: Some(permit),
                expires,
            })
            .await
            .is_ok()
    }
}

/// A handle to a running node, used by the HTTP layer.
#[derive(Clone)]
pub struct NodeHandle {
    /// Sends inputs to the core task.
    pub inputs: mpsc::Sender<Input>,
    /// The ring (static membership).
    pub ring: Arc<Ring>,
    /// The configuration the node started with.
    pub config: Arc<NodeConfig>,
    /// The database, for metrics.
    pub storage: Storage,
    /// The identity this node's actors share (see [`crate::identity`]).
    pub identity: u64,
    /// The node's metrics, shared by the HTTP layer and the storage writer.
    pub metrics: Arc<Metrics>,
    /// The peer transport (its buffers, and the fault switch of test builds).
    pub transport: transport::Transport,
    /// HTTPS for the client API, when `[tls] clients = true` (see [`crate::tls`]); the HTTP
    /// server wraps its listener with it ([`crate::tls::HttpsListener`]).
    pub https: Option<crate::tls::HttpsAcceptor>,
    /// The history recorder, when `record_history` is set (see [`crate::recorder`]).
    pub recorder: Option<Arc<crate::recorder::Recorder>>,
}

impl NodeHandle {
    /// A clean stop: stop coordinating writes and wait until every write handed to storage
    /// before the stop is durable, so the requests in flight get their answers. (Correctness
    /// does not depend on it: a crash forgets only writes nobody was told about.)
    pub async fn shutdown(&self) -> Result<(), crate::storage::StorageError> {
        let (tx, rx) = oneshot::channel();
        if self.inputs.send(Input::Drain(tx)).await.is_ok() && rx.await.is_ok() {
            self.storage.persist_all()?;
        }
        Ok(())
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The hints the node holds could not be listed.
    #[error("cannot read the hints this node holds: {0}")]
    Hints(#[from] crate::core::StoreError),
    /// The cluster secret could not be read.
    #[error(transparent)]
    Secret(#[from] crate::config::SecretError),
    /// The TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The configured partition count differs from the one the data was written with.
    #[error("the data was written with {stored} partitions but {configured} are configured; Q is fixed when a cluster is created")]
    PartitionsChanged {
        /// Q recorded in the data directory.
        stored: u32,
        /// Q in the configuration.
        configured: u32,
    },
    /// The history file could not be opened.
    #[error("cannot open the history file {path}: {source}")]
    History {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Opens storage, binds the peer listener, connects to peers and starts the core task.
pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
    let ring = config.validate()?;
    let tls = crate::tls::load(&config.tls, config.id, &config.nodes)?;
    let me = NodeId(config.id);
    let storage = Storage::open_with(&config.data_dir, config.memtable_bytes)?;
    if let Some(stored) = storage.check_partitions(config.partitions)? {
        return Err(StartError::PartitionsChanged {
            stored,
            configured: config.partitions,
        });
    }
    let identity_file = config.identity_file();
    let (incarnation, fresh) = crate::identity::establish(&storage, me, &identity_file)?;
    if let Some(why) = fresh {
        tracing::warn!(identity = %format!("{:x}", incarnation.identity), reason = %why, "took a fresh identity");
    }
    let (inputs, rx) = mpsc::channel::<Input>(INPUT_QUEUE);

    let listener = TcpListener::bind(config.peer)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.peer,
            source,
        })?;
    let secret = config.secret()?;
    let endpoint = transport::Endpoint {
        me,
        identity: incarnation.identity,
        boot: incarnation.boot,
        secret,
        tls: tls.peers.clone(),
    };
    let peers: Vec<(NodeId, std::net::SocketAddr)> = config
        .nodes
        .iter()
        .map(|m| (NodeId(m.id), m.peer))
        .collect();
    let events = inputs.clone();
    let transport = transport::Transport::start(
        endpoint,
        &peers,
        listener,
        config.transport_limits(),
        transport::Faults::default(),
        CoreInbox {
            inputs: inputs.clone(),
            budget: Arc::new(Semaphore::new(
                crate::config::defaults::PEER_INPUT_BYTES.div_ceil(1024),
            )),
        },
        move |e| {
            // A full queue only delays the news: the next event carries the current state.
            let _ = events.try_send(Input::Link(e));
        },
    );

    // Durability reports have their own channel: they never wait behind new requests. It
    // holds at most one report per pending write, and the core bounds those.
    let (persisted, persisted_rx) = mpsc::unbounded_channel::<Vec<PersistId>>();
    let metrics = Arc::new(Metrics::default());
    let commit_metrics = metrics.clone();
    let writer = storage.spawn_writer(config.durability, move |ids, took| {
        commit_metrics.commit_seconds.observe(took.as_secs_f64());
        commit_metrics.commit_batch.observe(ids.len() as f64);
        let _ = persisted.send(ids);
    });

    tracing::info!(
        node = config.id,
        identity = %format!("{:x}", incarnation.identity),
        boot = incarnation.boot,
        peer_tls = tls.peers.is_some(),
        client_tls = tls.clients.is_some(),
        "starting"
    );
    let core = Core::new(
        me,
        incarnation,
        ring.clone(),
        config.core_config(),
        storage.clone(),
    )?;
    let driver = Driver::new(core, rx, persisted_rx, transport.clone(), writer);
    let core_task = tokio::spawn(driver.run());
    // The core task never returns while the node runs; if it panicked, the node could only
    // answer "unavailable" forever: crash instead, and recover on restart.
    tokio::spawn(async move {
        if let Err(e) = core_task.await {
            fatal(&format!("the protocol core stopped: {e}"));
        }
    });

    let recorder = match &config.record_history {
        Some(path) => Some(Arc::new(
            crate::recorder::Recorder::open(path, config.id).map_err(|source| {
                StartError::History {
                    path: path.clone(),
                    source,
                }
            })?,
        )),
        None => None,
    };
    Ok(NodeHandle {
        recorder,
        inputs,
        ring: Arc::new(ring),
        config: Arc::new(config),
        storage,
        identity: incarnation.identity,
        metrics,
        transport,
        https: tls.clients,
    })
}
