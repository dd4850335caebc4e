//! `shoal bench`: an HTTP load generator for the client API.
//!
//! `--concurrency` workers each run a closed loop: pick an operation (a `GET` with probability
//! `--read-ratio`, else a `PUT` of `--value-size` bytes) on a uniformly chosen key `bench-{i}`,
//! send it to the next node round-robin, wait for the whole answer, repeat. The workers share
//! the last `X-Shoal-Context` any of them saw per key (from `GET` and `PUT` answers) and write
//! with it, as one client application does, so siblings are superseded instead of piling up and
//! appear only for writes that really were concurrent.
//!
//! Reproducibility: worker `i` draws from an RNG seeded by `(seed, i)`, and with `--ops N` its
//! share of the `N` operations is fixed, so the same seed gives every worker the same operation
//! sequence (only the interleaving across workers varies), and the same get/put totals.
//!
//! Cost: the generator shares the machine with the nodes it measures, so it is kept cheap.
//! Each worker owns one HTTP/1.1 keep-alive connection per node, made with hyper's low-level
//! `client::conn::http1` (no pool, no URL parsing, no per-request lookups, unlike reqwest or
//! hyper-util's pooled client), the value is one shared `Bytes`, and latencies go into
//! per-worker HDR histograms merged at the end. The process's own CPU time is reported so the
//! generator's share of the machine is visible next to the numbers it measures.

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use hyper::header::HeaderValue;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod stats;
mod worker;

use stats::{report_json, report_text, Stats};
use worker::Worker;

/// Arguments of `shoal bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Node HTTP addresses; requests go to them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8701")]
    pub nodes: Vec<String>,
    /// Concurrent workers, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to run (`30s`, `500ms`, `2m`); the default when `--ops` is absent is 30s.
    #[arg(long, value_parser = parse_duration, conflicts_with = "ops")]
    pub duration: Option<Duration>,
    /// Run exactly this many operations instead of for a duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Bytes per written value.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Number of distinct keys (`bench-0` .. `bench-{keys-1}`), chosen uniformly.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Fraction of operations that are reads, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Seed of the operation sequence; random (and printed) when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object instead of the table (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Read quorum sent with every GET (`?r=`); the cluster's setting when absent.
    #[arg(long = "r")]
    pub r: Option<u32>,
    /// Write quorum sent with every PUT (`?w=`); the cluster's setting when absent.
    #[arg(long = "w")]
    pub w: Option<u32>,
    /// A request not answered within this time counts as a `timeout` error.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Runtime worker threads of the generator (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Parses `1.5s`, `500ms`, `2m`, `1h`, `250us` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use us, ms, s, m, h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// The two operations the generator issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `GET /kv/bench-{i}`.
    Get,
    /// `PUT /kv/bench-{i}` with the last context seen for the key.
    Put,
}

/// One node to talk to: its socket address and the `Host` header naming it.
#[derive(Clone, Debug)]
struct Node {
    /// Where to connect.
    addr: SocketAddr,
    /// `Host:` value, shared by every request to this node.
    host: HeaderValue,
}

/// What every worker needs to know, shared read-only.
struct Plan {
    /// The nodes, in round-robin order.
    nodes: Vec<Node>,
    /// Key count.
    keys: u64,
    /// Probability of a GET.
    read_ratio: f64,
    /// The value every PUT writes (cloning `Bytes` only bumps a count).
    value: Bytes,
    /// `?r=..` or empty.
    get_query: String,
    /// `?w=..` or empty.
    put_query: String,
    /// Per-request timeout.
    timeout: Duration,
    /// Stop at this instant (duration mode).
    deadline: Option<Instant>,
    /// Operations completed so far, for the progress bar.
    done: AtomicU64,
    /// The last context any worker saw per key: the bench is one client application, so a
    /// write carries the newest context the application has, and siblings appear only for
    /// writes that really were concurrent (a per-worker cache would make most writes blind).
    contexts: Contexts,
}

/// Number of lock shards of [`Contexts`].
const CONTEXT_SHARDS: usize = 64;

/// Last context seen per key index, sharded to keep lock contention negligible.
struct Contexts(Vec<std::sync::Mutex<HashMap<u64, HeaderValue>>>);

impl Contexts {
    fn new() -> Self {
        Contexts((0..CONTEXT_SHARDS).map(|_| Default::default()).collect())
    }

    fn shard(&self, key: u64) -> Option<std::sync::MutexGuard<'_, HashMap<u64, HeaderValue>>> {
        self.0
            .get(key as usize % CONTEXT_SHARDS)
            .and_then(|m| m.lock().ok())
    }

    fn get(&self, key: u64) -> Option<HeaderValue> {
        self.shard(key).and_then(|m| m.get(&key).cloned())
    }

    fn set(&self, key: u64, ctx: &HeaderValue) -> Result<(), String> {
        if let Some(mut m) = self.shard(key) {
            if m.get(&key) != Some(ctx) {
                // Copy, don't keep: the parsed header shares (and would pin) the read buffer.
                let owned = HeaderValue::from_bytes(ctx.as_bytes())
                    .map_err(|_| "bad context header".to_owned())?;
                m.insert(key, owned);
            }
        }
        Ok(())
    }
}

/// The process's CPU time (user + system, all threads) from `/proc/self/stat`, if readable.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture it exposes it on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Resolves `host:port` to one socket address.
async fn resolve(node: &str) -> anyhow::Result<Node> {
    let addr = tokio::net::lookup_host(node)
        .await
        .with_context(|| format!("resolving node {node:?} (expected host:port)"))?
        .next()
        .with_context(|| format!("node {node:?} resolves to no address"))?;
    let host = HeaderValue::from_str(node).with_context(|| format!("node {node:?}"))?;
    Ok(Node { addr, host })
}

/// The value every PUT writes: `size` printable bytes drawn from the seed.
fn make_value(seed: u64, size: usize) -> Bytes {
    // A stream of its own, distinct from every worker's (those mix in the worker index).
    let mut rng = StdRng::seed_from_u64(seed.rotate_left(17) ^ 0x7661_6c75_6500_0000);
    (0..size)
        .map(|_| rng.sample(rand::distributions::Alphanumeric))
        .collect::<Vec<u8>>()
        .into()
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    ensure!(args.keys >= 1, "--keys must be at least 1");
    ensure!(
        (0.0..=1.0).contains(&args.read_ratio),
        "--read-ratio must be within [0, 1]"
    );
    let node_names: Vec<String> = args
        .nodes
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if node_names.is_empty() {
        bail!("--nodes names no node");
    }
    let mut nodes = Vec::with_capacity(node_names.len());
    for name in &node_names {
        nodes.push(resolve(name).await?);
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let duration = match (args.ops, args.duration) {
        (Some(_), _) => None,
        (None, d) => Some(d.unwrap_or(Duration::from_secs(30))),
    };
    if !args.json {
        println!(
            "seed {seed}; {} node(s), concurrency {}, {}, value {} B, {} keys, read ratio {}",
            nodes.len(),
            args.concurrency,
            match (args.ops, duration) {
                (Some(n), _) => format!("{n} ops"),
                (None, Some(d)) => format!("{d:?}"),
                (None, None) => String::new(),
            },
            args.value_size,
            args.keys,
            args.read_ratio
        );
    }

    let started = Instant::now();
    let cpu_before = cpu_time();
    let plan = Arc::new(Plan {
        nodes,
        keys: args.keys,
        read_ratio: args.read_ratio,
        value: make_value(seed, args.value_size),
        get_query: args.r.map(|r| format!("?r={r}")).unwrap_or_default(),
        put_query: args.w.map(|w| format!("?w={w}")).unwrap_or_default(),
        timeout: args.timeout,
        deadline: duration.map(|d| started + d),
        done: AtomicU64::new(0),
        contexts: Contexts::new(),
    });

    let bar = progress_bar(args.json, args.ops, duration);
    let ticker = {
        let bar = bar.clone();
        let plan = Arc::clone(&plan);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let done = plan.done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("{done} ops, {:.0} ops/s", done as f64 / secs));
                match duration {
                    Some(_) => bar.set_position(started.elapsed().as_millis() as u64),
                    None => bar.set_position(done),
                }
            }
        })
    };

    let workers = args.concurrency;
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let quota = args.ops.map(|n| {
            let w = w as u64;
            let c = workers as u64;
            n / c + u64::from(w < n % c)
        });
        let worker = Worker::new(Arc::clone(&plan), seed, w)?;
        handles.push(tokio::spawn(worker.run(quota)));
    }
    let mut total = Stats::new()?;
    for h in handles {
        let stats = h.await.context("a bench worker panicked")?;
        total.merge(&stats)?;
    }
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    let cpu = match (cpu_before, cpu_time()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };

    let report = report_json(&args, &node_names, seed, elapsed, cpu, &total);
    if args.json {
        println!("{report}");
    } else {
        print!("{}", report_text(elapsed, cpu, &total));
    }
    Ok(())
}

/// A progress bar on stderr, hidden for `--json` or when stderr is not a terminal.
fn progress_bar(json: bool, ops: Option<u64>, duration: Option<Duration>) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (len, template) = match (ops, duration) {
        (Some(n), _) => (n, "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}"),
        (None, d) => (
            d.map_or(0, |d| d.as_millis() as u64),
            "{elapsed_precise} [{bar:40}] {msg}",
        ),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests;
