//! Client workloads for fault tests: timed requests that say how they ended, writers that
//! record every acknowledged write, and the read-modify-write *set* workload (each client adds
//! an element to a set under the context it read, merging siblings by union).
//!
//! Everything here counts a write as acknowledged only on `204`; a write that failed (`503`,
//! refused connection, timeout) may or may not have been stored, as in Dynamo, so it is
//! neither required nor forbidden at the end.

use super::Cluster;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use shoal::client::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The node did what was asked: a write `204`; a read `200`, `300` or `404`.
    Status(u16),
    /// The node refused, with this status (`503`, …) and reason.
    Refused(u16, String),
    /// No answer: refused connection, reset, or the client's timeout.
    NoAnswer(String),
}

impl Outcome {
    /// Whether the request did what it asked (a write `204`; a read `200`, `300` or `404`).
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Status(_))
    }

    /// The status the node answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Status(s) | Outcome::Refused(s, _) => Some(*s),
            Outcome::NoAnswer(_) => None,
        }
    }
}

/// A client of the node at `addr` over `http`.
pub fn client(http: &reqwest::Client, addr: SocketAddr) -> Client {
    Client::with_http(http.clone(), addr.to_string())
}

fn outcome_of(e: &shoal::client::ClientError) -> Outcome {
    match e {
        shoal::client::ClientError::Status { status, reason } => {
            Outcome::Refused(*status, reason.clone())
        }
        other => Outcome::NoAnswer(other.to_string()),
    }
}

/// A put; returns how it ended, the new context, and how long it took.
pub async fn put(
    c: &Client,
    key: &str,
    value: &str,
    context: Option<&str>,
    w: Option<usize>,
) -> (Outcome, Option<String>, Duration) {
    let started = Instant::now();
    let result = c.put(key, value.to_string(), context, w).await;
    let elapsed = started.elapsed();
    match result {
        Ok(written) => (Outcome::Status(204), written.context, elapsed),
        Err(e) => (outcome_of(&e), None, elapsed),
    }
}

/// A read in the JSON form; returns how it ended, the values (UTF-8, sorted), the context,
/// and how long it took.
pub async fn get(
    c: &Client,
    key: &str,
    r: Option<usize>,
) -> (Outcome, Vec<String>, Option<String>, Duration) {
    let started = Instant::now();
    let result = c.get(key, r).await;
    let elapsed = started.elapsed();
    match result {
        Ok(read) => {
            let mut values: Vec<String> = read
                .values
                .iter()
                .map(|v| String::from_utf8(v.to_vec()).expect("utf8 values"))
                .collect();
            values.sort();
            let status = match values.len() {
                0 => 404,
                1 => 200,
                _ => 300,
            };
            (Outcome::Status(status), values, read.context, elapsed)
        }
        Err(e) => (outcome_of(&e), Vec::new(), None, elapsed),
    }
}

/// The `p`-quantile (0..=1) of `samples`, or zero when there are none.
pub fn quantile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What a set of writers saw.
#[derive(Debug, Default)]
pub struct Writes {
    /// `(key, value)` of every acknowledged write.
    pub acked: Vec<(String, String)>,
    /// Writes that failed, by how they ended.
    pub failed: BTreeMap<String, usize>,
}

/// `clients` writers, each putting distinct keys `{prefix}{client}-{i}` (value
/// `v-{client}-{i}`) through the nodes of `via` in turn, until `stop` is set. Each request gives
/// up after `timeout`.
pub fn spawn_writers(
    c: &Cluster,
    via: &[u64],
    clients: u64,
    prefix: &str,
    timeout: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Writes>> {
    let http = super::http_client(timeout);
    let addrs: Vec<SocketAddr> = via.iter().map(|id| c.http_of(*id)).collect();
    (0..clients)
        .map(|w| {
            let clients: Vec<Client> = addrs.iter().map(|a| client(&http, *a)).collect();
            let stop = stop.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut seen = Writes::default();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let node = &clients[((w + i) % clients.len() as u64) as usize];
                    let (key, value) = (format!("{prefix}{w}-{i}"), format!("v-{w}-{i}"));
                    let (outcome, _, _) = put(node, &key, &value, None, None).await;
                    match outcome {
                        Outcome::Status(_) => seen.acked.push((key, value)),
                        Outcome::Refused(s, _) => {
                            *seen.failed.entry(s.to_string()).or_default() += 1
                        }
                        Outcome::NoAnswer(_) => {
                            *seen.failed.entry("no answer".into()).or_default() += 1;
                            // A node that is down refuses at once: do not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    i += 1;
                }
                seen
            })
        })
        .collect()
}

/// Joins the writers of [`spawn_writers`].
pub async fn join_writers(handles: Vec<tokio::task::JoinHandle<Writes>>) -> Writes {
    let mut all = Writes::default();
    for h in handles {
        let w = h.await.expect("a writer panicked");
        all.acked.extend(w.acked);
        for (k, n) in w.failed {
            *all.failed.entry(k).or_default() += n;
        }
    }
    all
}

/// The elements of a set value: comma-separated, empty for the empty set.
pub fn elements(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A set as a value.
pub fn set_value(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}

/// What the set workload saw.
#[derive(Debug, Default)]
pub struct SetRun {
    /// Per key, every element whose write was acknowledged.
    pub acked: BTreeMap<String, BTreeSet<String>>,
    /// Acknowledged adds.
    pub acks: usize,
    /// Adds that failed at the read or the write.
    pub failures: usize,
    /// Reads that returned siblings.
    pub sibling_reads: usize,
}

/// The set workload: `clients` clients, each repeatedly picking one of `keys` keys
/// (`set-0`..), reading it (R of the cluster), merging its siblings by union, adding a new
/// element `c{client}-{i}` and writing the result back with the context it read, through the
/// nodes of `via` in turn, until `stop` is set. An element counts as acknowledged only when its
/// write answered `204`.
pub fn spawn_set_clients(
    c: &Cluster,
    via: &[u64],
    clients: u64,
    keys: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<SetRun>> {
    let http = super::http_client(Duration::from_secs(5));
    let addrs: Vec<SocketAddr> = via.iter().map(|id| c.http_of(*id)).collect();
    (0..clients)
        .map(|w| {
            let clients: Vec<Client> = addrs.iter().map(|a| client(&http, *a)).collect();
            let stop = stop.clone();
            let mut rng = StdRng::seed_from_u64(seed ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            tokio::spawn(async move {
                let mut run = SetRun::default();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let node = &clients[rng.gen_range(0..clients.len())];
                    let key = format!("set-{}", rng.gen_range(0..keys));
                    let element = format!("c{w}-{i}");
                    i += 1;
                    let (read, values, context, _) = get(node, &key, None).await;
                    if !read.ok() {
                        run.failures += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    if values.len() > 1 {
                        run.sibling_reads += 1;
                    }
                    let mut set: BTreeSet<String> =
                        values.iter().flat_map(|v| elements(v)).collect();
                    set.insert(element.clone());
                    let (wrote, _, _) =
                        put(node, &key, &set_value(&set), context.as_deref(), None).await;
                    if wrote == Outcome::Status(204) {
                        run.acked.entry(key).or_default().insert(element);
                        run.acks += 1;
                    } else {
                        run.failures += 1;
                    }
                }
                run
            })
        })
        .collect()
}

/// Joins the clients of [`spawn_set_clients`].
pub async fn join_set_clients(handles: Vec<tokio::task::JoinHandle<SetRun>>) -> SetRun {
    let mut all = SetRun::default();
    for h in handles {
        let r = h.await.expect("a set client panicked");
        for (k, set) in r.acked {
            all.acked.entry(k).or_default().extend(set);
        }
        all.acks += r.acks;
        all.failures += r.failures;
        all.sibling_reads += r.sibling_reads;
    }
    all
}

/// Rolling crashes: until `until`, `kill -9` a node chosen by `rng`, keep it down for a while,
/// restart it, let the cluster settle briefly; one node down at a time. Returns the kills.
pub async fn rolling_kills(c: &mut Cluster, rng: &mut StdRng, until: Instant) -> usize {
    let ids = c.ids();
    let mut kills = 0;
    while Instant::now() < until {
        let victim = ids[rng.gen_range(0..ids.len())];
        c.kill9(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
        c.restart(victim).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1000))).await;
    }
    kills
}

/// Waits until no node holds a hint (every node answers and `shoal_hints_held` sums to 0),
/// at most `timeout`; returns how long it took, or `Err` with the last sum seen.
pub async fn await_hints_drained(c: &Cluster, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let ids = c.ids();
    loop {
        let held = c.metric_sum(&ids, "shoal_hints_held").await;
        if held == Some(0.0) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(format!("hints still held after {timeout:?}: {held:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `SHOAL_FAULTS_LONG` asks for the long variants.
pub fn long() -> bool {
    std::env::var("SHOAL_FAULTS_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Every node's own copy of `key` (`/admin/local`); `Err` if a node does not answer.
pub async fn copies(c: &Cluster, key: &str) -> Result<Vec<(u64, Option<super::Local>)>, String> {
    let mut all = Vec::new();
    for id in c.ids() {
        all.push((id, c.local(id, key).await?));
    }
    Ok(all)
}

/// Why the copies of `key` (from [`copies`]) have not converged, if they have not: the `n`
/// primaries must hold the same clock (values and causal history), the other nodes none.
pub fn divergence(
    c: &Cluster,
    key: &str,
    n: usize,
    copies: &[(u64, Option<super::Local>)],
) -> Option<String> {
    let primaries = c.primaries(key, n);
    let mut first: Option<(u64, &super::Local)> = None;
    for (id, copy) in copies {
        match (primaries.contains(id), copy) {
            (true, None) => return Some(format!("primary {id} holds nothing")),
            (true, Some(l)) => match first {
                None => first = Some((*id, l)),
                Some((_, f)) if f == l => {}
                Some((fid, f)) => {
                    return Some(format!(
                        "primaries differ: node {fid} {f:?}, node {id} {l:?}"
                    ))
                }
            },
            (false, Some(l)) => return Some(format!("non-primary {id} holds {l:?}")),
            (false, None) => {}
        }
    }
    None
}
