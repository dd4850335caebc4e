//! `shoal baseline`: the client API served from memory, unreplicated — a yardstick, not a store.
//!
//! DESIGN.md ("Measuring") states speed goals as ratios against references measured in the
//! same run. This is the simplest such reference: one process, no replication, no disk, no
//! causality. It answers `GET`/`PUT`/`DELETE /kv/{key}` like a node (`200`/`404`/`204`, a
//! `X-Shoal-Context` on every answer about a key with history, the JSON form on
//! `Accept: application/json`), so `shoal bench` can drive it unchanged and show what the
//! machine, the HTTP stack and the load generator cost before any distribution is added.
//!
//! What it deliberately is not: the context is a per-key write counter in decimal, checked only
//! for syntax, and writes are last-writer-wins, so it never returns siblings (`300`); `?r=` and
//! `?w=` are accepted and ignored (there is one replica). The map is split into shards, each a
//! `Mutex<HashMap>`, so that two cores rarely wait on one lock.

use anyhow::Context as _;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};

use shoal::client::{json_body, wants_json, CONTEXT_HEADER};

/// Largest accepted value; larger bodies are refused with `413`.
const MAX_VALUE: usize = 1 << 20;
/// Longest accepted key, in bytes, as in the contract.
const MAX_KEY: usize = 1024;
/// Number of independently locked shards.
const SHARDS: usize = 64;

/// Arguments of `shoal baseline`.
#[derive(clap::Args, Debug)]
pub struct BaselineArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: String,
}

/// One key's state: how many writes it has seen, and its value unless deleted.
struct Entry {
    /// Writes and deletes so far; the context handed to clients.
    counter: u64,
    /// `None` after a delete (a tombstone: the key still has history).
    value: Option<Bytes>,
}

/// The whole store: shards of a hash map, and the hasher that picks a key's shard.
struct Store {
    /// `SHARDS` maps, each behind its own lock.
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    /// Picks the shard of a key.
    hasher: std::collections::hash_map::RandomState,
}

impl Store {
    /// An empty store.
    fn new() -> Self {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Runs `f` on the shard holding `key`.
    fn with_shard<T>(&self, key: &str, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let i = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        // `SHARDS` shards exist, so the index is always in range; fall back to the first.
        let shard = self.shards.get(i).or(self.shards.first());
        match shard {
            Some(m) => {
                // A panic while holding the lock cannot leave an entry half-written, so a
                // poisoned shard is still consistent.
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut map)
            }
            None => f(&mut HashMap::new()),
        }
    }
}

/// The shared server state.
type Shared = Arc<Store>;

/// A refusal: `400` with a reason, as the contract asks.
struct Refusal(&'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, format!("{}\n", self.0)).into_response()
    }
}

/// Checks the key length and the context syntax; `Err` is the reason to refuse.
fn check(key: &str, headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(Refusal("a key is 1 to 1024 bytes"));
    }
    match headers.get(CONTEXT_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or(Refusal("malformed X-Shoal-Context")),
    }
}

/// The context header for a counter.
fn context(counter: u64) -> (header::HeaderName, HeaderValue) {
    (
        header::HeaderName::from_static(CONTEXT_HEADER),
        HeaderValue::from(counter),
    )
}

/// `GET /kv/{key}`: `200` with the value, or `404`; the JSON form on request.
async fn get_kv(
    State(store): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = check(&key, &headers) {
        return refusal.into_response();
    }
    let found = store.with_shard(&key, |m| m.get(&key).map(|e| (e.counter, e.value.clone())));
    let json = wants_json(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let status = match &found {
        Some((_, Some(_))) => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    };
    let mut answer = if json {
        let values: Vec<Bytes> = match &found {
            Some((_, Some(v))) => vec![v.clone()],
            _ => Vec::new(),
        };
        let context = found.as_ref().map(|(c, _)| c.to_string());
        let body = json_body(&values, context.as_deref());
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        match &found {
            Some((_, Some(v))) => (status, v.clone()).into_response(),
            _ => status.into_response(),
        }
    };
    if let Some((counter, _)) = found {
        let (name, value) = context(counter);
        answer.headers_mut().insert(name, value);
    }
    answer
}

/// `PUT /kv/{key}`: stores the body (last writer wins) and answers `204` with the new context.
async fn put_kv(
    State(store): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = check(&key, &headers) {
        return refusal.into_response();
    }
    let counter = store.with_shard(&key, |m| {
        let e = m.entry(key.clone()).or_insert(Entry {
            counter: 0,
            value: None,
        });
        e.counter += 1;
        e.value = Some(body);
        e.counter
    });
    (StatusCode::NO_CONTENT, [context(counter)]).into_response()
}

/// `DELETE /kv/{key}`: leaves a tombstone (the key keeps its context) and answers `204`.
async fn delete_kv(
    State(store): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = check(&key, &headers) {
        return refusal.into_response();
    }
    store.with_shard(&key, |m| {
        if let Some(e) = m.get_mut(&key) {
            e.counter += 1;
            e.value = None;
        }
    });
    StatusCode::NO_CONTENT.into_response()
}

/// The router of the baseline server.
fn router() -> Router {
    Router::new()
        .route("/kv/{key}", get(get_kv).put(put_kv).delete(delete_kv))
        .layer(DefaultBodyLimit::max(MAX_VALUE))
        .with_state(Arc::new(Store::new()))
}

/// Serves until interrupted (Ctrl-C); prints the bound address first.
pub async fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("shoal baseline listening on {addr}");
    axum::serve(listener, router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}
