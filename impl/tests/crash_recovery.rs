//! Crash recovery: `kill -9` every node while writes are in flight; once they restart,
//! every acknowledged write is readable.

mod common;

use common::Cluster;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn after_kill_9_of_every_node_every_acknowledged_write_is_readable() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let client = c.client.clone();
        let base = format!("http://{}", c.nodes[(w % 3) as usize].http);
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10_000u64 {
                let key = format!("w{w}-{i}");
                let value = format!("value-{w}-{i}");
                let sent = client
                    .put(format!("{base}/kv/{key}"))
                    .body(value.clone())
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 204 => {
                        acked.lock().expect("lock").push((key, value));
                    }
                    Ok(_) => {}
                    // The cluster is gone: stop writing.
                    Err(_) => return,
                }
            }
        }));
    }
    // Let writes flow, then kill every node without warning, mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in 1..=3 {
        c.kill9(id);
    }
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "only {} writes were acknowledged before the crash",
        acked.len()
    );
    for id in 1..=3 {
        c.restart(id).await;
    }
    let mut missing = Vec::new();
    for (key, value) in &acked {
        let (status, values, _) = c.get(1, key).await;
        if status != 200 || !values.contains(value) {
            missing.push((key.clone(), status, values));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes are missing after the crash, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
}
