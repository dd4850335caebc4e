//! The receiving side: the peer listener and one task per inbound connection.
//!
//! A connection is counted against per-address and total limits before anything is read, and
//! until it authenticates its frames may be at most [`PRE_AUTH_FRAME`] bytes, with a deadline
//! for the whole handshake: a stranger costs a small, fixed amount of memory. An authenticated
//! connection delivers each message to the core once (a resent message already delivered is
//! skipped), acknowledges what it delivered, and answers heartbeats. A malformed frame closes
//! that connection with a logged reason; the node keeps serving. With peer TLS, the TLS
//! handshake (which requires the dialer's certificate) runs first, under the same slot and
//! deadline as the rest of the handshake.

use super::auth::{self, Role, Transcript};
use super::frame::{self, Frame, MAX_FRAME, PRE_AUTH_FRAME};
use super::{Shared, TransportError};
use crate::ids::NodeId;
use crate::protocol::{PeerMessage, PROTOCOL_VERSION};
use bytes::{Bytes, BytesMut};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Live inbound sessions: per peer, its identity and boot, and what was delivered from it.
#[derive(Default)]
pub(super) struct Sessions {
    peers: HashMap<NodeId, Session>,
    connections: HashMap<IpAddr, usize>,
    total: usize,
}

/// What is known of a peer's sending side.
#[derive(Clone, Copy, Debug)]
struct Session {
    identity: u64,
    boot: u64,
    /// A random number of the sending process, to tell a reconnection from a second process.
    instance: u64,
    /// Highest sequence delivered to the core from this boot.
    delivered: u64,
    /// Whether a connection of this boot is open now.
    live: bool,
}

/// Releases a connection's slot when the connection ends.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.connections.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.connections.remove(&self.ip);
            }
        }
    }
}

/// Accepts peer connections for ever.
pub(super) async fn accept<D>(listener: TcpListener, shared: Arc<Shared>, deliver: D)
where
    D: Deliver,
{
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let Some(slot) = take_slot(&shared, addr.ip()) else {
                    tracing::warn!(%addr, "refused peer connection: too many connections");
                    drop(stream);
                    continue;
                };
                let shared = shared.clone();
                let deliver = deliver.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = connection(stream, &shared, deliver).await {
                        tracing::warn!(%addr, reason = %e, "closed peer connection");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn take_slot(shared: &Arc<Shared>, ip: IpAddr) -> Option<Slot> {
    let mut s = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
    let per_ip = s.connections.get(&ip).copied().unwrap_or(0);
    if per_ip >= shared.limits.connections_per_address || s.total >= shared.limits.connections {
        return None;
    }
    s.total += 1;
    *s.connections.entry(ip).or_insert(0) += 1;
    Some(Slot {
        shared: shared.clone(),
        ip,
    })
}

/// Hands an authenticated peer's message to the core; waits while the core's queue is full.
pub trait Deliver: Clone + Send + Sync + 'static {
    /// Delivers `msg` from `from`, a frame of `size` bytes; `false` once the core is gone.
    /// The message must not reach the core after `expires` (see [`super::Limits::message_ttl`]).
    fn deliver(
        &self,
        from: NodeId,
        msg: PeerMessage,
        size: usize,
        expires: std::time::Instant,
    ) -> impl std::future::Future<Output = bool> + Send;
}

/// Serves one inbound connection: the TLS handshake if peer TLS is on, then [`session`].
async fn connection<D: Deliver>(
    stream: TcpStream,
    shared: &Shared,
    deliver: D,
) -> Result<(), TransportError> {
    let _ = stream.set_nodelay(true);
    // One deadline for the whole handshake, TLS included: a stranger holds its slot no longer.
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    match &shared.tls {
        None => session(stream, deadline, shared, deliver).await,
        Some(tls) => {
            let stream = tokio::time::timeout_at(deadline, tls.accept(stream))
                .await
                .map_err(|_| TransportError::Handshake("no TLS handshake in time".into()))?
                .map_err(TransportError::Tls)?;
            session(stream, deadline, shared, deliver).await
        }
    }
}

/// Serves one inbound connection over `stream` (plain or TLS): the secret's handshake by
/// `deadline`, then messages.
async fn session<S, D>(
    stream: S,
    deadline: Instant,
    shared: &Shared,
    deliver: D,
) -> Result<(), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    D: Deliver,
{
    let (read, write) = tokio::io::split(stream);
    let mut reader = FramedRead::new(read, frame::codec(PRE_AUTH_FRAME));
    let mut writer = FramedWrite::new(write, frame::codec(PRE_AUTH_FRAME));
    let handshake = handshake(&mut reader, &mut writer, shared);
    let (from, boot, mut delivered, hello) =
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(result) => result?,
            Err(_) => return Err(TransportError::Handshake("no hello in time".into())),
        };
    let _live = Live { shared, from, boot };
    if shared.faults.partitioned(from) {
        return Err(TransportError::Handshake(
            "partitioned by a test fault".into(),
        ));
    }
    reader.decoder_mut().set_max_frame_length(MAX_FRAME);
    let mut write = writer.into_inner();
    let mut acked = delivered;
    loop {
        let body = match reader.next().now_or_never() {
            Some(Some(Err(e))) if closed(&e) => return Ok(()),
            Some(Some(body)) => body?,
            Some(None) => return Ok(()),
            None => {
                // Nothing more buffered: acknowledge what was delivered, then wait.
                if delivered > acked {
                    send(&mut write, &Frame::Ack { upto: delivered }).await?;
                    acked = delivered;
                }
                // The dialer pings every heartbeat: silence this long means it is gone.
                match tokio::time::timeout(shared.limits.dead_after, reader.next()).await {
                    Ok(Some(Err(e))) if closed(&e) => return Ok(()),
                    Ok(Some(body)) => body?,
                    Ok(None) => return Ok(()),
                    Err(_) => {
                        return Err(TransportError::Handshake("the peer stopped sending".into()))
                    }
                }
            }
        };
        let size = body.len();
        match frame::decode(&body)? {
            Frame::Data { seq, at, msg } => {
                if seq <= delivered {
                    continue;
                }
                if shared.faults.drop_inbound(from) {
                    return Err(TransportError::Handshake("reset by a test fault".into()));
                }
                let expires = expiry(hello, at, shared.limits.message_ttl);
                if Instant::now() > expires {
                    // Too old to deliver; count it as handled so it is not resent.
                    shared.expired.fetch_add(1, Ordering::Relaxed);
                } else if !deliver.deliver(from, msg, size, expires.into_std()).await {
                    return Ok(());
                }
                delivered = seq;
                shared.delivered(from, boot, seq);
            }
            Frame::Ping => send(&mut write, &Frame::Pong).await?,
            other => {
                return Err(TransportError::Handshake(format!(
                    "unexpected frame {:?} after the handshake",
                    std::mem::discriminant(&other)
                )))
            }
        }
    }
}

/// Whether a read error only says the peer went away: a TLS peer that stopped without a
/// `close_notify` (as every killed or restarted process does), as plain TCP's end of stream.
fn closed(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
}

/// Marks a peer's session not live when its connection ends.
struct Live<'a> {
    shared: &'a Shared,
    from: NodeId,
    boot: u64,
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        let mut s = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(session) = s.peers.get_mut(&self.from) {
            if session.boot == self.boot {
                session.live = false;
            }
        }
    }
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(
    write: &mut W,
    frame: &Frame,
) -> Result<(), TransportError> {
    let mut buf = BytesMut::new();
    frame::encode(frame, &mut buf)?;
    write.write_all(&buf).await?;
    // A TLS stream may hold the record until flushed; for plain TCP this is free.
    write.flush().await?;
    Ok(())
}

/// When the dialer sent its hello, on both clocks: ours (when it arrived) and its own.
#[derive(Clone, Copy, Debug)]
pub(super) struct HelloTime {
    /// When the hello arrived here.
    pub(super) arrived: Instant,
    /// The dialer's transport clock in the hello.
    pub(super) clock: u64,
}

/// When a message the dialer stamped `at` (its transport clock) outlives `ttl`, on our clock.
///
/// The dialer's clock read `hello.clock` no later than `hello.arrived` on ours, so a message
/// stamped `at` was queued no later than `hello.arrived + (at - hello.clock)`: measured this
/// way a message is never younger than it really is by more than the hello's transit time,
/// which the handshake deadline bounds. Our own pauses and queues only make it look older.
pub(super) fn expiry(hello: HelloTime, at: u64, ttl: Duration) -> Instant {
    let queued = if at >= hello.clock {
        hello.arrived + Duration::from_millis(at - hello.clock)
    } else {
        let back = Duration::from_millis(hello.clock - at);
        hello.arrived.checked_sub(back).unwrap_or(hello.arrived)
    };
    queued + ttl
}

/// Authenticates the dialer; returns who it is, its boot, what was delivered from it, and
/// when it said hello.
async fn handshake<R, W>(
    reader: &mut FramedRead<R, tokio_util::codec::LengthDelimitedCodec>,
    writer: &mut FramedWrite<W, tokio_util::codec::LengthDelimitedCodec>,
    shared: &Shared,
) -> Result<(NodeId, u64, u64, HelloTime), TransportError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let first = reader
        .next()
        .await
        .ok_or_else(|| TransportError::Handshake("closed before hello".into()))??;
    let arrived = Instant::now();
    let (from, identity, boot, instance, dialer_nonce, hello) = match frame::decode(&first)? {
        Frame::Hello {
            version,
            from,
            to,
            identity,
            boot,
            instance,
            nonce,
            clock,
        } => {
            if version != PROTOCOL_VERSION {
                return Err(TransportError::Handshake(format!(
                    "protocol version {version}, this node speaks {PROTOCOL_VERSION}"
                )));
            }
            if to != shared.me {
                return Err(TransportError::Handshake(format!(
                    "hello for {to}, this is {}",
                    shared.me
                )));
            }
            if from == shared.me || !shared.members.contains(&from) {
                return Err(TransportError::Handshake(format!("{from} is not a member")));
            }
            (
                from,
                identity,
                boot,
                instance,
                nonce,
                HelloTime { arrived, clock },
            )
        }
        _ => {
            return Err(TransportError::Handshake(
                "the first frame is not a hello".into(),
            ))
        }
    };
    let acceptor_nonce = auth::nonce();
    let t = Transcript {
        dialer: from,
        acceptor: shared.me,
        dialer_boot: boot,
        acceptor_boot: shared.boot,
        dialer_nonce,
        acceptor_nonce,
    };
    let challenge = Frame::Challenge {
        boot: shared.boot,
        nonce: acceptor_nonce,
        proof: auth::prove(&shared.secret, Role::Acceptor, &t),
    };
    writer
        .send(Bytes::from(postcard::to_stdvec(&challenge)?))
        .await?;
    let answer = reader
        .next()
        .await
        .ok_or_else(|| TransportError::Handshake("closed during the handshake".into()))??;
    match frame::decode(&answer)? {
        Frame::Proof { proof } if auth::verify(&shared.secret, Role::Dialer, &t, &proof) => {}
        Frame::Proof { .. } => {
            return Err(TransportError::Handshake(format!(
                "{from} does not know the cluster secret"
            )))
        }
        _ => return Err(TransportError::Handshake("expected a proof".into())),
    }
    let delivered = match admit(shared, from, identity, boot, instance) {
        Ok(delivered) => delivered,
        Err(reason) => {
            let refuse = Frame::Refuse {
                reason: reason.clone(),
            };
            let _ = writer
                .send(Bytes::from(postcard::to_stdvec(&refuse)?))
                .await;
            return Err(TransportError::Refused(reason));
        }
    };
    writer
        .send(Bytes::from(postcard::to_stdvec(&Frame::Welcome {
            delivered,
        })?))
        .await?;
    Ok((from, boot, delivered, hello))
}

/// Records an authenticated session from `from`. A newer boot (or a fresh identity) replaces
/// the old session and tells our sending side the peer restarted; an older boot is a stale
/// process; the same identity and boot from another process while the first is connected is
/// two processes sharing one identity (a cloned machine), refused and logged.
fn admit(
    shared: &Shared,
    from: NodeId,
    identity: u64,
    boot: u64,
    instance: u64,
) -> Result<u64, String> {
    let mut restarted = false;
    let delivered = {
        let mut s = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let known = s.peers.get(&from).copied();
        let delivered = match known {
            Some(k) if k.identity == identity && k.boot == boot && k.instance != instance => {
                if k.live {
                    tracing::error!(peer = %from, "two live processes share one node identity; refusing the second (was a machine or data directory cloned?)");
                    return Err(format!(
                        "{from} is already connected from another process with this identity: two processes share one identity"
                    ));
                }
                0
            }
            Some(k) if k.identity == identity && k.boot > boot => {
                return Err(format!(
                    "{from} connected with boot {boot}, older than {}: a stale process",
                    k.boot
                ));
            }
            Some(k) if k.identity == identity && k.boot == boot => k.delivered,
            Some(_) => {
                restarted = true;
                0
            }
            None => 0,
        };
        s.peers.insert(
            from,
            Session {
                identity,
                boot,
                instance,
                delivered,
                live: true,
            },
        );
        delivered
    };
    if restarted {
        shared.peer_restarted(from);
    }
    Ok(delivered)
}

impl Shared {
    /// Records that messages up to `seq` from `from`'s boot `boot` reached the core.
    fn delivered(&self, from: NodeId, boot: u64, seq: u64) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(session) = s.peers.get_mut(&from) {
            if session.boot == boot {
                session.delivered = seq;
            }
        }
    }
}
