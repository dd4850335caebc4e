//! `shoal get | put | delete`: a small HTTP client for one key.
//!
//! The commands speak the client API of DESIGN.md ("Client HTTP API") to any node. They follow
//! the read-modify-write discipline Dynamo asks of clients: `put` and `delete` first read the
//! key's causal context and send it back, so the write supersedes exactly what was read (every
//! sibling included) instead of adding one more sibling. `put --blind` skips the read, and
//! `--context` supplies a context read earlier.

use anyhow::{bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::StatusCode;
use std::io::{Read as _, Write as _};

/// The header that carries the opaque causal context, both ways.
pub const CONTEXT_HEADER: &str = "X-Shoal-Context";

/// Bytes a key may hold unescaped in a path segment: RFC 3986's unreserved set. Everything
/// else is percent-encoded, so any key is exactly one segment.
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `key` as one URL path segment (`/` included), as the contract requires.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ESCAPES).to_string()
}

/// Arguments shared by the key commands.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// The key.
    pub key: String,
    /// Any node's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8701")]
    pub node: String,
    /// Read quorum for this request (`?r=`); the cluster's setting when absent.
    #[arg(long = "r")]
    pub r: Option<u32>,
    /// Print the value's raw bytes only (fails if the key has siblings or is absent): for scripts.
    #[arg(long)]
    pub raw: bool,
}

/// Arguments of `shoal put`.
#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value; `-` reads it from standard input.
    pub value: String,
    /// Any node's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8701")]
    pub node: String,
    /// Read quorum of the context read (`?r=`).
    #[arg(long = "r")]
    pub r: Option<u32>,
    /// Write quorum (`?w=`).
    #[arg(long = "w")]
    pub w: Option<u32>,
    /// Write with this context instead of reading one first.
    #[arg(long, conflicts_with = "blind")]
    pub context: Option<String>,
    /// Write without a context: the value becomes concurrent with everything stored.
    #[arg(long)]
    pub blind: bool,
}

/// Arguments of `shoal delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The key.
    pub key: String,
    /// Any node's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8701")]
    pub node: String,
    /// Read quorum of the context read (`?r=`).
    #[arg(long = "r")]
    pub r: Option<u32>,
    /// Write quorum of the tombstone (`?w=`).
    #[arg(long = "w")]
    pub w: Option<u32>,
    /// Delete what this context covers instead of reading one first.
    #[arg(long)]
    pub context: Option<String>,
}

/// What a `GET` found: the context (if the key has history) and the live values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// The opaque context to send back with the next write.
    pub context: Option<String>,
    /// The values: empty when absent or deleted, several when siblings.
    pub values: Vec<Bytes>,
}

/// The JSON form of a `GET` answer (`Accept: application/json`).
#[derive(serde::Deserialize)]
struct JsonRead {
    /// The context, if the key has history.
    #[serde(default)]
    context: Option<String>,
    /// Standard-base64 values, one per sibling.
    #[serde(default)]
    values: Vec<String>,
}

/// Builds `http://node/kv/{key}` with an optional quorum query parameter.
fn kv_url(node: &str, key: &str, quorum: Option<(&str, u32)>) -> String {
    let mut url = format!("http://{node}/kv/{}", encode_key(key));
    if let Some((name, n)) = quorum {
        url.push_str(&format!("?{name}={n}"));
    }
    url
}

/// A client without proxies (the nodes are on the loopback or a private network).
fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

/// Turns a non-success answer into an error that shows the node's reason.
async fn fail(what: &str, resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body = body.trim();
    if body.is_empty() {
        anyhow::anyhow!("{what}: node answered {status}")
    } else {
        anyhow::anyhow!("{what}: node answered {status}: {body}")
    }
}

/// Reads `key` in the JSON form, which carries every sibling and the context in one body.
async fn read(
    http: &reqwest::Client,
    node: &str,
    key: &str,
    r: Option<u32>,
) -> anyhow::Result<ReadResult> {
    let url = kv_url(node, key, r.map(|r| ("r", r)));
    let resp = http
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let header_context = context_of(resp.headers());
    match status {
        StatusCode::OK | StatusCode::MULTIPLE_CHOICES | StatusCode::NOT_FOUND => {}
        _ => return Err(fail(&format!("GET {url}"), resp).await),
    }
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("reading the answer of GET {url}"))?;
    // A 404 may come with an empty or non-JSON body; only its context matters.
    if status == StatusCode::NOT_FOUND && serde_json::from_slice::<JsonRead>(&body).is_err() {
        return Ok(ReadResult {
            context: header_context,
            values: Vec::new(),
        });
    }
    let parsed: JsonRead = serde_json::from_slice(&body)
        .with_context(|| format!("GET {url}: the answer is not the JSON the contract promises"))?;
    let values = parsed
        .values
        .iter()
        .map(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map(Bytes::from)
                .with_context(|| format!("GET {url}: a value is not standard base64"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if status == StatusCode::NOT_FOUND && !values.is_empty() {
        bail!("GET {url}: answered 404 yet listed {} values", values.len());
    }
    // A key without history may come with an empty context: there is nothing to send back.
    let context = parsed.context.or(header_context).filter(|c| !c.is_empty());
    Ok(ReadResult { context, values })
}

/// The context header's value, if present and printable.
fn context_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get(CONTEXT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Shows a value on one line: as text when it is printable UTF-8, else as an escaped byte
/// string `b"..."`, so a sibling never spills over several lines.
pub fn render(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => format!("b\"{}\"", value.escape_ascii()),
    }
}

/// Formats a read for people: the context, then one line per value.
pub fn describe(read: &ReadResult) -> String {
    let mut out = String::new();
    if let Some(ctx) = &read.context {
        out.push_str(&format!("context: {ctx}\n"));
    }
    match read.values.as_slice() {
        [] => out.push_str("not found\n"),
        [one] => out.push_str(&format!("value: {}\n", render(one))),
        many => {
            out.push_str(&format!("siblings: {}\n", many.len()));
            for (i, v) in many.iter().enumerate() {
                out.push_str(&format!("sibling {}: {}\n", i + 1, render(v)));
            }
        }
    }
    out
}

/// `shoal get KEY`: prints the context and every sibling; exits non-zero when not found.
pub async fn get(args: KeyArgs) -> anyhow::Result<()> {
    let http = client()?;
    let found = read(&http, &args.node, &args.key, args.r).await?;
    if args.raw {
        return match found.values.as_slice() {
            [one] => {
                let mut out = std::io::stdout().lock();
                out.write_all(one).context("writing the value")?;
                out.flush().context("writing the value")
            }
            [] => bail!("key {:?} not found", args.key),
            many => bail!(
                "key {:?} has {} siblings; use `shoal get` without --raw to see them",
                args.key,
                many.len()
            ),
        };
    }
    print!("{}", describe(&found));
    if found.values.is_empty() {
        bail!("key {:?} not found", args.key);
    }
    Ok(())
}

/// `shoal put KEY VALUE`: writes with the context just read (or given), printing the new one.
pub async fn put(args: PutArgs) -> anyhow::Result<()> {
    let value = if args.value == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the value from standard input")?;
        buf
    } else {
        args.value.clone().into_bytes()
    };
    let http = client()?;
    let context = if args.blind {
        None
    } else if let Some(ctx) = args.context.clone() {
        Some(ctx)
    } else {
        let before = read(&http, &args.node, &args.key, args.r).await?;
        if before.values.len() > 1 {
            eprintln!("superseding {} siblings", before.values.len());
        }
        before.context
    };
    let url = kv_url(&args.node, &args.key, args.w.map(|w| ("w", w)));
    let mut req = http.put(&url).body(value);
    if let Some(ctx) = &context {
        req = req.header(CONTEXT_HEADER, ctx);
    }
    let resp = req.send().await.with_context(|| format!("PUT {url}"))?;
    if !resp.status().is_success() {
        return Err(fail(&format!("PUT {url}"), resp).await);
    }
    match context_of(resp.headers()) {
        Some(ctx) => println!("ok, context: {ctx}"),
        None => println!("ok"),
    }
    Ok(())
}

/// `shoal delete KEY`: tombstones what the context just read (or given) covers.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let http = client()?;
    let context = match args.context.clone() {
        Some(ctx) => ctx,
        None => match read(&http, &args.node, &args.key, args.r).await?.context {
            Some(ctx) => ctx,
            None => {
                // No history: a delete without context would cover nothing.
                println!("not found; nothing to delete");
                return Ok(());
            }
        },
    };
    let url = kv_url(&args.node, &args.key, args.w.map(|w| ("w", w)));
    let resp = http
        .delete(&url)
        .header(CONTEXT_HEADER, &context)
        .send()
        .await
        .with_context(|| format!("DELETE {url}"))?;
    if !resp.status().is_success() {
        return Err(fail(&format!("DELETE {url}"), resp).await);
    }
    println!("deleted");
    Ok(())
}

/// Finds the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `boundary` parameter of a `multipart/mixed` content type, unquoted.
pub fn multipart_boundary(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

/// Splits a `multipart/mixed` body (RFC 2046 framing, CRLF line ends) into its parts'
/// contents, dropping each part's headers. The `300` answer of a `GET` uses it, one part per
/// sibling.
pub fn parse_multipart(body: &[u8], boundary: &str) -> anyhow::Result<Vec<Bytes>> {
    // Every delimiter is CRLF "--" boundary; the first may start the body, so lead with CRLF.
    let mut framed = Vec::with_capacity(body.len() + 2);
    framed.extend_from_slice(b"\r\n");
    framed.extend_from_slice(body);
    let delimiter = format!("\r\n--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut rest: &[u8] = &framed;
    // Skip the preamble.
    let start = find(rest, delimiter).context("multipart body without a delimiter")?;
    rest = rest.get(start + delimiter.len()..).unwrap_or_default();
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts); // the close delimiter; anything after is epilogue
        }
        // The rest of the delimiter line (optional transport padding) ends with CRLF.
        let eol = find(rest, b"\r\n").context("multipart delimiter line without CRLF")?;
        let part_and_more = rest.get(eol + 2..).unwrap_or_default();
        let end =
            find(part_and_more, delimiter).context("multipart body without a close delimiter")?;
        let part = part_and_more.get(..end).unwrap_or_default();
        // Headers end at the first empty line; a part may have none (it then starts with CRLF).
        let content = if let Some(stripped) = part.strip_prefix(b"\r\n") {
            stripped
        } else {
            let h = find(part, b"\r\n\r\n").context("multipart part without a blank line")?;
            part.get(h + 4..).unwrap_or_default()
        };
        parts.push(Bytes::copy_from_slice(content));
        rest = part_and_more
            .get(end + delimiter.len()..)
            .unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_escaped_segment() {
        assert_eq!(encode_key("plain-key_1.x~"), "plain-key_1.x~");
        assert_eq!(encode_key("a/b c?d#%"), "a%2Fb%20c%3Fd%23%25");
        assert_eq!(encode_key("é"), "%C3%A9");
    }

    #[test]
    fn values_render_on_one_line() {
        assert_eq!(render(b"hello world"), "hello world");
        assert_eq!(render(b"two\nlines"), "b\"two\\nlines\"");
        assert_eq!(render(&[0xff, b'a']), "b\"\\xffa\"");
    }

    #[test]
    fn describe_lists_every_sibling_and_the_context() {
        let read = ReadResult {
            context: Some("abc".into()),
            values: vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")],
        };
        assert_eq!(
            describe(&read),
            "context: abc\nsiblings: 2\nsibling 1: x\nsibling 2: y\n"
        );
        let one = ReadResult {
            context: None,
            values: vec![Bytes::from_static(b"v")],
        };
        assert_eq!(describe(&one), "value: v\n");
    }

    #[test]
    fn boundary_is_found_quoted_or_not() {
        assert_eq!(
            multipart_boundary("multipart/mixed; boundary=abc"),
            Some("abc")
        );
        assert_eq!(
            multipart_boundary("Multipart/Mixed;charset=x; Boundary=\"a b\""),
            Some("a b")
        );
        assert_eq!(multipart_boundary("text/plain; boundary=abc"), None);
        assert_eq!(multipart_boundary("multipart/mixed"), None);
    }

    #[test]
    fn multipart_parts_keep_their_exact_bytes() {
        let body = b"preamble\r\n--XyZ\r\nContent-Type: application/octet-stream\r\n\r\nfirst\r\n\
--XyZ\r\nContent-Type: application/octet-stream\r\n\r\nsec\r\nond--X\r\n\
--XyZ\r\n\r\n\r\n--XyZ--\r\nepilogue";
        let parts = parse_multipart(body, "XyZ").expect("well-formed");
        assert_eq!(
            parts,
            vec![
                Bytes::from_static(b"first"),
                Bytes::from_static(b"sec\r\nond--X"),
                Bytes::new(),
            ]
        );
    }

    #[test]
    fn multipart_without_preamble_and_truncated() {
        let body = b"--b\r\nContent-Type: application/octet-stream\r\n\r\nonly\r\n--b--";
        assert_eq!(
            parse_multipart(body, "b").expect("well-formed"),
            vec![Bytes::from_static(b"only")]
        );
        assert!(parse_multipart(b"--b\r\n\r\nunterminated", "b").is_err());
        assert!(parse_multipart(b"no delimiter here", "b").is_err());
    }

    /// What the fake node was sent: method, key, query and context.
    type Log =
        std::sync::Arc<std::sync::Mutex<Vec<(String, String, Option<String>, Option<String>)>>>;

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
        let http = client().expect("client");
        let found = read(&http, &node, "k", Some(2)).await.expect("read");
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

    #[test]
    fn urls_carry_the_quorum() {
        assert_eq!(
            kv_url("127.0.0.1:1", "a b", Some(("w", 2))),
            "http://127.0.0.1:1/kv/a%20b?w=2"
        );
        assert_eq!(kv_url("h:1", "k", None), "http://h:1/kv/k");
    }
}
