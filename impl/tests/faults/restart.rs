//! A restarted node's first requests succeed. Three nodes, N = 3 and W = 3, so a write needs
//! every node and no fallback can stand in: after a `kill -9`, a few seconds down and a
//! restart, the very next write through the restarted node and the very next through a peer
//! are both acknowledged — the restarted node's connections come up at once, and its peers'
//! connections to it, broken by the crash, are redialled as soon as it is back rather than
//! after their backoff.

use crate::common::workload::{self, long, Outcome};
use crate::common::{self, Cluster, Options};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use std::time::Duration;

#[tokio::test]
async fn after_kill_9_and_restart_the_next_writes_through_it_and_through_a_peer_succeed_with_w3() {
    let seed = common::seed("SHOAL_FAULTS_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let rounds = if long() { 12 } else { 3 };
    let mut c = Cluster::start_opts(&Options::new(3, 3, 2, 3)).await;
    let http = common::http_client(Duration::from_secs(10));
    let via = |c: &Cluster, id: u64| workload::client(&http, c.http_of(id));
    let (o, _, _) = workload::put(&via(&c, 1), "warm", "up", None, None).await;
    assert_eq!(o, Outcome::Status(204));

    for round in 0..rounds {
        let victim = rng.gen_range(1..=3u64);
        let peer = (victim + rng.gen_range(1..=2u64) - 1) % 3 + 1;
        // Alternate which goes first: the restarted node, or a peer that still has to notice.
        let order = if round % 2 == 0 {
            [victim, peer]
        } else {
            [peer, victim]
        };
        c.kill9(victim);
        // Down long enough for the peers' redial backoff to reach its ceiling (1 s): only
        // noticing the restart brings their connections back in time.
        let down = Duration::from_millis(rng.gen_range(1500..3000));
        tokio::time::sleep(down).await;
        c.restart(victim).await;
        for (i, id) in order.into_iter().enumerate() {
            let key = format!("r{round}-{i}");
            let (o, _, took) = workload::put(&via(&c, id), &key, "x", None, Some(3)).await;
            eprintln!(
                "round {round}: node {victim} down {down:?}; first put through {id}: {o:?} in {took:?}"
            );
            assert_eq!(
                o,
                Outcome::Status(204),
                "seed {seed}, round {round}: put {key} through node {id} after node {victim} restarted"
            );
        }
        // Every node holds both writes in its own store (W = 3 said so).
        for id in 1..=3 {
            for i in 0..2 {
                let key = format!("r{round}-{i}");
                let local = c.local(id, &key).await.expect("node answers");
                assert_eq!(
                    local.map(|l| l.values),
                    Some(vec!["x".to_string()]),
                    "seed {seed}: node {id}, {key}"
                );
            }
        }
    }
}
