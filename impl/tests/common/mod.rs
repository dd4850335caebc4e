//! A cluster of real `shoal serve` processes on loopback ports, for black-box tests. Every
//! process is killed when the `Cluster` is dropped, whether the test passed or not.

#![allow(dead_code)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal::client::Client;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One node process and how to restart it.
pub struct Node {
    pub id: u64,
    pub http: SocketAddr,
    pub peer: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running test cluster.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub client: reqwest::Client,
}

fn free_addr() -> SocketAddr {
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
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "a test cluster secret, 32 bytes").expect("write the secret");
        let addrs: Vec<(SocketAddr, SocketAddr)> =
            (0..count).map(|_| (free_addr(), free_addr())).collect();
        let mut members = String::new();
        for (i, (http, peer)) in addrs.iter().enumerate() {
            members.push_str(&format!(
                "\n[[nodes]]\nid = {}\nhttp = \"{http}\"\npeer = \"{peer}\"\n",
                i + 1
            ));
        }
        let mut nodes = Vec::new();
        for (i, (http, peer)) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let data = dir.path().join(format!("n{id}"));
            std::fs::create_dir_all(&data).expect("node dir");
            let config = data.join("node.toml");
            let text = format!(
                "id = {id}\nhttp = \"{http}\"\npeer = \"{peer}\"\ndata_dir = \"{}\"\nsecret_file = \"{}\"\npartitions = 16\nn = {n}\nr = {r}\nw = {w}\nrequest_timeout_ms = 1000\nmax_value_bytes = 65536\n{extra}\n{members}",
                data.join("db").display(),
                secret.display()
            );
            std::fs::write(&config, text).expect("write config");
            nodes.push(Node {
                id,
                http: *http,
                peer: *peer,
                config,
                log: data.join("node.log"),
                child: None,
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
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("serve")
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", "warn")
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
            assert!(
                Instant::now() < deadline,
                "node {id} did not become ready; log:\n{}",
                self.log(id)
            );
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

pub mod lazyfs;
