//! `kill -9` of one node while several clients write: every acknowledged write is readable
//! afterwards — through the surviving nodes while it is down, and through every node once it
//! is back (the restarted node coordinating reads of writes it never saw).

use crate::common::workload::{self, long};
use crate::common::{self, Cluster, Options};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Reads every `(key, value)` through the nodes of `via` in turn; returns the ones not found.
async fn unreadable(
    c: &Cluster,
    via: &[u64],
    writes: &[(String, String)],
) -> Vec<(String, String, String)> {
    let http = common::http_client(Duration::from_secs(10));
    let clients: Vec<_> = via
        .iter()
        .map(|id| workload::client(&http, c.http_of(*id)))
        .collect();
    let mut missing = Vec::new();
    for (i, (key, value)) in writes.iter().enumerate() {
        let node = &clients[i % clients.len()];
        let (o, values, _, _) = workload::get(node, key, None).await;
        if !values.contains(value) {
            missing.push((
                key.clone(),
                node.node().to_string(),
                format!("{o:?} {values:?}"),
            ));
        }
    }
    missing
}

#[tokio::test]
async fn a_node_killed_while_clients_write_loses_no_acknowledged_write() {
    let seed = common::seed("SHOAL_FAULTS_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Cluster::start_opts(&Options::new(5, 3, 2, 2)).await;
    let victim = rng.gen_range(1..=5u64);
    let before = Duration::from_millis(rng.gen_range(1000..2500));
    let after = Duration::from_secs(if long() { 20 } else { 2 });
    eprintln!("killing node {victim} after {before:?} of writes; writing {after:?} more");
    let stop = Arc::new(AtomicBool::new(false));
    let writers =
        workload::spawn_writers(&c, &c.ids(), 8, "m", Duration::from_secs(5), stop.clone());
    tokio::time::sleep(before).await;
    c.kill9(victim);
    tokio::time::sleep(after).await;
    stop.store(true, Ordering::SeqCst);
    let writes = workload::join_writers(writers).await;
    eprintln!(
        "{} writes acknowledged; failed: {:?}",
        writes.acked.len(),
        writes.failed
    );
    assert!(
        writes.acked.len() >= 50,
        "only {} acknowledged",
        writes.acked.len()
    );

    let survivors: Vec<u64> = c.ids().into_iter().filter(|id| *id != victim).collect();
    let missing = unreadable(&c, &survivors, &writes.acked).await;
    assert!(
        missing.is_empty(),
        "seed {seed}: with node {victim} down, {} of {} acknowledged writes unreadable, e.g. {:?}",
        missing.len(),
        writes.acked.len(),
        &missing[..missing.len().min(3)]
    );

    c.restart(victim).await;
    let missing = unreadable(&c, &c.ids(), &writes.acked).await;
    assert!(
        missing.is_empty(),
        "seed {seed}: after node {victim} restarted, {} of {} acknowledged writes unreadable, \
         e.g. {:?}",
        missing.len(),
        writes.acked.len(),
        &missing[..missing.len().min(3)]
    );
}
