//! HTTP fuzzing against real `shoal serve` processes: random and mutated requests written as
//! raw bytes on a TCP socket (bad methods, paths, percent-escapes, query parameters, headers,
//! contexts, lengths and bodies). No request may get a 5xx other than the documented 503/504,
//! no node may exit, every clock stored on the way must read back valid, and the cluster
//! must still serve a normal write and read afterwards.
//!
//! `SHOAL_FUZZ_ITERS` sets the total inputs (CI: 20,000 / 2 = 10,000 requests here, since
//! each is a real round trip); the test prints its seed, its count and its rate.

mod common;

use common::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn requests() -> u64 {
    std::env::var("SHOAL_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20_000)
        / 2
}

const METHODS: &[&str] = &[
    "GET", "PUT", "DELETE", "POST", "HEAD", "PATCH", "OPTIONS", "G\0T",
];
const PATHS: &[&str] = &[
    "/kv/",
    "/kv/k",
    "/kv/a%2Fb",
    "/kv/%ff%fe",
    "/kv/%",
    "/kv/%zz",
    "/admin/local/",
    "/admin/local/k",
    "/admin/nodes",
    "/admin/ring",
    "/admin/faults",
    "/metrics",
    "/health",
    "/",
    "//kv//k",
    "/kv/../admin/ring",
];
const PARAMS: &[&str] = &["w", "r", "pw", "pr", "x"];
const PARAM_VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "-1",
    "99999999999999999999",
    "two",
    "",
    "%00",
    "1.5",
];

/// A mutated copy of `s`: a flipped byte, a cut, or random bytes appended.
fn mutate(rng: &mut StdRng, s: &[u8]) -> Vec<u8> {
    let mut b = s.to_vec();
    match rng.gen_range(0..4) {
        0 if !b.is_empty() => {
            let i = rng.gen_range(0..b.len());
            b[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if !b.is_empty() => b.truncate(rng.gen_range(0..b.len())),
        2 => b.extend((0..rng.gen_range(1..16)).map(|_| rng.gen::<u8>())),
        _ => {}
    }
    b
}

/// One request as bytes on the wire.
struct Request {
    bytes: Vec<u8>,
    /// The key it may write.
    key: Option<String>,
    /// Whether it is valid HTTP framing (method token, length that matches the body, no
    /// raw junk), so the server owes it an answer: a handler that panicked would show up
    /// as a closed connection.
    framed: bool,
}

fn request(rng: &mut StdRng, contexts: &[String]) -> Request {
    if rng.gen_bool(0.05) {
        // Not HTTP at all.
        let bytes = (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect();
        return Request {
            bytes,
            key: None,
            framed: false,
        };
    }
    let mut framed = true;
    let method = METHODS[rng.gen_range(0..METHODS.len())];
    let (path, key) = if rng.gen_bool(0.5) {
        let k = format!("f{}", rng.gen_range(0..20));
        (format!("/kv/{k}"), Some(k))
    } else {
        let p = PATHS[rng.gen_range(0..PATHS.len())].to_string();
        (p, None)
    };
    let mut path = path.into_bytes();
    if rng.gen_bool(0.1) {
        path = mutate(rng, &path);
        framed = false;
    }
    framed &= !method.contains('\0');
    let mut query = Vec::new();
    for _ in 0..rng.gen_range(0..3) {
        query.push(format!(
            "{}={}",
            PARAMS[rng.gen_range(0..PARAMS.len())],
            PARAM_VALUES[rng.gen_range(0..PARAM_VALUES.len())]
        ));
    }
    let body: Vec<u8> = match rng.gen_range(0..4) {
        0 => Vec::new(),
        1 => b"value".to_vec(),
        2 => (0..rng.gen_range(0..4096)).map(|_| rng.gen()).collect(),
        _ => vec![b'x'; rng.gen_range(60_000..70_000)],
    };
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(&path);
    if !query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query.join("&").as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
    if rng.gen_bool(0.5) && !contexts.is_empty() {
        let ctx = contexts[rng.gen_range(0..contexts.len())].as_bytes();
        let ctx = if rng.gen_bool(0.5) {
            mutate(rng, ctx)
        } else {
            ctx.to_vec()
        };
        out.extend_from_slice(b"X-Shoal-Context: ");
        out.extend_from_slice(&ctx);
        out.extend_from_slice(b"\r\n");
    }
    let framing = rng.gen_range(0..6);
    framed &= framing >= 4;
    match framing {
        0 => out.extend_from_slice(b"Content-Length: 99999999999999999999999\r\n"),
        1 => out.extend_from_slice(format!("Content-Length: {}\r\n", body.len() + 7).as_bytes()),
        2 => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        3 => out.extend_from_slice(b"Content-Length: -1\r\n"),
        _ => out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes()),
    }
    if rng.gen_bool(0.05) {
        framed = false;
        out.extend_from_slice(b"X-Junk: ");
        out.extend((0..rng.gen_range(0..64)).map(|_| rng.gen::<u8>()));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Request {
        bytes: out,
        key,
        framed,
    }
}

/// Writes the request and reads until the server closes; the status code, if it answered.
/// A request whose framing is broken is followed by closing our side, so a server waiting
/// for the rest sees the end; a well-framed one is not, since the server may then drop the
/// connection without answering (hyper does not serve half-closed connections).
async fn send(addr: std::net::SocketAddr, bytes: &[u8], framed: bool) -> (Option<u16>, Vec<u8>) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (None, Vec::new());
    };
    // The server may answer (413, 400) and close before reading the whole body.
    let _ = s.write_all(bytes).await;
    if !framed {
        let _ = s.shutdown().await;
    }
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    let status = resp
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok());
    (status, resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_http_requests_get_clear_answers_and_break_nothing() {
    let seed = 14;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Cluster::start(3, 3, 2, 2).await;
    // Real contexts to mutate: from a write and from a read.
    let (_, ctx) = c.put(1, "f0", "seed", None).await;
    let mut contexts: Vec<String> = ctx.into_iter().collect();
    let (_, _, ctx) = c.get(2, "f0").await;
    contexts.extend(ctx);
    let addrs: Vec<_> = c.nodes.iter().map(|n| n.http).collect();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut no_answer = 0u64;
    let mut written = std::collections::BTreeSet::new();
    let n = requests();
    let started = Instant::now();
    for i in 0..n {
        let Request { bytes, key, framed } = request(&mut rng, &contexts);
        let addr = addrs[(i as usize) % addrs.len()];
        let (status, resp) = send(addr, &bytes, framed).await;
        let Some(status) = status else {
            assert!(
                !framed,
                "request {i} is valid HTTP but got no answer (did a handler panic?):\n{}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
            );
            no_answer += 1;
            continue;
        };
        *statuses.entry(status).or_default() += 1;
        assert!(
            status < 500 || status == 503 || status == 504,
            "request {i} got {status}:\n{}\nresponse:\n{}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(400)]),
            String::from_utf8_lossy(&resp[..resp.len().min(400)])
        );
        if status == 204 || status == 200 {
            if let Some(k) = key {
                written.insert(k);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    for id in 1..=3 {
        assert!(c.is_running(id), "node {id} exited under fuzzing");
    }
    // Every clock stored along the way reads back valid from each replica's own store.
    for k in &written {
        for id in 1..=3 {
            let url = format!("http://{}/admin/local/{k}", c.nodes[id - 1].http);
            let resp = c.client.get(url).send().await.expect("admin/local");
            assert!(
                resp.status().as_u16() == 200 || resp.status().as_u16() == 404,
                "node {id} cannot read back its clock of {k}: {}",
                resp.status()
            );
        }
    }
    // The cluster still serves a normal write and read.
    let (status, _) = c.put(2, "after-fuzz", "fine", None).await;
    assert_eq!(status, 204);
    let (status, values, _) = c.get(3, "after-fuzz").await;
    assert_eq!((status, values), (200, vec!["fine".to_string()]));
    assert!(
        statuses.keys().any(|s| *s >= 400) && statuses.keys().any(|s| *s < 300),
        "the mix reached both refusals and successes: {statuses:?}"
    );
    println!(
        "fuzz http: seed {seed}, {n} requests, {secs:.1} s ({:.0}/s), statuses {statuses:?}, \
         {no_answer} closed without an answer, {} keys written",
        n as f64 / secs.max(1e-9),
        written.len()
    );
}
