//! `shoal serve`: run one node until SIGINT or SIGTERM.

use anyhow::Context;
use shoal::config::NodeConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `shoal serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The node's TOML configuration.
    #[arg(long)]
    pub config: PathBuf,
    /// Override the configured node id.
    #[arg(long)]
    pub id: Option<u64>,
    /// Override the client HTTP listen address.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Override the peer listen address.
    #[arg(long)]
    pub peer: Option<SocketAddr>,
    /// Override the data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs the node until interrupted.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let mut config = NodeConfig::load(&args.config)?;
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
    let http_addr = config.http;
    let node = shoal::node::start(config).await?;
    let storage = node.storage.clone();
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
    tracing::info!(
        node = node.config.id,
        http = %http_addr,
        peer = %node.config.peer,
        n = node.config.n,
        r = node.config.r,
        w = node.config.w,
        durability = ?node.config.durability,
        "serving"
    );
    axum::serve(listener, shoal::http::router(node))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    storage.persist_all()?;
    tracing::info!("stopped");
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
