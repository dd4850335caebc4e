//! Bad input from clients and peers gets a clear error, stores nothing and leaves the node
//! serving.

mod common;

use shoal::client::CONTEXT_HEADER;

use common::Cluster;
use std::io::{Read, Write};
use std::time::Duration;

#[tokio::test]
async fn malformed_requests_are_refused_with_a_reason_and_store_nothing() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    let url = c.url(1, "k");
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.client
                .put(url.clone())
                .header(CONTEXT_HEADER, "%%%not-base64")
                .body("v"),
            400,
            "malformed X-Shoal-Context",
        ),
        (
            c.client
                .put(url.clone())
                .header(CONTEXT_HEADER, "AAAA")
                .body("v"),
            400,
            "malformed X-Shoal-Context",
        ),
        (
            c.client.put(format!("{url}?w=0")).body("v"),
            400,
            "w must be",
        ),
        (
            c.client.put(format!("{url}?w=4")).body("v"),
            400,
            "w must be",
        ),
        (
            c.client.put(format!("{url}?w=two")).body("v"),
            400,
            "w must be",
        ),
        (c.client.get(format!("{url}?r=9")), 400, "r must be"),
        (c.client.put(url.clone()).body(vec![b'x'; 65537]), 413, ""),
    ];
    for (req, status, reason) in cases {
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), status);
        let body = resp.text().await.expect("body");
        assert!(body.contains(reason), "expected {reason:?} in {body:?}");
    }
    let long_key = "k".repeat(1025);
    let long_url = c.url(1, &long_key);
    let resp = c.client.put(long_url).body("v").send().await.expect("PUT");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.expect("body").contains("key must be"));
    // Nothing was stored by any of them.
    let (status, values, ctx) = c.get(2, "k").await;
    assert_eq!((status, values.len(), ctx), (404, 0, None));
    let (status, _, _) = c.get(2, &long_key).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn random_bytes_on_the_peer_port_close_that_connection_and_the_node_keeps_serving() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    let peer = c.nodes[0].peer;
    // Garbage instead of a hello, an oversized frame, and a valid length with junk inside.
    let payloads: Vec<Vec<u8>> = vec![
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0, 0, 0, 3, 0xde, 0xad, 0xbe],
    ];
    for payload in payloads {
        let mut s = std::net::TcpStream::connect(peer).expect("connect to the peer port");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.write_all(&payload);
        // The node closes the connection: the read ends (0 bytes or a reset), not a timeout.
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "the node answered garbage with data"),
            Err(e) => assert_ne!(
                e.kind(),
                std::io::ErrorKind::WouldBlock,
                "connection left open"
            ),
        }
    }
    assert!(c.is_running(1));
    assert_eq!(c.put(1, "after", "fine", None).await.0, 204);
    let (status, values, _) = c.get(1, "after").await;
    assert_eq!((status, values), (200, vec!["fine".to_string()]));
    assert!(
        c.log(1).contains("closed peer connection"),
        "the reason is logged"
    );
}

#[tokio::test]
async fn a_forged_context_is_refused_and_the_key_stays_healthy_on_every_node() {
    use shoal::{ActorId, VersionVector, MAX_COUNTER, MAX_ENTRIES};
    let mut c = Cluster::start(3, 3, 2, 2).await;
    let (status, ctx) = c.put(1, "victim", "v1", None).await;
    assert_eq!(status, 204);
    let genuine = VersionVector::from_context_str(&ctx.expect("a context")).expect("decodes");
    let (actor, _) = genuine.pairs()[0];
    // The attacks of issue 11: the counter raised to the limit, and a thousand made-up actors.
    let raised = VersionVector::from_pairs([(actor, MAX_COUNTER - 1)]);
    let crowd = VersionVector::from_pairs(
        (0..MAX_ENTRIES as u64 - 1).map(|i| (ActorId::new(0xbad0 + i, 0), 1)),
    );
    let past_limit = {
        // One past the decoder's limit cannot even be encoded by the library: flip the bytes.
        let mut s = raised.to_context_string();
        s.push_str("AAAA");
        s
    };
    for (name, forged, expected) in [
        ("counter at the limit", raised.to_context_string(), 409),
        ("1023 made-up actors", crowd.to_context_string(), 409),
        ("malformed", past_limit, 400),
    ] {
        for node in 1..=3 {
            let (status, _) = c.put(node, "victim", "evil", Some(&forged)).await;
            assert_eq!(status, expected, "{name} through node {node}");
        }
    }
    // Nothing was stored, and the key reads and writes as before through every node.
    for node in 1..=3 {
        let (status, values, _) = c.get(node, "victim").await;
        assert_eq!(
            (status, values),
            (200, vec!["v1".to_string()]),
            "node {node}"
        );
    }
    let (_, _, ctx) = c.get(2, "victim").await;
    assert_eq!(c.put(3, "victim", "v2", ctx.as_deref()).await.0, 204);
    for node in 1..=3 {
        let (status, values, _) = c.get(node, "victim").await;
        assert_eq!(
            (status, values),
            (200, vec!["v2".to_string()]),
            "node {node}"
        );
    }
    for node in 1..=3 {
        assert!(c.is_running(node));
    }
}
