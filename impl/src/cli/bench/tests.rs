use super::stats::Stats;
use super::worker::Worker;
use super::*;
use hyper::StatusCode;
use shoal::client::CONTEXT_HEADER;

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    assert!(parse_duration("fast").is_err());
    assert!(parse_duration("3 days").is_err());
}

#[test]
fn merged_stats_add_up() {
    let mut a = Stats::new().expect("stats");
    let mut b = Stats::new().expect("stats");
    a.get.count = 2;
    a.get.hist.record(100).expect("in range");
    b.get.count = 3;
    b.get.hist.record(300).expect("in range");
    b.siblings_max = 4;
    b.errors.insert("status 503".into(), 1);
    a.merge(&b).expect("merge");
    assert_eq!(a.get.count, 5);
    assert_eq!(a.get.hist.len(), 2);
    assert_eq!(a.siblings_max, 4);
    assert_eq!(a.errors.get("status 503"), Some(&1));
}

/// What the fake node saw: `("get", key, None)` or `("put", key, context sent)`.
type Log = Arc<std::sync::Mutex<Vec<(&'static str, String, Option<String>)>>>;

/// A node that always answers GET with two siblings (context `g-{key}`) and PUT with a
/// fresh context `p-{n}`, logging what it was sent.
async fn fake_node() -> (SocketAddr, Log) {
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    let log: Log = Arc::default();
    let get = |State(log): State<Log>, Path(key): Path<String>| async move {
        log.lock().expect("log").push(("get", key.clone(), None));
        let body = format!(
            "--sep\r\nContent-Type: application/octet-stream\r\n\r\none-{key}\r\n\
             --sep\r\nContent-Type: application/octet-stream\r\n\r\ntwo\r\n--sep--\r\n"
        );
        (
            StatusCode::MULTIPLE_CHOICES,
            [
                ("content-type", "multipart/mixed; boundary=sep".to_owned()),
                (CONTEXT_HEADER, format!("g-{key}")),
            ],
            body,
        )
            .into_response()
    };
    let put = |State(log): State<Log>, Path(key): Path<String>, h: HeaderMap| async move {
        let sent = h
            .get(CONTEXT_HEADER)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let mut log = log.lock().expect("log");
        log.push(("put", key, sent));
        let n = log.len();
        (StatusCode::NO_CONTENT, [(CONTEXT_HEADER, format!("p-{n}"))]).into_response()
    };
    let app = axum::Router::new()
        .route("/kv/{key}", axum::routing::get(get).put(put))
        .with_state(Arc::clone(&log));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log)
}

#[tokio::test]
async fn a_worker_writes_with_the_last_context_and_counts_siblings() {
    let (addr, log) = fake_node().await;
    let plan = Arc::new(Plan {
        nodes: vec![Node {
            addr,
            host: HeaderValue::from_static("fake"),
        }],
        keys: 3,
        read_ratio: 0.5,
        value: Bytes::from_static(b"v"),
        get_query: String::new(),
        put_query: String::new(),
        timeout: Duration::from_secs(10),
        deadline: None,
        done: AtomicU64::new(0),
        contexts: Contexts::new(),
    });
    let stats = Worker::new(Arc::clone(&plan), 11, 0)
        .expect("worker")
        .run(Some(200))
        .await;
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(stats.get.count + stats.put.count, 200);
    assert!(stats.get.count > 50 && stats.put.count > 50);
    assert_eq!(stats.sibling_answers, stats.get.count);
    assert_eq!(stats.siblings_total, 2 * stats.get.count);
    assert_eq!(stats.siblings_max, 2);
    assert_eq!(plan.done.load(Ordering::Relaxed), 200);

    // Replay the log: one sequential worker, so the node saw its exact order. Every PUT
    // must carry the last context the node handed out for that key (none before any).
    let log = log.lock().expect("log");
    assert_eq!(log.len(), 200);
    let mut last: HashMap<String, String> = HashMap::new();
    for (i, (op, key, sent)) in log.iter().enumerate() {
        if *op == "get" {
            last.insert(key.clone(), format!("g-{key}"));
        } else {
            assert_eq!(sent.as_ref(), last.get(key), "put #{i} on {key}");
            last.insert(key.clone(), format!("p-{}", i + 1));
        }
    }
}

#[test]
fn the_value_depends_only_on_the_seed() {
    assert_eq!(make_value(7, 64), make_value(7, 64));
    assert_ne!(make_value(7, 64), make_value(8, 64));
    assert_eq!(make_value(7, 10).len(), 10);
}
