//! Sloppy quorum and hinted handoff under crashes: five nodes (N = 3, W = 3, so every key with
//! a crashed primary needs a fallback), two of them `kill -9`ed. Every write through the others
//! is acknowledged; the fallbacks hold exactly one hint per (key, crashed primary); once the
//! two come back the hints are handed over — each returned node holds, in its own store, every
//! write it missed — and no node holds a hint any more.

use crate::common::workload::{self, long, Outcome};
use crate::common::{self, Cluster, Options};
use futures::StreamExt as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use std::time::{Duration, Instant};

#[tokio::test]
async fn with_two_of_five_nodes_down_every_write_is_acknowledged_and_handed_off_on_return() {
    let seed = common::seed("SHOAL_FAULTS_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let keys: usize = if long() { 3000 } else { 300 };
    let mut c = Cluster::start_opts(&Options::new(5, 3, 2, 3)).await;
    let mut ids = c.ids();
    ids.shuffle(&mut rng);
    let (down, live) = (ids[..2].to_vec(), ids[2..].to_vec());
    eprintln!("killing nodes {down:?}; writing {keys} keys through {live:?} with W = 3");
    for &id in &down {
        c.kill9(id);
    }
    // The crash closed their connections: the others know at once. (A write in the moment
    // before, forwarded by a non-primary to a crashed primary, fails after the request
    // timeout instead of going to another replica: see `pause.rs`, where that moment lasts
    // until the heartbeat times out.)
    let t = Duration::from_secs(10);
    c.await_peer_states(&live, &down, &["down", "suspected"], t)
        .await;
    let http = common::http_client(Duration::from_secs(10));
    let clients: Vec<_> = live
        .iter()
        .map(|id| workload::client(&http, c.http_of(*id)))
        .collect();

    let started = Instant::now();
    let outcomes: Vec<(String, Outcome, Duration)> = futures::stream::iter(0..keys)
        .map(|i| {
            let node = &clients[i % clients.len()];
            async move {
                let key = format!("k{i}");
                let (o, _, took) = workload::put(node, &key, &format!("v{i}"), None, None).await;
                (format!("{key} via {}", node.node()), o, took)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, o, _)| *o != Outcome::Status(204))
        .collect();
    assert!(
        failed.is_empty(),
        "seed {seed}: {} of {keys} writes not acknowledged with {down:?} down, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    eprintln!("{keys} writes acknowledged in {:?}", started.elapsed());

    // One hint per (key, crashed primary), held by the live nodes.
    let missed: Vec<(String, u64)> = (0..keys)
        .flat_map(|i| {
            let key = format!("k{i}");
            c.primaries(&key, 3)
                .into_iter()
                .filter(|p| down.contains(p))
                .map(move |p| (key.clone(), p))
        })
        .collect();
    assert!(!missed.is_empty());
    let held = c.metric_sum(&live, "shoal_hints_held").await;
    assert_eq!(
        held,
        Some(missed.len() as f64),
        "seed {seed}: hints held on {live:?}"
    );

    // The crashed nodes return: the hints reach them.
    let back = Instant::now();
    for &id in &down {
        c.restart(id).await;
    }
    let drained = workload::await_hints_drained(&c, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let handed = c
        .metric_sum(&live, "shoal_hints_handed_off_total")
        .await
        .expect("metrics");
    eprintln!(
        "{} hints handed over in {drained:?} after the restart began ({:?} including the \
         restarts); {handed} acknowledged by their owners",
        missed.len(),
        back.elapsed()
    );
    assert_eq!(handed, missed.len() as f64, "seed {seed}");
    let mut absent = Vec::new();
    for (key, owner) in &missed {
        let want = format!("v{}", &key[1..]);
        match c.local(*owner, key).await {
            Ok(Some(l)) if l.values == [want.clone()] && l.replica => {}
            other => absent.push((key.clone(), *owner, other)),
        }
    }
    assert!(
        absent.is_empty(),
        "seed {seed}: {} of {} handed-off writes are not in their owner's store, e.g. {:?}",
        absent.len(),
        missed.len(),
        absent.first()
    );
}
