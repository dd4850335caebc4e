//! Failure detection (Dynamo §4.8.3): each node decides for itself, per peer, whether to send
//! it work.
//!
//! Two signals, both local: the transport's connection state (a peer whose authenticated
//! connection is down, or that stopped answering the transport's heartbeat probes, is *down*)
//! and this node's own requests (a replica that let a request reach its deadline without
//! answering is *suspected*). A peer is healthy when it is not down and not suspected; any
//! message from it, or a new connection, clears the suspicion, and a suspicion expires after
//! [`SUSPICION`] so that the peer is tried again (Dynamo's periodic retry: a suspected peer
//! gets no work, so without expiry nothing would ever show it recovered). A peer nothing is known of yet
//! counts as healthy, so a node that just started does not treat its whole cluster as failed
//! before its connections are up. The detector may be wrong either way — a slow peer looks
//! failed, a failed one looks alive until its connection times out — and the protocol stays
//! safe regardless: only availability depends on it (sloppy quorum picks healthy nodes).

use super::Time;
use crate::ids::NodeId;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a suspicion lasts without news from the peer.
pub const SUSPICION: Duration = Duration::from_secs(5);

/// What this node currently believes about one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerHealth {
    /// The transport reports the connection down (or never got one up).
    pub down: bool,
    /// A request to the peer reached its deadline without an answer, and the peer has not
    /// been heard from since.
    pub suspected: bool,
    /// When the last change happened.
    pub since: Time,
    /// The peer's boot number, once a connection was up.
    pub boot: Option<u64>,
}

impl PeerHealth {
    /// Whether to send the peer work.
    pub fn healthy(&self) -> bool {
        !self.down && !self.suspected
    }
}

/// Per-peer health.
#[derive(Debug, Default)]
pub(crate) struct Detector {
    peers: BTreeMap<NodeId, PeerHealth>,
    /// Until when each suspected peer stays suspected.
    until: BTreeMap<NodeId, Time>,
    /// The latest time the core saw.
    now: Time,
}

impl Detector {
    /// Whether `peer` should be sent work.
    pub(crate) fn healthy(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_none_or(PeerHealth::healthy)
    }

    /// Time moves on: suspicions that ran out end.
    pub(crate) fn tick(&mut self, now: Time) {
        self.now = self.now.max(now);
        let expired: Vec<NodeId> = self
            .until
            .iter()
            .filter(|(_, t)| **t <= self.now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.until.remove(&p);
            if let Some(h) = self.peers.get_mut(&p) {
                h.suspected = false;
                if h.healthy() {
                    h.since = self.now;
                }
            }
        }
    }

    /// When the next suspicion runs out.
    pub(crate) fn next_expiry(&self) -> Option<Time> {
        self.until.values().min().copied()
    }

    /// The transport's connection to `peer` came up (`boot`) or went down.
    pub(crate) fn link(&mut self, now: Time, peer: NodeId, up: bool, boot: Option<u64>) {
        let h = self.peers.entry(peer).or_default();
        let before = *h;
        h.down = !up;
        if up {
            h.suspected = false;
            self.until.remove(&peer);
            h.boot = boot.or(h.boot);
        }
        if h.healthy() != before.healthy() {
            h.since = now;
        }
    }

    /// `peer` let a request reach its deadline without answering.
    pub(crate) fn suspect(&mut self, now: Time, peer: NodeId) {
        let h = self.peers.entry(peer).or_default();
        if !h.suspected {
            h.suspected = true;
            h.since = now;
        }
        self.until.insert(peer, now + SUSPICION);
    }

    /// A message from `peer` arrived: it is alive.
    pub(crate) fn heard_from(&mut self, now: Time, peer: NodeId) {
        self.until.remove(&peer);
        if let Some(h) = self.peers.get_mut(&peer) {
            if h.suspected {
                h.suspected = false;
                if h.healthy() {
                    h.since = now;
                }
            }
        }
    }

    /// Every peer heard of, with what is believed of it.
    pub(crate) fn snapshot(&self) -> Vec<(NodeId, PeerHealth)> {
        self.peers.iter().map(|(id, h)| (*id, *h)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_peer_is_healthy_until_down_or_suspected_and_an_answer_clears_suspicion() {
        let mut d = Detector::default();
        let (p, t) = (NodeId(2), Duration::from_secs(1));
        assert!(d.healthy(p), "unknown counts as healthy");
        d.link(t, p, false, None);
        assert!(!d.healthy(p));
        d.heard_from(t, p);
        assert!(!d.healthy(p), "a message does not bring a connection up");
        d.link(t * 2, p, true, Some(7));
        assert!(d.healthy(p));
        d.suspect(t * 3, p);
        assert!(!d.healthy(p));
        assert_eq!(d.snapshot()[0].1.since, t * 3);
        d.heard_from(t * 4, p);
        assert!(d.healthy(p));
        assert_eq!(d.snapshot()[0].1.boot, Some(7));
        // A suspicion without news runs out, so the peer is tried again.
        d.suspect(t * 5, p);
        d.tick(t * 5 + SUSPICION / 2);
        assert!(!d.healthy(p));
        assert_eq!(d.next_expiry(), Some(t * 5 + SUSPICION));
        d.tick(t * 5 + SUSPICION);
        assert!(d.healthy(p));
    }
}
