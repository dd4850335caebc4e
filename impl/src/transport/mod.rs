//! Node-to-node transport: one long-lived, authenticated TCP connection per peer and direction,
//! optionally inside mutual TLS, that never loses a message silently.
//!
//! Each node dials every peer and sends all its messages to that peer over that connection
//! ([`outbound`]); the peer answers on the same connection with acknowledgements and
//! heartbeat replies ([`inbound`]). Both sides first prove they hold the cluster secret
//! ([`auth`]). Messages are numbered; the sender keeps each one until the receiver says it
//! reached its core, and resends the rest on a new connection after a failure, a missed
//! heartbeat or the peer's restart (seen when the restarted peer dials in with a newer boot),
//! so the first request after a peer restarts gets through. Buffers are bounded in bytes: a
//! send that would overflow one fails at once and the caller knows. A full core queue stops
//! reading from the socket, pushing back on the sender through TCP and its acknowledgements.
//! A malformed or oversized frame closes that connection with a logged reason.
//!
//! Every message has a lifetime ([`Limits::message_ttl`]): the sender stamps it with its own
//! clock when it is queued, the receiver measures its age against the clock the dialer sent in
//! its hello, and a message older than the lifetime is dropped and counted instead of being
//! delivered — so a message held back by a partition, a paused process or a long queue never
//! reaches a core late.
//!
//! Connection state feeds the failure detector: [`Event::Up`] once a connection is
//! authenticated, [`Event::Down`] when it fails.
//!
//! With peer TLS on ([`Endpoint::tls`], see `crate::tls`), each connection first runs a
//! rustls handshake — the dialer checks the acceptor's certificate, the acceptor requires the
//! dialer's — and everything above, the secret's challenge–response included, runs inside it.
//! The TLS handshake counts as part of the handshake: it runs after the connection took its
//! pre-authentication slot and within the same deadline, and a failure closes the connection
//! with a logged reason like any failed handshake. The connection code is generic over the
//! stream (`AsyncRead + AsyncWrite`, split with `tokio::io::split`), so plain and TLS
//! connections share it.

pub mod auth;
mod faults;
mod frame;
mod inbound;
mod outbound;

pub use auth::{Secret, MIN_SECRET};
pub use faults::{FaultSpec, Faults};
pub use frame::{Frame, MAX_FRAME, PRE_AUTH_FRAME};
pub use inbound::Deliver;
pub use outbound::SendError;

use crate::ids::NodeId;
use crate::protocol::PeerMessage;
use crate::tls::PeerTls;
use inbound::Sessions;
use outbound::Outbound;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Why a connection was closed or a frame could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The frame did not decode (or, sending, did not encode).
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    /// The peer did not follow the handshake, or stopped answering.
    #[error("bad handshake: {0}")]
    Handshake(String),
    /// The peer refused the connection.
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The frame is larger than a peer accepts; sending it would only make the peer close
    /// the connection.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The TLS handshake failed (a certificate the CA does not vouch for, a wrong name, no
    /// client certificate, a peer not speaking TLS, ...).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

/// The limits and timings of the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of unacknowledged messages kept per peer before sends fail.
    pub buffer_bytes: usize,
    /// Inbound connections accepted from one IP address at once.
    pub connections_per_address: usize,
    /// Inbound connections accepted at once.
    pub connections: usize,
    /// How long a dial may take.
    pub connect_timeout: Duration,
    /// How long the whole handshake may take.
    pub handshake_timeout: Duration,
    /// How often the dialer pings.
    pub heartbeat: Duration,
    /// Silence after which a connection is declared dead.
    pub dead_after: Duration,
    /// A message's lifetime: one not handed to the peer's core within this long of being
    /// queued is dropped (by the sender before resending it, by the receiver before delivering
    /// it) and counted. Every protocol message is either part of a request that has timed out
    /// by then, or is sent again by the mechanism that sent it (handoff, anti-entropy), so
    /// nothing acknowledged depends on it; what the bound buys is that no message older than
    /// this can reach a core, which is what lets a deleted key's history be forgotten safely
    /// (see `crate::core::forget`).
    pub message_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            buffer_bytes: 64 << 20,
            connections_per_address: 8,
            connections: 256,
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_millis(crate::config::defaults::HANDSHAKE_TIMEOUT_MS),
            heartbeat: Duration::from_millis(500),
            dead_after: Duration::from_secs(3),
            message_ttl: Duration::from_millis(crate::config::defaults::MESSAGE_TTL_MS),
        }
    }
}

/// A change in a peer connection's state, for the failure detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An authenticated connection to the peer is up.
    Up {
        /// The peer.
        peer: NodeId,
        /// Its boot number.
        boot: u64,
    },
    /// The connection to the peer failed.
    Down {
        /// The peer.
        peer: NodeId,
    },
}

/// Who this node is on the wire.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// This node.
    pub me: NodeId,
    /// Its data identity.
    pub identity: u64,
    /// Its boot number.
    pub boot: u64,
    /// The cluster secret.
    pub secret: Secret,
    /// Mutual TLS for every peer connection; `None`: plain TCP.
    pub tls: Option<Arc<PeerTls>>,
}

/// What the connection tasks share.
pub(crate) struct Shared {
    me: NodeId,
    identity: u64,
    boot: u64,
    instance: u64,
    secret: Secret,
    tls: Option<Arc<PeerTls>>,
    members: Vec<NodeId>,
    limits: Limits,
    faults: Faults,
    sessions: Mutex<Sessions>,
    outbound: HashMap<NodeId, Arc<Outbound>>,
    events: Box<dyn Fn(Event) + Send + Sync>,
    /// The zero of this process's transport clock (see [`Shared::clock`]).
    started: Instant,
    /// Messages dropped for being older than [`Limits::message_ttl`], both directions.
    expired: AtomicU64,
}

impl Shared {
    fn event(&self, e: Event) {
        (self.events)(e)
    }

    /// Milliseconds since this transport started: the stamp on a queued message and on a
    /// hello. Only ever compared with stamps of the same process.
    fn clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The peer dialed in with a newer boot: our connection to it is to a dead process.
    fn peer_restarted(&self, peer: NodeId) {
        if let Some(out) = self.outbound.get(&peer) {
            out.restart.notify_one();
        }
    }
}

/// The running transport: send to peers; inbound messages go to the `Deliver` given at start.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
}

impl Transport {
    /// Starts accepting on `listener` and dialing every peer of `peers` (member id and peer
    /// address; this node's own entry is skipped). Messages from peers are handed to
    /// `deliver`, connection changes to `events`.
    pub fn start<D: Deliver>(
        endpoint: Endpoint,
        peers: &[(NodeId, SocketAddr)],
        listener: TcpListener,
        limits: Limits,
        faults: Faults,
        deliver: D,
        events: impl Fn(Event) + Send + Sync + 'static,
    ) -> Transport {
        let outbound: HashMap<NodeId, Arc<Outbound>> = peers
            .iter()
            .filter(|(id, _)| *id != endpoint.me)
            .map(|(id, addr)| (*id, Outbound::new(*id, *addr, limits.buffer_bytes)))
            .collect();
        let shared = Arc::new(Shared {
            me: endpoint.me,
            identity: endpoint.identity,
            boot: endpoint.boot,
            instance: rand::random(),
            secret: endpoint.secret,
            tls: endpoint.tls,
            members: peers.iter().map(|(id, _)| *id).collect(),
            limits,
            faults,
            sessions: Mutex::new(Sessions::default()),
            outbound,
            events: Box::new(events),
            started: Instant::now(),
            expired: AtomicU64::new(0),
        });
        for out in shared.outbound.values() {
            tokio::spawn(outbound::run(out.clone(), shared.clone()));
        }
        tokio::spawn(inbound::accept(listener, shared.clone(), deliver));
        Transport { shared }
    }

    /// Queues `msg` for `to`. Fails at once if `to` is unknown or its buffer is full.
    pub fn send(&self, to: NodeId, msg: PeerMessage) -> Result<(), SendError> {
        match self.shared.outbound.get(&to) {
            Some(out) => out.send(msg, self.shared.clock()),
            None => Err(SendError::Unknown(to)),
        }
    }

    /// Messages dropped so far for outliving [`Limits::message_ttl`].
    pub fn expired(&self) -> u64 {
        self.shared.expired.load(Ordering::Relaxed)
    }

    /// Counts a message the node itself dropped for outliving its lifetime after the
    /// transport delivered it (it waited too long in the core's queue).
    pub fn count_expired(&self) {
        self.shared.expired.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes waiting for each peer's acknowledgement.
    pub fn buffered(&self) -> Vec<(NodeId, usize)> {
        let mut out: Vec<(NodeId, usize)> = self
            .shared
            .outbound
            .iter()
            .map(|(id, o)| (*id, o.buffered_bytes()))
            .collect();
        out.sort();
        out
    }

    /// The fault switch (test builds only act on it).
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }
}

#[cfg(test)]
pub(crate) mod tests;
