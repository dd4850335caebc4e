//! A small async client of one node, over reqwest.
//!
//! [`Client`] maps each call to one HTTP exchange and each answer to a typed result: a read
//! to [`Read`] (`200`, `300` and `404` are all answers), a write to [`Written`], anything else
//! to [`ClientError::Status`] with the node's reason. [`Session`] adds what Dynamo asks of a
//! client: it remembers the context of the last read or write of each key and sends it back
//! with the next write, so that write supersedes exactly what was seen.

use super::{kv_url, parse_json, Read, CONTEXT_HEADER, SIBLINGS_HEADER};
use bytes::Bytes;
use reqwest::StatusCode;
use std::collections::HashMap;

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or its answer not received.
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    /// The node answered with an error status (`400`, `413`, `503`, ...).
    #[error("the node answered {status}: {reason}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The node's reason, from the answer's body.
        reason: String,
    },
    /// The answer does not follow the contract.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl ClientError {
    /// The HTTP status of an error answer, if the node gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What a write's answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The new context: covers the value just written and what its context covered.
    pub context: Option<String>,
    /// How many values (siblings) the key holds after the write, if the node said.
    pub siblings: Option<usize>,
}

/// A client of one node.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    node: String,
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Turns an error answer into [`ClientError::Status`] with the node's reason.
async fn refused(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let reason = resp.text().await.unwrap_or_default().trim().to_owned();
    ClientError::Status { status, reason }
}

impl Client {
    /// A client of the node whose HTTP address is `node` (`host:port`), without proxies (nodes
    /// are on the loopback or a private network).
    pub fn new(node: impl Into<String>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder().no_proxy().build()?;
        Ok(Client::with_http(http, node))
    }

    /// A client sharing an existing reqwest client (and its connection pool).
    pub fn with_http(http: reqwest::Client, node: impl Into<String>) -> Client {
        Client {
            http,
            node: node.into(),
        }
    }

    /// The node's HTTP address.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Reads `key` (quorum `r`, or the cluster's) in the JSON form, which carries every
    /// sibling and the context in one body.
    pub async fn get(&self, key: &str, r: Option<usize>) -> Result<Read, ClientError> {
        let url = kv_url(&self.node, key, r.map(|r| ("r", r)));
        let resp = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        let status = resp.status();
        if !matches!(
            status,
            StatusCode::OK | StatusCode::MULTIPLE_CHOICES | StatusCode::NOT_FOUND
        ) {
            return Err(refused(resp).await);
        }
        let header_context = header(&resp, CONTEXT_HEADER);
        let body = resp.bytes().await?;
        // A 404 may come with a body that is not JSON (from a proxy, say): only its context
        // matters then.
        let read = match parse_json(&body) {
            Ok(read) => read,
            Err(_) if status == StatusCode::NOT_FOUND => Read::default(),
            Err(e) => return Err(e),
        };
        // The status and the values must tell the same story (one value: 200; several: 300;
        // none: 404), so a caller may rely on either.
        let n = read.values.len();
        let consistent = match status {
            StatusCode::OK => n == 1,
            StatusCode::MULTIPLE_CHOICES => n >= 2,
            _ => n == 0,
        };
        if !consistent {
            return Err(ClientError::Malformed(format!(
                "answered {status} yet listed {n} values"
            )));
        }
        Ok(Read {
            context: read.context.or(header_context),
            values: read.values,
        })
    }

    /// Writes `value` under `key`, superseding what `context` covers (`None`: a blind write,
    /// concurrent with everything stored), with write quorum `w` or the cluster's.
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        context: Option<&str>,
        w: Option<usize>,
    ) -> Result<Written, ClientError> {
        let url = kv_url(&self.node, key, w.map(|w| ("w", w)));
        let mut req = self.http.put(&url).body(value.into());
        if let Some(ctx) = context {
            req = req.header(CONTEXT_HEADER, ctx);
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            return Err(refused(resp).await);
        }
        Ok(Written {
            context: header(&resp, CONTEXT_HEADER),
            siblings: header(&resp, SIBLINGS_HEADER).and_then(|s| s.parse().ok()),
        })
    }

    /// Deletes what `context` covers under `key` (a tombstone; other siblings stay).
    pub async fn delete(
        &self,
        key: &str,
        context: &str,
        w: Option<usize>,
    ) -> Result<(), ClientError> {
        let url = kv_url(&self.node, key, w.map(|w| ("w", w)));
        let resp = self
            .http
            .delete(&url)
            .header(CONTEXT_HEADER, context)
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(refused(resp).await);
        }
        Ok(())
    }
}

/// A client that remembers, per key, the context of its last read or write and sends it back
/// with the next write: the read-modify-write discipline Dynamo asks of its clients.
#[derive(Clone, Debug)]
pub struct Session {
    client: Client,
    contexts: HashMap<String, String>,
}

impl Session {
    /// A session over `client`, knowing no context yet.
    pub fn new(client: Client) -> Session {
        Session {
            client,
            contexts: HashMap::new(),
        }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The context remembered for `key`.
    pub fn context(&self, key: &str) -> Option<&str> {
        self.contexts.get(key).map(String::as_str)
    }

    fn remember(&mut self, key: &str, context: Option<String>) {
        match context {
            Some(c) => {
                self.contexts.insert(key.to_owned(), c);
            }
            None => {
                self.contexts.remove(key);
            }
        }
    }

    /// Reads `key` and remembers its context.
    pub async fn get(&mut self, key: &str) -> Result<Read, ClientError> {
        let read = self.client.get(key, None).await?;
        self.remember(key, read.context.clone());
        Ok(read)
    }

    /// Writes `value` with the remembered context (blind if none) and remembers the new one.
    pub async fn put(
        &mut self,
        key: &str,
        value: impl Into<Bytes>,
    ) -> Result<Written, ClientError> {
        let context = self.contexts.get(key).cloned();
        let written = self
            .client
            .put(key, value, context.as_deref(), None)
            .await?;
        self.remember(key, written.context.clone());
        Ok(written)
    }

    /// Deletes what the remembered context covers; without one there is nothing it covers.
    pub async fn delete(&mut self, key: &str) -> Result<bool, ClientError> {
        let Some(context) = self.contexts.get(key).cloned() else {
            return Ok(false);
        };
        self.client.delete(key, &context, None).await?;
        Ok(true)
    }
}
