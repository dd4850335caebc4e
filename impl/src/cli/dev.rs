//! `shoal dev`: a local cluster of real node processes on 127.0.0.1, the quick start.
//!
//! Each node gets `DATA/nI/node.toml` and its fjall data beside it, so a second start reuses
//! the data. Ctrl-C (or SIGTERM) stops every node with SIGTERM and waits for it.
//!
//! `--tls` makes a throwaway CA and node certificates in `DATA/tls` (kept for the next start)
//! and turns on mutual TLS between the nodes and HTTPS for clients.

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal::{defaults, Durability, Member, NodeConfig, TlsConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Prints a line to stdout, ignoring a closed pipe: losing the console must not stop the
/// cluster or skip its clean shutdown.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Arguments of `shoal dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// How many nodes to run.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Where the nodes keep their data (reused on the next start).
    #[arg(long, default_value = "shoal-data")]
    pub data: PathBuf,
    /// HTTP port of node 1; node I listens on this + I − 1.
    #[arg(long, default_value_t = 8701)]
    pub http_port: u16,
    /// Peer port of node 1; node I listens on this + I − 1.
    #[arg(long, default_value_t = 9701)]
    pub peer_port: u16,
    /// N, R and W.
    #[command(flatten)]
    pub quorum: super::quorum_args::QuorumArgs,
    /// Partitions Q.
    #[arg(long, default_value_t = defaults::PARTITIONS)]
    pub partitions: u32,
    /// When replicas acknowledge: after fsync, or `buffered` (before fsync; weaker).
    #[arg(long, value_enum, default_value_t = Durability::Sync)]
    pub durability: Durability,
    /// Runtime worker threads per node (default: the cores divided among the nodes, at least 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Encrypt everything: make a throwaway CA and node certificates in DATA/tls and turn on
    /// mutual TLS between nodes and HTTPS for clients (trust DATA/tls/ca.pem).
    #[arg(long)]
    pub tls: bool,
}

/// Runs the cluster until interrupted.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    let n = args.quorum.replicas.unwrap_or(args.nodes.min(3) as usize);
    let majority = n / 2 + 1;
    let port = |base: u16, i: u64| -> anyhow::Result<SocketAddr> {
        let p = u16::try_from(u64::from(base) + i - 1).context("port out of range")?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
    };
    let members = (1..=args.nodes)
        .map(|i| {
            Ok(Member {
                id: i,
                peer: port(args.peer_port, i)?,
                http: port(args.http_port, i)?,
                zone: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The nodes share this machine: one runtime worker each per core they can have (at least
    // one) avoids oversubscription; measured 96 -> 84 us of CPU per operation at 3 nodes on 2
    // cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args
        .threads
        .unwrap_or_else(|| (cores / args.nodes as usize).max(1));
    let exe = std::env::current_exe().context("cannot find the shoal executable")?;
    let secret = ensure_secret(&args.data)?;
    let certs = if args.tls {
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        let names = vec!["localhost".to_string(), Ipv4Addr::LOCALHOST.to_string()];
        Some(shoal::dev_certificates(
            &args.data.join("tls"),
            "shoal dev CA",
            &ids,
            &names,
        )?)
    } else {
        None
    };
    let mut children: Vec<(u64, Child)> = Vec::new();
    for m in &members {
        let dir = args.data.join(format!("n{}", m.id));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let tls = match certs.as_ref().and_then(|c| {
            let (_, cert, key) = c.nodes.iter().find(|(id, _, _)| *id == m.id)?;
            Some((c.ca.clone(), cert.clone(), key.clone()))
        }) {
            Some((ca, cert, key)) => TlsConfig {
                cert: Some(cert),
                key: Some(key),
                ca: Some(ca),
                peers: true,
                clients: true,
                peer_name: None,
            },
            None => TlsConfig::default(),
        };
        let config = NodeConfig {
            tls,
            partitions: args.partitions,
            n,
            r: args.quorum.read_quorum.unwrap_or(majority),
            w: args.quorum.write_quorum.unwrap_or(majority),
            durability: args.durability,
            ..NodeConfig::new(
                m.id,
                m.http,
                m.peer,
                dir.join("db"),
                secret.clone(),
                members.clone(),
            )
        };
        config.validate()?;
        let path = dir.join("node.toml");
        std::fs::write(&path, toml::to_string_pretty(&config)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))?;
        let mut command = Command::new(&exe);
        command.arg("serve").arg("--config").arg(&path);
        command.arg("--threads").arg(threads.to_string());
        let child = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start node {}", m.id))?;
        children.push((m.id, child));
    }
    let ready = wait_ready(&members).await;
    if let Err(e) = ready {
        stop(&mut children).await;
        return Err(e);
    }
    say!(
        "shoal dev: {} nodes, N={n}, data in {}",
        args.nodes,
        args.data.display()
    );
    let (scheme, curl) = match &certs {
        Some(c) => ("https", format!("curl --cacert {}", c.ca.display())),
        None => ("http", "curl".to_string()),
    };
    for m in &members {
        say!(
            "  node {}: {scheme}://{}  (log: {}/n{}/node.log)",
            m.id,
            m.http,
            args.data.display(),
            m.id
        );
    }
    if let Some(first) = members.first() {
        say!(
            "try:  {curl} -i -X PUT --data hello {scheme}://{0}/kv/greeting && {curl} -i {scheme}://{0}/kv/greeting",
            first.http
        );
    }
    say!("Ctrl-C stops the cluster.");
    tokio::select! {
        _ = super::serve::shutdown_signal() => {}
        exited = wait_any(&mut children) => {
            say!("shoal dev: node {} exited; stopping the cluster", exited);
        }
    }
    stop(&mut children).await;
    say!("shoal dev: stopped");
    Ok(())
}

/// The cluster secret of a dev cluster: `DATA/secret`, created with 32 random bytes (as hex)
/// on the first start, readable by its owner only.
fn ensure_secret(data: &std::path::Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data.join("secret");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let bytes: [u8; 32] = rand::random();
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{text}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

async fn wait_ready(members: &[Member]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for m in members {
        loop {
            if tokio::net::TcpStream::connect(m.http).await.is_ok() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {} did not start listening on {} within 20 s (see its node.log)",
                m.id,
                m.http
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn wait_any(children: &mut [(u64, Child)]) -> u64 {
    loop {
        for (id, child) in children.iter_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                return *id;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM to every node, then wait (SIGKILL after 10 s).
async fn stop(children: &mut [(u64, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for (_, child) in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}
