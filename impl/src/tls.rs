//! Optional TLS (rustls) for peer and client traffic, configured by the `[tls]` table.
//!
//! Why: the cluster secret proves that a peer belongs to the cluster, but without TLS every
//! message and every client request crosses the network in the clear, and anyone on the path
//! can read or alter it. With `peers = true`, every peer connection is mutual TLS: the dialer
//! checks that the acceptor's certificate chains to the configured CA and names the peer it
//! meant to reach (its IP, or `peer_name`), and the acceptor *requires* a client certificate
//! chaining to the same CA. The HMAC challenge–response over the cluster secret still runs,
//! inside the encrypted connection, so a certificate alone does not admit a node (defence in
//! depth: a leaked node key and a leaked secret are both needed). With `clients = true` the
//! HTTP API is served over HTTPS; clients are not asked for certificates.
//!
//! Everything is loaded and checked when the node starts ([`load`]): unreadable files, PEM
//! without a certificate or key, a certificate that does not parse or does not match its
//! key, and a node certificate that its own CA bundle would refuse all stop the start with a
//! message naming the file. The crypto provider is *ring*, chosen explicitly rather than
//! through rustls's process-wide default, so no other crate's choice can change it.
//!
//! [`HttpsListener`] serves HTTPS through `axum::serve`: a background task accepts TCP
//! connections and runs each TLS handshake in its own task, under a deadline and a bound on
//! handshakes in progress, so a slow or silent client delays nobody else's connection.
//! `shoal dev --tls` makes a throwaway CA and node certificates with [`dev_certificates`].

use crate::config::{Member, TlsConfig};
use crate::ids::NodeId;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

mod dev;
pub use dev::{dev_certificates, DevCertificates};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file that the enabled settings need is not configured.
    #[error("[tls] `{setting}` is required with {needed_by} (set it in the node's [tls] table or pass --tls-{setting} FILE)")]
    Missing {
        /// The missing setting.
        setting: &'static str,
        /// What needs it.
        needed_by: &'static str,
    },
    /// Files are configured, but no traffic is set to use them.
    #[error("[tls] is configured but enables neither `peers` nor `clients`, so all traffic would stay plain; set `peers = true` and/or `clients = true` (or --tls-peers / --tls-clients), or remove the table")]
    NothingEnabled,
    /// A file could not be read.
    #[error("cannot read the TLS {what} {path}: {source}")]
    Read {
        /// Which file (certificate, key, CA bundle).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("the TLS {what} {path} is not valid PEM: {source}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rustls::pki_types::pem::Error,
    },
    /// A file holds no certificate.
    #[error("the TLS {what} {path} holds no certificate (no `-----BEGIN CERTIFICATE-----` block)")]
    NoCertificate {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("the TLS key {path} holds no private key (no `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the CA bundle does not parse as a trust anchor.
    #[error("a certificate in the CA bundle {path} cannot be used: {source}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<rustls::Error>,
    },
    /// The node's certificate does not parse, or its key is not the certificate's.
    #[error("the TLS certificate {cert} and key {key} cannot be used together: {source} (a malformed certificate, or a key that is not the certificate's?)")]
    KeyPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        source: Box<rustls::Error>,
    },
    /// Other nodes would refuse this node's certificate.
    #[error(
        "this node's certificate {cert} would be refused by peers trusting {ca} ({role}): {source}"
    )]
    NotTrusted {
        /// The certificate file.
        cert: PathBuf,
        /// The CA bundle.
        ca: PathBuf,
        /// How it was checked: as a client certificate, or as a server for a name.
        role: String,
        /// The cause.
        source: Box<rustls::Error>,
    },
    /// `peer_name` does not give a valid name for a node.
    #[error("[tls] peer_name {name:?} gives no valid name for node {id} (a DNS name or IP address; `{{id}}` stands for the node id)")]
    BadName {
        /// The name it gave.
        name: String,
        /// The node.
        id: u64,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Rustls(Box<rustls::Error>),
    /// The peer certificate verifier could not be built.
    #[error("cannot verify peer certificates with the CA bundle: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Development certificates could not be made.
    #[error("cannot generate development certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A generated file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> TlsError {
        TlsError::Rustls(Box::new(e))
    }
}

/// The TLS of a node, loaded and checked: what peer connections and the HTTP API use.
#[derive(Clone, Default)]
pub struct LoadedTls {
    /// Mutual TLS for peer connections (`peers = true`).
    pub peers: Option<Arc<PeerTls>>,
    /// HTTPS for the client API (`clients = true`).
    pub clients: Option<HttpsAcceptor>,
}

impl std::fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTls")
            .field("peers", &self.peers.is_some())
            .field("clients", &self.clients.is_some())
            .finish()
    }
}

/// Both ends of mutual TLS between peers.
pub struct PeerTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    /// The name each peer's certificate must carry.
    names: HashMap<NodeId, ServerName<'static>>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// The TLS handshake of a dialer to `peer`: verifies that the peer's certificate chains
    /// to the CA and carries the peer's name, and presents this node's certificate.
    pub(crate) async fn connect(
        &self,
        peer: NodeId,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let Some(name) = self.names.get(&peer) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("no TLS name for {peer}"),
            ));
        };
        self.connector.connect(name.clone(), tcp).await
    }

    /// The TLS handshake of an acceptor: requires a client certificate chaining to the CA.
    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.acceptor.accept(tcp).await
    }
}

/// The server side of HTTPS for clients (no client certificates asked for).
#[derive(Clone)]
pub struct HttpsAcceptor(TlsAcceptor);

impl std::fmt::Debug for HttpsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpsAcceptor(..)")
    }
}

/// The provider every configuration uses: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and checks the TLS settings of node `me` of `members`. Nothing enabled: nothing
/// loaded (and nothing read).
pub fn load(config: &TlsConfig, me: u64, members: &[Member]) -> Result<LoadedTls, TlsError> {
    if !config.enabled() {
        if config.is_empty() {
            return Ok(LoadedTls::default());
        }
        return Err(TlsError::NothingEnabled);
    }
    let needed_by = match (config.peers, config.clients) {
        (true, true) => "peers and clients",
        (true, false) => "peers = true",
        _ => "clients = true",
    };
    let missing = |setting| TlsError::Missing { setting, needed_by };
    let cert_path = config.cert.as_deref().ok_or_else(|| missing("cert"))?;
    let key_path = config.key.as_deref().ok_or_else(|| missing("key"))?;
    let chain = read_certificates("certificate", cert_path)?;
    let key = read_key(key_path)?;
    let provider = provider();
    let key_pair_error = |source| TlsError::KeyPair {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        source: Box::new(source),
    };

    let clients = if config.clients {
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(key_pair_error)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(HttpsAcceptor(TlsAcceptor::from(Arc::new(server))))
    } else {
        None
    };

    let peers = if config.peers {
        let ca_path = config.ca.as_deref().ok_or(TlsError::Missing {
            setting: "ca",
            needed_by: "peers = true",
        })?;
        let mut roots = RootCertStore::empty();
        for cert in read_certificates("CA bundle", ca_path)? {
            roots.add(cert).map_err(|source| TlsError::BadCa {
                path: ca_path.to_path_buf(),
                source: Box::new(source),
            })?;
        }
        let roots = Arc::new(roots);
        let names = peer_names(config, members)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(key_pair_error)?;
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key)
            .map_err(key_pair_error)?;
        check_own_certificate(
            &chain,
            verifier.as_ref(),
            &roots,
            provider,
            names.get(&NodeId(me)),
        )
        .map_err(|(role, source)| TlsError::NotTrusted {
            cert: cert_path.to_path_buf(),
            ca: ca_path.to_path_buf(),
            role,
            source,
        })?;
        Some(Arc::new(PeerTls {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            names,
        }))
    } else {
        None
    };
    Ok(LoadedTls { peers, clients })
}

/// The name each member's certificate must carry: `peer_name` with `{id}` replaced, or the
/// IP address of its peer address.
fn peer_names(
    config: &TlsConfig,
    members: &[Member],
) -> Result<HashMap<NodeId, ServerName<'static>>, TlsError> {
    members
        .iter()
        .map(|m| {
            let name = match &config.peer_name {
                Some(template) => {
                    let name = template.replace("{id}", &m.id.to_string());
                    ServerName::try_from(name.clone())
                        .map_err(|_| TlsError::BadName { name, id: m.id })?
                }
                None => ServerName::IpAddress(m.peer.ip().into()),
            };
            Ok((NodeId(m.id), name))
        })
        .collect()
}

/// Checks that peers trusting the same CA would accept this node's certificate: as a client
/// certificate (when this node dials) and as a server certificate for the name peers dial it
/// by (skipped for an unspecified address, which nobody dials).
fn check_own_certificate(
    chain: &[CertificateDer<'static>],
    verifier: &dyn rustls::server::danger::ClientCertVerifier,
    roots: &Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    own_name: Option<&ServerName<'static>>,
) -> Result<(), (String, Box<rustls::Error>)> {
    let (Some(end_entity), intermediates) = (chain.first(), chain.get(1..).unwrap_or_default())
    else {
        return Err((
            "no certificate".into(),
            Box::new(rustls::Error::NoCertificatesPresented),
        ));
    };
    let now = UnixTime::now();
    verifier
        .verify_client_cert(end_entity, intermediates, now)
        .map_err(|e| ("as a client certificate".to_string(), Box::new(e)))?;
    let Some(name) = own_name else {
        return Ok(());
    };
    if let ServerName::IpAddress(ip) = name {
        if std::net::IpAddr::from(*ip).is_unspecified() {
            return Ok(());
        }
    }
    let server_verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| {
                (
                    "as a server certificate".to_string(),
                    Box::new(rustls::Error::General(e.to_string())),
                )
            })?;
    server_verifier
        .verify_server_cert(end_entity, intermediates, name, &[], now)
        .map_err(|e| {
            (
                format!(
                    "as the server named {:?} that peers dial",
                    name.to_str().as_ref()
                ),
                Box::new(e),
            )
        })?;
    Ok(())
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, in order; at least one.
fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            what: "key",
            path: path.to_path_buf(),
            source,
        },
    })
}

/// TLS handshakes with clients in progress at once, at most; more connections wait in the
/// kernel's accept queue.
const MAX_CLIENT_HANDSHAKES: usize = 256;

/// How long a client may take over its TLS handshake.
const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTPS listener for `axum::serve`: yields connections whose TLS handshake is done.
///
/// The handshakes run in their own tasks (at most [`MAX_CLIENT_HANDSHAKES`] at once, each
/// within [`CLIENT_HANDSHAKE_TIMEOUT`]); a failed one is logged at debug level and dropped.
/// Dropping the listener stops accepting.
pub struct HttpsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsListener {
    /// Serves TLS with `tls` on the connections `listener` accepts.
    pub fn new(listener: TcpListener, tls: HttpsAcceptor) -> std::io::Result<HttpsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let task = tokio::spawn(accept_clients(listener, tls.0, tx));
        Ok(HttpsListener { local, ready, task })
    }
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_clients(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_CLIENT_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accepting an HTTPS connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(CLIENT_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, addr)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake with a client failed")
                }
                Err(_) => tracing::debug!(%addr, "TLS handshake with a client timed out"),
            }
        });
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task is gone (it ends only when aborted): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests;
