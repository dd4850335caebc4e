//! The sending side of one peer: a buffer of unacknowledged messages and the task that dials,
//! authenticates, writes and resends.
//!
//! A message is numbered and kept in the buffer until the peer acknowledges that it handed it
//! to its core; when a connection dies (a write or read fails, or the peer stops answering the
//! heartbeat) the task redials with backoff and resends everything unacknowledged, after what
//! the peer says it already delivered. Protocol messages are idempotent, so a resend is safe.
//! So no message is lost while both nodes live: it is delivered, or it waits in a buffer
//! bounded in bytes, and a send that would overflow the buffer fails at once so the caller
//! knows (the request fails cleanly instead of timing out on a message that was never sent).
//! With peer TLS, the dialer runs the TLS handshake (checking the peer's certificate and
//! presenting its own) before the secret's, both within the handshake deadline.

use super::auth::{self, Role, Transcript};
use super::frame::{self, Frame, PRE_AUTH_FRAME};
use super::{Event, Shared, TransportError};
use crate::ids::NodeId;
use crate::protocol::{PeerMessage, PROTOCOL_VERSION};
use bytes::{Bytes, BytesMut};
use futures::{SinkExt as _, StreamExt as _};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::either::Either;

/// A dialed connection: plain TCP, or TCP inside TLS.
type PeerStream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// An authenticated connection: its halves, and the peer's boot number.
struct Link<S> {
    reader: FramedRead<ReadHalf<S>, LengthDelimitedCodec>,
    write: WriteHalf<S>,
    boot: u64,
}

/// Why a message could not be queued for a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer is not a member.
    #[error("{0} is not a member")]
    Unknown(NodeId),
    /// The peer's buffer is full (it is unreachable or not keeping up).
    #[error("the buffer to {0} is full")]
    Full(NodeId),
    /// The message does not fit in a frame.
    #[error("message too large for a frame")]
    TooLarge,
}

/// Messages not yet acknowledged by the peer, in order.
#[derive(Default)]
struct Buffer {
    /// `(seq, transport clock when queued, encoded frame)`, oldest first.
    entries: VecDeque<(u64, u64, Bytes)>,
    /// Their total size.
    bytes: usize,
    /// The next sequence number.
    next_seq: u64,
    /// Highest sequence written on the current connection.
    written: u64,
}

impl Buffer {
    /// Drops everything up to `upto` (acknowledged).
    fn acked(&mut self, upto: u64) {
        while let Some((seq, _, body)) = self.entries.front() {
            if *seq > upto {
                break;
            }
            self.bytes -= body.len();
            self.entries.pop_front();
        }
    }
}

/// The shared state of one peer's sending side.
pub(super) struct Outbound {
    peer: NodeId,
    addr: SocketAddr,
    buffer: Mutex<Buffer>,
    /// New messages are waiting.
    wake: Notify,
    /// The peer restarted (seen by the accepting side): reconnect now.
    pub(super) restart: Notify,
    limit: usize,
}

impl Outbound {
    pub(super) fn new(peer: NodeId, addr: SocketAddr, limit: usize) -> Arc<Outbound> {
        Arc::new(Outbound {
            peer,
            addr,
            buffer: Mutex::new(Buffer {
                next_seq: 1,
                ..Buffer::default()
            }),
            wake: Notify::new(),
            restart: Notify::new(),
            limit,
        })
    }

    /// Queues `msg`, stamped with the transport clock `at`; fails at once if the buffer would
    /// exceed its byte limit.
    pub(super) fn send(&self, msg: PeerMessage, at: u64) -> Result<(), SendError> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let seq = buffer.next_seq;
        let mut encoded = BytesMut::new();
        frame::encode(&Frame::Data { seq, at, msg }, &mut encoded)
            .map_err(|_| SendError::TooLarge)?;
        if buffer.bytes + encoded.len() > self.limit && !buffer.entries.is_empty() {
            return Err(SendError::Full(self.peer));
        }
        buffer.next_seq += 1;
        buffer.bytes += encoded.len();
        buffer.entries.push_back((seq, at, encoded.freeze()));
        drop(buffer);
        self.wake.notify_one();
        Ok(())
    }

    /// Bytes waiting for the peer's acknowledgement.
    pub(super) fn buffered_bytes(&self) -> usize {
        self.buffer.lock().map(|b| b.bytes).unwrap_or(0)
    }

    fn acked(&self, upto: u64) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        buffer.acked(upto);
    }

    /// Everything not yet written on this connection, as one buffer, after dropping what
    /// was queued before `oldest` (transport clock): it would only be dropped on arrival.
    /// Returns the bytes and how many messages were dropped.
    fn unwritten(&self, oldest: u64) -> (Option<BytesMut>, u64) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let from = buffer.written;
        let before = buffer.entries.len();
        let mut freed = 0;
        buffer.entries.retain(|(seq, at, body)| {
            let keep = *seq <= from || *at >= oldest;
            if !keep {
                freed += body.len();
            }
            keep
        });
        buffer.bytes -= freed;
        let expired = (before - buffer.entries.len()) as u64;
        let mut out = BytesMut::new();
        let mut last = from;
        for (seq, _, body) in buffer.entries.iter().filter(|(s, _, _)| *s > from) {
            out.extend_from_slice(body);
            last = *seq;
            if out.len() > 1 << 20 {
                break;
            }
        }
        buffer.written = last;
        ((!out.is_empty()).then_some(out), expired)
    }

    /// A new connection: resend after what the peer delivered.
    fn reset(&self, delivered: u64) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        buffer.acked(delivered);
        buffer.written = delivered;
    }
}

/// Runs the sending side of one peer for ever.
pub(super) async fn run(out: Arc<Outbound>, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(20);
    // Unknown until the first attempt: the detector hears of a peer that was never reachable.
    let mut up: Option<bool> = None;
    loop {
        let result = connect(&out, &shared).await;
        match result {
            Ok(link) => {
                backoff = Duration::from_millis(20);
                up = Some(true);
                shared.event(Event::Up {
                    peer: out.peer,
                    boot: link.boot,
                });
                if let Err(e) = serve(&out, &shared, link).await {
                    tracing::debug!(peer = %out.peer, error = %e, "peer connection lost; reconnecting");
                }
            }
            // A refused certificate is a configuration error, not a peer that is down: say
            // so once per outage, where the operator looks.
            Err(e @ TransportError::Tls(_)) if up != Some(false) => {
                tracing::warn!(peer = %out.peer, addr = %out.addr, error = %e, "cannot reach peer");
            }
            Err(e) => {
                tracing::debug!(peer = %out.peer, error = %e, "cannot reach peer");
            }
        }
        if up != Some(false) {
            up = Some(false);
            shared.event(Event::Down { peer: out.peer });
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = out.restart.notified() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Dials, runs the TLS handshake if peer TLS is on, and authenticates.
async fn connect(out: &Outbound, shared: &Shared) -> Result<Link<PeerStream>, TransportError> {
    if shared.faults.partitioned(out.peer) {
        return Err(TransportError::Handshake(
            "partitioned by a test fault".into(),
        ));
    }
    let timeout = shared.limits.connect_timeout;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(out.addr))
        .await
        .map_err(|_| TransportError::Handshake("connect timed out".into()))??;
    let _ = tcp.set_nodelay(true);
    // One deadline for the whole handshake, TLS included.
    let deadline = tokio::time::Instant::now() + shared.limits.handshake_timeout;
    let stream = match &shared.tls {
        None => Either::Left(tcp),
        Some(tls) => Either::Right(
            tokio::time::timeout_at(deadline, tls.connect(out.peer, tcp))
                .await
                .map_err(|_| TransportError::Handshake("no answer to the TLS handshake".into()))?
                .map_err(TransportError::Tls)?,
        ),
    };
    authenticate(out, shared, stream, deadline).await
}

/// The secret's challenge–response over `stream`, by `deadline`.
async fn authenticate<S>(
    out: &Outbound,
    shared: &Shared,
    stream: S,
    deadline: tokio::time::Instant,
) -> Result<Link<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let hello_nonce = auth::nonce();
    let (read, write) = tokio::io::split(stream);
    let mut reader = FramedRead::new(read, frame::codec(PRE_AUTH_FRAME));
    let mut writer = FramedWrite::new(write, frame::codec(PRE_AUTH_FRAME));
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        from: shared.me,
        to: out.peer,
        identity: shared.identity,
        boot: shared.boot,
        instance: shared.instance,
        nonce: hello_nonce,
        clock: shared.clock(),
    };
    let handshake = async {
        writer
            .send(Bytes::from(postcard::to_stdvec(&hello)?))
            .await?;
        let (boot, nonce, proof) = match next(&mut reader).await? {
            Frame::Challenge { boot, nonce, proof } => (boot, nonce, proof),
            Frame::Refuse { reason } => return Err(TransportError::Refused(reason)),
            other => return Err(unexpected(&other)),
        };
        let t = Transcript {
            dialer: shared.me,
            acceptor: out.peer,
            dialer_boot: shared.boot,
            acceptor_boot: boot,
            dialer_nonce: hello_nonce,
            acceptor_nonce: nonce,
        };
        if !auth::verify(&shared.secret, Role::Acceptor, &t, &proof) {
            return Err(TransportError::Handshake(
                "the peer does not know the cluster secret".into(),
            ));
        }
        let proof = auth::prove(&shared.secret, Role::Dialer, &t);
        writer
            .send(Bytes::from(postcard::to_stdvec(&Frame::Proof { proof })?))
            .await?;
        match next(&mut reader).await? {
            Frame::Welcome { delivered } => Ok((boot, delivered)),
            Frame::Refuse { reason } => Err(TransportError::Refused(reason)),
            other => Err(unexpected(&other)),
        }
    };
    let (boot, delivered) = tokio::time::timeout_at(deadline, handshake)
        .await
        .map_err(|_| TransportError::Handshake("no answer to the handshake".into()))??;
    out.reset(delivered);
    Ok(Link {
        reader,
        write: writer.into_inner(),
        boot,
    })
}

async fn next<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FramedRead<R, tokio_util::codec::LengthDelimitedCodec>,
) -> Result<Frame, TransportError> {
    let body = reader
        .next()
        .await
        .ok_or_else(|| TransportError::Handshake("closed during the handshake".into()))??;
    frame::decode(&body)
}

fn unexpected(frame: &Frame) -> TransportError {
    let name = format!("{frame:?}");
    let name = name.split([' ', '{', '(']).next().unwrap_or("?").to_owned();
    TransportError::Handshake(format!("unexpected {name} frame"))
}

/// Writes messages and heartbeats on an authenticated connection until it fails.
async fn serve<S>(out: &Outbound, shared: &Shared, link: Link<S>) -> Result<(), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Link {
        mut reader,
        mut write,
        ..
    } = link;
    let mut heard = Instant::now();
    let mut tick = tokio::time::interval(shared.limits.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    out.wake.notify_one();
    loop {
        tokio::select! {
            biased;
            _ = out.restart.notified() => {
                return Err(TransportError::Handshake("the peer restarted".into()));
            }
            answer = reader.next() => {
                let body = answer.ok_or_else(|| TransportError::Handshake("closed by the peer".into()))??;
                heard = Instant::now();
                match frame::decode(&body)? {
                    Frame::Ack { upto } => out.acked(upto),
                    Frame::Pong => {}
                    other => return Err(unexpected(&other)),
                }
            }
            _ = out.wake.notified() => {
                loop {
                    let oldest = shared
                        .clock()
                        .saturating_sub(shared.limits.message_ttl.as_millis() as u64);
                    let (bytes, expired) = out.unwritten(oldest);
                    shared.expired.fetch_add(expired, Ordering::Relaxed);
                    let Some(bytes) = bytes else { break };
                    shared.faults.before_write(out.peer).await?;
                    write.write_all(&bytes).await?;
                }
                // A TLS stream may hold the last record until flushed; free for plain TCP.
                write.flush().await?;
            }
            _ = tick.tick() => {
                if heard.elapsed() > shared.limits.dead_after {
                    return Err(TransportError::Handshake("the peer stopped answering".into()));
                }
                if shared.faults.partitioned(out.peer) {
                    return Err(TransportError::Handshake("partitioned by a test fault".into()));
                }
                let mut ping = BytesMut::new();
                frame::encode(&Frame::Ping, &mut ping)?;
                write.write_all(&ping).await?;
                write.flush().await?;
                // Messages queued while a write was under way may not have woken us.
                if out.buffered_bytes() > 0 {
                    out.wake.notify_one();
                }
            }
        }
    }
}
