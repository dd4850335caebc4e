//! Node-to-node transport: one long-lived TCP connection per peer and direction.
//!
//! Each node dials every peer once and sends all its messages to that peer over that
//! connection; what a peer sends arrives on the connection the peer dialed. A frame is a
//! 4-byte big-endian length and a postcard-encoded [`Frame`]; the first frame on a connection
//! is a `Hello` naming the protocol version and the sender. Queues are bounded: a full queue to
//! a peer drops the message (the request then times out, as if the network had lost it), and a
//! full core queue stops reading from the socket, pushing back on the sender through TCP. A
//! malformed or oversized frame closes that connection with a logged reason; the node keeps
//! serving.

use crate::ids::NodeId;
use crate::protocol::{PeerMessage, PROTOCOL_VERSION};
use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// Largest frame accepted (16 MiB): a clock with many large siblings still fits.
pub const MAX_FRAME: usize = 16 << 20;

// The core keeps every clock it writes under half a frame, so the merge of two still travels.
const _: () = assert!(MAX_FRAME >= 2 * crate::core::MAX_CLOCK_BYTES);

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 16 * 1024;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What travels in one frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The first frame on a connection.
    Hello {
        /// The sender's [`PROTOCOL_VERSION`].
        version: u32,
        /// The sender.
        node: NodeId,
    },
    /// A protocol message.
    Message(PeerMessage),
}

/// Why a connection was closed or a frame could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The frame did not decode (or, sending, did not encode).
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    /// The peer did not start with a valid hello.
    #[error("bad handshake: {0}")]
    Handshake(String),
    /// The frame is larger than a peer accepts; sending it would only make the peer close
    /// the connection (and lose everything queued behind it).
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Appends one length-prefixed frame to `buf`, or nothing if it cannot be sent.
pub fn encode_frame(frame: &Frame, buf: &mut BytesMut) -> Result<(), TransportError> {
    let body = postcard::to_stdvec(frame)?;
    if body.len() > MAX_FRAME {
        return Err(TransportError::TooLarge(body.len()));
    }
    buf.put_u32(body.len() as u32);
    buf.extend_from_slice(&body);
    Ok(())
}

/// Accepts peer connections on `listener` and hands each decoded message, wrapped by `wrap`,
/// to `deliver` (the core's input queue, so a message takes one hop to the core).
pub async fn accept_peers<I: Send + 'static>(
    listener: TcpListener,
    members: Vec<NodeId>,
    deliver: mpsc::Sender<I>,
    wrap: fn(NodeId, PeerMessage) -> I,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let deliver = deliver.clone();
                let members = members.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, &members, deliver, wrap).await {
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

async fn serve_connection<I>(
    stream: TcpStream,
    members: &[NodeId],
    deliver: mpsc::Sender<I>,
    wrap: fn(NodeId, PeerMessage) -> I,
) -> Result<(), TransportError> {
    let _ = stream.set_nodelay(true);
    let mut frames = FramedRead::new(stream, codec());
    let first = tokio::time::timeout(HELLO_TIMEOUT, frames.next())
        .await
        .map_err(|_| TransportError::Handshake("no hello within 5 s".into()))?
        .ok_or_else(|| TransportError::Handshake("closed before hello".into()))??;
    let from = match postcard::from_bytes::<Frame>(&first)? {
        Frame::Hello { version, node } if version == PROTOCOL_VERSION => node,
        Frame::Hello { version, .. } => {
            return Err(TransportError::Handshake(format!(
                "protocol version {version}, this node speaks {PROTOCOL_VERSION}"
            )))
        }
        Frame::Message(_) => return Err(TransportError::Handshake("message before hello".into())),
    };
    if !members.contains(&from) {
        return Err(TransportError::Handshake(format!("{from} is not a member")));
    }
    while let Some(frame) = frames.next().await {
        match postcard::from_bytes::<Frame>(&frame?)? {
            Frame::Message(msg) => {
                if deliver.send(wrap(from, msg)).await.is_err() {
                    return Ok(());
                }
            }
            Frame::Hello { .. } => return Err(TransportError::Handshake("second hello".into())),
        }
    }
    Ok(())
}

/// How long a dial may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the sender for one peer: dials `addr`, says hello, then writes every queued
/// message, batching what is queued into one write. While the peer is unreachable, queued
/// messages are dropped (as a lossy network would) and it redials with backoff, or at once
/// when a new message arrives.
pub fn spawn_dialer(me: NodeId, addr: SocketAddr) -> mpsc::Sender<PeerMessage> {
    let (tx, mut rx) = mpsc::channel::<PeerMessage>(PEER_QUEUE);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        let mut carry: Option<PeerMessage> = None;
        loop {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
            let Ok(Ok(mut stream)) = connected else {
                carry = None;
                while rx.try_recv().is_ok() {}
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    m = rx.recv() => match m {
                        Some(m) => carry = Some(m),
                        None => return,
                    },
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            };
            backoff = Duration::from_millis(50);
            let _ = stream.set_nodelay(true);
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let hello = Frame::Hello {
                version: PROTOCOL_VERSION,
                node: me,
            };
            if encode_frame(&hello, &mut buf).is_err() || stream.write_all(&buf).await.is_err() {
                continue;
            }
            loop {
                buf.clear();
                let first = match carry.take() {
                    Some(m) => m,
                    None => match rx.recv().await {
                        Some(m) => m,
                        None => return,
                    },
                };
                let mut batch = vec![first];
                while batch.len() < 1024 {
                    match rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                for m in batch {
                    if let Err(e) = encode_frame(&Frame::Message(m), &mut buf) {
                        tracing::error!(%addr, error = %e, "dropping a peer message");
                    }
                }
                if let Err(e) = stream.write_all(&buf).await {
                    tracing::debug!(%addr, error = %e, "peer connection lost; reconnecting");
                    break;
                }
            }
        }
    });
    tx
}
