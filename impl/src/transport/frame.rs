//! What travels on a peer connection: length-prefixed, postcard-encoded [`Frame`]s.
//!
//! A frame is a 4-byte big-endian length and a body. Until a connection is authenticated its
//! frames may be at most [`PRE_AUTH_FRAME`] bytes, so a stranger can make the node reserve only
//! a small, fixed amount of memory; afterwards up to [`MAX_FRAME`].

use crate::ids::NodeId;
use crate::protocol::PeerMessage;
use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// Largest frame accepted once a connection is authenticated (16 MiB): a clock with many large
/// siblings still fits.
pub const MAX_FRAME: usize = 16 << 20;

/// Largest frame accepted before authentication: the handshake's frames are far smaller.
pub const PRE_AUTH_FRAME: usize = 1024;

// The core keeps every clock it writes under half a frame, so the merge of two still travels.
const _: () = assert!(MAX_FRAME >= 2 * crate::core::MAX_CLOCK_BYTES);

/// A random challenge, fresh for every connection.
pub type Nonce = [u8; 32];

/// An HMAC-SHA-256 tag.
pub type Proof = [u8; 32];

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Dialer → acceptor, first: who I am and a challenge.
    Hello {
        /// The dialer's protocol version.
        version: u32,
        /// The dialer.
        from: NodeId,
        /// The node it means to reach.
        to: NodeId,
        /// The dialer's data identity (two live processes must not share one).
        identity: u64,
        /// The dialer's boot number (a restart has a larger one).
        boot: u64,
        /// A random number of the dialing process: a reconnection from the same process
        /// repeats it, a second process with the same identity and boot does not.
        instance: u64,
        /// The dialer's challenge.
        nonce: Nonce,
        /// The dialer's transport clock (milliseconds since its transport started) as it sent
        /// this: the reference the acceptor measures the age of the dialer's messages from.
        clock: u64,
    },
    /// Acceptor → dialer: proof of the cluster secret over both challenges, and its own.
    Challenge {
        /// The acceptor's boot number.
        boot: u64,
        /// The acceptor's challenge.
        nonce: Nonce,
        /// HMAC over both challenges (see [`super::auth`]).
        proof: Proof,
    },
    /// Dialer → acceptor: proof of the cluster secret over both challenges.
    Proof {
        /// HMAC over both challenges (see [`super::auth`]).
        proof: Proof,
    },
    /// Acceptor → dialer: authenticated; the highest sequence number already delivered from
    /// this dialer's boot (so resending starts after it).
    Welcome {
        /// Highest sequence delivered, 0 if none.
        delivered: u64,
    },
    /// Acceptor → dialer: the connection is refused, and why.
    Refuse {
        /// A reason for the log.
        reason: String,
    },
    /// Dialer → acceptor: a protocol message, numbered per dialer boot.
    Data {
        /// Sequence number, from 1.
        seq: u64,
        /// The dialer's transport clock when the message was queued (see `Hello::clock`):
        /// a message older than the message lifetime is never handed to the core.
        at: u64,
        /// The message.
        msg: PeerMessage,
    },
    /// Acceptor → dialer: every message up to `upto` was handed to the core.
    Ack {
        /// Highest sequence delivered.
        upto: u64,
    },
    /// Dialer → acceptor: are you there?
    Ping,
    /// Acceptor → dialer: yes.
    Pong,
}

/// The codec of a connection, accepting frames up to `max` bytes.
pub fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max)
        .new_codec()
}

/// Appends one length-prefixed frame to `buf`.
pub fn encode(frame: &Frame, buf: &mut BytesMut) -> Result<(), super::TransportError> {
    let body = postcard::to_stdvec(frame)?;
    if body.len() > MAX_FRAME {
        return Err(super::TransportError::TooLarge(body.len()));
    }
    buf.put_u32(body.len() as u32);
    buf.extend_from_slice(&body);
    Ok(())
}

/// Decodes one frame body.
pub fn decode(body: &[u8]) -> Result<Frame, super::TransportError> {
    Ok(postcard::from_bytes(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let f = Frame::Ack { upto: 42 };
        let mut buf = BytesMut::new();
        encode(&f, &mut buf).expect("encode");
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(decode(&buf[4..4 + len]).expect("decode"), f);
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        let big = Frame::Refuse {
            reason: "x".repeat(MAX_FRAME + 1),
        };
        assert!(matches!(
            encode(&big, &mut BytesMut::new()),
            Err(super::super::TransportError::TooLarge(_))
        ));
    }
}
