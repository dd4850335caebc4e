//! Loading and checking TLS settings (each error a start can stop with), and mutual TLS
//! between transports in one process: peers of one CA talk, a peer with a certificate from
//! another CA or without TLS gets nothing through and is logged.

use super::*;
use crate::protocol::{PeerMessage, RequestId};
use crate::transport::tests::Sink;
use crate::transport::{Endpoint, Event, Faults, Limits, Secret, Transport};
use bytes::Bytes;
use std::sync::Mutex as StdMutex;
use tokio::sync::mpsc;

/// A CA named `name` in `dir` with certificates for nodes 1..=3, valid for 127.0.0.1.
fn certs(dir: &Path, name: &str) -> DevCertificates {
    dev_certificates(dir, name, &[1, 2, 3], &["127.0.0.1".to_string()]).expect("certificates")
}

fn members(addrs: &[SocketAddr]) -> Vec<Member> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, peer)| Member {
            id: i as u64 + 1,
            peer: *peer,
            http: SocketAddr::from(([127, 0, 0, 1], 1)),
            zone: None,
        })
        .collect()
}

/// Peer and client TLS for node `id` with its certificate from `c`.
fn settings(c: &DevCertificates, id: u64) -> TlsConfig {
    let (_, cert, key) = c.nodes.iter().find(|(n, _, _)| *n == id).expect("node");
    TlsConfig {
        cert: Some(cert.clone()),
        key: Some(key.clone()),
        ca: Some(c.ca.clone()),
        peers: true,
        clients: true,
        peer_name: None,
    }
}

fn loopback() -> Vec<Member> {
    members(&[
        SocketAddr::from(([127, 0, 0, 1], 9001)),
        SocketAddr::from(([127, 0, 0, 1], 9002)),
        SocketAddr::from(([127, 0, 0, 1], 9003)),
    ])
}

#[test]
fn good_settings_load_and_nothing_set_loads_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = certs(dir.path(), "test CA");
    let tls = load(&settings(&c, 1), 1, &loopback()).expect("loads");
    assert!(tls.peers.is_some() && tls.clients.is_some());
    let none = load(&TlsConfig::default(), 1, &loopback()).expect("loads");
    assert!(none.peers.is_none() && none.clients.is_none());
    // A second call reuses the CA and the node files.
    let again = certs(dir.path(), "test CA");
    assert_eq!(again, c);
    let only_clients = TlsConfig {
        ca: None,
        peers: false,
        ..settings(&c, 1)
    };
    let tls = load(&only_clients, 1, &loopback()).expect("no CA needed for HTTPS alone");
    assert!(tls.peers.is_none() && tls.clients.is_some());
}

#[test]
fn each_bad_setting_stops_the_start_with_its_own_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = certs(&dir.path().join("one"), "test CA");
    let other = certs(&dir.path().join("other"), "another CA");
    let good = settings(&c, 1);
    let m = loopback();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let err = |config: TlsConfig| load(&config, 1, &m).expect_err("refused");

    let e = err(TlsConfig {
        peers: false,
        clients: false,
        ..good.clone()
    });
    assert!(matches!(e, TlsError::NothingEnabled), "{e}");
    let e = err(TlsConfig {
        key: None,
        ..good.clone()
    });
    assert!(matches!(e, TlsError::Missing { setting: "key", .. }), "{e}");
    let e = err(TlsConfig {
        ca: None,
        ..good.clone()
    });
    assert!(matches!(e, TlsError::Missing { setting: "ca", .. }), "{e}");
    let e = err(TlsConfig {
        cert: Some(dir.path().join("absent.pem")),
        ..good.clone()
    });
    assert!(matches!(e, TlsError::Read { .. }), "{e}");
    assert!(e.to_string().contains("absent.pem"), "{e}");
    // The key file holds a certificate but no key.
    let e = err(TlsConfig {
        key: good.cert.clone(),
        ..good.clone()
    });
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
    let e = err(TlsConfig {
        cert: good.key.clone(),
        ..good.clone()
    });
    assert!(
        matches!(
            e,
            TlsError::NoCertificate {
                what: "certificate",
                ..
            }
        ),
        "{e}"
    );
    let garbage = write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    );
    let e = err(TlsConfig {
        cert: Some(garbage.clone()),
        ..good.clone()
    });
    assert!(matches!(e, TlsError::KeyPair { .. }), "{e}");
    let e = err(TlsConfig {
        ca: Some(garbage),
        ..good.clone()
    });
    assert!(matches!(e, TlsError::BadCa { .. }), "{e}");
    let broken = write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAEC\n");
    let e = err(TlsConfig {
        cert: Some(broken),
        ..good.clone()
    });
    assert!(matches!(e, TlsError::Pem { .. }), "{e}");
    // Another node's key.
    let e = err(TlsConfig {
        key: settings(&c, 2).key,
        ..good.clone()
    });
    assert!(matches!(e, TlsError::KeyPair { .. }), "{e}");
    // A certificate of another CA.
    let e = err(good.clone().with_ca(&other.ca));
    assert!(matches!(e, TlsError::NotTrusted { .. }), "{e}");
    // Peers dial node 1 by a name its certificate does not carry.
    let e = err(TlsConfig {
        peer_name: Some("n{id}.example".into()),
        ..good.clone()
    });
    assert!(matches!(e, TlsError::NotTrusted { .. }), "{e}");
    assert!(e.to_string().contains("n1.example"), "{e}");
    let e = err(TlsConfig {
        peer_name: Some("not a name!".into()),
        ..good.clone()
    });
    assert!(matches!(e, TlsError::BadName { id: 1, .. }), "{e}");
}

impl TlsConfig {
    fn with_ca(self, ca: &Path) -> TlsConfig {
        TlsConfig {
            ca: Some(ca.to_path_buf()),
            ..self
        }
    }
}

struct Node {
    transport: Transport,
    received: mpsc::UnboundedReceiver<(NodeId, PeerMessage)>,
    events: Arc<StdMutex<Vec<Event>>>,
}

impl Node {
    fn came_up(&self) -> bool {
        self.events
            .lock()
            .expect("events")
            .iter()
            .any(|e| matches!(e, Event::Up { .. }))
    }
}

/// Starts node `me` on `listener` with peer TLS `tls`.
fn start(
    me: u64,
    listener: TcpListener,
    peers: &[(NodeId, SocketAddr)],
    tls: Option<Arc<PeerTls>>,
) -> Node {
    let (tx, received) = mpsc::unbounded_channel();
    let events = Arc::new(StdMutex::new(Vec::new()));
    let log = events.clone();
    let endpoint = Endpoint {
        me: NodeId(me),
        identity: 1000 + me,
        boot: 1,
        secret: Secret::new(b"the cluster secret!".to_vec()).expect("long enough"),
        tls,
    };
    let limits = Limits {
        heartbeat: Duration::from_millis(50),
        dead_after: Duration::from_millis(500),
        handshake_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let transport = Transport::start(
        endpoint,
        peers,
        listener,
        limits,
        Faults::default(),
        Sink(tx),
        move |e| log.lock().expect("events").push(e),
    );
    Node {
        transport,
        received,
        events,
    }
}

fn msg(i: u64) -> PeerMessage {
    PeerMessage::Read {
        req: RequestId(i),
        key: Bytes::from(format!("k{i}")),
    }
}

/// Two listeners on loopback and the membership they make.
async fn pair() -> (TcpListener, TcpListener, Vec<Member>) {
    let a = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let m = members(&[a.local_addr().expect("addr"), b.local_addr().expect("addr")]);
    (a, b, m)
}

fn peers(m: &[Member]) -> Vec<(NodeId, SocketAddr)> {
    m.iter().map(|m| (NodeId(m.id), m.peer)).collect()
}

/// Everything logged on this thread while the guard lives.
#[derive(Clone, Default)]
struct Captured(Arc<StdMutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
}

#[tokio::test]
async fn peers_of_one_ca_exchange_messages_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = certs(dir.path(), "test CA");
    let (la, lb, m) = pair().await;
    let tls = |id| load(&settings(&c, id), id, &m).expect("loads").peers;
    let a = start(1, la, &peers(&m), tls(1));
    let mut b = start(2, lb, &peers(&m), tls(2));
    for i in 0..50 {
        a.transport.send(NodeId(2), msg(i)).expect("queued");
        b.transport.send(NodeId(1), msg(i)).expect("queued");
    }
    let mut got = Vec::new();
    while got.len() < 50 {
        match tokio::time::timeout(Duration::from_secs(10), b.received.recv()).await {
            Ok(Some((from, m))) => {
                assert_eq!(from, NodeId(1));
                got.push(m);
            }
            _ => panic!("only {} of 50 messages arrived", got.len()),
        }
    }
    assert_eq!(got, (0..50).map(msg).collect::<Vec<_>>());
    assert!(a.came_up() && b.came_up());
}

#[tokio::test]
async fn a_peer_with_a_certificate_of_another_ca_gets_nothing_through_and_is_logged() {
    let log = Captured::default();
    let _guard = log.start();
    let dir = tempfile::tempdir().expect("temp dir");
    let ours = certs(&dir.path().join("ours"), "our CA");
    let theirs = certs(&dir.path().join("theirs"), "their CA");
    // The impostor knows the secret and trusts our CA as well as its own, so only its
    // certificate stands between it and the cluster.
    let both = dir.path().join("both.pem");
    let bundle = [
        std::fs::read(&ours.ca).expect("ours"),
        std::fs::read(&theirs.ca).expect("theirs"),
    ]
    .concat();
    std::fs::write(&both, bundle).expect("bundle");
    let (la, lb, m) = pair().await;
    let a_tls = load(&settings(&ours, 1), 1, &m).expect("loads").peers;
    let b_tls = load(&settings(&theirs, 2).with_ca(&both), 2, &m)
        .expect("loads")
        .peers;
    let mut a = start(1, la, &peers(&m), a_tls);
    let mut b = start(2, lb, &peers(&m), b_tls);
    for i in 0..5 {
        a.transport.send(NodeId(2), msg(i)).expect("queued");
        b.transport.send(NodeId(1), msg(i)).expect("queued");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(a.received.try_recv().is_err(), "nothing from the impostor");
    assert!(b.received.try_recv().is_err(), "nothing to the impostor");
    assert!(!a.came_up() && !b.came_up());
    let text = log.text();
    assert!(
        text.contains("closed peer connection") && text.contains("TLS handshake failed"),
        "the refusal is logged:\n{text}"
    );
    assert!(
        text.contains("cannot reach peer"),
        "the dialer logs why:\n{text}"
    );
}

#[tokio::test]
async fn a_peer_without_tls_gets_nothing_through() {
    let log = Captured::default();
    let _guard = log.start();
    let dir = tempfile::tempdir().expect("temp dir");
    let c = certs(dir.path(), "test CA");
    let (la, lb, m) = pair().await;
    let mut a = start(
        1,
        la,
        &peers(&m),
        load(&settings(&c, 1), 1, &m).expect("ok").peers,
    );
    let b = start(2, lb, &peers(&m), None);
    for i in 0..5 {
        b.transport.send(NodeId(1), msg(i)).expect("queued");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.received.try_recv().is_err());
    assert!(!b.came_up());
    assert!(
        log.text().contains("TLS handshake failed"),
        "{}",
        log.text()
    );
}
