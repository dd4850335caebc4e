//! Read-modify-write under rolling crashes. Clients keep sets: each reads a key, merges its
//! siblings by union, adds a new element and writes the result back with the context it read
//! — the way DVVSet is meant to be used — while nodes are `kill -9`ed and restarted one after
//! another. Then the faults and the clients stop, and with no client request after that:
//!
//! - within 30 s every replica of every key holds the same clock (`/admin/local` on every
//!   node): hinted handoff and anti-entropy converge them, read repair has nothing to read;
//! - that clock holds every element whose write was acknowledged — a write supersedes only
//!   what its context covers, so a stale read, a sibling or a crash may cost a retry but never
//!   an acknowledged element — and so does a quorum read afterwards.

use crate::common::workload::{self, copies, divergence, elements, long};
use crate::common::{self, Cluster, Options};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The keys that have not converged, with why.
async fn diverged(c: &Cluster, keys: &[String]) -> Vec<String> {
    let mut why = Vec::new();
    for key in keys {
        match copies(c, key).await {
            Ok(all) => why.extend(divergence(c, key, 3, &all).map(|w| format!("{key}: {w}"))),
            Err(e) => why.push(format!("{key}: {e}")),
        }
    }
    why
}

#[tokio::test]
async fn set_clients_under_rolling_kill_9_lose_no_element_and_replicas_converge_without_reads() {
    let seed = common::seed("SHOAL_FAULTS_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let (faults_for, keys, clients) = if long() {
        (Duration::from_secs(90), 16, 8)
    } else {
        (Duration::from_secs(10), 6, 6)
    };
    let mut c = Cluster::start_opts(&Options::new(5, 3, 2, 2)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let handles = workload::spawn_set_clients(&c, &c.ids(), clients, keys, seed, stop.clone());
    let kills = workload::rolling_kills(&mut c, &mut rng, Instant::now() + faults_for).await;
    // The last crash comes with writes in flight, and the clients stop right there: what that
    // node had received but not made durable, no client read will repair. Once it is back, the
    // faults have stopped; from then on, no client request until the replicas have converged.
    let last = rng.gen_range(1..=5u64);
    c.kill9(last);
    stop.store(true, Ordering::SeqCst);
    let run = workload::join_set_clients(handles).await;
    c.restart(last).await;
    let stopped = Instant::now();
    eprintln!(
        "{} crashes; {} elements acknowledged, {} adds failed, {} reads saw siblings",
        kills + 1,
        run.acks,
        run.failures,
        run.sibling_reads
    );
    assert!(kills >= 2, "only {kills} crashes");
    assert!(run.acks >= 50, "only {} acknowledged adds", run.acks);

    let set_keys: Vec<String> = (0..keys).map(|k| format!("set-{k}")).collect();
    let ids = c.ids();
    let repaired_before = c.metric_sum(&ids, "shoal_aae_keys_repaired_total").await;
    let at_first = diverged(&c, &set_keys).await;
    let deadline = stopped + Duration::from_secs(30);
    let mut why = at_first.clone();
    while !why.is_empty() {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: 30 s after the faults stopped, replicas still differ: {why:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        why = diverged(&c, &set_keys).await;
    }
    let repaired_after = c.metric_sum(&ids, "shoal_aae_keys_repaired_total").await;
    eprintln!(
        "every replica identical {:?} after the faults stopped; {} of {keys} keys differed at \
         the first look; anti-entropy repaired {:?} keys meanwhile",
        stopped.elapsed(),
        at_first.len(),
        repaired_after.zip(repaired_before).map(|(a, b)| a - b)
    );

    // The converged clock holds every acknowledged element; so does a quorum read.
    let http = common::http_client(Duration::from_secs(10));
    let node = workload::client(&http, c.http_of(1));
    let mut lost = Vec::new();
    for (key, acked) in &run.acked {
        let primary = c.primaries(key, 3)[0];
        let copy = c.local(primary, key).await.ok().flatten();
        let stored: BTreeSet<String> = copy
            .iter()
            .flat_map(|l| l.values.iter().flat_map(|v| elements(v)))
            .collect();
        let (o, values, _, _) = workload::get(&node, key, None).await;
        let read: BTreeSet<String> = values.iter().flat_map(|v| elements(v)).collect();
        for (what, have) in [("stored", &stored), ("read", &read)] {
            let gone: Vec<&String> = acked.difference(have).collect();
            if !gone.is_empty() {
                lost.push(format!(
                    "{key} {what} ({o:?}): {} missing, e.g. {:?}",
                    gone.len(),
                    gone[0]
                ));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged elements lost: {lost:?}"
    );
}
