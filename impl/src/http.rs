//! The client HTTP API, exactly as DESIGN.md's contract: `GET/PUT/DELETE /kv/{key}` with
//! `X-Shoal-Context`, siblings as `300 multipart/mixed` (or JSON), per-request `?r=`/`?w=`,
//! `503` with how many replicas answered, and `400`/`413` for bad input, which never reaches
//! the core. Also `/admin/ring`, `/admin/nodes`, `/health` and `/metrics`.

use crate::client::{json_body, multipart_body, wants_json, CONTEXT_HEADER, SIBLINGS_HEADER};
use crate::core::{PeerHealth, MAX_KEY_LEN};
use crate::dvvset::VersionVector;
use crate::ids::NodeId;
use crate::metrics::Metrics;
use crate::node::{Input, NodeHandle};
use crate::protocol::{ClientOp, ClientReply};
use crate::value::Value;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

/// State shared by the handlers.
#[derive(Clone)]
struct Api {
    node: NodeHandle,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
}

/// How much client work a node takes at once: requests in flight, and bytes of request
/// bodies held. Both are taken before a body is read, so a flood of uploads costs at most
/// `request_bytes` of memory; what does not fit is told to come back (`503`, `Retry-After`).
struct Admission {
    requests: Arc<Semaphore>,
    /// Permits are KiB of request body.
    kib: Arc<Semaphore>,
    max_value: usize,
}

/// KiB, rounded up, that a body of `bytes` takes from the budget.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Builds the router for a running node.
pub fn router(node: NodeHandle) -> Router {
    let limit = node.config.max_value_bytes;
    let admission = Arc::new(Admission {
        requests: Arc::new(Semaphore::new(node.config.max_in_flight)),
        kib: Arc::new(Semaphore::new(kib(node.config.request_bytes) as usize)),
        max_value: limit,
    });
    let api = Api {
        metrics: node.metrics.clone(),
        node,
        admission,
    };
    let kv = Router::new()
        .route("/kv/{key}", get(get_key).put(put_key).delete(delete_key))
        .layer(axum::middleware::from_fn_with_state(api.clone(), admit));
    Router::new()
        .merge(kv)
        .route("/admin/ring", get(admin_ring))
        .route("/admin/nodes", get(admin_nodes))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/admin/faults", axum::routing::post(admin_faults))
        .route("/admin/local/{key}", get(admin_local))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

/// Admits a `/kv` request if the node has room for it (a request slot, and budget for its
/// body, counted from `Content-Length` or, without one, as the largest value), else `503`
/// with `Retry-After` before reading anything.
async fn admit(
    State(api): State<Api>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let busy = |what: &str| {
        api.metrics.record("admission", "busy", 0.0);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            format!("the node is busy ({what}); retry shortly\n"),
        )
            .into_response()
    };
    let Ok(slot) = api.admission.requests.clone().try_acquire_owned() else {
        return busy("too many requests in flight");
    };
    let body = match request.method() {
        &axum::http::Method::GET | &axum::http::Method::DELETE => 0,
        _ => request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(api.admission.max_value, |n| n.min(api.admission.max_value)),
    };
    let bytes = if body > 0 {
        match api.admission.kib.clone().try_acquire_many_owned(kib(body)) {
            Ok(p) => Some(p),
            Err(_) => return busy("too many bytes of requests held"),
        }
    } else {
        None
    };
    let response = next.run(request).await;
    drop((slot, bytes));
    response
}

/// Per-request quorum overrides, as text so that bad numbers get our own message.
#[derive(Deserialize, Default)]
struct Quorum {
    r: Option<String>,
    w: Option<String>,
    pr: Option<String>,
    pw: Option<String>,
}

fn bad(reason: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, format!("{}\n", reason.into())).into_response()
}

fn check_key(key: &str) -> Result<Bytes, String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "key must be 1 to {MAX_KEY_LEN} bytes, got {}",
            key.len()
        ));
    }
    Ok(Bytes::copy_from_slice(key.as_bytes()))
}

fn quorum(value: &Option<String>, name: &str, n: usize) -> Result<Option<usize>, String> {
    match value {
        None => Ok(None),
        Some(text) => match text.parse::<usize>() {
            Ok(q) if (1..=n).contains(&q) => Ok(Some(q)),
            _ => Err(format!(
                "{name} must be a whole number from 1 to N = {n}, got {text:?}"
            )),
        },
    }
}

/// `?pr=` / `?pw=`: how many of the answers must come from primary replicas (0..=N).
fn primaries(value: &Option<String>, name: &str, n: usize) -> Result<Option<usize>, String> {
    match value {
        None => Ok(None),
        Some(text) => match text.parse::<usize>() {
            Ok(q) if q <= n => Ok(Some(q)),
            _ => Err(format!(
                "{name} must be a whole number from 0 to N = {n}, got {text:?}"
            )),
        },
    }
}

fn context(headers: &HeaderMap) -> Result<VersionVector, String> {
    match headers.get(CONTEXT_HEADER) {
        None => Ok(VersionVector::new()),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| "X-Shoal-Context is not ASCII".to_string())?;
            VersionVector::from_context_str(text)
                .map_err(|e| format!("malformed X-Shoal-Context: {e}"))
        }
    }
}

fn with_context(mut response: Response, ctx: &VersionVector) -> Response {
    if !ctx.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&ctx.to_context_string()) {
            response.headers_mut().insert(CONTEXT_HEADER, v);
        }
    }
    response
}

/// Hands `op` to the core and waits for its answer. `None`: the core did not answer in twice
/// the request timeout (it is overloaded or stopping).
async fn call(api: &Api, op: ClientOp) -> Option<ClientReply> {
    let recorded = api.node.recorder.as_ref().map(|r| (r, r.invoke(&op)));
    let reply = ask_core(api, op).await;
    if let Some((recorder, id)) = recorded {
        recorder.complete(id, reply.as_ref());
    }
    reply
}

async fn ask_core(api: &Api, op: ClientOp) -> Option<ClientReply> {
    let (tx, rx) = oneshot::channel();
    let timeout = Duration::from_millis(api.node.config.request_timeout_ms) * 2;
    api.node
        .inputs
        .send(Input::Client { op, reply: tx })
        .await
        .ok()?;
    tokio::time::timeout(timeout, rx).await.ok()?.ok()
}

fn no_answer() -> Outcome {
    (
        "unavailable",
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the node did not answer in time (overloaded or shutting down); a write may still be stored\n",
        )
            .into_response(),
    )
}

fn unavailable(what: &str, required: usize, answered: usize) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "{what} reached {answered} of {required} required replicas; a write may still be stored and appear later\n"
        ),
    )
        .into_response()
}

async fn get_key(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<Quorum>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let (outcome, response) = match get_inner(&api, &key, &q, &headers).await {
        Ok(x) | Err(x) => x,
    };
    api.metrics
        .record("get", outcome, started.elapsed().as_secs_f64());
    response
}

type Outcome = (&'static str, Response);

async fn get_inner(
    api: &Api,
    key: &str,
    q: &Quorum,
    headers: &HeaderMap,
) -> Result<Outcome, Outcome> {
    let n = api.node.config.n;
    let key = check_key(key).map_err(|e| ("bad_request", bad(e)))?;
    let r = quorum(&q.r, "r", n).map_err(|e| ("bad_request", bad(e)))?;
    let pr = primaries(&q.pr, "pr", n).map_err(|e| ("bad_request", bad(e)))?;
    if q.w.is_some() || q.pw.is_some() {
        return Err(("bad_request", bad("w applies to writes; use r for reads")));
    }
    let json = wants_json(
        headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    match call(api, ClientOp::Get { key, r, pr })
        .await
        .ok_or_else(no_answer)?
    {
        ClientReply::Found { values, context } => {
            let status = match values.len() {
                0 => StatusCode::NOT_FOUND,
                1 => StatusCode::OK,
                _ => StatusCode::MULTIPLE_CHOICES,
            };
            if !values.is_empty() {
                api.metrics.siblings.observe(values.len() as f64);
            }
            let outcome = match values.len() {
                0 => "not_found",
                1 => "ok",
                _ => "siblings",
            };
            let response = if json {
                let context = (!context.is_empty()).then(|| context.to_context_string());
                let body = json_body(&values, context.as_deref());
                (status, [("content-type", "application/json")], body).into_response()
            } else {
                match values.as_slice() {
                    [] => (status, "not found\n").into_response(),
                    [one] => (
                        status,
                        [("content-type", "application/octet-stream")],
                        one.clone(),
                    )
                        .into_response(),
                    many => multipart(status, many),
                }
            };
            Ok((outcome, with_context(response, &context)))
        }
        ClientReply::Unavailable { required, answered } => {
            Err(("unavailable", unavailable("read", required, answered)))
        }
        ClientReply::Invalid(reason) => Err(("bad_request", bad(reason))),
        ClientReply::Stored { .. } | ClientReply::TooLarge(_) | ClientReply::Stale(_) => {
            Err(("error", StatusCode::INTERNAL_SERVER_ERROR.into_response()))
        }
    }
}

/// Siblings as `multipart/mixed`, one `application/octet-stream` part per value.
fn multipart(status: StatusCode, values: &[Bytes]) -> Response {
    let (content_type, body) = multipart_body(values);
    (status, [("content-type", content_type)], body).into_response()
}

async fn put_key(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<Quorum>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(api, "put", key, q, headers, Value::Data(body)).await
}

async fn delete_key(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<Quorum>,
    headers: HeaderMap,
) -> Response {
    write(api, "delete", key, q, headers, Value::Tombstone).await
}

async fn write(
    api: Api,
    op: &'static str,
    key: String,
    q: Quorum,
    headers: HeaderMap,
    value: Value,
) -> Response {
    let started = Instant::now();
    let (outcome, response) = match write_inner(&api, &key, &q, &headers, value).await {
        Ok(x) | Err(x) => x,
    };
    api.metrics
        .record(op, outcome, started.elapsed().as_secs_f64());
    response
}

async fn write_inner(
    api: &Api,
    key: &str,
    q: &Quorum,
    headers: &HeaderMap,
    value: Value,
) -> Result<Outcome, Outcome> {
    let n = api.node.config.n;
    let key = check_key(key).map_err(|e| ("bad_request", bad(e)))?;
    let w = quorum(&q.w, "w", n).map_err(|e| ("bad_request", bad(e)))?;
    let pw = primaries(&q.pw, "pw", n).map_err(|e| ("bad_request", bad(e)))?;
    if q.r.is_some() || q.pr.is_some() {
        return Err(("bad_request", bad("r applies to reads; use w for writes")));
    }
    let context = context(headers).map_err(|e| ("bad_request", bad(e)))?;
    match call(
        api,
        ClientOp::Put {
            key,
            value,
            context,
            w,
            pw,
        },
    )
    .await
    .ok_or_else(no_answer)?
    {
        ClientReply::Stored { context, siblings } => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            response
                .headers_mut()
                .insert(SIBLINGS_HEADER, HeaderValue::from(siblings));
            Ok(("ok", with_context(response, &context)))
        }
        ClientReply::Unavailable { required, answered } => {
            Err(("unavailable", unavailable("write", required, answered)))
        }
        ClientReply::Invalid(reason) => Err(("bad_request", bad(reason))),
        ClientReply::Stale(reason) => Err((
            "stale_context",
            (
                StatusCode::CONFLICT,
                [("retry-after", "1")],
                format!("{reason}\n"),
            )
                .into_response(),
        )),
        ClientReply::TooLarge(reason) => Err((
            "too_many_siblings",
            (StatusCode::CONFLICT, format!("{reason}\n")).into_response(),
        )),
        ClientReply::Found { .. } => {
            Err(("error", StatusCode::INTERNAL_SERVER_ERROR.into_response()))
        }
    }
}

async fn admin_ring(State(api): State<Api>) -> Response {
    let ring = &api.node.ring;
    let body = serde_json::json!({
        "version": ring.version(),
        "partitions": ring.partitions(),
        "n": api.node.config.n,
        "owners": ring.owners().iter().map(|id| id.0).collect::<Vec<_>>(),
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// The core's counters and what it believes of its peers.
async fn core_state(api: &Api) -> (crate::core::Stats, Vec<(NodeId, PeerHealth)>) {
    let (tx, rx) = oneshot::channel();
    if api.node.inputs.send(Input::Stats(tx)).await.is_ok() {
        rx.await.unwrap_or_default()
    } else {
        Default::default()
    }
}

async fn admin_nodes(State(api): State<Api>) -> Response {
    let owned = api.node.ring.owned_counts();
    let (_, health) = core_state(&api).await;
    let me = api.node.config.id;
    let nodes: Vec<serde_json::Value> = api
        .node
        .config
        .nodes
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "http": m.http.to_string(),
                "peer": m.peer.to_string(),
                "zone": m.zone,
                "partitions": owned.get(&NodeId(m.id)).copied().unwrap_or(0),
                "self": m.id == me,
                "status": status(m.id == me, health.iter().find(|(id, _)| id.0 == m.id).map(|(_, h)| *h)),
            })
        })
        .collect();
    (
        [("content-type", "application/json")],
        serde_json::Value::Array(nodes).to_string(),
    )
        .into_response()
}

/// `POST /admin/faults` with `{"peer": 2, "delay_ms": 50, "reset": 0.01, "partitioned": false}`:
/// sets the transport's fault switch for one peer (an all-default spec clears it). Only builds
/// with the `faults` feature (the test suite's) act on it; others answer `404`.
async fn admin_faults(State(api): State<Api>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct Request {
        peer: u64,
        #[serde(flatten)]
        spec: crate::transport::FaultSpec,
    }
    if !crate::transport::Faults::ENABLED {
        return (
            StatusCode::NOT_FOUND,
            "fault injection is compiled only into test builds\n",
        )
            .into_response();
    }
    match serde_json::from_slice::<Request>(&body) {
        Ok(r) => {
            api.node.transport.faults().set(NodeId(r.peer), r.spec);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(format!(
            "expected {{\"peer\": ID, \"delay_ms\": .., \"reset\": .., \"partitioned\": ..}}: {e}"
        )),
    }
}

/// `GET /admin/local/{key}`: this node's own durable clock of the key, without asking any
/// other replica — for operators and convergence checks. `{"replica": bool, "context":
/// "...", "values": ["<base64>"...], "tombstones": n}`; `404` when it holds no clock.
async fn admin_local(State(api): State<Api>, Path(key): Path<String>) -> Response {
    use crate::core::Store as _;
    let key = match check_key(&key) {
        Ok(k) => k,
        Err(e) => return bad(e),
    };
    let ring = &api.node.ring;
    let partition = ring.partition_of(&key);
    let replica = ring
        .preference_list(partition, api.node.config.n)
        .contains(&NodeId(api.node.config.id));
    match api
        .node
        .storage
        .load(&crate::core::storage_key(partition, &key))
    {
        Ok(Some(clock)) => {
            let values: Vec<Bytes> = clock
                .values()
                .into_iter()
                .filter_map(|v| v.data().cloned())
                .collect();
            let tombstones = clock.values().iter().filter(|v| v.is_tombstone()).count();
            let context = clock.join().to_context_string();
            let read: serde_json::Value =
                serde_json::from_str(&json_body(&values, Some(&context))).unwrap_or_default();
            let body = serde_json::json!({
                "replica": replica,
                "context": context,
                "values": read.get("values"),
                "tombstones": tombstones,
            });
            ([("content-type", "application/json")], body.to_string()).into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no clock for this key here\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// How a node looks from here, for `/admin/nodes`.
fn status(me: bool, health: Option<PeerHealth>) -> serde_json::Value {
    match (me, health) {
        (true, _) => serde_json::json!({"state": "self"}),
        (false, None) => serde_json::json!({"state": "unknown"}),
        (false, Some(h)) => serde_json::json!({
            "state": if h.healthy() { "up" } else if h.down { "down" } else { "suspected" },
            "connected": !h.down,
            "suspected": h.suspected,
            "since_ms": h.since.as_millis() as u64,
            "boot": h.boot,
        }),
    }
}

async fn metrics(State(api): State<Api>) -> Response {
    let (stats, health) = core_state(&api).await;
    let text = api.metrics.render(
        &stats,
        &health,
        api.node.storage.disk_space(),
        api.node.storage.approximate_keys(),
        api.node.transport.expired(),
    );
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
