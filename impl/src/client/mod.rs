//! The client contract of DESIGN.md ("Client HTTP API"), in one place: the context header,
//! keys as one URL path segment, siblings as `multipart/mixed` or JSON, and a small async
//! [`Client`] (plus a [`Session`] that keeps the last context per key, Dynamo's
//! read-modify-write discipline).
//!
//! The node's HTTP layer builds its answers with these functions, and every client —
//! `shoal get/put/delete`, `shoal bench`, `shoal baseline` and the black-box tests — parses
//! them with the same ones, so the two sides of the contract cannot drift apart.

mod http_client;
mod multipart;

pub use http_client::{Client, ClientError, Session, Written};
pub use multipart::{multipart_body, multipart_boundary, parse_multipart};

use base64::Engine as _;
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

/// The header that carries the opaque causal context, both ways (lower case, as HTTP/2 and
/// the `http` crate spell header names).
pub const CONTEXT_HEADER: &str = "x-shoal-context";

/// The header of a write's answer saying how many values the key holds after it.
pub const SIBLINGS_HEADER: &str = "x-shoal-siblings";

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

/// `http://node/kv/{key}`, with an optional quorum parameter (`("r", 2)`).
pub fn kv_url(node: &str, key: &str, quorum: Option<(&str, usize)>) -> String {
    let mut url = format!("http://{node}/kv/{}", encode_key(key));
    if let Some((name, n)) = quorum {
        url.push_str(&format!("?{name}={n}"));
    }
    url
}

/// Whether an `Accept` header asks for the JSON form of a read.
pub fn wants_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|v| v.contains("application/json"))
}

/// What a read found: the context (if the key has history) and the live values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// The opaque context to send back with the next write.
    pub context: Option<String>,
    /// The values: empty when absent or deleted, several when siblings.
    pub values: Vec<Bytes>,
}

/// The JSON form of a read (`Accept: application/json`): the context and every sibling in
/// standard base64.
#[derive(Debug, Default, Serialize, Deserialize)]
struct JsonRead {
    /// The context, if the key has history.
    #[serde(default)]
    context: Option<String>,
    /// Standard-base64 values, one per sibling.
    #[serde(default)]
    values: Vec<String>,
}

/// The JSON body of a read's answer.
pub fn json_body(values: &[Bytes], context: Option<&str>) -> String {
    let read = JsonRead {
        context: context.map(str::to_owned),
        values: values
            .iter()
            .map(|v| base64::engine::general_purpose::STANDARD.encode(v))
            .collect(),
    };
    serde_json::to_string(&read).unwrap_or_default()
}

/// Parses the JSON body of a read's answer.
pub fn parse_json(body: &[u8]) -> Result<Read, ClientError> {
    let parsed: JsonRead = serde_json::from_slice(body)
        .map_err(|e| ClientError::Malformed(format!("not the JSON of a read: {e}")))?;
    let values = parsed
        .values
        .iter()
        .map(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map(Bytes::from)
                .map_err(|_| ClientError::Malformed("a value is not standard base64".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Read {
        context: parsed.context.filter(|c| !c.is_empty()),
        values,
    })
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
    fn urls_carry_the_quorum() {
        assert_eq!(
            kv_url("127.0.0.1:1", "a b", Some(("w", 2))),
            "http://127.0.0.1:1/kv/a%20b?w=2"
        );
        assert_eq!(kv_url("h:1", "k", None), "http://h:1/kv/k");
    }

    #[test]
    fn the_json_form_round_trips_any_bytes() {
        let values = vec![Bytes::from_static(b"a\r\n"), Bytes::from_static(&[0, 255])];
        let body = json_body(&values, Some("ctx"));
        assert_eq!(
            parse_json(body.as_bytes()).expect("parses"),
            Read {
                context: Some("ctx".into()),
                values
            }
        );
        assert!(parse_json(br#"{"values":["not base64!"]}"#).is_err());
        assert!(parse_json(b"<html>").is_err());
    }
}
