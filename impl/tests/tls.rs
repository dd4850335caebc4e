//! TLS end to end, black-box: a cluster of real `shoal serve` processes with mutual TLS
//! between the nodes and HTTPS for clients (a write through one node is replicated over TLS
//! and read through another, trusting only the test CA); plain HTTP to an HTTPS port fails; a
//! bad TLS setting stops a node at start with a message naming the file; `shoal dev --tls`
//! runs an encrypted cluster. (A peer with a certificate from another CA is refused in the
//! library's own tests, `tls::tests`, where the transport can be driven directly.)

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Node processes killed on drop, whether the test passed or not.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

/// An HTTPS client that trusts the CA in `ca` and nothing else.
fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("read the CA");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA certificate"))
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Waits until `url` answers 2xx.
async fn wait_ready(client: &reqwest::Client, url: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not become ready; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes the configuration of node `id` of `addrs` (`(http, peer)` per node) with `tls`
/// lines in its `[tls]` table; returns the configuration file.
fn configure(dir: &Path, id: usize, addrs: &[(SocketAddr, SocketAddr)], tls: &str) -> PathBuf {
    let secret = dir.join("secret");
    std::fs::write(&secret, "a test cluster secret, 32 bytes").expect("write the secret");
    let data = dir.join(format!("n{id}"));
    std::fs::create_dir_all(&data).expect("node dir");
    let (http, peer) = addrs[id - 1];
    let n = addrs.len().min(3);
    let q = n / 2 + 1;
    let mut text = format!(
        "id = {id}\nhttp = \"{http}\"\npeer = \"{peer}\"\ndata_dir = \"{}\"\nsecret_file = \"{}\"\npartitions = 16\nn = {n}\nr = {q}\nw = {q}\nrequest_timeout_ms = 2000\n\n[tls]\n{tls}\n",
        data.join("db").display(),
        secret.display()
    );
    for (i, (http, peer)) in addrs.iter().enumerate() {
        text.push_str(&format!(
            "\n[[nodes]]\nid = {}\nhttp = \"{http}\"\npeer = \"{peer}\"\n",
            i + 1
        ));
    }
    let config = data.join("node.toml");
    std::fs::write(&config, text).expect("write config");
    config
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start shoal serve")
}

#[tokio::test]
async fn a_write_over_https_is_replicated_over_mutual_tls_and_read_through_another_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = shoal::dev_certificates(
        &dir.path().join("tls"),
        "test CA",
        &[1, 2, 3],
        &["127.0.0.1".to_string()],
    )
    .expect("certificates");
    let addrs: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let mut nodes = Nodes(Vec::new());
    let mut logs = Vec::new();
    for (id, cert, key) in &certs.nodes {
        let tls = format!(
            "cert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\npeers = true\nclients = true",
            cert.display(),
            key.display(),
            certs.ca.display()
        );
        let config = configure(dir.path(), *id as usize, &addrs, &tls);
        let log = dir.path().join(format!("n{id}.log"));
        nodes.0.push(spawn(&config, &log));
        logs.push(log);
    }
    let client = https_client(&certs.ca);
    for ((http, _), log) in addrs.iter().zip(&logs) {
        wait_ready(&client, &format!("https://{http}/health"), log).await;
    }
    // W = 2: the put is acknowledged only once a peer stored it, over mutual TLS.
    let (h1, h2, h3) = (addrs[0].0, addrs[1].0, addrs[2].0);
    let put = client
        .put(format!("https://{h1}/kv/secret-key"))
        .body("sealed")
        .send()
        .await
        .expect("PUT over HTTPS");
    assert_eq!(put.status().as_u16(), 204, "{:?}", put.text().await);
    for http in [h2, h3] {
        let got = client
            .get(format!("https://{http}/kv/secret-key?r=3"))
            .send()
            .await
            .expect("GET over HTTPS");
        assert_eq!(got.status().as_u16(), 200, "through {http}");
        assert_eq!(got.text().await.expect("body"), "sealed");
    }
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let answer = plain.get(format!("http://{h1}/health")).send().await;
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
    // Nothing was refused between the nodes.
    drop(nodes);
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(!text.contains("TLS handshake failed"), "{text}");
    }
}

#[test]
fn a_bad_tls_setting_stops_the_node_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = shoal::dev_certificates(&dir.path().join("tls"), "test CA", &[1], &[])
        .expect("certificates");
    let addrs = [(free_addr(), free_addr())];
    let (_, cert, _) = &certs.nodes[0];
    let missing = dir.path().join("tls").join("missing.key");
    let tls = format!(
        "cert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\npeers = true",
        cert.display(),
        missing.display(),
        certs.ca.display()
    );
    let config = configure(dir.path(), 1, &addrs, &tls);
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run shoal serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the TLS key") && stderr.contains("missing.key"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("n1").join("db").exists(),
        "nothing opened before the TLS check"
    );
    // The flags are documented.
    let help = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["serve", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
        "--tls-peers",
        "--tls-clients",
    ] {
        assert!(help.contains(flag), "{flag} in:\n{help}");
    }
}

/// `shoal dev`, stopped with SIGINT (so it stops its nodes) on drop.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first of `count` consecutive free loopback ports (probed).
fn free_ports(count: u16) -> u16 {
    for _ in 0..200 {
        let base = free_addr().port();
        if base < 60000 && (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no run of {count} free ports");
}

#[tokio::test]
async fn shoal_dev_tls_runs_an_encrypted_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let base = free_ports(4);
    let (http, peer) = (base, base + 2);
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["dev", "--tls", "--nodes", "2"])
        .args(["--http-port", &http.to_string()])
        .args(["--peer-port", &peer.to_string()])
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shoal dev");
    let stdout = child.stdout.take().expect("stdout");
    let _dev = Dev(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let done = line.starts_with("Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("https://127.0.0.1:{http}")) && text.contains("--cacert"),
        "{text}"
    );
    let client = https_client(&data.join("tls").join("ca.pem"));
    let put = client
        .put(format!("https://127.0.0.1:{http}/kv/k"))
        .body("v")
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status().as_u16(), 204);
    let get = client
        .get(format!("https://127.0.0.1:{}/kv/k", http + 1))
        .send()
        .await
        .expect("GET");
    assert_eq!(get.text().await.expect("body"), "v");
}
