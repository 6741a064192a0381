//! The canonical request path: the one view of the path that routing, ACLs, authorizer input,
//! throttle keys, signature checks and the forwarded request all derive from.
//!
//! Path-confusion bugs (Envoy CVE-2019-9901 and CVE-2021-29492, heimdall CVE-2026-42274, the
//! Traefik `%2e` advisory, rou3's `//` bypass) all come from two components disagreeing about
//! what a path means. So the gateway parses a path exactly once, *rejects* anything ambiguous
//! instead of "fixing" it, and hands the result around as a [`CanonicalPath`], which can only
//! be built by [`canonicalize`].
//!
//! The canonical form is fully percent-decoded UTF-8: every segment is the literal text a
//! template literal or a parameter value is compared with. Because encoded `/` is rejected, a
//! decoded segment never contains `/`, so splitting the decoded string on `/` is exact.
//! [`CanonicalPath::to_encoded`] re-encodes it for the wire, and canonicalising that again
//! gives back the same path (tested).

use std::fmt;

/// Longest accepted path in bytes, after decoding and normalisation (leading `/` included).
pub const MAX_PATH_LEN: usize = 8192;

/// Most segments a path may have after normalisation (a trailing slash is not a segment).
pub const MAX_SEGMENTS: usize = 128;

/// Longest raw (encoded) path looked at: every decoded byte costs at most three raw bytes, so
/// anything longer cannot decode to [`MAX_PATH_LEN`] bytes or fewer without dot segments, and
/// refusing it early bounds the work done on hostile input.
const MAX_RAW_LEN: usize = 3 * MAX_PATH_LEN;

/// Why a request path was refused. Every variant maps to a 400 answer; the message is written
/// for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    #[error("the request path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("the request path has an invalid percent-encoding")]
    InvalidPercentEncoding,
    /// A control character, raw or percent-encoded: a byte 0x00–0x1F or 0x7F, or a C1 control
    /// (U+0080–U+009F).
    #[error("the request path contains a control character")]
    ControlCharacter,
    /// `%2F`: an encoded slash would make segment boundaries ambiguous.
    #[error("the request path contains an encoded slash (%2F)")]
    EncodedSlash,
    /// `%5C`: an encoded backslash, which some backends treat as a separator.
    #[error("the request path contains an encoded backslash (%5C)")]
    EncodedBackslash,
    /// A raw `\`, which some backends treat as a separator.
    #[error("the request path contains a backslash")]
    Backslash,
    /// A raw `#`: fragments are never sent to a server, so its presence is an attack or a bug.
    #[error("the request path contains '#'")]
    Fragment,
    /// A raw `?`: the caller must strip the query before canonicalising.
    #[error("the request path contains '?'")]
    Query,
    /// Decoded bytes that are not valid UTF-8 (including overlong encodings such as `%C0%AF`).
    #[error("the request path does not decode to valid UTF-8")]
    InvalidUtf8,
    /// A `..` segment that would climb above the root.
    #[error("the request path climbs above the root")]
    AboveRoot,
    /// Longer than [`MAX_PATH_LEN`] bytes after decoding.
    #[error("the request path is too long")]
    TooLong,
    /// More than [`MAX_SEGMENTS`] segments.
    #[error("the request path has too many segments")]
    TooManySegments,
}

/// A decoded, normalised request path. Invariants (upheld by [`canonicalize`], the only
/// constructor): starts with `/`; no empty segment except an optional trailing slash; no `.` or
/// `..` segment; no `/`, `\`, control character or invalid UTF-8 inside a segment; at most
/// [`MAX_PATH_LEN`] bytes and [`MAX_SEGMENTS`] segments.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CanonicalPath {
    path: String,
}

impl CanonicalPath {
    /// The decoded path, e.g. `/files/a b/`.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The non-empty segments, decoded: `/a/b/` yields `a`, `b`; `/` yields nothing.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|s| !s.is_empty())
    }

    /// Whether the path ends with `/` (always true for the root `/`).
    pub fn has_trailing_slash(&self) -> bool {
        self.path.ends_with('/')
    }

    /// The path percent-encoded for the wire (see [`encode_segment`]); canonicalising the
    /// result gives this path back.
    pub fn to_encoded(&self) -> String {
        let mut out = String::with_capacity(self.path.len() + 8);
        encode_path_into(&self.path, &mut out);
        out
    }
}

impl fmt::Debug for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.path, f)
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

impl AsRef<str> for CanonicalPath {
    fn as_ref(&self) -> &str {
        &self.path
    }
}

/// Parses and normalises a request path (the request-target's path, without the query).
///
/// Rejects (see [`PathError`]) rather than repairs: invalid or truncated `%` escapes, control
/// bytes raw or encoded, `%2F`, `%5C`, raw `\`, raw `#` and `?`, decoded bytes that are not
/// UTF-8, `..` above the root, and paths over the length and segment bounds. Then decodes every
/// escape, removes `.` and `..` segments (also encoded ones such as `%2e%2E`), merges repeated
/// slashes and keeps a trailing slash (as RFC 3986 does, a path ending in a dot segment, like
/// `/a/b/..`, ends with a slash: `/a/`).
pub fn canonicalize(raw_path: &str) -> Result<CanonicalPath, PathError> {
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if raw_path.len() > MAX_RAW_LEN {
        return Err(PathError::TooLong);
    }
    // The decoded output, "/seg1/seg2" with no trailing slash yet. Built as a `String` from
    // validated pieces, so UTF-8 is checked once per decoded segment and never again.
    let mut out = String::with_capacity(raw_path.len() + 1);
    let mut scratch: Vec<u8> = Vec::new();
    let mut segments = 0usize;
    let mut trailing_slash = false;
    for raw in rest.split('/') {
        if raw.is_empty() {
            // A repeated slash (merged) or the path's trailing slash.
            trailing_slash = true;
            continue;
        }
        let start = out.len();
        out.push('/');
        if raw.as_bytes().contains(&b'%') {
            scratch.clear();
            decode_segment_into(raw.as_bytes(), &mut scratch)?;
            // Rejects overlong forms such as %C0%AF, surrogates and truncated sequences.
            let decoded = std::str::from_utf8(&scratch).map_err(|_| PathError::InvalidUtf8)?;
            out.push_str(decoded);
        } else {
            for &b in raw.as_bytes() {
                check_raw_byte(b)?;
            }
            out.push_str(raw);
        }
        let segment = out.get(start + 1..).unwrap_or_default();
        if has_c1_control(segment) {
            return Err(PathError::ControlCharacter);
        }
        match segment {
            "." => {
                out.truncate(start);
                trailing_slash = true;
            }
            ".." => {
                out.truncate(start);
                if segments == 0 {
                    return Err(PathError::AboveRoot);
                }
                // Decoded segments never contain '/', so the last one starts at the last '/'.
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
                segments -= 1;
                trailing_slash = true;
            }
            _ => {
                segments += 1;
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    if out.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if segments > MAX_SEGMENTS {
        return Err(PathError::TooManySegments);
    }
    Ok(CanonicalPath { path: out })
}

/// Whether `s` holds a C1 control character (U+0080 to U+009F, e.g. NEL U+0085, which some
/// systems treat as a line break). In UTF-8 they are exactly `C2 80` to `C2 9F`: in valid UTF-8
/// `C2` is always a lead byte, so the byte scan is exact.
#[inline]
fn has_c1_control(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0] == 0xC2 && (0x80..=0x9F).contains(&w[1]))
}

/// The rules for a byte that appears raw (not percent-encoded) in a path.
#[inline]
fn check_raw_byte(b: u8) -> Result<(), PathError> {
    match b {
        b'\\' => Err(PathError::Backslash),
        b'#' => Err(PathError::Fragment),
        b'?' => Err(PathError::Query),
        0..=0x1f | 0x7f => Err(PathError::ControlCharacter),
        _ => Ok(()),
    }
}

/// Decodes one raw segment (no `/` in it) into `out`, enforcing the byte rules of
/// [`canonicalize`]. The caller checks UTF-8 validity of the result.
pub(crate) fn decode_segment_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let byte = if b == b'%' {
            let hi = raw.get(i + 1).and_then(|&h| hex_value(h));
            let lo = raw.get(i + 2).and_then(|&l| hex_value(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::InvalidPercentEncoding);
            };
            i += 3;
            let v = (hi << 4) | lo;
            match v {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::EncodedBackslash),
                _ => v,
            }
        } else {
            i += 1;
            check_raw_byte(b)?;
            b
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(PathError::ControlCharacter);
        }
        out.push(byte);
    }
    Ok(())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes one decoded path segment for the wire, appending to `out`.
///
/// Keeps RFC 3986 unreserved characters and the sub-delimiters, `:` and `@` that are safe in a
/// path segment (`A-Za-z0-9-._~!$&'()*+,;=:@`); everything else, including `/`, `%`, `?`, `#`,
/// space and every non-ASCII byte, becomes an upper-case `%XX` triplet.
pub fn encode_segment(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if is_segment_safe(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Encodes a decoded path (segments separated by `/`) segment by segment.
pub(crate) fn encode_path_into(path: &str, out: &mut String) {
    let mut first = true;
    for seg in path.split('/') {
        if !first {
            out.push('/');
        }
        first = false;
        encode_segment(seg, out);
    }
}

fn is_segment_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_segment_keeps_safe_set_and_escapes_the_rest() {
        let mut s = String::new();
        encode_segment("aZ9-._~!$&'()*+,;=:@", &mut s);
        assert_eq!(s, "aZ9-._~!$&'()*+,;=:@");
        s.clear();
        encode_segment("a b/%?#é", &mut s);
        assert_eq!(s, "a%20b%2F%25%3F%23%C3%A9");
    }

    #[test]
    fn decode_rejects_truncated_escape_at_every_position() {
        for raw in ["%", "%4", "a%", "a%4", "%%41"] {
            let mut out = Vec::new();
            assert_eq!(
                decode_segment_into(raw.as_bytes(), &mut out),
                Err(PathError::InvalidPercentEncoding),
                "{raw}"
            );
        }
    }
}
