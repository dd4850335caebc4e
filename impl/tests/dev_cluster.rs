//! The quick start: `shoal dev` starts a working cluster of real node processes, stops every
//! one of them on SIGINT, and reuses its data on the next start. Also `shoal serve` configured
//! by flags alone.

mod common;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops the process on drop, so a failing test leaves nothing running. For `shoal dev`
/// (`nodes` names its data directory) it sends SIGINT so dev stops its nodes, and then kills
/// any node process still running under that directory: a SIGKILLed dev could not.
struct Guard(Child, Option<std::path::PathBuf>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(data) = &self.1 {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
            for pid in node_pids(data) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        } else {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A run of consecutive free loopback ports (probed, so another process could still take
/// one; the test then fails loudly rather than hangs).
fn free_ports(count: u16) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = l.local_addr().expect("addr").port();
        drop(l);
        if base > 60000 {
            continue;
        }
        if (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no run of {count} free ports");
}

fn start_dev(data: &std::path::Path, http: u16, peer: u16) -> (Guard, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "dev",
            "--nodes",
            "3",
            "--http-port",
            &http.to_string(),
            "--peer-port",
            &peer.to_string(),
        ])
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shoal dev");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Guard(child, Some(data.to_path_buf()));
    let mut lines = Vec::new();
    let mut reader = BufReader::new(stdout).lines();
    for line in reader.by_ref() {
        let line = line.expect("line");
        let done = line.starts_with("Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    // Keep draining stdout in the background so dev's later lines have somewhere to go.
    std::thread::spawn(move || for _ in reader {});
    (guard, lines)
}

fn node_pids(data: &std::path::Path) -> Vec<i32> {
    // The nodes are the `shoal serve` processes whose config lives under `data`.
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(" serve ") && text.contains(&*data.to_string_lossy()) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn shoal_dev_runs_a_cluster_stops_it_on_ctrl_c_and_keeps_the_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("shoal-data");
    let http = free_ports(3);
    let peer = free_ports(3);
    let client = reqwest::Client::new();

    let (mut dev, lines) = start_dev(&data, http, peer);
    let text = lines.join("\n");
    for i in 0..3 {
        assert!(
            text.contains(&format!("http://127.0.0.1:{}", http + i)),
            "{text}"
        );
    }
    assert!(text.contains("curl"), "a curl example is printed: {text}");
    assert_eq!(node_pids(&data).len(), 3);
    let put = client
        .put(format!("http://127.0.0.1:{http}/kv/greeting"))
        .body("hello")
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status().as_u16(), 204);
    let got = client
        .get(format!("http://127.0.0.1:{}/kv/greeting", http + 2))
        .send()
        .await
        .expect("GET");
    assert_eq!(got.text().await.expect("body"), "hello");

    // Ctrl-C: every node stops and dev exits successfully.
    kill(Pid::from_raw(dev.0.id() as i32), Signal::SIGINT).expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = dev.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "shoal dev did not exit on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(node_pids(&data).is_empty(), "node processes left running");

    // A second start reuses the data, and each node keeps its identity (its log names the
    // identity at every start).
    let (dev, _) = start_dev(&data, http, peer);
    for node in 1..=3 {
        let log = std::fs::read_to_string(data.join(format!("n{node}/node.log"))).expect("log");
        let actors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("starting"))
            .filter_map(|l| l.split("identity=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect();
        assert_eq!(actors.len(), 2, "node {node} log:\n{log}");
        assert_eq!(
            actors[0], actors[1],
            "node {node} changed identity after a restart"
        );
    }
    let got = client
        .get(format!("http://127.0.0.1:{}/kv/greeting", http + 1))
        .send()
        .await
        .expect("GET");
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.text().await.expect("body"), "hello");
    drop(dev);
    assert!(node_pids(&data).is_empty(), "node processes left running");
}

#[tokio::test]
async fn shoal_serve_runs_from_flags_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_ports(1);
    let peer = free_ports(1);
    let member = format!("1=127.0.0.1:{peer},127.0.0.1:{http}");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a test cluster secret, 32 bytes").expect("write the secret");
    let _node = Guard(
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args([
                "serve",
                "--id",
                "1",
                "--http",
                &format!("127.0.0.1:{http}"),
                "--peer",
                &format!("127.0.0.1:{peer}"),
            ])
            .args(["--member", &member, "-n", "1", "-r", "1", "-w", "1"])
            .arg("--data-dir")
            .arg(dir.path().join("db"))
            .arg("--secret-file")
            .arg(&secret)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoal serve"),
        None,
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/kv/k");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.put(&url).body("v").send().await {
            assert_eq!(r.status().as_u16(), 204);
            break;
        }
        assert!(Instant::now() < deadline, "node did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(common::get_text(&client, &url).await, "v");
    // N above the member count is refused with a clear message.
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "serve",
            "--id",
            "1",
            "--http",
            "127.0.0.1:1",
            "--peer",
            "127.0.0.1:2",
            "--member",
            &member,
            "-n",
            "3",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .arg("--secret-file")
        .arg(&secret)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("n = 3 must be between 1 and the number of nodes (1)"));
}
