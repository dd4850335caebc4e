//! Prometheus metrics: request counts and latencies by operation and outcome, siblings per
//! read, replica responses and storage size, in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::fmt::Write as _;

/// Labels of the request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `put` or `delete`.
    pub op: &'static str,
    /// `ok`, `not_found`, `siblings`, `unavailable`, `bad_request`.
    pub outcome: &'static str,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds.
    pub latency: Family<RequestLabels, Histogram>,
    /// Siblings returned per successful read.
    pub siblings: Histogram,
    /// Time to commit and sync one group-commit batch, in seconds.
    pub commit_seconds: Histogram,
    /// Writes per group-commit batch.
    pub commit_batch: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("shoal");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        let siblings = Histogram::new([1.0, 2.0, 3.0, 4.0, 8.0, 16.0]);
        registry.register("requests", "Client requests served", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Client request latency",
            latency.clone(),
        );
        registry.register(
            "read_siblings",
            "Values returned per read",
            siblings.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "storage_commit_seconds",
            "Time to commit and sync one group-commit batch",
            commit_seconds.clone(),
        );
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "storage_commit_batch_writes",
            "Writes per group-commit batch",
            commit_batch.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            siblings,
            commit_seconds,
            commit_batch,
        }
    }
}

impl Metrics {
    /// Records one served request.
    pub fn record(&self, op: &'static str, outcome: &'static str, seconds: f64) {
        let labels = RequestLabels { op, outcome };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// The exposition text, with the core's counters and storage figures appended.
    pub fn render(
        &self,
        core: &crate::core::Stats,
        peers: &[(crate::ids::NodeId, crate::core::PeerHealth)],
        disk_bytes: u64,
        keys: usize,
        expired_messages: u64,
    ) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        let body = out
            .trim_end()
            .strip_suffix("# EOF")
            .unwrap_or(&out)
            .to_string();
        let mut text = body;
        let counters = [
            (
                "shoal_replica_responses_total",
                "Replica answers received by coordinators",
                core.replica_responses,
            ),
            (
                "shoal_read_repairs_total",
                "Repairs sent by read repair",
                core.read_repairs,
            ),
            (
                "shoal_forwarded_total",
                "Writes forwarded to a replica",
                core.forwarded,
            ),
            (
                "shoal_rejected_peer_messages_total",
                "Invalid peer messages ignored",
                core.rejected_messages,
            ),
            (
                "shoal_request_timeouts_total",
                "Requests that missed their quorum",
                core.timeouts,
            ),
            (
                "shoal_tombstones_reaped_total",
                "Keys whose tombstones were reaped here",
                core.reaped,
            ),
            (
                "shoal_handoffs_offered_total",
                "Hints offered to their owners, resends included",
                core.handoffs_offered,
            ),
            (
                "shoal_hints_handed_off_total",
                "Hints their owners acknowledged, dropped here",
                core.hints_handed_off,
            ),
            (
                "shoal_aae_exchanges_total",
                "Anti-entropy exchanges started here",
                core.aae_exchanges,
            ),
            (
                "shoal_aae_exchanges_completed_total",
                "Anti-entropy exchanges completed",
                core.aae_exchanges_completed,
            ),
            (
                "shoal_aae_keys_repaired_total",
                "Keys anti-entropy pushed or fetched",
                core.aae_keys_repaired,
            ),
            (
                "shoal_aae_unconfirmed_total",
                "Anti-entropy exchanges whose differences were gone when compared again",
                core.aae_unconfirmed,
            ),
            (
                "shoal_forget_rounds_total",
                "Rounds started here to forget deleted keys' histories",
                core.forget_rounds,
            ),
            (
                "shoal_keys_forgotten_total",
                "Deleted keys whose history was removed here",
                core.forgotten,
            ),
            (
                "shoal_peer_messages_expired_total",
                "Peer messages dropped for outliving message_ttl_ms, sent or received",
                expired_messages,
            ),
        ];
        for (name, help, value) in counters {
            let _ = write!(
                text,
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {value}\n"
            );
        }
        let _ = write!(
            text,
            "# HELP shoal_hints_held Hints held for other nodes.\n# TYPE shoal_hints_held gauge\nshoal_hints_held {}\n",
            core.hints_held
        );
        let _ = writeln!(
            text,
            "# HELP shoal_aae_seconds_since_exchange Time since the partition's last complete anti-entropy exchange (absent: none yet).\n# TYPE shoal_aae_seconds_since_exchange gauge"
        );
        for (partition, age) in &core.aae_ages {
            if let Some(age) = age {
                let _ = writeln!(
                    text,
                    "shoal_aae_seconds_since_exchange{{partition=\"{partition}\"}} {:.3}",
                    age.as_secs_f64()
                );
            }
        }
        let _ = writeln!(
            text,
            "# HELP shoal_peer_up Whether this node believes the peer alive (1) or not (0).\n# TYPE shoal_peer_up gauge"
        );
        for (peer, h) in peers {
            let _ = writeln!(
                text,
                "shoal_peer_up{{peer=\"{}\"}} {}",
                peer.0,
                u8::from(h.healthy())
            );
        }
        let _ = write!(
            text,
            "# HELP shoal_storage_bytes Bytes on disk.\n# TYPE shoal_storage_bytes gauge\nshoal_storage_bytes {disk_bytes}\n\
             # HELP shoal_storage_keys Keys stored (approximate).\n# TYPE shoal_storage_keys gauge\nshoal_storage_keys {keys}\n# EOF\n"
        );
        text
    }
}
