//! A flood of client writes past a node's limits: the node admits what fits its request and
//! byte budgets, answers the rest `503` with `Retry-After`, keeps its resident memory under a
//! stated bound, and serves normally once the flood stops.

mod common;

use common::Cluster;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pid of the `shoal serve` process whose config lives under `dir`.
fn pid_under(dir: &std::path::Path) -> Option<u32> {
    let dir = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(" serve ") && cmd.contains(&dir) {
            return Some(pid);
        }
    }
    None
}

/// Resident memory of `pid` in MiB: in all, anonymous (the heap) and file-backed (the binary),
/// so that a failure says which part grew.
fn rss_mib(pid: u32) -> [u64; 3] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ["VmRSS:", "RssAnon:", "RssFile:"].map(|field| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    })
}

/// The flood's limits: 64 requests and 32 MiB of bodies at once, 8 MiB memtables.
const REQUEST_BYTES_MIB: u64 = 32;
const MEMTABLE_MIB: u64 = 8;

/// The bound this test holds the node to, from what its configuration lets it hold: the
/// request budget twice (an admitted body, and its encoded record on its way to the journal),
/// five memtables (one filling, four sealed; a fifth stalls writes), the clock cache (64 MiB)
/// and fjall's block cache (32 MiB) — 200 MiB — plus 312 MiB for the process, its runtime,
/// hyper's read buffers of the 600 connections (a body turned away may sit partly read) and
/// what the allocator keeps: mimalloc returns freed pages to the OS a second after they are
/// freed, so what the flood freed in up to its last second still counts as resident (with
/// `MIMALLOC_PURGE_DELAY=0` the same flood peaks 40–100 MiB lower).
/// Measured: 248–314 MiB on the 2-core machine, 382 MiB once on a CI machine (the
/// earlier allowance of 200 MiB failed there); with admission switched off
/// (`max_in_flight = 100000`, `request_bytes` = 4 GiB) 766–965 MiB, and every body gets in.
const RSS_BOUND_MIB: u64 = 2 * REQUEST_BYTES_MIB + 5 * MEMTABLE_MIB + 64 + 32 + 312;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_past_the_limits_is_turned_away_and_memory_stays_bounded() {
    let extra = format!(
        "max_in_flight = 64\nmax_value_bytes = 1048576\nrequest_bytes = {}\nmemtable_bytes = {}",
        REQUEST_BYTES_MIB << 20,
        MEMTABLE_MIB << 20
    );
    let c = Cluster::start_with(1, 1, 1, 1, &extra).await;
    let pid = pid_under(c.dir.path()).expect("the node's pid");
    let base = format!("http://{}", c.nodes[0].http);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let value = vec![b'x'; 256 * 1024];
    let (ok, busy, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let stop = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for t in 0..600 {
        let (client, base, value) = (client.clone(), base.clone(), value.clone());
        let (ok, busy, other) = (ok.clone(), busy.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < stop {
                i += 1;
                let url = format!("{base}/kv/flood-{t}-{i}");
                match client.put(url).body(value.clone()).send().await {
                    Ok(r) if r.status().as_u16() == 204 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) if r.status().as_u16() == 503 => {
                        assert_eq!(
                            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                            Some("1")
                        );
                        busy.fetch_add(1, Ordering::Relaxed)
                    }
                    r => {
                        if other.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("first other answer: {r:?}");
                        }
                        0
                    }
                };
            }
        }));
    }
    // Arrays compare from their first element: `max` keeps the sample with the most in all.
    let mut peak = [0; 3];
    while Instant::now() < stop {
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.await.expect("writer");
    }
    peak = peak.max(rss_mib(pid));
    let (ok, busy, other) = (
        ok.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    let [peak, anon, file] = peak;
    println!(
        "flood: {ok} stored, {busy} turned away (503), {other} other; \
         peak RSS {peak} MiB ({anon} MiB anonymous, {file} MiB file-backed)"
    );
    assert!(busy > 0, "the flood never reached the limits");
    assert!(ok > 0, "nothing got through");
    assert!(
        peak < RSS_BOUND_MIB,
        "peak resident memory {peak} MiB ({anon} anonymous, {file} file-backed), \
         bound {RSS_BOUND_MIB} MiB"
    );
    // The node recovers: a write and a read succeed as usual.
    let mut c = c;
    assert_eq!(c.put(1, "after", "fine", None).await.0, 204);
    assert_eq!(c.get(1, "after").await.1, vec!["fine".to_string()]);
}
