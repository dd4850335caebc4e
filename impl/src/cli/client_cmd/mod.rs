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
mod tests;
