//! Power loss: every node's disk loses what was not fsynced, at the same moment as every
//! node process dies; once the nodes restart, every acknowledged write is readable.
//!
//! `crash_recovery.rs` cannot tell an fsync from no fsync, because the kernel's page cache
//! outlives a `kill -9`. Here each node keeps its data directory on its own `shoal-lazyfs`
//! mount (see `common/lazyfs.rs` and `docs/POWER_LOSS.md`), which holds written data in
//! memory until fsync and drops the rest at a *cut*. The same scenario with
//! `durability = "buffered"` (acknowledge before fsync) must lose acknowledged writes: that
//! shows the test has teeth.
//!
//! Each run prints its seed; `SHOAL_POWER_LOSS_SEED=N` replays the same write pattern and cut
//! moment (the interleaving of the nodes is still the machine's).

mod common;

use common::lazyfs::{self, LazyFs};
use common::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal::client::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent writing clients.
const WRITERS: u64 = 8;

/// The nodes first (so no process holds a file when its mount goes), then the mounts,
/// then the directory they live in: fields drop in this order, also when a test fails.
struct Rig {
    cluster: Cluster,
    mounts: Vec<LazyFs>,
    _root: tempfile::TempDir,
}

/// What a run saw.
#[derive(Debug)]
struct Figures {
    seed: u64,
    acked: usize,
    found: usize,
    /// Acknowledged writes not readable after the restart: key, status, values read.
    missing: Vec<(String, u16, usize)>,
    /// Un-synced files and bytes the cuts dropped, over all nodes.
    dropped_files: u64,
    dropped_bytes: u64,
    /// fsyncs the nodes made before the cut, over all nodes.
    syncs: u64,
}

fn seed() -> u64 {
    match std::env::var("SHOAL_POWER_LOSS_SEED") {
        Ok(s) => s.parse().expect("SHOAL_POWER_LOSS_SEED is a number"),
        Err(_) => rand::random(),
    }
}

/// Streams writes into a 3-node cluster (N = 3, R = W = 2) on power-loss mounts, cuts the
/// power of every node and kills every process at once, restarts, and reads back every
/// acknowledged write. `None` when FUSE is unavailable (said why).
async fn power_cut(durability: &str) -> Option<Figures> {
    if let Some(why) = lazyfs::unavailable() {
        eprintln!("SKIPPED: cannot mount shoal-lazyfs: {why}");
        return None;
    }
    let started = Instant::now();
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let write_for = Duration::from_millis(rng.gen_range(2000..=3500));
    eprintln!(
        "durability = {durability:?}: seed {seed} (SHOAL_POWER_LOSS_SEED), cut after {write_for:?}"
    );

    let root = tempfile::tempdir().expect("temp dir");
    let mounts: Vec<LazyFs> = (1..=3)
        .map(|i| LazyFs::mount(root.path(), &format!("n{i}")))
        .collect();
    let dirs: Vec<_> = mounts.iter().map(|m| m.mountpoint.clone()).collect();
    let extra = format!("durability = \"{durability}\"");
    let cluster = Cluster::start_in(&dirs, 3, 2, 2, &extra).await;
    let mut rig = Rig {
        cluster,
        mounts,
        _root: root,
    };

    // Writers: distinct keys, values of seeded sizes, every 204 recorded.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = rig.cluster.client.clone();
        let base = format!("http://{}", rig.cluster.nodes[(w % 3) as usize].http);
        let acked = acked.clone();
        let stop = stop.clone();
        let mut rng = StdRng::seed_from_u64(seed ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        writers.push(tokio::spawn(async move {
            for i in 0..100_000u64 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let key = format!("w{w}-{i}");
                let len = rng.gen_range(16..2048);
                let value: String = format!("{w}.{i}:").chars().cycle().take(len).collect();
                let sent = client
                    .put(format!("{base}/kv/{key}"))
                    .body(value.clone())
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 204 => {
                        acked.lock().expect("lock").push((key, value));
                    }
                    Ok(_) => {}
                    // The node is gone: stop writing.
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(write_for).await;

    // The power cut. The disks first: from this instant nothing more reaches any of them,
    // and whatever a process does before its SIGKILL lands fails with EIO. Then the
    // processes. An acknowledgement that arrives after the cut is for a write whose fsyncs
    // completed before it, so it counts.
    let cuts: Vec<_> = rig.mounts.iter().map(|m| m.cut()).collect();
    for id in 1..=3 {
        rig.cluster.kill9(id);
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    let acked = acked.lock().expect("lock").clone();
    let syncs: u64 = rig.mounts.iter().map(|m| m.status().get("syncs")).sum();
    let dropped_files = cuts.iter().map(|c| c.get("dropped_files")).sum();
    let dropped_bytes = cuts.iter().map(|c| c.get("dropped_bytes")).sum();

    // Power on, restart on the same disks, read every acknowledged write back.
    for m in &rig.mounts {
        m.power_on();
    }
    for id in 1..=3 {
        rig.cluster.restart(id).await;
    }
    let missing = read_back(&rig.cluster, &acked).await;
    let figures = Figures {
        seed,
        acked: acked.len(),
        found: acked.len() - missing.len(),
        missing,
        dropped_files,
        dropped_bytes,
        syncs,
    };
    eprintln!(
        "durability = {durability:?}: seed {seed}: {} writes acknowledged, {} found after the power cut, {} missing; the cut dropped {} un-synced bytes in {} files; {} fsyncs before it; {:.1} s",
        figures.acked,
        figures.found,
        figures.missing.len(),
        figures.dropped_bytes,
        figures.dropped_files,
        figures.syncs,
        started.elapsed().as_secs_f64()
    );
    Some(figures)
}

/// Reads every `(key, value)` from the restarted cluster (spread over the nodes, a few
/// readers at once); returns those not readable with their value.
async fn read_back(cluster: &Cluster, acked: &[(String, String)]) -> Vec<(String, u16, usize)> {
    let acked = Arc::new(acked.to_vec());
    let mut readers = Vec::new();
    for r in 0..WRITERS as usize {
        let acked = acked.clone();
        let clients: Vec<Client> = cluster
            .nodes
            .iter()
            .map(|n| Client::with_http(cluster.client.clone(), n.http.to_string()))
            .collect();
        readers.push(tokio::spawn(async move {
            let mut missing = Vec::new();
            for (i, (key, value)) in acked.iter().enumerate().skip(r).step_by(WRITERS as usize) {
                let client = &clients[i % clients.len()];
                // Peers reconnect just after a restart: retry what did not reach its quorum.
                let mut tries = 0;
                let read = loop {
                    match client.get(key, None).await {
                        Ok(read) => break Ok(read),
                        Err(e) if tries < 50 => {
                            tries += 1;
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => break Err(e),
                    }
                };
                match read {
                    Ok(read) if read.values.iter().any(|v| v == value.as_bytes()) => {}
                    Ok(read) => {
                        let status = if read.values.is_empty() { 404 } else { 200 };
                        missing.push((key.clone(), status, read.values.len()));
                    }
                    Err(e) => missing.push((key.clone(), e.status().unwrap_or(0), 0)),
                }
            }
            missing
        }));
    }
    let mut missing = Vec::new();
    for r in readers {
        missing.extend(r.await.expect("reader"));
    }
    missing
}

#[tokio::test]
async fn after_a_power_cut_of_every_node_every_acknowledged_write_is_readable() {
    let Some(f) = power_cut("sync").await else {
        return;
    };
    assert!(
        f.acked >= 50,
        "seed {}: only {} writes were acknowledged before the cut",
        f.seed,
        f.acked
    );
    assert!(
        f.missing.is_empty(),
        "seed {}: {} of {} acknowledged writes are missing after the power cut, e.g. {:?}",
        f.seed,
        f.missing.len(),
        f.acked,
        &f.missing[..f.missing.len().min(5)]
    );
}

/// The control: a node that acknowledges before fsync loses acknowledged writes in the
/// same scenario. If this passes vacuously, the test above proves nothing.
#[tokio::test]
async fn with_buffered_durability_a_power_cut_loses_acknowledged_writes() {
    let Some(f) = power_cut("buffered").await else {
        return;
    };
    assert!(
        f.acked >= 50,
        "seed {}: only {} writes were acknowledged before the cut",
        f.seed,
        f.acked
    );
    assert!(
        f.dropped_bytes > 0,
        "seed {}: the cut found no un-synced data to drop",
        f.seed
    );
    assert!(
        !f.missing.is_empty(),
        "seed {}: all {} acknowledged writes survived a power cut without fsync",
        f.seed,
        f.acked
    );
}
