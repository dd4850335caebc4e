//! `shoal serve`: run one node until SIGINT or SIGTERM.
//!
//! With `[tls] clients = true` (or `--tls-clients`) the HTTP API is served over HTTPS through
//! the library's `HttpsListener`, which plugs tokio-rustls into `axum::serve`: no second HTTP
//! server stack, and graceful shutdown works the same for both.

use anyhow::Context;
use shoal::{Durability, Member, NodeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `shoal serve`. Every setting of the file can be given or overridden by a
/// flag; without `--config`, the flags must name at least the id, addresses, data directory
/// and members.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The node's TOML configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id.
    #[arg(long)]
    pub id: Option<u64>,
    /// Client HTTP listen address.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Peer listen address.
    #[arg(long)]
    pub peer: Option<SocketAddr>,
    /// Data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The file holding the cluster secret (the same on every node).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// A cluster member as `ID=PEER_ADDR,HTTP_ADDR` (repeat for each; replaces the file's list).
    #[arg(long = "member", value_parser = parse_member)]
    pub members: Vec<Member>,
    /// N, R and W.
    #[command(flatten)]
    pub quorum: super::quorum_args::QuorumArgs,
    /// Partition count Q.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// When replicas acknowledge: after fsync (the file's; default `sync`), or `buffered`
    /// (before fsync; survives a process crash, not a machine's).
    #[arg(long, value_enum)]
    pub durability: Option<Durability>,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// This node's TLS certificate chain (PEM, its own certificate first); `[tls] cert`.
    /// See docs/TLS.md.
    #[arg(long, value_name = "FILE", help_heading = "TLS (off unless enabled)")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of the certificate (PEM); `[tls] key`.
    #[arg(long, value_name = "FILE", help_heading = "TLS (off unless enabled)")]
    pub tls_key: Option<PathBuf>,
    /// The CA bundle (PEM) every peer's certificate must chain to; `[tls] ca`.
    #[arg(long, value_name = "FILE", help_heading = "TLS (off unless enabled)")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS between nodes (needs cert, key and CA); `[tls] peers = true`.
    #[arg(long, help_heading = "TLS (off unless enabled)")]
    pub tls_peers: bool,
    /// Serve the HTTP API over HTTPS (needs cert and key); `[tls] clients = true`.
    #[arg(long, help_heading = "TLS (off unless enabled)")]
    pub tls_clients: bool,
    /// The name peers' certificates must carry, `{id}` standing for the node id (default: the
    /// IP of the peer's address); `[tls] peer_name`.
    #[arg(long, value_name = "NAME", help_heading = "TLS (off unless enabled)")]
    pub tls_peer_name: Option<String>,
}

/// Parses `ID=PEER_ADDR,HTTP_ADDR`.
fn parse_member(text: &str) -> Result<Member, String> {
    let err = || format!("expected ID=PEER_ADDR,HTTP_ADDR, got {text:?}");
    let (id, addrs) = text.split_once('=').ok_or_else(err)?;
    let (peer, http) = addrs.split_once(',').ok_or_else(err)?;
    Ok(Member {
        id: id.parse().map_err(|_| err())?,
        peer: peer.parse().map_err(|_| err())?,
        http: http.parse().map_err(|_| err())?,
        zone: None,
    })
}

/// The configuration from the file (if any) with every flag applied.
fn configure(args: ServeArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => {
            let missing = |what: &str| anyhow::anyhow!("without --config, {what} is required");
            NodeConfig::new(
                args.id.ok_or_else(|| missing("--id"))?,
                args.http.ok_or_else(|| missing("--http"))?,
                args.peer.ok_or_else(|| missing("--peer"))?,
                args.data_dir.clone().ok_or_else(|| missing("--data-dir"))?,
                args.secret_file
                    .clone()
                    .ok_or_else(|| missing("--secret-file"))?,
                Vec::new(),
            )
        }
    };
    if let Some(id) = args.id {
        config.id = id;
    }
    if let Some(http) = args.http {
        config.http = http;
    }
    if let Some(peer) = args.peer {
        config.peer = peer;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(file) = args.secret_file {
        config.secret_file = file;
    }
    if !args.members.is_empty() {
        config.nodes = args.members;
    }
    if let Some(n) = args.quorum.replicas {
        config.n = n;
    }
    if let Some(r) = args.quorum.read_quorum {
        config.r = r;
    }
    if let Some(w) = args.quorum.write_quorum {
        config.w = w;
    }
    if let Some(q) = args.partitions {
        config.partitions = q;
    }
    if let Some(d) = args.durability {
        config.durability = d;
    }
    let tls = &mut config.tls;
    if let Some(cert) = args.tls_cert {
        tls.cert = Some(cert);
    }
    if let Some(key) = args.tls_key {
        tls.key = Some(key);
    }
    if let Some(ca) = args.tls_ca {
        tls.ca = Some(ca);
    }
    if let Some(name) = args.tls_peer_name {
        tls.peer_name = Some(name);
    }
    tls.peers |= args.tls_peers;
    tls.clients |= args.tls_clients;
    Ok(config)
}

/// Runs the node until interrupted.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let config = configure(args)?;
    let http_addr = config.http;
    let node = shoal::start(config).await?;
    let handle = node.clone();
    let https = node.https.clone();
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
    tracing::info!(
        node = node.config.id,
        http = %http_addr,
        scheme = if https.is_some() { "https" } else { "http" },
        peer = %node.config.peer,
        n = node.config.n,
        r = node.config.r,
        w = node.config.w,
        durability = ?node.config.durability,
        "serving"
    );
    let app = shoal::router(node);
    match https {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?
        }
        Some(tls) => {
            let listener = shoal::HttpsListener::new(listener, tls)
                .with_context(|| format!("cannot serve HTTPS on {http_addr}"))?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?
        }
    }
    handle.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
