//! Node → model on a real cluster: three `shoal serve` processes record their client history
//! (`record_history`) under a read-modify-write workload with deletes while nodes are killed
//! with SIGKILL and restarted; once the faults stop and the replicas settle, the recorded
//! history and every replica's own copy of every key are checked against the model's
//! invariants (`shoal_conformance::history`). Every process is killed when the test ends.
//!
//! The node binary is the workspace's `target/<profile>/shoal` (built by `cargo nextest run
//! --workspace`; built here with `cargo build -p shoal` if missing).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal::client::{parse_json, Client};
use shoal_conformance::history::{check, FinalState, History, LocalView};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: u64 = 3;
const KEYS: u64 = 6;
const CLIENTS: u64 = 4;

fn shoal_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_shoal-conformance")).with_file_name("shoal");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "shoal", "--bin", "shoal"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p shoal failed");
    }
    assert!(bin.exists(), "no node binary at {}", bin.display());
    bin
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The cluster's processes; all killed on drop.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    http: Vec<SocketAddr>,
    children: Mutex<Vec<Option<Child>>>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "a history test secret of 32 bytes").expect("secret");
        let addrs: Vec<(SocketAddr, SocketAddr)> =
            (0..NODES).map(|_| (free_addr(), free_addr())).collect();
        let mut members = String::new();
        for (i, (http, peer)) in addrs.iter().enumerate() {
            members.push_str(&format!(
                "\n[[nodes]]\nid = {}\nhttp = \"{http}\"\npeer = \"{peer}\"\n",
                i + 1
            ));
        }
        for (i, (http, peer)) in addrs.iter().enumerate() {
            let id = i + 1;
            let data = dir.path().join(format!("n{id}"));
            let history = dir.path().join(format!("history-{id}.jsonl"));
            // Short lifetimes so that deleted keys are forgotten while the test settles.
            let text = format!(
                "id = {id}\nhttp = \"{http}\"\npeer = \"{peer}\"\ndata_dir = \"{}\"\nsecret_file = \"{}\"\npartitions = 16\nn = 3\nr = 2\nw = 2\nrequest_timeout_ms = 1000\nmessage_ttl_ms = 2000\ndelete_grace_ms = 13000\nrecord_history = \"{}\"\n{members}",
                data.display(),
                secret.display(),
                history.display()
            );
            std::fs::write(dir.path().join(format!("n{id}.toml")), text).expect("config");
        }
        let cluster = Cluster {
            bin: shoal_binary(),
            http: addrs.iter().map(|(h, _)| *h).collect(),
            children: Mutex::new((0..NODES).map(|_| None).collect()),
            dir,
        };
        for id in 1..=NODES {
            cluster.spawn(id);
        }
        cluster
    }

    fn spawn(&self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{id}.log")))
            .expect("log");
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join(format!("n{id}.toml")))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start shoal serve");
        self.children.lock().expect("children")[(id - 1) as usize] = Some(child);
    }

    fn kill9(&self, id: u64) {
        if let Some(mut c) = self.children.lock().expect("children")[(id - 1) as usize].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn is_up(&self, id: u64) -> bool {
        self.children.lock().expect("children")[(id - 1) as usize].is_some()
    }

    async fn wait_ready(&self, id: u64) {
        let url = format!("http://{}/health", self.http[(id - 1) as usize]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {id} did not start");
    }

    fn histories(&self) -> Vec<PathBuf> {
        (1..=NODES)
            .map(|id| self.dir.path().join(format!("history-{id}.jsonl")))
            .filter(|p| p.exists())
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=NODES {
            self.kill9(id);
        }
    }
}

/// Every node's own copy of every key, as the checker reads them.
async fn end_state(cluster: &Cluster, http: &reqwest::Client) -> FinalState {
    let mut end = FinalState::new();
    for k in 0..KEYS {
        let key = format!("key{k}");
        let mut views = Vec::new();
        for id in 1..=NODES {
            let url = format!(
                "http://{}/admin/local/{key}",
                cluster.http[(id - 1) as usize]
            );
            let resp = http.get(url).send().await.expect("admin/local");
            let view = if resp.status().as_u16() == 404 {
                None
            } else {
                let body = resp.bytes().await.expect("body");
                let read = parse_json(&body).expect("admin/local JSON");
                Some(LocalView {
                    context: read.context,
                    values: read
                        .values
                        .iter()
                        .map(|v| shoal::recorder::encode_value(v))
                        .collect(),
                })
            };
            views.push((id, view));
        }
        end.insert(key, views);
    }
    end
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cluster_under_kill_9_keeps_the_models_invariants() {
    let seed: u64 = std::env::var("SHOAL_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let cluster = Arc::new(Cluster::start());
    for id in 1..=NODES {
        cluster.wait_ready(id).await;
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (cluster, http, stop, acked) =
            (cluster.clone(), http.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed * 100 + c);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let node = rng.gen_range(0..NODES as usize);
                let client = Client::with_http(http.clone(), cluster.http[node].to_string());
                let key = format!("key{}", rng.gen_range(0..KEYS));
                let Ok(read) = client.get(&key, None).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                seq += 1;
                let ctx = read.context.as_deref();
                let ok = if rng.gen_bool(0.15) && ctx.is_some() {
                    client
                        .delete(&key, ctx.unwrap_or_default(), None)
                        .await
                        .is_ok()
                } else {
                    let value = format!("c{c}.s{seq}");
                    client.put(&key, value, ctx, None).await.is_ok()
                };
                acked.fetch_add(usize::from(ok), Ordering::Relaxed);
            }
        }));
    }
    // Faults: every couple of seconds one node is killed with SIGKILL, then restarted.
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(16) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1200..2500))).await;
        let victim = rng.gen_range(1..=NODES);
        cluster.kill9(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
        cluster.spawn(victim);
        cluster.wait_ready(victim).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    for id in 1..=NODES {
        assert!(cluster.is_up(id));
    }
    // The faults are over: let anti-entropy, handoff and forgetting finish, then check.
    let mut end = end_state(&cluster, &http).await;
    let history = History::load(&cluster.histories()).expect("the recorded history");
    let settle = Instant::now();
    let outcome = loop {
        let outcome = check(&history, &end);
        if outcome.is_ok() || settle.elapsed() > Duration::from_secs(60) {
            break outcome;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        end = end_state(&cluster, &http).await;
    };
    match outcome {
        Ok(report) => {
            println!(
                "history: seed {seed}, {} operations over {} keys, {} writes acknowledged ({} seen by the clients), {} indeterminate, {} stale reads, {} unknown contexts, {kills} kill -9s; settled in {:.1} s; 0 violations",
                report.ops,
                report.keys,
                report.acknowledged,
                acked.load(Ordering::Relaxed),
                report.indeterminate,
                report.stale_reads,
                report.unknown_contexts,
                settle.elapsed().as_secs_f64()
            );
            assert!(report.acknowledged > 50, "too little work to mean much");
            assert!(kills >= 4);
        }
        Err(violations) => panic!(
            "seed {seed}: the recorded history breaks the model's invariants:\n{}",
            violations.join("\n")
        ),
    }
}
