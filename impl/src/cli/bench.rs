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
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use shoal::client::{multipart_boundary, parse_multipart, CONTEXT_HEADER};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Latency and counts for one kind of operation.
#[derive(Clone)]
struct OpStats {
    /// Operations attempted.
    count: u64,
    /// Of which failed (a transport error, a timeout or an unexpected status).
    errors: u64,
    /// Latency of successful operations, in microseconds.
    hist: Histogram<u64>,
}

impl OpStats {
    /// An empty record; the histogram spans 1 µs to an hour at 3 significant digits.
    fn new() -> anyhow::Result<Self> {
        Ok(OpStats {
            count: 0,
            errors: 0,
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .context("creating a latency histogram")?,
        })
    }

    /// Adds another worker's record to this one.
    fn merge(&mut self, other: &OpStats) -> anyhow::Result<()> {
        self.count += other.count;
        self.errors += other.errors;
        self.hist
            .add(&other.hist)
            .context("merging latency histograms")
    }

    /// The numbers that are printed, in microseconds.
    fn summary(&self) -> serde_json::Value {
        let h = &self.hist;
        serde_json::json!({
            "count": self.count,
            "errors": self.errors,
            "p50_us": h.value_at_quantile(0.50),
            "p99_us": h.value_at_quantile(0.99),
            "p999_us": h.value_at_quantile(0.999),
            "max_us": h.max(),
            "mean_us": (h.mean() * 10.0).round() / 10.0,
        })
    }
}

/// Everything one worker (and, merged, the whole run) observed.
#[derive(Clone)]
struct Stats {
    /// GET latencies and counts.
    get: OpStats,
    /// PUT latencies and counts.
    put: OpStats,
    /// Failures by kind: `status 503`, `timeout`, `connect: ConnectionRefused`, ...
    errors: BTreeMap<String, u64>,
    /// GETs answered `200`.
    found: u64,
    /// GETs answered `404`.
    not_found: u64,
    /// GETs answered `300` (siblings).
    sibling_answers: u64,
    /// Sum of the sibling counts of those answers.
    siblings_total: u64,
    /// Most siblings seen in one answer.
    siblings_max: u64,
}

impl Stats {
    /// An empty record.
    fn new() -> anyhow::Result<Self> {
        Ok(Stats {
            get: OpStats::new()?,
            put: OpStats::new()?,
            errors: BTreeMap::new(),
            found: 0,
            not_found: 0,
            sibling_answers: 0,
            siblings_total: 0,
            siblings_max: 0,
        })
    }

    /// Adds another worker's record to this one.
    fn merge(&mut self, other: &Stats) -> anyhow::Result<()> {
        self.get.merge(&other.get)?;
        self.put.merge(&other.put)?;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.found += other.found;
        self.not_found += other.not_found;
        self.sibling_answers += other.sibling_answers;
        self.siblings_total += other.siblings_total;
        self.siblings_max = self.siblings_max.max(other.siblings_max);
        Ok(())
    }
}

/// The successful outcome of one request.
enum Answer {
    /// GET `200`.
    Found,
    /// GET `404`.
    NotFound,
    /// GET `300` with this many siblings.
    Siblings(u64),
    /// PUT `2xx`.
    Written,
}

/// One closed-loop client: its RNG and its connections.
struct Worker {
    /// The shared plan.
    plan: Arc<Plan>,
    /// Seeded by `(seed, worker index)`.
    rng: StdRng,
    /// One keep-alive connection per node, opened on first use and after a failure.
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
    /// Index of the node the next request goes to.
    next_node: usize,
    /// What this worker observed.
    stats: Stats,
    /// Reused buffer for the request path.
    path: String,
}

impl Worker {
    /// Worker number `index` of a run seeded with `seed`.
    fn new(plan: Arc<Plan>, seed: u64, index: usize) -> anyhow::Result<Self> {
        let nodes = plan.nodes.len().max(1);
        Ok(Worker {
            // Distinct, reproducible streams: the seed and the worker index, well mixed.
            rng: StdRng::seed_from_u64(
                seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            conns: (0..nodes).map(|_| None).collect(),
            next_node: index % nodes,
            stats: Stats::new()?,
            path: String::with_capacity(64),
            plan,
        })
    }

    /// Runs `quota` operations (or until the deadline) and returns what was observed.
    async fn run(mut self, quota: Option<u64>) -> Stats {
        let mut n = 0u64;
        loop {
            if quota.is_some_and(|q| n >= q)
                || self.plan.deadline.is_some_and(|d| Instant::now() >= d)
            {
                return self.stats;
            }
            n += 1;
            let op = if self.rng.gen_bool(self.plan.read_ratio) {
                Op::Get
            } else {
                Op::Put
            };
            let key = self.rng.gen_range(0..self.plan.keys);
            let node = self.next_node;
            self.next_node = (self.next_node + 1) % self.plan.nodes.len();
            let started = Instant::now();
            let outcome =
                match tokio::time::timeout(self.plan.timeout, self.request(node, op, key)).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        // The connection may be mid-answer; never reuse it.
                        if let Some(slot) = self.conns.get_mut(node) {
                            *slot = None;
                        }
                        Err("timeout".to_owned())
                    }
                };
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let s = &mut self.stats;
            let per_op = match op {
                Op::Get => &mut s.get,
                Op::Put => &mut s.put,
            };
            per_op.count += 1;
            match outcome {
                Ok(answer) => {
                    per_op.hist.saturating_record(micros.max(1));
                    match answer {
                        Answer::Found => s.found += 1,
                        Answer::NotFound => s.not_found += 1,
                        Answer::Siblings(k) => {
                            s.sibling_answers += 1;
                            s.siblings_total += k;
                            s.siblings_max = s.siblings_max.max(k);
                        }
                        Answer::Written => {}
                    }
                }
                Err(kind) => {
                    per_op.errors += 1;
                    *s.errors.entry(kind).or_default() += 1;
                }
            }
            self.plan.done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The live connection to node `i`, opening one if needed.
    async fn connection(&mut self, i: usize) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        let node = self.plan.nodes.get(i).ok_or("no such node")?;
        let slot = self.conns.get_mut(i).ok_or("no such node")?;
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            let stream = match tokio::net::TcpStream::connect(node.addr).await {
                Ok(s) => s,
                Err(e) => {
                    // A node that is down would otherwise turn the loop into a busy spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    return Err(format!("connect: {:?}", e.kind()));
                }
            };
            stream
                .set_nodelay(true)
                .map_err(|e| format!("connect: {:?}", e.kind()))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("transport: {e}"))?;
            tokio::spawn(async move {
                // Ends when the worker drops its sender or the peer closes; either is fine.
                let _ = conn.await;
            });
            *slot = Some(sender);
        }
        slot.as_mut().ok_or_else(|| "no connection".to_owned())
    }

    /// Sends one request to node `i` and reads the whole answer.
    async fn request(&mut self, i: usize, op: Op, key: u64) -> Result<Answer, String> {
        use std::fmt::Write as _;
        let plan = Arc::clone(&self.plan);
        let node = plan.nodes.get(i).ok_or("no such node")?;
        self.path.clear();
        let query = match op {
            Op::Get => &plan.get_query,
            Op::Put => &plan.put_query,
        };
        let _ = write!(self.path, "/kv/bench-{key}{query}");
        let uri = Uri::try_from(self.path.as_str()).map_err(|e| format!("uri: {e}"))?;
        let body = match op {
            Op::Get => Full::new(Bytes::new()),
            Op::Put => Full::new(plan.value.clone()),
        };
        let mut req = Request::new(body);
        *req.uri_mut() = uri;
        req.headers_mut().insert(HOST, node.host.clone());
        if op == Op::Put {
            *req.method_mut() = Method::PUT;
            if let Some(ctx) = self.plan.contexts.get(key) {
                req.headers_mut().insert(CONTEXT_HEADER, ctx);
            }
        }
        let result = self.exchange(i, req).await;
        if result.is_err() {
            // After a transport error the connection's state is unknown: start afresh.
            if let Some(slot) = self.conns.get_mut(i) {
                *slot = None;
            }
        }
        let (status, headers, body) = result?;
        if let Some(ctx) = headers.get(CONTEXT_HEADER) {
            self.plan.contexts.set(key, ctx)?;
        }
        match (op, status) {
            (Op::Get, StatusCode::OK) => Ok(Answer::Found),
            (Op::Get, StatusCode::NOT_FOUND) => Ok(Answer::NotFound),
            (Op::Get, StatusCode::MULTIPLE_CHOICES) => {
                let boundary = headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(multipart_boundary)
                    .ok_or("300 without a multipart boundary")?;
                let parts = parse_multipart(&body, boundary)
                    .map_err(|_| "300 with a malformed multipart body".to_owned())?;
                Ok(Answer::Siblings(parts.len() as u64))
            }
            (Op::Put, s) if s.is_success() => Ok(Answer::Written),
            (_, s) => Err(format!("status {}", s.as_u16())),
        }
    }

    /// Sends `req` on node `i`'s connection and collects the answer.
    async fn exchange(
        &mut self,
        i: usize,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
        let conn = self.connection(i).await?;
        conn.ready().await.map_err(|e| format!("transport: {e}"))?;
        let resp = conn
            .send_request(req)
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("transport: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
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

/// The run as one JSON object (what `--json` prints).
fn report_json(
    args: &BenchArgs,
    nodes: &[String],
    seed: u64,
    elapsed: Duration,
    cpu: Option<Duration>,
    s: &Stats,
) -> serde_json::Value {
    let ops = s.get.count + s.put.count;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut get = s.get.summary();
    if let Some(obj) = get.as_object_mut() {
        obj.insert("found".into(), s.found.into());
        obj.insert("not_found".into(), s.not_found.into());
        obj.insert("sibling_answers".into(), s.sibling_answers.into());
    }
    serde_json::json!({
        "seed": seed,
        "nodes": nodes,
        "concurrency": args.concurrency,
        "value_size": args.value_size,
        "keys": args.keys,
        "read_ratio": args.read_ratio,
        "elapsed_s": (secs * 1000.0).round() / 1000.0,
        "ops": ops,
        "throughput_ops_s": (ops as f64 / secs * 10.0).round() / 10.0,
        "errors": s.get.errors + s.put.errors,
        "errors_by_kind": s.errors,
        "get": get,
        "put": s.put.summary(),
        "siblings_seen": s.siblings_total,
        "siblings_max": s.siblings_max,
        "generator_cpu_s": cpu.map(|c| c.as_secs_f64()),
        "generator_cores": cpu.map(|c| (c.as_secs_f64() / secs * 100.0).round() / 100.0),
    })
}

/// The run as a short table for people.
fn report_text(elapsed: Duration, cpu: Option<Duration>, s: &Stats) -> String {
    use std::fmt::Write as _;
    let ops = s.get.count + s.put.count;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let errors = s.get.errors + s.put.errors;
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{ops} ops in {secs:.2} s: {:.0} ops/s, {errors} errors",
        ops as f64 / secs
    );
    let _ = writeln!(
        out,
        "{:<4} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "op", "count", "errors", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, o) in [("get", &s.get), ("put", &s.put)] {
        let h = &o.hist;
        let _ = writeln!(
            out,
            "{name:<4} {:>10} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            o.count,
            o.errors,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        );
    }
    let _ = writeln!(
        out,
        "gets: {} found, {} not found, {} with siblings ({} siblings seen, at most {} at once)",
        s.found, s.not_found, s.sibling_answers, s.siblings_total, s.siblings_max
    );
    for (kind, n) in &s.errors {
        let _ = writeln!(out, "error {kind}: {n}");
    }
    if let Some(cpu) = cpu {
        let _ = writeln!(
            out,
            "generator CPU: {:.2} s ({:.2} cores)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / secs
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn merged_stats_add_up() {
        let mut a = Stats::new().expect("stats");
        let mut b = Stats::new().expect("stats");
        a.get.count = 2;
        a.get.hist.record(100).expect("in range");
        b.get.count = 3;
        b.get.hist.record(300).expect("in range");
        b.siblings_max = 4;
        b.errors.insert("status 503".into(), 1);
        a.merge(&b).expect("merge");
        assert_eq!(a.get.count, 5);
        assert_eq!(a.get.hist.len(), 2);
        assert_eq!(a.siblings_max, 4);
        assert_eq!(a.errors.get("status 503"), Some(&1));
    }

    /// What the fake node saw: `("get", key, None)` or `("put", key, context sent)`.
    type Log = Arc<std::sync::Mutex<Vec<(&'static str, String, Option<String>)>>>;

    /// A node that always answers GET with two siblings (context `g-{key}`) and PUT with a
    /// fresh context `p-{n}`, logging what it was sent.
    async fn fake_node() -> (SocketAddr, Log) {
        use axum::extract::{Path, State};
        use axum::http::HeaderMap;
        use axum::response::IntoResponse;
        let log: Log = Arc::default();
        let get = |State(log): State<Log>, Path(key): Path<String>| async move {
            log.lock().expect("log").push(("get", key.clone(), None));
            let body = format!(
                "--sep\r\nContent-Type: application/octet-stream\r\n\r\none-{key}\r\n\
                 --sep\r\nContent-Type: application/octet-stream\r\n\r\ntwo\r\n--sep--\r\n"
            );
            (
                StatusCode::MULTIPLE_CHOICES,
                [
                    ("content-type", "multipart/mixed; boundary=sep".to_owned()),
                    (CONTEXT_HEADER, format!("g-{key}")),
                ],
                body,
            )
                .into_response()
        };
        let put = |State(log): State<Log>, Path(key): Path<String>, h: HeaderMap| async move {
            let sent = h
                .get(CONTEXT_HEADER)
                .map(|v| v.to_str().expect("ascii").to_owned());
            let mut log = log.lock().expect("log");
            log.push(("put", key, sent));
            let n = log.len();
            (StatusCode::NO_CONTENT, [(CONTEXT_HEADER, format!("p-{n}"))]).into_response()
        };
        let app = axum::Router::new()
            .route("/kv/{key}", axum::routing::get(get).put(put))
            .with_state(Arc::clone(&log));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, log)
    }

    #[tokio::test]
    async fn a_worker_writes_with_the_last_context_and_counts_siblings() {
        let (addr, log) = fake_node().await;
        let plan = Arc::new(Plan {
            nodes: vec![Node {
                addr,
                host: HeaderValue::from_static("fake"),
            }],
            keys: 3,
            read_ratio: 0.5,
            value: Bytes::from_static(b"v"),
            get_query: String::new(),
            put_query: String::new(),
            timeout: Duration::from_secs(10),
            deadline: None,
            done: AtomicU64::new(0),
            contexts: Contexts::new(),
        });
        let stats = Worker::new(Arc::clone(&plan), 11, 0)
            .expect("worker")
            .run(Some(200))
            .await;
        assert!(stats.errors.is_empty(), "{:?}", stats.errors);
        assert_eq!(stats.get.count + stats.put.count, 200);
        assert!(stats.get.count > 50 && stats.put.count > 50);
        assert_eq!(stats.sibling_answers, stats.get.count);
        assert_eq!(stats.siblings_total, 2 * stats.get.count);
        assert_eq!(stats.siblings_max, 2);
        assert_eq!(plan.done.load(Ordering::Relaxed), 200);

        // Replay the log: one sequential worker, so the node saw its exact order. Every PUT
        // must carry the last context the node handed out for that key (none before any).
        let log = log.lock().expect("log");
        assert_eq!(log.len(), 200);
        let mut last: HashMap<String, String> = HashMap::new();
        for (i, (op, key, sent)) in log.iter().enumerate() {
            if *op == "get" {
                last.insert(key.clone(), format!("g-{key}"));
            } else {
                assert_eq!(sent.as_ref(), last.get(key), "put #{i} on {key}");
                last.insert(key.clone(), format!("p-{}", i + 1));
            }
        }
    }

    #[test]
    fn the_value_depends_only_on_the_seed() {
        assert_eq!(make_value(7, 64), make_value(7, 64));
        assert_ne!(make_value(7, 64), make_value(8, 64));
        assert_eq!(make_value(7, 10).len(), 10);
    }
}
