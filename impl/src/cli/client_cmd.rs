//! `shoal get | put | delete`: a small HTTP client for one key.
//!
//! The commands speak the client API of DESIGN.md ("Client HTTP API") to any node. They follow
//! the read-modify-write discipline Dynamo asks of clients: `put` and `delete` first read the
//! key's causal context and send it back, so the write supersedes exactly what was read (every
//! sibling included) instead of adding one more sibling. `put --blind` skips the read, and
//! `--context` supplies a context read earlier.

use anyhow::{bail, Context as _};
use shoal::client::{Client, Read};
use std::io::{Read as _, Write as _};

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
    pub r: Option<usize>,
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
    pub r: Option<usize>,
    /// Write quorum (`?w=`).
    #[arg(long = "w")]
    pub w: Option<usize>,
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
    pub r: Option<usize>,
    /// Write quorum of the tombstone (`?w=`).
    #[arg(long = "w")]
    pub w: Option<usize>,
    /// Delete what this context covers instead of reading one first.
    #[arg(long)]
    pub context: Option<String>,
}

/// A client of `node`.
fn client(node: &str) -> anyhow::Result<Client> {
    Client::new(node).context("building the HTTP client")
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
pub fn describe(read: &Read) -> String {
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
    let found = client(&args.node)?
        .get(&args.key, args.r)
        .await
        .with_context(|| format!("GET {}", args.key))?;
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
    let client = client(&args.node)?;
    let context = if args.blind {
        None
    } else if let Some(ctx) = args.context.clone() {
        Some(ctx)
    } else {
        let before = client
            .get(&args.key, args.r)
            .await
            .with_context(|| format!("GET {}", args.key))?;
        if before.values.len() > 1 {
            eprintln!("superseding {} siblings", before.values.len());
        }
        before.context
    };
    let written = client
        .put(&args.key, value, context.as_deref(), args.w)
        .await
        .with_context(|| format!("PUT {}", args.key))?;
    match written.context {
        Some(ctx) => println!("ok, context: {ctx}"),
        None => println!("ok"),
    }
    Ok(())
}

/// `shoal delete KEY`: tombstones what the context just read (or given) covers.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = client(&args.node)?;
    let context = match args.context.clone() {
        Some(ctx) => ctx,
        None => match client
            .get(&args.key, args.r)
            .await
            .with_context(|| format!("GET {}", args.key))?
            .context
        {
            Some(ctx) => ctx,
            None => {
                // No history: a delete without context would cover nothing.
                println!("not found; nothing to delete");
                return Ok(());
            }
        },
    };
    client
        .delete(&args.key, &context, args.w)
        .await
        .with_context(|| format!("DELETE {}", args.key))?;
    println!("deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
