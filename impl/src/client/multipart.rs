//! Siblings as `multipart/mixed` (RFC 2046): the `300` answer of a read, one part per value.

use super::ClientError;
use bytes::Bytes;

fn malformed(reason: &str) -> ClientError {
    ClientError::Malformed(reason.into())
}

/// A `multipart/mixed` body holding `values` (one `application/octet-stream` part each) and
/// its content type. The boundary is chosen so that no value contains it.
pub fn multipart_body(values: &[Bytes]) -> (String, Vec<u8>) {
    let mut seed = 0u64;
    let boundary = loop {
        let b = format!("shoal-{:016x}", crate::ring::key_hash(&seed.to_be_bytes()));
        let clash = values
            .iter()
            .any(|v| v.windows(b.len()).any(|w| w == b.as_bytes()));
        if !clash {
            break b;
        }
        seed += 1;
    };
    let mut body = Vec::new();
    for v in values {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(v);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/mixed; boundary={boundary}"), body)
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
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Bytes>, ClientError> {
    // Every delimiter is CRLF "--" boundary; the first may start the body, so lead with CRLF.
    let mut framed = Vec::with_capacity(body.len() + 2);
    framed.extend_from_slice(b"\r\n");
    framed.extend_from_slice(body);
    let delimiter = format!("\r\n--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut rest: &[u8] = &framed;
    // Skip the preamble.
    let start =
        find(rest, delimiter).ok_or_else(|| malformed("multipart body without a delimiter"))?;
    rest = rest.get(start + delimiter.len()..).unwrap_or_default();
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts); // the close delimiter; anything after is epilogue
        }
        // The rest of the delimiter line (optional transport padding) ends with CRLF.
        let eol = find(rest, b"\r\n")
            .ok_or_else(|| malformed("multipart delimiter line without CRLF"))?;
        let part_and_more = rest.get(eol + 2..).unwrap_or_default();
        let end = find(part_and_more, delimiter)
            .ok_or_else(|| malformed("multipart body without a close delimiter"))?;
        let part = part_and_more.get(..end).unwrap_or_default();
        // Headers end at the first empty line; a part may have none (it then starts with CRLF).
        let content = if let Some(stripped) = part.strip_prefix(b"\r\n") {
            stripped
        } else {
            let h = find(part, b"\r\n\r\n")
                .ok_or_else(|| malformed("multipart part without a blank line"))?;
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

    #[test]
    fn a_built_body_parses_back_to_the_same_values() {
        let values = vec![
            Bytes::from_static(b"plain"),
            Bytes::from_static(b"--shoal-lookalike\r\n\r\n"),
            Bytes::new(),
        ];
        let (ctype, body) = multipart_body(&values);
        let boundary = multipart_boundary(&ctype).expect("boundary");
        assert_eq!(parse_multipart(&body, boundary).expect("parses"), values);
    }
}
