//! A network partition. Five nodes, each in its own network namespace (see `common::netns`),
//! split into a minority {1, 2} and a majority {3, 4, 5}: the kernel drops every packet between
//! the sides, connections stall without a reset, and clients still reach every node.
//!
//! - Without sloppy quorum (`sloppy_quorum = false`), a minority write whose key has fewer than
//!   `W` = 2 primaries on the minority side fails with `503`; one whose primaries include both
//!   minority nodes succeeds, and the majority side takes writes for keys it has two primaries
//!   of.
//! - With sloppy quorum, every write on either side succeeds (fallbacks on the writer's side
//!   keep hints), including blind writes of the same keys on both sides. Once the partition
//!   heals, with no client read, the hints go home and every primary comes to hold every
//!   acknowledged write (handoff, resent replication, anti-entropy); the concurrent writes of
//!   the two sides then read as siblings.
//!
//! Without `ip netns` (not root, or no namespaces in this kernel) the same scenario runs on
//! loopback with the transport's fault switch (`POST /admin/faults`, both directions), saying so.

use crate::common::netns::{self, Net};
use crate::common::workload::{self, Outcome};
use crate::common::{self, Cluster, Options};
use futures::StreamExt as _;
use std::time::{Duration, Instant};

const MINORITY: [u64; 2] = [1, 2];
const MAJORITY: [u64; 3] = [3, 4, 5];

/// How the sides are cut apart.
enum Cut {
    /// Real namespaces: peer links move between bridges.
    Namespaces(Net),
    /// The transport's fault switch on loopback.
    Switch,
}

/// A five-node cluster (N = 3, R = W = 2) that can be partitioned. Fields drop in order: the
/// processes first, then the namespaces they ran in.
struct Rig {
    c: Cluster,
    cut: Cut,
}

impl Rig {
    async fn start(extra: &str) -> Rig {
        let mut opts = Options::new(5, 3, 2, 2).extra(extra);
        let cut = match netns::unavailable() {
            None => {
                let net = Net::create(5).expect("create the namespaces");
                opts.addrs = Some(net.addrs());
                opts.launchers = net.launchers();
                Cut::Namespaces(net)
            }
            Some(why) => {
                eprintln!("no network namespaces ({why}): partitioning with the fault switch");
                Cut::Switch
            }
        };
        let c = Cluster::start_opts(&opts).await;
        c.await_peer_states(&c.ids(), &c.ids(), &["up"], Duration::from_secs(10))
            .await;
        Rig { c, cut }
    }

    async fn switch(&self, partitioned: bool) {
        for (a, b) in MINORITY
            .iter()
            .flat_map(|a| MAJORITY.iter().map(move |b| (*a, *b)))
        {
            for (on, peer) in [(a, b), (b, a)] {
                let url = format!("http://{}/admin/faults", self.c.http_of(on));
                let resp = self
                    .c
                    .client
                    .post(url)
                    .body(format!(
                        r#"{{"peer": {peer}, "partitioned": {partitioned}}}"#
                    ))
                    .send()
                    .await
                    .expect("POST /admin/faults");
                assert_eq!(
                    resp.status().as_u16(),
                    204,
                    "the faults feature is on in tests"
                );
            }
        }
    }

    /// Splits the cluster and waits until each side sees the other as not up.
    async fn partition(&mut self) {
        match &mut self.cut {
            Cut::Namespaces(net) => net.partition(&MINORITY).expect("partition"),
            Cut::Switch => self.switch(true).await,
        }
        let t = Duration::from_secs(15);
        let gone = ["down", "suspected"];
        self.c
            .await_peer_states(&MINORITY, &MAJORITY, &gone, t)
            .await;
        self.c
            .await_peer_states(&MAJORITY, &MINORITY, &gone, t)
            .await;
    }

    /// Joins the sides and waits until every node sees every other up.
    async fn heal(&mut self) {
        match &mut self.cut {
            Cut::Namespaces(net) => net.heal().expect("heal"),
            Cut::Switch => self.switch(false).await,
        }
        let ids = self.c.ids();
        self.c
            .await_peer_states(&ids, &ids, &["up"], Duration::from_secs(15))
            .await;
    }
}

/// Puts `key = value` through node `via` for every `(via, key, value)`, eight at a time.
async fn put_all(c: &Cluster, writes: &[(u64, String, String)]) -> Vec<Outcome> {
    let http = common::http_client(Duration::from_secs(10));
    futures::stream::iter(writes)
        .map(|(via, key, value)| {
            let node = workload::client(&http, c.http_of(*via));
            async move { workload::put(&node, key, value, None, None).await.0 }
        })
        .buffered(8)
        .collect()
        .await
}

/// The first `count` keys `{prefix}{i}` whose primaries include exactly `inside` nodes of
/// `side`.
fn keys_with(c: &Cluster, prefix: &str, side: &[u64], inside: usize, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| {
            c.primaries(k, 3)
                .iter()
                .filter(|p| side.contains(p))
                .count()
                == inside
        })
        .take(count)
        .collect()
}

#[tokio::test]
async fn without_sloppy_quorum_minority_writes_fail_and_with_it_they_succeed() {
    let mut rig = Rig::start("sloppy_quorum = false").await;
    let c = &rig.c;
    // Keys with at most one primary among {1, 2}: W = 2 unreachable from the minority.
    let short: Vec<String> = [0, 1]
        .iter()
        .flat_map(|inside| keys_with(c, &format!("s{inside}-"), &MINORITY, *inside, 6))
        .collect();
    // Keys with both minority nodes as primaries.
    let quorate = keys_with(c, "q-", &MINORITY, 2, 6);
    rig.partition().await;
    let c = &rig.c;

    let minority: Vec<(u64, String, String)> = short
        .iter()
        .chain(&quorate)
        .enumerate()
        .map(|(i, k)| (MINORITY[i % 2], k.clone(), "minority".to_string()))
        .collect();
    let started = Instant::now();
    let outcomes = put_all(c, &minority).await;
    for ((via, key, _), o) in minority.iter().zip(&outcomes) {
        let want = if quorate.contains(key) { 204 } else { 503 };
        assert_eq!(
            o.status(),
            Some(want),
            "sloppy_quorum = false: {key} (primaries {:?}) through node {via}",
            c.primaries(key, 3)
        );
    }
    eprintln!(
        "minority side: {} writes refused, {} accepted, in {:?}",
        short.len(),
        quorate.len(),
        started.elapsed()
    );
    // The majority has two primaries of every `short` key.
    let majority: Vec<(u64, String, String)> = short
        .iter()
        .enumerate()
        .map(|(i, k)| (MAJORITY[i % 3], k.clone(), "majority".to_string()))
        .collect();
    let outcomes = put_all(c, &majority).await;
    assert!(
        outcomes.iter().all(Outcome::ok),
        "majority writes: {outcomes:?}"
    );
    assert_eq!(
        c.metric_sum(&c.ids(), "shoal_hints_held").await,
        Some(0.0),
        "no hints without sloppy quorum"
    );
    rig.heal().await;
    let outcomes = put_all(&rig.c, &minority).await;
    assert!(
        outcomes.iter().all(Outcome::ok),
        "after healing: {outcomes:?}"
    );
}

#[tokio::test]
async fn with_sloppy_quorum_both_sides_take_writes_and_converge_after_healing() {
    let mut rig = Rig::start("").await;
    rig.partition().await;
    let c = &rig.c;
    // Each side writes keys of its own, and the same `both-` keys blind.
    let mut writes: Vec<(u64, String, String)> = Vec::new();
    for i in 0..24u64 {
        writes.push((
            MINORITY[i as usize % 2],
            format!("min-{i}"),
            format!("a{i}"),
        ));
        writes.push((
            MAJORITY[i as usize % 3],
            format!("maj-{i}"),
            format!("b{i}"),
        ));
    }
    for i in 0..8u64 {
        writes.push((
            MINORITY[i as usize % 2],
            format!("both-{i}"),
            format!("a{i}"),
        ));
        writes.push((
            MAJORITY[i as usize % 3],
            format!("both-{i}"),
            format!("b{i}"),
        ));
    }
    let outcomes = put_all(c, &writes).await;
    for ((via, key, _), o) in writes.iter().zip(&outcomes) {
        assert!(o.ok(), "{key} through node {via}: {o:?}");
    }
    let held = c.metric_sum(&c.ids(), "shoal_hints_held").await;
    assert!(
        held.is_some_and(|h| h > 0.0),
        "fallbacks hold hints: {held:?}"
    );

    let healed = Instant::now();
    rig.heal().await;
    let c = &rig.c;
    let drained = workload::await_hints_drained(c, Duration::from_secs(30))
        .await
        .expect("hints handed over");
    // With no read at all, every primary comes to hold every acknowledged write: hints,
    // replication resent once the links are back, and anti-entropy for the rest.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut missing = Vec::new();
        for (_, key, value) in &writes {
            for p in c.primaries(key, 3) {
                match c.local(p, key).await {
                    Ok(Some(l)) if l.values.contains(value) => {}
                    other => missing.push(format!("{key}={value} on {p}: {other:?}")),
                }
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after healing, {} (primary, write) pairs missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "healed: {held:?} hints handed over {drained:?} after the links were back; every \
         primary held every write {:?} after the heal began, with no read",
        healed.elapsed()
    );
    assert_eq!(
        c.metric_sum(&c.ids(), "shoal_read_repairs_total").await,
        Some(0.0),
        "no read, no read repair"
    );
    let http = common::http_client(Duration::from_secs(10));
    let reader = workload::client(&http, c.http_of(3));
    // The concurrent writes of both sides are siblings.
    for i in 0..8 {
        let (o, values, _, _) = workload::get(&reader, &format!("both-{i}"), None).await;
        assert_eq!(
            (o, values),
            (Outcome::Status(300), vec![format!("a{i}"), format!("b{i}")])
        );
    }
}
