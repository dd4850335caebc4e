//! A cluster of real `shoal serve` processes on loopback ports, for black-box tests. Every
//! process is killed when the `Cluster` is dropped, whether the test passed or not.
//!
//! [`Cluster::start_opts`] also starts nodes on given addresses under a launcher (e.g. `ip
//! netns exec`, see [`netns`]) and tied to the test process (`setpriv --pdeathsig`), and the
//! cluster offers what fault tests need: pausing a node (`SIGSTOP`), wiping one, reading one
//! node's own copy of a key (`/admin/local`), its metrics and what it believes of its peers.

#![allow(dead_code)]

use base64::Engine as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal::client::Client;
use shoal::{NodeId, NodeSpec, Ring};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The partition count `Q` of every test cluster.
pub const PARTITIONS: u32 = 16;

/// Every test cluster's `request_timeout_ms`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// One node process and how to restart it.
pub struct Node {
    pub id: u64,
    pub http: SocketAddr,
    pub peer: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// The command `shoal serve` runs under (its arguments precede the binary); empty: none.
    launcher: Vec<String>,
}

/// How [`Cluster::start_opts`] starts a cluster.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Number of nodes (ids `1..=count`).
    pub count: u64,
    /// Replicas per key.
    pub n: usize,
    /// Default read quorum.
    pub r: usize,
    /// Default write quorum.
    pub w: usize,
    /// Extra TOML lines in every node's configuration.
    pub extra: String,
    /// `(http, peer)` per node; free loopback ports when `None`.
    pub addrs: Option<Vec<(SocketAddr, SocketAddr)>>,
    /// Per node, the command `shoal serve` runs under (`ip netns exec NAME`); none if absent.
    pub launchers: Vec<Vec<String>>,
    /// Kill the nodes if the test process dies without dropping the cluster (a timeout's
    /// `SIGKILL`): `setpriv --pdeathsig KILL`, when `setpriv` is installed.
    pub die_with_test: bool,
    /// Return only once every node sees every other `up` (their connections are established),
    /// not merely once each answers `/health`.
    pub settled: bool,
}

impl Options {
    /// `count` nodes with replication `n` and quorums `r`, `w`, on loopback ports, tied to the
    /// test process.
    pub fn new(count: u64, n: usize, r: usize, w: usize) -> Options {
        Options {
            count,
            n,
            r,
            w,
            die_with_test: true,
            settled: true,
            ..Options::default()
        }
    }

    /// With `extra` TOML lines in every configuration.
    pub fn extra(mut self, extra: &str) -> Options {
        self.extra = extra.to_string();
        self
    }
}

/// One node's own durable copy of a key, from `GET /admin/local/{key}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The live values, decoded as UTF-8, sorted.
    pub values: Vec<String>,
    /// The clock's causal history, as a context.
    pub context: String,
    /// Tombstone siblings.
    pub tombstones: u64,
    /// Whether the node is in the key's preference list.
    pub replica: bool,
}

/// A running test cluster.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub client: reqwest::Client,
}

/// A free loopback port for a node to listen on. Taken below the kernel's ephemeral range when
/// there is room, so that while a node is down no outgoing connection (a client's, a peer's)
/// can be given its port as a source port and keep it from starting again; else any free one.
fn free_addr() -> SocketAddr {
    use rand::Rng as _;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    if low > 12_000 {
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let port = rng.gen_range(10_000..low);
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                return l.local_addr().expect("local addr");
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

impl Cluster {
    /// Starts `count` nodes with replication `n`, quorums `r` and `w`.
    pub async fn start(count: u64, n: usize, r: usize, w: usize) -> Cluster {
        Self::start_with(count, n, r, w, "").await
    }

    /// Like [`Cluster::start`], with extra TOML lines in every node's configuration.
    pub async fn start_with(count: u64, n: usize, r: usize, w: usize, extra: &str) -> Cluster {
        let opts = Options {
            die_with_test: false,
            settled: false,
            ..Options::new(count, n, r, w).extra(extra)
        };
        Self::start_opts(&opts).await
    }

    /// Starts a cluster as `opts` says and waits until every node answers `/health` (and, if
    /// `opts.settled`, until every node sees every other up).
    pub async fn start_opts(opts: &Options) -> Cluster {
        let (count, n, r, w, extra) = (opts.count, opts.n, opts.r, opts.w, &opts.extra);
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "a test cluster secret, 32 bytes").expect("write the secret");
        let addrs: Vec<(SocketAddr, SocketAddr)> = match &opts.addrs {
            Some(a) => a.clone(),
            None => (0..count).map(|_| (free_addr(), free_addr())).collect(),
        };
        assert_eq!(addrs.len() as u64, count, "one address pair per node");
        let mut members = String::new();
        for (i, (http, peer)) in addrs.iter().enumerate() {
            members.push_str(&format!(
                "\n[[nodes]]\nid = {}\nhttp = \"{http}\"\npeer = \"{peer}\"\n",
                i + 1
            ));
        }
        let pdeathsig = opts.die_with_test && setpriv_available();
        let mut nodes = Vec::new();
        for (i, (http, peer)) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let data = dir.path().join(format!("n{id}"));
            std::fs::create_dir_all(&data).expect("node dir");
            let config = data.join("node.toml");
            // 64 KiB values unless the test's own lines say otherwise.
            let value_limit = if extra.contains("max_value_bytes") {
                ""
            } else {
                "max_value_bytes = 65536\n"
            };
            let text = format!(
                "id = {id}\nhttp = \"{http}\"\npeer = \"{peer}\"\ndata_dir = \"{}\"\nsecret_file = \"{}\"\npartitions = {PARTITIONS}\nn = {n}\nr = {r}\nw = {w}\nrequest_timeout_ms = {}\n{value_limit}{extra}\n{members}",
                data.join("db").display(),
                secret.display(),
                REQUEST_TIMEOUT.as_millis(),
            );
            std::fs::write(&config, text).expect("write config");
            let mut launcher = Vec::new();
            if pdeathsig {
                launcher.extend(["setpriv", "--pdeathsig", "KILL", "--"].map(String::from));
            }
            launcher.extend(opts.launchers.get(i).cloned().unwrap_or_default());
            nodes.push(Node {
                id,
                http: *http,
                peer: *peer,
                config,
                log: data.join("node.log"),
                child: None,
                launcher,
            });
        }
        let mut cluster = Cluster {
            dir,
            nodes,
            client: reqwest::Client::new(),
        };
        for id in 1..=count {
            cluster.spawn(id);
        }
        for id in 1..=count {
            cluster.wait_ready(id).await;
        }
        if opts.settled {
            let ids = cluster.ids();
            cluster
                .await_peer_states(&ids, &ids, &["up"], Duration::from_secs(20))
                .await;
        }
        cluster
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    fn spawn(&mut self, id: u64) {
        let node = self.node(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let shoal = env!("CARGO_BIN_EXE_shoal");
        let mut command = match node.launcher.split_first() {
            None => Command::new(shoal),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(shoal);
                c
            }
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&node.config)
            // `SHOAL_TEST_NODE_LOG=debug` to see more of what the nodes do.
            .env(
                "RUST_LOG",
                std::env::var("SHOAL_TEST_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start shoal serve");
        node.child = Some(child);
    }

    /// Waits until node `id` answers `/health`.
    pub async fn wait_ready(&mut self, id: u64) {
        let url = format!("http://{}/health", self.node(id).http);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if Instant::now() >= deadline {
                let exit = self.node(id).child.as_mut().map(Child::try_wait);
                panic!(
                    "node {id} did not become ready (process: {exit:?}); log:\n{}",
                    self.log(id)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `id`'s data directory (its identity file sits beside it, `db.identity`).
    pub fn data_dir(&mut self, id: u64) -> PathBuf {
        self.dir.path().join(format!("n{id}")).join("db")
    }

    /// The node's log so far.
    pub fn log(&mut self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    /// Stops node `id` with SIGTERM and waits for it.
    pub fn stop(&mut self, id: u64) {
        if let Some(mut child) = self.node(id).child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Kills node `id` with SIGKILL (`kill -9`): no chance to flush anything.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut child) = self.node(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `id` again on the same data and waits until it is ready.
    pub async fn restart(&mut self, id: u64) {
        self.spawn(id);
        self.wait_ready(id).await;
    }

    /// Whether node `id`'s process is still running.
    pub fn is_running(&mut self, id: u64) -> bool {
        match self.node(id).child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `http://host:port/kv/KEY` on node `id`.
    pub fn url(&mut self, id: u64, key: &str) -> String {
        format!("http://{}/kv/{key}", self.node(id).http)
    }

    /// A client of node `id`, sharing the cluster's connection pool.
    pub fn node_client(&mut self, id: u64) -> Client {
        let http = self.client.clone();
        Client::with_http(http, self.node(id).http.to_string())
    }

    /// A blind or contextual PUT; returns (status, context header).
    pub async fn put(
        &mut self,
        id: u64,
        key: &str,
        value: &str,
        ctx: Option<&str>,
    ) -> (u16, Option<String>) {
        let client = self.node_client(id);
        match client.put(key, value.to_string(), ctx, None).await {
            Ok(written) => (204, written.context),
            Err(e) => (e.status().expect("an HTTP answer"), None),
        }
    }

    /// A read in the JSON form; returns (status, sorted values, context).
    pub async fn get(&mut self, id: u64, key: &str) -> (u16, Vec<String>, Option<String>) {
        let client = self.node_client(id);
        match client.get(key, None).await {
            Ok(read) => {
                let status = match read.values.len() {
                    0 => 404,
                    1 => 200,
                    _ => 300,
                };
                let mut values: Vec<String> = read
                    .values
                    .iter()
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf8"))
                    .collect();
                values.sort();
                (status, values, read.context)
            }
            Err(e) => (e.status().expect("an HTTP answer"), Vec::new(), None),
        }
    }
}

/// The body of `GET url` as text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// The body of `GET url` parsed as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(client, url).await).expect("JSON body")
}

/// A response header as a string.
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Whether `setpriv` (util-linux) can tie a node to the test process.
fn setpriv_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("setpriv")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A client without proxies whose every request gives up after `timeout`.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("an HTTP client")
}

/// A run's seed: `$var` if set, else random; printed either way so a failure can be replayed.
pub fn seed(var: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("{var} is a number")),
        Err(_) => rand::random(),
    };
    eprintln!("seed {seed} (replay with {var}={seed})");
    seed
}

/// The value of the sample `name` (with its labels, if any, e.g. `shoal_peer_up{peer="2"}`) in
/// a Prometheus exposition.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

impl Cluster {
    /// Node `id`'s client HTTP address.
    pub fn http_of(&self, id: u64) -> SocketAddr {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.http)
            .expect("node id")
    }

    /// Every node's id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&mut self, id: u64) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    fn signal(&mut self, id: u64, signal: Signal) {
        let pid = self
            .pid(id)
            .unwrap_or_else(|| panic!("node {id} is not running"));
        kill(Pid::from_raw(pid as i32), signal).expect("signal the node");
    }

    /// Pauses node `id` (`SIGSTOP`): its sockets stay open and nothing answers.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, Signal::SIGSTOP);
    }

    /// Resumes a paused node (`SIGCONT`).
    pub fn resume(&mut self, id: u64) {
        self.signal(id, Signal::SIGCONT);
    }

    /// Deletes node `id`'s data directory and its identity file (the node must be stopped):
    /// the node comes back empty, as a new disk would.
    pub fn wipe(&mut self, id: u64) {
        assert!(
            !self.is_running(id),
            "wipe node {id} only while it is stopped"
        );
        let data = self.data_dir(id);
        let identity = shoal::default_identity_file(&data);
        std::fs::remove_dir_all(&data).expect("remove the data directory");
        if identity.exists() {
            std::fs::remove_file(&identity).expect("remove the identity file");
        }
    }

    /// The placement every node computes: `PARTITIONS` partitions over nodes `1..=count`.
    pub fn ring(&self) -> Ring {
        let specs = self.nodes.iter().map(|n| NodeSpec::new(n.id)).collect();
        Ring::new(PARTITIONS, specs).expect("a ring")
    }

    /// The preference list of `key` among `n` replicas.
    pub fn primaries(&self, key: &str, n: usize) -> Vec<u64> {
        let ring = self.ring();
        ring.preference_list(ring.partition_of(key.as_bytes()), n)
            .into_iter()
            .map(|NodeId(id)| id)
            .collect()
    }

    /// Node `id`'s metrics, or `None` if it does not answer.
    pub async fn metrics(&self, id: u64) -> Option<String> {
        self.admin_get(id, "/metrics").await?.text().await.ok()
    }

    /// `GET path` on node `id` with a 2 s timeout; `None` if it does not answer.
    async fn admin_get(&self, id: u64, path: &str) -> Option<reqwest::Response> {
        let url = format!("http://{}{path}", self.http_of(id));
        let request = self.client.get(url).timeout(Duration::from_secs(2));
        request.send().await.ok()
    }

    /// The sum of the sample `name` over `ids`; `None` if one of them does not answer.
    pub async fn metric_sum(&self, ids: &[u64], name: &str) -> Option<f64> {
        let mut total = 0.0;
        for &id in ids {
            total += sample(&self.metrics(id).await?, name).unwrap_or(0.0);
        }
        Some(total)
    }

    /// Node `id`'s own durable copy of `key` (`GET /admin/local/{key}`): `Ok(None)` if it
    /// holds none, `Err` if it does not answer.
    pub async fn local(&self, id: u64, key: &str) -> Result<Option<Local>, String> {
        let url = format!(
            "http://{}/admin/local/{}",
            self.http_of(id),
            shoal::client::encode_key(key)
        );
        let resp = self
            .client
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| format!("node {id}: {e}"))?;
        match resp.status().as_u16() {
            404 => return Ok(None),
            200 => {}
            other => return Err(format!("node {id}: /admin/local answered {other}")),
        }
        let body: serde_json::Value = resp
            .json_value()
            .await
            .map_err(|e| format!("node {id}: {e}"))?;
        let mut values: Vec<String> = body["values"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|v| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().expect("a base64 string"))
                    .expect("base64");
                String::from_utf8(bytes).expect("utf8")
            })
            .collect();
        values.sort();
        Ok(Some(Local {
            values,
            context: body["context"].as_str().unwrap_or_default().to_string(),
            tombstones: body["tombstones"].as_u64().unwrap_or(0),
            replica: body["replica"].as_bool().unwrap_or(false),
        }))
    }

    /// What node `from` believes of node `of` (`up`, `down`, `suspected`, `unknown`), from
    /// `/admin/nodes`; `None` if `from` does not answer.
    pub async fn peer_state(&self, from: u64, of: u64) -> Option<String> {
        let resp = self.admin_get(from, "/admin/nodes").await?;
        let nodes = resp.json_value().await.ok()?;
        nodes
            .as_array()?
            .iter()
            .find(|n| n["id"] == of)
            .and_then(|n| n["status"]["state"].as_str())
            .map(str::to_owned)
    }

    /// Waits until every node of `observers` sees every node of `peers` in one of `states`,
    /// at most `timeout`; panics, naming who saw what, if it does not happen.
    pub async fn await_peer_states(
        &self,
        observers: &[u64],
        peers: &[u64],
        states: &[&str],
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut wrong = Vec::new();
            for &from in observers {
                for &of in peers.iter().filter(|p| **p != from) {
                    let seen = self.peer_state(from, of).await;
                    if !seen.as_deref().is_some_and(|s| states.contains(&s)) {
                        wrong.push(format!("{from} sees {of} {seen:?}"));
                    }
                }
            }
            if wrong.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {timeout:?}, not {states:?}: {}",
                wrong.join(", ")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reading a whole answer as JSON (reqwest is built here without its `json` feature).
pub trait JsonValue {
    /// The body parsed as JSON.
    fn json_value(
        self,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, String>> + Send;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Result<serde_json::Value, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

pub mod lazyfs;
pub mod netns;
pub mod workload;
