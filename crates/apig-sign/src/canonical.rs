//! The canonical request: method, URI, query, headers, signed-header list, payload hash.

use std::borrow::Cow;

use crate::encoding::{decode, encode_into};
use crate::{RequestView, SignError};

/// CanonicalURI: percent-decode, split on `/`, re-encode each segment, ensure a trailing `/`.
///
/// The trailing slash exists only for signing: `/v1/items` and `/v1/items/` sign alike. An
/// encoded `/` (`%2F`) is decoded before splitting, exactly like both Python signers.
pub fn canonical_uri(raw_path: &str) -> Result<String, SignError> {
    let decoded = decode(raw_path)?;
    let mut out = String::with_capacity(decoded.len() + 8);
    for (i, segment) in decoded.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_into(&mut out, segment);
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

/// CanonicalQueryString: decoded pairs sorted by key then value, re-encoded, `&`-joined.
///
/// A key without `=` gets an empty value (`k=`); pairs whose raw key is empty are dropped, as
/// SIG-APP does; `+` stays a literal plus (`%2B`), it is not a space.
pub fn canonical_query(raw_query: Option<&str>) -> Result<String, SignError> {
    let Some(raw) = raw_query else {
        return Ok(String::new());
    };
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    for item in raw.split('&') {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        if key.is_empty() {
            continue;
        }
        pairs.push((decode(key)?, decode(value)?));
    }
    // Byte order of UTF-8 equals Python's code-point order of str.
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw.len() + 8);
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, key);
        out.push('=');
        encode_into(&mut out, value);
    }
    Ok(out)
}

/// The full canonical request for `signed_headers` (names matched case-insensitively, written
/// lowercase, in the order given) and an already chosen `payload_hash`.
pub fn canonical_request(
    req: &RequestView,
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<String, SignError> {
    let values = resolve_signed_headers(req.headers, signed_headers)?;
    let mut out = canonical_prefix(req, signed_headers, &values)?;
    out.push_str(payload_hash);
    Ok(out)
}

/// Everything up to and including the newline before the payload hash; the verifier hashes
/// this once and finishes it with each acceptable payload hash.
pub(crate) fn canonical_prefix(
    req: &RequestView,
    names: &[&str],
    values: &[&str],
) -> Result<String, SignError> {
    let uri = canonical_uri(req.path)?;
    let query = canonical_query(req.query)?;
    // A capacity hint only; saturating so that no input can make it overflow.
    let headers_len = names.iter().zip(values).fold(0usize, |acc, (n, v)| {
        acc.saturating_add(2 * n.len()).saturating_add(v.len() + 3)
    });
    let capacity = [req.method.len(), uri.len(), query.len(), headers_len, 72]
        .iter()
        .fold(0usize, |acc, l| acc.saturating_add(*l))
        .min(1 << 20);
    let mut out = String::with_capacity(capacity);
    out.push_str(&req.method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(&uri);
    out.push('\n');
    out.push_str(&query);
    out.push('\n');
    for (name, value) in names.iter().zip(values) {
        push_lowercase(&mut out, name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.push('\n');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        push_lowercase(&mut out, name);
    }
    out.push('\n');
    Ok(out)
}

fn push_lowercase(out: &mut String, s: &str) {
    out.extend(s.chars().map(|c| c.to_ascii_lowercase()));
}

/// Finds the single value of each signed header, trimmed.
///
/// A signed header sent twice is an error rather than "first wins": the verifier and a backend
/// could otherwise read different copies.
pub(crate) fn resolve_signed_headers<'a>(
    headers: &[(&'a str, &'a str)],
    signed_headers: &[&str],
) -> Result<Vec<&'a str>, SignError> {
    let mut values = Vec::with_capacity(signed_headers.len());
    for name in signed_headers {
        let mut found = None;
        for (n, v) in headers {
            if n.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Err(SignError::DuplicateSignedHeader(name.to_ascii_lowercase()));
                }
                found = Some(trim_value(v));
            }
        }
        match found {
            Some(v) => values.push(v),
            None => return Err(SignError::HeaderNotPresent(name.to_ascii_lowercase())),
        }
    }
    Ok(values)
}

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators U+001C..U+001F.
pub(crate) fn trim_value(v: &str) -> &str {
    v.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_rules() {
        assert_eq!(canonical_uri("").as_deref(), Ok("/"));
        assert_eq!(canonical_uri("/").as_deref(), Ok("/"));
        assert_eq!(canonical_uri("/v1/a%20b/c").as_deref(), Ok("/v1/a%20b/c/"));
        assert_eq!(canonical_uri("/v1/items/").as_deref(), Ok("/v1/items/"));
        assert_eq!(canonical_uri("/a%2Fb").as_deref(), Ok("/a/b/"));
        assert_eq!(canonical_uri("/a+b~c").as_deref(), Ok("/a%2Bb~c/"));
        assert_eq!(canonical_uri("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9/"));
        assert_eq!(canonical_uri("//x//").as_deref(), Ok("//x//"));
        assert_eq!(canonical_uri("/%zz"), Err(SignError::InvalidEncoding));
        assert_eq!(canonical_uri("/%"), Err(SignError::InvalidEncoding));
        assert_eq!(canonical_uri("/%FF"), Err(SignError::InvalidEncoding));
    }

    #[test]
    fn query_rules() {
        let q = |s| canonical_query(Some(s));
        assert_eq!(canonical_query(None).as_deref(), Ok(""));
        assert_eq!(q("").as_deref(), Ok(""));
        assert_eq!(q("&&").as_deref(), Ok(""));
        assert_eq!(
            q("b=2&a=1&a=0&x=%7E%20").as_deref(),
            Ok("a=0&a=1&b=2&x=~%20")
        );
        assert_eq!(q("flag&x=1&=v").as_deref(), Ok("flag=&x=1"));
        assert_eq!(q("q=a+b").as_deref(), Ok("q=a%2Bb"));
        assert_eq!(q("k=a=b").as_deref(), Ok("k=a%3Db"));
        assert_eq!(q("B=1&a=1&%C3%A9=1").as_deref(), Ok("B=1&a=1&%C3%A9=1"));
        assert_eq!(q("a=%zz"), Err(SignError::InvalidEncoding));
        assert_eq!(q("%=1"), Err(SignError::InvalidEncoding));
        // Python skips empty raw keys before decoding, so their values are never looked at.
        assert_eq!(q("=%zz&a=1").as_deref(), Ok("a=1"));
    }

    #[test]
    fn header_resolution() {
        let headers = [
            ("Host", " h:1 "),
            ("X-A", "1"),
            ("x-a", "2"),
            ("X-B", "\t v \u{1f}"),
        ];
        assert_eq!(
            resolve_signed_headers(&headers, &["host", "x-b"]),
            Ok(vec!["h:1", "v"])
        );
        assert_eq!(
            resolve_signed_headers(&headers, &["x-a"]),
            Err(SignError::DuplicateSignedHeader("x-a".into()))
        );
        assert_eq!(
            resolve_signed_headers(&headers, &["x-c"]),
            Err(SignError::HeaderNotPresent("x-c".into()))
        );
    }

    #[test]
    fn spec_vector_canonical_request() {
        let headers = [
            ("Content-Type", "application/json"),
            ("X-Sdk-Date", "20240101T000000Z"),
            ("host", "api.example.com"),
        ];
        let req = RequestView {
            method: "get",
            path: "/v1/a%20b/c",
            query: Some("b=2&a=1&a=0&x=%7E%20"),
            headers: &headers,
        };
        let cr = canonical_request(
            &req,
            &["content-type", "host", "x-sdk-date"],
            crate::EMPTY_SHA256,
        );
        assert_eq!(
            cr.as_deref(),
            Ok(
                "GET\n/v1/a%20b/c/\na=0&a=1&b=2&x=~%20\ncontent-type:application/json\n\
                host:api.example.com\nx-sdk-date:20240101T000000Z\n\ncontent-type;host;x-sdk-date\n\
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }
}
