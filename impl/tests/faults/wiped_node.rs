//! A wiped node is refilled by anti-entropy alone. Five nodes (N = 3, W = 3, so every replica
//! holds every write); one node is stopped, its data directory and identity file deleted (a
//! new disk), and started again. With no client request at all, every key it is a primary of
//! comes back into its own store, with the same clock as the other primaries. No read means
//! no read repair, and nothing was written while it was away, so no hint: the read-repair and
//! handoff counters stay at zero, and anti-entropy's own counter shows the keys it moved.

use crate::common::workload::{self, copies, divergence, long, Outcome};
use crate::common::{self, Cluster, Options};
use futures::StreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_wiped_node_is_refilled_by_anti_entropy_without_reads() {
    let seed = common::seed("SHOAL_FAULTS_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let keys: usize = if long() { 20_000 } else { 1_000 };
    let mut c = Cluster::start_opts(&Options::new(5, 3, 2, 3)).await;
    let http = common::http_client(Duration::from_secs(10));
    let nodes: Vec<_> = c
        .ids()
        .iter()
        .map(|id| workload::client(&http, c.http_of(*id)))
        .collect();
    let outcomes: Vec<Outcome> = futures::stream::iter(0..keys)
        .map(|i| {
            let node = &nodes[i % nodes.len()];
            async move {
                let (key, value) = (format!("w{i}"), format!("v{i}"));
                workload::put(node, &key, &value, None, None).await.0
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let failed = outcomes.iter().filter(|o| !o.ok()).count();
    assert_eq!(failed, 0, "writes failed before any fault");

    let victim = rng.gen_range(1..=5u64);
    let mine: Vec<usize> = (0..keys)
        .filter(|i| c.primaries(&format!("w{i}"), 3).contains(&victim))
        .collect();
    eprintln!("wiping node {victim}, a primary of {} keys", mine.len());
    c.stop(victim);
    c.wipe(victim);
    let restarted = Instant::now();
    c.restart(victim).await;
    let first = format!("w{}", mine[0]);
    assert_eq!(
        c.local(victim, &first).await,
        Ok(None),
        "the wiped node starts empty"
    );

    let deadline = restarted + Duration::from_secs(if long() { 300 } else { 60 });
    let mut missing = mine.clone();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for &i in &missing {
            let want = vec![format!("v{i}")];
            match c.local(victim, &format!("w{i}")).await {
                Ok(Some(l)) if l.values == want => {}
                _ => still.push(i),
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: node {victim} still lacks {} of {} keys",
            missing.len(),
            mine.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ids = c.ids();
    let moved = c.metric_sum(&ids, "shoal_aae_keys_repaired_total").await;
    eprintln!(
        "node {victim} refilled with {} keys {:?} after its restart; anti-entropy moved {moved:?}",
        mine.len(),
        restarted.elapsed(),
    );
    // Anti-entropy did it: no read, so no read repair; and no hint was ever made.
    assert_eq!(
        c.metric_sum(&ids, "shoal_read_repairs_total").await,
        Some(0.0)
    );
    assert_eq!(
        c.metric_sum(&ids, "shoal_hints_handed_off_total").await,
        Some(0.0)
    );
    assert!(moved.is_some_and(|m| m >= mine.len() as f64), "{moved:?}");
    // The refilled copies are the other primaries' clocks, causal history included.
    for &i in mine.iter().take(200) {
        let key = format!("w{i}");
        let all = copies(&c, &key).await.expect("every node answers");
        assert_eq!(divergence(&c, &key, 3, &all), None, "seed {seed}: {key}");
    }
}
