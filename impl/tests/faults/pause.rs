//! A paused node stalls no one. Five nodes (N = 3, R = W = 2); one is stopped with `SIGSTOP`:
//! its sockets stay open and it answers nothing, so only heartbeats and deadlines can tell.
//! Clients writing and reading through the four others keep succeeding, with a p99 latency
//! under twice the request timeout — also in the seconds before the failure detector decides
//! (3 s of silence), with one exception, a gap of the node that the test pins down exactly:
//! a write forwarded to the paused node before the detector decided fails at the request
//! timeout. After `SIGCONT` the node catches up: every write it missed while it was a primary
//! reaches its own store (resent messages or handed-off hints), and no hint is left.

use crate::common::workload::{self, long, quantile, Outcome};
use crate::common::{self, Cluster, Options, REQUEST_TIMEOUT};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use shoal::client::Client;
use std::time::{Duration, Instant};

/// One request a client made while the node was paused.
#[derive(Debug)]
struct Request {
    op: &'static str,
    key: String,
    value: String,
    /// The node it went through.
    via: u64,
    /// When it started, from the `SIGSTOP`.
    start: Duration,
    took: Duration,
    outcome: Outcome,
    /// A read that did not return the value just written (a fallback without the write yet:
    /// sloppy quorum gives no read-your-writes).
    stale: bool,
}

/// Client `w`: until `paused_for` has passed since `paused`, put a fresh key and read it back,
/// through the nodes of `vias` in turn.
async fn client(
    vias: &[(u64, Client)],
    w: usize,
    paused: Instant,
    paused_for: Duration,
) -> Vec<Request> {
    let mut records = Vec::new();
    let mut i = 0;
    while paused.elapsed() < paused_for {
        let (via, node) = &vias[(w + i) % vias.len()];
        let (key, value) = (format!("p{w}-{i}"), format!("v{w}-{i}"));
        i += 1;
        let start = paused.elapsed();
        let (outcome, _, took) = workload::put(node, &key, &value, None, None).await;
        let written = outcome.ok();
        records.push(Request {
            op: "put",
            key: key.clone(),
            value: value.clone(),
            via: *via,
            start,
            took,
            outcome,
            stale: false,
        });
        if !written {
            continue;
        }
        let start = paused.elapsed();
        let (outcome, values, _, took) = workload::get(node, &key, None).await;
        records.push(Request {
            op: "get",
            stale: outcome.ok() && values != [value.clone()],
            key,
            value,
            via: *via,
            start,
            took,
            outcome,
        });
    }
    records
}

#[tokio::test]
async fn a_paused_node_does_not_stall_the_others_and_catches_up_when_resumed() {
    let seed = common::seed("SHOAL_FAULTS_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let paused_for = Duration::from_secs(if long() { 30 } else { 6 });
    let mut c = Cluster::start_opts(&Options::new(5, 3, 2, 2)).await;
    let victim = rng.gen_range(1..=5u64);
    let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != victim).collect();
    c.await_peer_states(&others, &[victim], &["up"], Duration::from_secs(10))
        .await;
    eprintln!("pausing node {victim} for {paused_for:?}");
    c.pause(victim);

    // Four clients: put a fresh key, then read it back, through the other nodes in turn.
    // Meanwhile, note when every other node has seen the victim stop answering.
    let http = common::http_client(Duration::from_secs(10));
    let paused = Instant::now();
    let vias: Vec<(u64, Client)> = others
        .iter()
        .map(|id| (*id, workload::client(&http, c.http_of(*id))))
        .collect();
    let clients = futures::future::join_all((0..4).map(|w| client(&vias, w, paused, paused_for)));
    let (records, detected) = tokio::join!(clients, async {
        let gone = ["down", "suspected"];
        c.await_peer_states(
            &others,
            &[victim],
            &gone,
            paused_for + Duration::from_secs(10),
        )
        .await;
        paused.elapsed()
    });
    let records: Vec<Request> = records.into_iter().flatten().collect();
    let latencies: Vec<Duration> = records.iter().map(|r| r.took).collect();
    let (p50, p99) = (quantile(&latencies, 0.5), quantile(&latencies, 0.99));
    let max = quantile(&latencies, 1.0);
    let failed: Vec<&Request> = records.iter().filter(|r| !r.outcome.ok()).collect();
    let stale = records.iter().filter(|r| r.stale).count();
    eprintln!(
        "{} requests while node {victim} was paused: p50 {p50:?}, p99 {p99:?}, max {max:?}; \
         every other node saw it gone {detected:?} after SIGSTOP; {} failed; {stale} reads did \
         not see the write just made",
        records.len(),
        failed.len()
    );
    assert!(records.len() >= 40, "only {} requests", records.len());
    assert!(
        p99 < 2 * REQUEST_TIMEOUT,
        "seed {seed}: p99 {p99:?} with node {victim} paused"
    );
    // Every request succeeds, but for one kind (a gap of the node, see below): a put through
    // a node outside the key's preference list is forwarded to the first primary the failure
    // detector believes alive, and until the detector has decided, that may be the paused
    // node; the forward then fails at the request timeout instead of trying another replica.
    let unexplained: Vec<&&Request> = failed
        .iter()
        .filter(|r| {
            let primaries = c.primaries(&r.key, 3);
            let forwarded_to_victim =
                r.op == "put" && !primaries.contains(&r.via) && primaries.first() == Some(&victim);
            let before_detection = r.start < detected;
            let at_deadline = r.outcome.status() == Some(503) && r.took >= REQUEST_TIMEOUT;
            !(forwarded_to_victim && before_detection && at_deadline)
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "seed {seed}: with node {victim} paused, {} requests failed: {:?}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(5)]
    );
    let acked: Vec<(String, String)> = records
        .iter()
        .filter(|r| r.op == "put" && r.outcome.ok())
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();

    // Resumed, the node catches up on every write it is a primary of.
    let resumed = Instant::now();
    c.resume(victim);
    let mine: Vec<&(String, String)> = acked
        .iter()
        .filter(|(k, _)| c.primaries(k, 3).contains(&victim))
        .collect();
    assert!(!mine.is_empty());
    let deadline = resumed + Duration::from_secs(30);
    let mut missing = mine.clone();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for kv in missing {
            match c.local(victim, &kv.0).await {
                Ok(Some(l)) if l.values.contains(&kv.1) => {}
                _ => still.push(kv),
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: 30 s after SIGCONT node {victim} still lacks {} of {} writes, e.g. {:?}",
            missing.len(),
            mine.len(),
            missing.first()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = resumed.elapsed();
    let drained = workload::await_hints_drained(&c, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    eprintln!(
        "node {victim} held all {} writes it missed {caught_up:?} after SIGCONT; no hint left \
         after {drained:?} more",
        mine.len()
    );
}
