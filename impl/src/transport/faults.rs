//! A per-peer fault switch for tests: delay, connection resets and partitions.
//!
//! These kernels have no `netem`, so fault tests inject network faults here instead. The
//! switch is compiled into every build but acts only with the `faults` cargo feature (which
//! the test suite turns on): in a release build every check is a constant `false`/no-op.
//! Loss on a TCP connection shows up as delay or as a reset, never as a silently missing
//! message, so that is what the switch offers: `delay_ms` before each write to the peer,
//! `reset` (a probability per delivered message that the connection breaks, so unacknowledged
//! messages are resent) and `partitioned` (no connection to or from the peer).

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The faults applied to one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// Milliseconds to wait before each write to the peer.
    #[serde(default)]
    pub delay_ms: u64,
    /// Probability that a message from the peer resets the connection instead of arriving
    /// (it is then resent).
    #[serde(default)]
    pub reset: f64,
    /// No connection to or from the peer.
    #[serde(default)]
    pub partitioned: bool,
}

/// The switch: faults per peer.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<Mutex<HashMap<NodeId, FaultSpec>>>);

impl Faults {
    /// Whether this build acts on faults (the `faults` feature).
    pub const ENABLED: bool = cfg!(feature = "faults");

    /// Sets the faults for `peer` (an all-default spec clears them).
    pub fn set(&self, peer: NodeId, spec: FaultSpec) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if spec == FaultSpec::default() {
            map.remove(&peer);
        } else {
            map.insert(peer, spec);
        }
    }

    fn get(&self, peer: NodeId) -> Option<FaultSpec> {
        if !Self::ENABLED {
            return None;
        }
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .copied()
    }

    /// Whether `peer` is cut off.
    pub(super) fn partitioned(&self, peer: NodeId) -> bool {
        self.get(peer).is_some_and(|f| f.partitioned)
    }

    /// Waits as long as writes to `peer` are delayed; fails when it is cut off.
    pub(super) async fn before_write(&self, peer: NodeId) -> Result<(), super::TransportError> {
        let Some(spec) = self.get(peer) else {
            return Ok(());
        };
        if spec.partitioned {
            return Err(super::TransportError::Handshake(
                "partitioned by a test fault".into(),
            ));
        }
        if spec.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(spec.delay_ms)).await;
        }
        Ok(())
    }

    /// Whether a message from `peer` resets its connection instead of arriving.
    pub(super) fn drop_inbound(&self, peer: NodeId) -> bool {
        self.get(peer)
            .is_some_and(|f| f.partitioned || (f.reset > 0.0 && rand::random::<f64>() < f.reset))
    }
}
