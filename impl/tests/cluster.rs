//! Black-box tests of a 3-node cluster of real processes over real sockets.

mod common;

use shoal::client::CONTEXT_HEADER;

use common::Cluster;

#[tokio::test]
async fn a_put_through_one_node_is_read_through_every_node() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    let (status, ctx) = c.put(1, "k", "hello", None).await;
    assert_eq!(status, 204);
    assert!(ctx.is_some(), "a put answers with the new context");
    for id in 1..=3 {
        let (status, values, ctx) = c.get(id, "k").await;
        assert_eq!(
            (status, values),
            (200, vec!["hello".to_string()]),
            "through node {id}"
        );
        assert!(ctx.is_some());
    }
    // Plain (non-JSON) reads return the value as the body.
    let url = c.url(2, "k");
    assert_eq!(common::get_text(&c.client, &url).await, "hello");
}

#[tokio::test]
async fn concurrent_blind_writes_are_siblings_until_a_merged_write_resolves_them() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    assert_eq!(c.put(1, "k", "a", None).await.0, 204);
    assert_eq!(c.put(2, "k", "b", None).await.0, 204);
    let (status, values, ctx) = c.get(3, "k").await;
    assert_eq!(status, 300);
    assert_eq!(values, vec!["a", "b"]);
    // The multipart form carries both siblings too.
    let url = c.url(3, "k");
    let resp = c.client.get(url).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 300);
    let ctype = common::header(&resp, "content-type").expect("content type");
    assert!(ctype.starts_with("multipart/mixed; boundary="), "{ctype}");
    let body = resp.text().await.expect("body");
    assert!(
        body.contains("\r\n\r\na\r\n") && body.contains("\r\n\r\nb\r\n"),
        "{body}"
    );
    // Writing back with the merged context resolves them.
    assert_eq!(c.put(3, "k", "ab", ctx.as_deref()).await.0, 204);
    for id in 1..=3 {
        let (status, values, _) = c.get(id, "k").await;
        assert_eq!((status, values), (200, vec!["ab".to_string()]));
    }
}

#[tokio::test]
async fn a_delete_answers_404_and_a_later_blind_put_is_not_hidden() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    assert_eq!(c.put(1, "k", "v", None).await.0, 204);
    let (_, _, ctx) = c.get(2, "k").await;
    let url = c.url(2, "k");
    let resp = c
        .client
        .delete(url)
        .header(CONTEXT_HEADER, ctx.expect("context"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status().as_u16(), 204);
    for id in 1..=3 {
        let (status, values, ctx) = c.get(id, "k").await;
        assert_eq!(status, 404);
        assert!(values.is_empty());
        assert!(ctx.is_some(), "a deleted key still has history");
    }
    assert_eq!(c.put(3, "k", "again", None).await.0, 204);
    let (status, values, _) = c.get(1, "k").await;
    assert_eq!((status, values), (200, vec!["again".to_string()]));
}

#[tokio::test]
async fn with_two_of_three_nodes_down_quorum_requests_answer_503() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    assert_eq!(c.put(1, "k", "v", None).await.0, 204);
    c.stop(2);
    c.stop(3);
    let url = c.url(1, "k");
    let resp = c
        .client
        .put(url.clone())
        .body("w")
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status().as_u16(), 503);
    let body = resp.text().await.expect("body");
    assert!(body.contains("reached 1 of 2"), "{body}");
    let resp = c.client.get(url.clone()).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.text().await.expect("body").contains("reached 1 of 2"));
    // R=1 and W=1 still work on the surviving replica. The write that failed for want of W
    // was still stored there (as in Dynamo) and, being blind, is a sibling of the first.
    let resp = c
        .client
        .get(format!("{url}?r=1"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 300);
    let body = resp.text().await.expect("body");
    assert!(
        body.contains("\"dg==\"") && body.contains("\"dw==\""),
        "v and w: {body}"
    );
    let resp = c
        .client
        .put(format!("{url}?w=1"))
        .body("x")
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status().as_u16(), 204);
}

#[tokio::test]
async fn admin_endpoints_and_metrics_describe_the_cluster() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    assert_eq!(c.put(1, "k", "v", None).await.0, 204);
    assert_eq!(c.get(1, "k").await.0, 200);
    let base = format!("http://{}", c.nodes[0].http);
    let ring = common::get_json(&c.client, &format!("{base}/admin/ring")).await;
    assert_eq!(ring["partitions"], 16);
    assert_eq!(ring["owners"].as_array().map(Vec::len), Some(16));
    let nodes = common::get_json(&c.client, &format!("{base}/admin/nodes")).await;
    let nodes = nodes.as_array().expect("array");
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes.iter().filter(|n| n["self"] == true).count(), 1);
    let total: u64 = nodes
        .iter()
        .map(|n| n["partitions"].as_u64().expect("count"))
        .sum();
    assert_eq!(total, 16);
    let metrics = common::get_text(&c.client, &format!("{base}/metrics")).await;
    for line in [
        "shoal_requests_total{op=\"put\",outcome=\"ok\"} 1",
        "shoal_requests_total{op=\"get\",outcome=\"ok\"} 1",
        "shoal_request_duration_seconds_count{op=\"put\",outcome=\"ok\"} 1",
        "shoal_read_siblings_count 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("shoal_replica_responses_total "));
    // The put was committed by this node's group-commit writer at least once.
    let commits = sample(&metrics, "shoal_storage_commit_batch_writes_sum");
    assert!(commits >= 1.0, "{commits}");
    assert!(sample(&metrics, "shoal_storage_bytes") > 0.0);
    assert!(metrics.ends_with("# EOF\n"));
}

/// The value of the unlabelled sample `name` in a Prometheus exposition.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
}

/// The state node `from` reports for node `of` in `/admin/nodes`.
async fn seen_state(c: &mut Cluster, from: u64, of: u64) -> String {
    let url = format!("http://{}/admin/nodes", c.nodes[(from - 1) as usize].http);
    let nodes = common::get_json(&c.client, &url).await;
    nodes
        .as_array()
        .expect("array")
        .iter()
        .find(|n| n["id"] == of)
        .map(|n| n["status"]["state"].as_str().unwrap_or("?").to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_test_builds_fault_switch_cuts_a_peer_off_and_the_detector_sees_it() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen_state(&mut c, 1, 2).await != "up" {
        assert!(std::time::Instant::now() < deadline, "node 2 never came up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for (on, peer) in [(1u64, 2u64), (2, 1)] {
        let url = format!("http://{}/admin/faults", c.nodes[(on - 1) as usize].http);
        let resp = c
            .client
            .post(url)
            .body(format!(r#"{{"peer": {peer}, "partitioned": true}}"#))
            .send()
            .await
            .expect("POST");
        assert_eq!(
            resp.status().as_u16(),
            204,
            "the faults feature is on in tests"
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen_state(&mut c, 1, 2).await == "up" {
        assert!(
            std::time::Instant::now() < deadline,
            "node 1 still sees node 2 up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Writes through node 1 still reach W = 2 through node 3.
    assert_eq!(c.put(1, "k", "v", None).await.0, 204);
    // Node 3 holds it, node 2 (cut off) does not: /admin/local reads one node's own copy.
    let local = |id: u64| format!("http://{}/admin/local/k", c.nodes[(id - 1) as usize].http);
    let three = common::get_json(&c.client, &local(3)).await;
    assert_eq!(three["values"], serde_json::json!(["dg=="]));
    assert_eq!(three["replica"], true);
    let two = c.client.get(local(2)).send().await.expect("GET");
    assert_eq!(two.status().as_u16(), 404);
}

#[tokio::test]
async fn a_wiped_replica_is_refilled_by_anti_entropy_without_reads() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    for i in 0..50 {
        assert_eq!(c.put(1, &format!("k{i}"), "v", None).await.0, 204);
    }
    // Node 3 loses its disk: data directory and identity file.
    c.stop(3);
    let data = c.data_dir(3);
    std::fs::remove_dir_all(&data).expect("wipe");
    let mut identity = data.into_os_string();
    identity.push(".identity");
    std::fs::remove_file(identity).expect("wipe the identity file");
    c.restart(3).await;
    let local = |c: &Cluster, key: &str| format!("http://{}/admin/local/{key}", c.nodes[2].http);
    // No client reads and no buffered messages: only anti-entropy can refill node 3.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut missing: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    while !missing.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "still missing on node 3 after 60 s: {missing:?}"
        );
        let mut still = Vec::new();
        for key in missing {
            let status = c
                .client
                .get(local(&c, &key))
                .send()
                .await
                .expect("GET")
                .status();
            if status.as_u16() != 200 {
                still.push(key);
            }
        }
        missing = still;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let metrics = common::get_text(&c.client, &format!("http://{}/metrics", c.nodes[2].http)).await;
    assert!(
        metrics.contains("shoal_aae_seconds_since_exchange{partition="),
        "{metrics}"
    );
}
