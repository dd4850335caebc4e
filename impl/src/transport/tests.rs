//! Two transports on loopback, in one process: delivery, acknowledgement, resending across a
//! restart of the receiver, authentication and the byte bound.

use super::*;
use crate::protocol::RequestId;
use bytes::Bytes;
use std::sync::Mutex as StdMutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Collects what a transport delivers (the TLS tests use it too).
#[derive(Clone)]
pub(crate) struct Sink(pub(crate) mpsc::UnboundedSender<(NodeId, PeerMessage)>);

impl Deliver for Sink {
    async fn deliver(
        &self,
        from: NodeId,
        msg: PeerMessage,
        _size: usize,
        _expires: std::time::Instant,
    ) -> bool {
        self.0.send((from, msg)).is_ok()
    }
}

fn msg(i: u64) -> PeerMessage {
    PeerMessage::Read {
        req: RequestId(i),
        key: Bytes::from(format!("k{i}")),
    }
}

fn secret(text: &str) -> Secret {
    Secret::new(text.as_bytes().to_vec()).expect("long enough")
}

fn fast() -> Limits {
    Limits {
        heartbeat: Duration::from_millis(50),
        dead_after: Duration::from_millis(500),
        ..Limits::default()
    }
}

struct Node {
    transport: Transport,
    received: mpsc::UnboundedReceiver<(NodeId, PeerMessage)>,
    events: Arc<StdMutex<Vec<Event>>>,
}

/// Starts node `me` of a two-node cluster on `listener`, on the current runtime.
fn start(
    me: u64,
    boot: u64,
    key: &str,
    listener: TcpListener,
    peers: &[(NodeId, SocketAddr)],
    limits: Limits,
) -> Node {
    let (tx, received) = mpsc::unbounded_channel();
    let events = Arc::new(StdMutex::new(Vec::new()));
    let log = events.clone();
    let endpoint = Endpoint {
        me: NodeId(me),
        identity: 1000 + me,
        boot,
        secret: secret(key),
        tls: None,
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

async fn listeners() -> (TcpListener, TcpListener, Vec<(NodeId, SocketAddr)>) {
    let a = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let peers = vec![
        (NodeId(1), a.local_addr().expect("addr")),
        (NodeId(2), b.local_addr().expect("addr")),
    ];
    (a, b, peers)
}

async fn receive(node: &mut Node, count: usize) -> Vec<PeerMessage> {
    let mut got = Vec::new();
    while got.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), node.received.recv()).await;
        match next {
            Ok(Some((_, m))) => got.push(m),
            _ => panic!("only {} of {count} messages arrived", got.len()),
        }
    }
    got
}

async fn settle(transport: &Transport) {
    for _ in 0..200 {
        if transport.buffered().iter().all(|(_, b)| *b == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("still buffered: {:?}", transport.buffered());
}

#[tokio::test]
async fn messages_arrive_once_in_order_and_are_acknowledged() {
    let (la, lb, peers) = listeners().await;
    let a = start(1, 1, "the cluster secret!", la, &peers, fast());
    let mut b = start(2, 1, "the cluster secret!", lb, &peers, fast());
    for i in 0..500 {
        a.transport.send(NodeId(2), msg(i)).expect("queued");
    }
    let got = receive(&mut b, 500).await;
    assert_eq!(got, (0..500).map(msg).collect::<Vec<_>>());
    settle(&a.transport).await;
    assert!(b.received.try_recv().is_err(), "nothing twice");
    assert!(a.events.lock().expect("events").contains(&Event::Up {
        peer: NodeId(2),
        boot: 1
    }));
}

#[tokio::test]
async fn a_peer_without_the_secret_gets_nothing_through() {
    let (la, lb, peers) = listeners().await;
    let a = start(1, 1, "the cluster secret!", la, &peers, fast());
    let mut b = start(2, 1, "some other secret!!", lb, &peers, fast());
    a.transport.send(NodeId(2), msg(1)).expect("queued");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.received.try_recv().is_err());
    assert!(!a
        .events
        .lock()
        .expect("events")
        .iter()
        .any(|e| matches!(e, Event::Up { .. })));
    assert_eq!(a.transport.buffered().len(), 1);
    assert!(
        a.transport.buffered()[0].1 > 0,
        "kept for a peer that may yet authenticate"
    );
}

#[test]
fn messages_queued_while_the_peer_is_down_or_restarting_are_delivered() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (la, lb, peers) = rt.block_on(listeners());
    let addr_b = peers[1].1;
    let a = rt.block_on(async { start(1, 1, "the cluster secret!", la, &peers, fast()) });
    // B is down: A's messages wait in its buffer.
    drop(lb);
    rt.block_on(async {
        for i in 0..10 {
            a.transport.send(NodeId(2), msg(i)).expect("queued");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    // B comes up (its own runtime, so that dropping it later kills it like a crash).
    let rt_b = tokio::runtime::Runtime::new().expect("runtime");
    let mut b = rt_b.block_on(async {
        let lb = TcpListener::bind(addr_b).await.expect("rebind");
        start(2, 1, "the cluster secret!", lb, &peers, fast())
    });
    let got = rt_b.block_on(receive(&mut b, 10));
    assert_eq!(got, (0..10).map(msg).collect::<Vec<_>>());
    // B crashes and restarts with a new boot; A's next messages reach the new process.
    drop(b);
    drop(rt_b);
    let rt_b = tokio::runtime::Runtime::new().expect("runtime");
    let mut b = rt_b.block_on(async {
        let lb = TcpListener::bind(addr_b).await.expect("rebind");
        start(2, 2, "the cluster secret!", lb, &peers, fast())
    });
    rt.block_on(async {
        for i in 10..20 {
            a.transport.send(NodeId(2), msg(i)).expect("queued");
        }
    });
    let got = rt_b.block_on(receive(&mut b, 10));
    assert_eq!(got, (10..20).map(msg).collect::<Vec<_>>());
    rt.block_on(settle(&a.transport));
}

#[tokio::test]
async fn a_full_buffer_fails_the_send_at_once() {
    let (la, lb, peers) = listeners().await;
    drop(lb);
    let limits = Limits {
        buffer_bytes: 1000,
        ..fast()
    };
    let a = start(1, 1, "the cluster secret!", la, &peers, limits);
    let mut sent = 0;
    let error = loop {
        match a.transport.send(NodeId(2), msg(sent)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 1000, "never full");
    };
    assert_eq!(error, SendError::Full(NodeId(2)));
    assert!(sent > 10, "{sent} messages fit in 1000 bytes");
    assert_eq!(
        a.transport.send(NodeId(9), msg(0)),
        Err(SendError::Unknown(NodeId(9)))
    );
}

#[test]
fn a_message_looks_no_younger_than_it_is_on_the_receivers_clock() {
    let arrived = tokio::time::Instant::now() + Duration::from_secs(100);
    let hello = inbound::HelloTime {
        arrived,
        clock: 10_000,
    };
    let ttl = Duration::from_secs(1);
    // Queued after the hello: its age runs from the hello's arrival plus the difference.
    assert_eq!(
        inbound::expiry(hello, 10_500, ttl),
        arrived + Duration::from_millis(500) + ttl
    );
    // Queued before the hello (a resend): older by the difference.
    assert_eq!(
        inbound::expiry(hello, 9_000, ttl),
        arrived - Duration::from_millis(1000) + ttl
    );
}

#[tokio::test]
async fn messages_that_outlive_their_lifetime_in_the_senders_buffer_are_dropped_and_counted() {
    let (la, lb, peers) = listeners().await;
    let addr_b = peers[1].1;
    drop(lb);
    let limits = Limits {
        message_ttl: Duration::from_millis(300),
        ..fast()
    };
    let a = start(1, 1, "the cluster secret!", la, &peers, limits.clone());
    for i in 0..5 {
        a.transport.send(NodeId(2), msg(i)).expect("queued");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 5..10 {
        a.transport.send(NodeId(2), msg(i)).expect("queued");
    }
    let lb = TcpListener::bind(addr_b).await.expect("rebind");
    let mut b = start(2, 1, "the cluster secret!", lb, &peers, limits);
    let got = receive(&mut b, 5).await;
    assert_eq!(got, (5..10).map(msg).collect::<Vec<_>>());
    settle(&a.transport).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.received.try_recv().is_err(), "an expired message arrived");
    assert_eq!(a.transport.expired() + b.transport.expired(), 5);
}

/// Delivers like [`Sink`], but the first delivery takes `stall`: what waits in the socket
/// meanwhile grows old.
#[derive(Clone)]
struct SlowSink(Sink, Arc<std::sync::atomic::AtomicBool>, Duration);

impl Deliver for SlowSink {
    async fn deliver(
        &self,
        from: NodeId,
        msg: PeerMessage,
        size: usize,
        expires: std::time::Instant,
    ) -> bool {
        if !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(self.2).await;
        }
        self.0.deliver(from, msg, size, expires).await
    }
}

#[tokio::test]
async fn messages_that_grow_old_at_the_receiver_are_not_delivered() {
    let (la, lb, peers) = listeners().await;
    let limits = Limits {
        message_ttl: Duration::from_millis(300),
        ..fast()
    };
    let a = start(1, 1, "the cluster secret!", la, &peers, limits.clone());
    let (tx, mut received) = mpsc::unbounded_channel();
    let endpoint = Endpoint {
        me: NodeId(2),
        identity: 1002,
        boot: 1,
        secret: secret("the cluster secret!"),
        tls: None,
    };
    let sink = SlowSink(
        Sink(tx),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
        Duration::from_millis(600),
    );
    let b = Transport::start(
        endpoint,
        &peers,
        lb,
        limits,
        Faults::default(),
        sink,
        |_| {},
    );
    for i in 0..10 {
        a.transport.send(NodeId(2), msg(i)).expect("queued");
    }
    settle(&a.transport).await;
    let mut got = Vec::new();
    while let Ok(Some((_, m))) =
        tokio::time::timeout(Duration::from_millis(300), received.recv()).await
    {
        got.push(m);
    }
    assert_eq!(
        got,
        vec![msg(0)],
        "only the message delivered before the stall"
    );
    assert_eq!(b.expired(), 9);
}
