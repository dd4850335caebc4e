//! One closed-loop client: its RNG, one keep-alive connection per node, and the loop that
//! picks an operation, sends it and records the answer.

use super::stats::Stats;
use super::{Op, Plan};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use shoal::client::{multipart_boundary, parse_multipart, CONTEXT_HEADER};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The successful outcome of one request.
pub(super) enum Answer {
    /// GET `200`.
    Found,
    /// GET `404`.
    NotFound,
    /// GET `300` with this many siblings.
    Siblings(u64),
    /// PUT `2xx`.
    Written,
}

/// One closed-loop client: its RNG and its connections.
pub(super) struct Worker {
    /// The shared plan.
    plan: Arc<Plan>,
    /// Seeded by `(seed, worker index)`.
    rng: StdRng,
    /// One keep-alive connection per node, opened on first use and after a failure.
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
    /// Index of the node the next request goes to.
    next_node: usize,
    /// What this worker observed.
    stats: Stats,
    /// Reused buffer for the request path.
    path: String,
}

impl Worker {
    /// Worker number `index` of a run seeded with `seed`.
    pub(super) fn new(plan: Arc<Plan>, seed: u64, index: usize) -> anyhow::Result<Self> {
        let nodes = plan.nodes.len().max(1);
        Ok(Worker {
            // Distinct, reproducible streams: the seed and the worker index, well mixed.
            rng: StdRng::seed_from_u64(
                seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            conns: (0..nodes).map(|_| None).collect(),
            next_node: index % nodes,
            stats: Stats::new()?,
            path: String::with_capacity(64),
            plan,
        })
    }

    /// Runs `quota` operations (or until the deadline) and returns what was observed.
    pub(super) async fn run(mut self, quota: Option<u64>) -> Stats {
        let mut n = 0u64;
        loop {
            if quota.is_some_and(|q| n >= q)
                || self.plan.deadline.is_some_and(|d| Instant::now() >= d)
            {
                return self.stats;
            }
            n += 1;
            let op = if self.rng.gen_bool(self.plan.read_ratio) {
                Op::Get
            } else {
                Op::Put
            };
            let key = self.rng.gen_range(0..self.plan.keys);
            let node = self.next_node;
            self.next_node = (self.next_node + 1) % self.plan.nodes.len();
            let started = Instant::now();
            let outcome =
                match tokio::time::timeout(self.plan.timeout, self.request(node, op, key)).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        // The connection may be mid-answer; never reuse it.
                        if let Some(slot) = self.conns.get_mut(node) {
                            *slot = None;
                        }
                        Err("timeout".to_owned())
                    }
                };
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let s = &mut self.stats;
            let per_op = match op {
                Op::Get => &mut s.get,
                Op::Put => &mut s.put,
            };
            per_op.count += 1;
            match outcome {
                Ok(answer) => {
                    per_op.hist.saturating_record(micros.max(1));
                    match answer {
                        Answer::Found => s.found += 1,
                        Answer::NotFound => s.not_found += 1,
                        Answer::Siblings(k) => {
                            s.sibling_answers += 1;
                            s.siblings_total += k;
                            s.siblings_max = s.siblings_max.max(k);
                        }
                        Answer::Written => {}
                    }
                }
                Err(kind) => {
                    per_op.errors += 1;
                    *s.errors.entry(kind).or_default() += 1;
                }
            }
            self.plan.done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The live connection to node `i`, opening one if needed.
    async fn connection(&mut self, i: usize) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        let node = self.plan.nodes.get(i).ok_or("no such node")?;
        let slot = self.conns.get_mut(i).ok_or("no such node")?;
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            let stream = match tokio::net::TcpStream::connect(node.addr).await {
                Ok(s) => s,
                Err(e) => {
                    // A node that is down would otherwise turn the loop into a busy spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    return Err(format!("connect: {:?}", e.kind()));
                }
            };
            stream
                .set_nodelay(true)
                .map_err(|e| format!("connect: {:?}", e.kind()))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("transport: {e}"))?;
            tokio::spawn(async move {
                // Ends when the worker drops its sender or the peer closes; either is fine.
                let _ = conn.await;
            });
            *slot = Some(sender);
        }
        slot.as_mut().ok_or_else(|| "no connection".to_owned())
    }

    /// Sends one request to node `i` and reads the whole answer.
    async fn request(&mut self, i: usize, op: Op, key: u64) -> Result<Answer, String> {
        use std::fmt::Write as _;
        let plan = Arc::clone(&self.plan);
        let node = plan.nodes.get(i).ok_or("no such node")?;
        self.path.clear();
        let query = match op {
            Op::Get => &plan.get_query,
            Op::Put => &plan.put_query,
        };
        let _ = write!(self.path, "/kv/bench-{key}{query}");
        let uri = Uri::try_from(self.path.as_str()).map_err(|e| format!("uri: {e}"))?;
        let body = match op {
            Op::Get => Full::new(Bytes::new()),
            Op::Put => Full::new(plan.value.clone()),
        };
        let mut req = Request::new(body);
        *req.uri_mut() = uri;
        req.headers_mut().insert(HOST, node.host.clone());
        if op == Op::Put {
            *req.method_mut() = Method::PUT;
            if let Some(ctx) = self.plan.contexts.get(key) {
                req.headers_mut().insert(CONTEXT_HEADER, ctx);
            }
        }
        let result = self.exchange(i, req).await;
        if result.is_err() {
            // After a transport error the connection's state is unknown: start afresh.
            if let Some(slot) = self.conns.get_mut(i) {
                *slot = None;
            }
        }
        let (status, headers, body) = result?;
        if let Some(ctx) = headers.get(CONTEXT_HEADER) {
            self.plan.contexts.set(key, ctx)?;
        }
        match (op, status) {
            (Op::Get, StatusCode::OK) => Ok(Answer::Found),
            (Op::Get, StatusCode::NOT_FOUND) => Ok(Answer::NotFound),
            (Op::Get, StatusCode::MULTIPLE_CHOICES) => {
                let boundary = headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(multipart_boundary)
                    .ok_or("300 without a multipart boundary")?;
                let parts = parse_multipart(&body, boundary)
                    .map_err(|_| "300 with a malformed multipart body".to_owned())?;
                Ok(Answer::Siblings(parts.len() as u64))
            }
            (Op::Put, s) if s.is_success() => Ok(Answer::Written),
            (_, s) => Err(format!("status {}", s.as_u16())),
        }
    }

    /// Sends `req` on node `i`'s connection and collects the answer.
    async fn exchange(
        &mut self,
        i: usize,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
        let conn = self.connection(i).await?;
        conn.ready().await.map_err(|e| format!("transport: {e}"))?;
        let resp = conn
            .send_request(req)
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("transport: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}
