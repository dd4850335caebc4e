//! Hosts on one machine: one network namespace per node, joined by veth pairs and bridges that
//! the test creates and removes itself (see `../shared/NETNS.md`), so that a network partition
//! is a real one — packets between the two sides are dropped by the kernel, connections stall
//! without a reset, and only heartbeats and deadlines can tell.
//!
//! Each node has two interfaces:
//! - a *client* link on the client bridge, which also holds an address in the test's own
//!   namespace, so the test reaches every node's HTTP API on both sides of a partition;
//! - a *peer* link for node-to-node traffic, on the peer bridge; [`Net::partition`] moves one
//!   side's peer links onto a second, separate bridge (each side still talks within itself),
//!   and [`Net::heal`] moves them back.
//!
//! Names carry the test's pid and a random run id, addresses come from a per-run /24 pair, so
//! parallel tests do not collide. Everything is removed on drop, also when the test fails; a
//! run that was killed before it could clean up (a `SIGKILL` by a timeout) is removed by the
//! next run, which deletes the namespaces of test processes that no longer exist.

use rand::Rng as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

/// The HTTP port of every node (each namespace has its own ports).
pub const HTTP_PORT: u16 = 8701;
/// The peer port of every node.
pub const PEER_PORT: u16 = 9701;

const PREFIX: &str = "shoaltest";

/// Runs `ip ARGS`; the error says what failed and why.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why this machine cannot run namespace tests, if it cannot (no `ip`, not root, no netns),
/// or `SHOAL_FAULTS_NO_NETNS` is set (to run the fallback on purpose).
pub fn unavailable() -> Option<String> {
    if std::env::var_os("SHOAL_FAULTS_NO_NETNS").is_some() {
        return Some("SHOAL_FAULTS_NO_NETNS is set".into());
    }
    let probe = format!("{PREFIX}-probe-{}", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(e);
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

/// Deletes what runs of test processes that no longer exist left behind.
fn collect_garbage() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        // shoaltest-{pid}-{run}-{i}
        let mut parts = name.split('-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let (Some(pid), Some(run)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = ip(&["netns", "del", name]);
        for bridge in bridges(run) {
            let _ = ip(&["link", "del", &bridge]);
        }
    }
}

/// The client bridge, the peer bridge and the bridge of a cut-off side, of run `run`.
fn bridges(run: &str) -> [String; 3] {
    [format!("sc{run}"), format!("sp{run}"), format!("sq{run}")]
}

/// The namespaces, links and addresses of one run.
pub struct Net {
    run: String,
    namespaces: Vec<String>,
    /// `10.a.b.0/24` for clients, `10.a.(b+1).0/24` for peers.
    net: (u8, u8),
    /// The nodes whose peer links are on the cut-off bridge.
    cut: Vec<u64>,
}

impl Net {
    /// Namespaces for nodes `1..=count`, each with a client and a peer link, up and addressed.
    pub fn create(count: u64) -> Result<Net, String> {
        assert!((1..=9).contains(&count), "at most 9 nodes");
        collect_garbage();
        let mut rng = rand::thread_rng();
        let run: String = format!("{:06x}", rng.gen_range(0..0x100_0000u32));
        let used = ip(&["-o", "addr"])?;
        let net = loop {
            let a: u8 = rng.gen_range(100..200);
            let b: u8 = rng.gen_range(0..127) * 2;
            let taken = [b, b + 1]
                .iter()
                .any(|c| used.contains(&format!("10.{a}.{c}.")));
            if !taken {
                break (a, b);
            }
        };
        let mut me = Net {
            namespaces: (1..=count)
                .map(|i| format!("{PREFIX}-{}-{run}-{i}", std::process::id()))
                .collect(),
            run,
            net,
            cut: Vec::new(),
        };
        me.build()?;
        Ok(me)
    }

    fn build(&mut self) -> Result<(), String> {
        let [client, peer, cut] = bridges(&self.run);
        for bridge in [&client, &peer, &cut] {
            ip(&["link", "add", bridge, "type", "bridge"])?;
            ip(&["link", "set", bridge, "up"])?;
        }
        let (a, b) = self.net;
        ip(&["addr", "add", &format!("10.{a}.{b}.254/24"), "dev", &client])?;
        for (i, ns) in self.namespaces.iter().enumerate() {
            let i = i + 1;
            ip(&["netns", "add", ns])?;
            ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"])?;
            for (kind, bridge, subnet) in [("c", &client, b), ("p", &peer, b + 1)] {
                let outside = format!("{kind}{}{i}", self.run);
                let inside = format!("{}{}{i}", kind.to_uppercase(), self.run);
                ip(&[
                    "link", "add", &outside, "type", "veth", "peer", "name", &inside,
                ])?;
                ip(&["link", "set", &inside, "netns", ns])?;
                ip(&["link", "set", &outside, "master", bridge])?;
                ip(&["link", "set", &outside, "up"])?;
                let addr = format!("10.{a}.{subnet}.{i}/24");
                ip(&[
                    "netns", "exec", ns, "ip", "addr", "add", &addr, "dev", &inside,
                ])?;
                ip(&["netns", "exec", ns, "ip", "link", "set", &inside, "up"])?;
            }
        }
        Ok(())
    }

    /// `(http, peer)` addresses of every node, for [`super::Options::addrs`].
    pub fn addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let (a, b) = self.net;
        (1..=self.namespaces.len() as u8)
            .map(|i| {
                let http = IpAddr::V4(Ipv4Addr::new(10, a, b, i));
                let peer = IpAddr::V4(Ipv4Addr::new(10, a, b + 1, i));
                (
                    SocketAddr::new(http, HTTP_PORT),
                    SocketAddr::new(peer, PEER_PORT),
                )
            })
            .collect()
    }

    /// The command each node runs under, for [`super::Options::launchers`].
    pub fn launchers(&self) -> Vec<Vec<String>> {
        self.namespaces
            .iter()
            .map(|ns| ["ip", "netns", "exec", ns].map(String::from).to_vec())
            .collect()
    }

    /// Cuts `side` off from the other nodes: their peer links move to a bridge of their own.
    /// Clients still reach every node.
    pub fn partition(&mut self, side: &[u64]) -> Result<(), String> {
        let [_, _, cut] = bridges(&self.run);
        for &id in side {
            ip(&["link", "set", &format!("p{}{id}", self.run), "master", &cut])?;
            self.cut.push(id);
        }
        Ok(())
    }

    /// Joins every peer link on one bridge again.
    pub fn heal(&mut self) -> Result<(), String> {
        let [_, peer, _] = bridges(&self.run);
        for id in std::mem::take(&mut self.cut) {
            ip(&[
                "link",
                "set",
                &format!("p{}{id}", self.run),
                "master",
                &peer,
            ])?;
        }
        Ok(())
    }
}

impl Drop for Net {
    /// Deleting a namespace deletes the links inside it, and with them their other ends.
    /// Stop the processes in the namespaces first (drop the cluster before the net).
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        for bridge in bridges(&self.run) {
            let _ = ip(&["link", "del", &bridge]);
        }
    }
}
