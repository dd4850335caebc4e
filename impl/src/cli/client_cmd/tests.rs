use super::*;
use axum::http::StatusCode;
use bytes::Bytes;
use shoal::client::CONTEXT_HEADER;

#[test]
fn values_render_on_one_line() {
    assert_eq!(render(b"hello world"), "hello world");
    assert_eq!(render(b"two\nlines"), "b\"two\\nlines\"");
    assert_eq!(render(&[0xff, b'a']), "b\"\\xffa\"");
}

#[test]
fn describe_lists_every_sibling_and_the_context() {
    let read = Read {
        context: Some("abc".into()),
        values: vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")],
    };
    assert_eq!(
        describe(&read),
        "context: abc\nsiblings: 2\nsibling 1: x\nsibling 2: y\n"
    );
    let one = Read {
        context: None,
        values: vec![Bytes::from_static(b"v")],
    };
    assert_eq!(describe(&one), "value: v\n");
}

/// What the fake node was sent: method, key, query and context.
type Log = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Option<String>, Option<String>)>>>;

/// A node whose every key holds two siblings `a` and `b` under context `c1`, logging
/// every request.
async fn fake_node() -> (String, Log) {
    use axum::extract::{Path, RawQuery, State};
    use axum::http::{HeaderMap, Method};
    use axum::response::IntoResponse;
    let log: Log = Default::default();
    let handler = |State(log): State<Log>,
                   method: Method,
                   Path(key): Path<String>,
                   RawQuery(query): RawQuery,
                   headers: HeaderMap| async move {
        let ctx = headers
            .get(CONTEXT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        log.lock()
            .expect("log")
            .push((method.to_string(), key, query, ctx));
        if method == Method::GET {
            let body = r#"{"context":"c1","values":["YQ==","Yg=="]}"#;
            (StatusCode::MULTIPLE_CHOICES, [(CONTEXT_HEADER, "c1")], body).into_response()
        } else {
            (StatusCode::NO_CONTENT, [(CONTEXT_HEADER, "c2")]).into_response()
        }
    };
    let app = axum::Router::new()
        .route("/kv/{key}", axum::routing::any(handler))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log)
}

#[tokio::test]
async fn writes_send_back_the_context_they_read() {
    let (node, log) = fake_node().await;
    let found = client(&node)
        .expect("client")
        .get("k", Some(2))
        .await
        .expect("read");
    assert_eq!(found.context.as_deref(), Some("c1"));
    assert_eq!(
        found.values,
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );

    let put_args = |context: Option<&str>, blind: bool| PutArgs {
        key: "k".into(),
        value: "v".into(),
        node: node.clone(),
        r: None,
        w: Some(2),
        context: context.map(str::to_owned),
        blind,
    };
    put(put_args(None, false)).await.expect("put");
    put(put_args(None, true)).await.expect("blind put");
    put(put_args(Some("given"), false))
        .await
        .expect("put with context");
    delete(DeleteArgs {
        key: "k".into(),
        node: node.clone(),
        r: None,
        w: None,
        context: None,
    })
    .await
    .expect("delete");

    let seen: Vec<_> = log.lock().expect("log").clone();
    let q = |s: &str| Some(s.to_owned());
    assert_eq!(
        seen,
        vec![
            ("GET".into(), "k".into(), q("r=2"), None),
            // put: read first, then write with what was read
            ("GET".into(), "k".into(), None, None),
            ("PUT".into(), "k".into(), q("w=2"), q("c1")),
            // put --blind: no read, no context
            ("PUT".into(), "k".into(), q("w=2"), None),
            // put --context: no read, the given context
            ("PUT".into(), "k".into(), q("w=2"), q("given")),
            // delete: read first, then tombstone what was read
            ("GET".into(), "k".into(), None, None),
            ("DELETE".into(), "k".into(), None, q("c1")),
        ]
    );
}
