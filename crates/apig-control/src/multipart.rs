//! `multipart/form-data` bodies (RFC 7578), as the official SDKs send file uploads
//! (`ImportApiDefinitionsV2`). The body is already buffered and bounded by the
//! authentication layer, so this works on a slice: no streaming, no temporary files.

use apig_model::{ApiError, ErrorCode};

/// Most parts a form may have (the import form has seven fields).
const MAX_PARTS: usize = 32;
/// Longest header block of one part.
const MAX_PART_HEADERS: usize = 8 * 1024;

/// One field of the form.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub data: &'a [u8],
}

fn malformed(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ParameterError,
        format!("Parameter error: the multipart/form-data body is not valid: {why}"),
    )
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        // RFC 2046: 1 to 70 characters.
        (!v.is_empty() && v.len() <= 70).then(|| v.to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits a body into its parts.
pub fn parse<'a>(boundary: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, ApiError> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let start = find(body, delimiter).ok_or_else(|| malformed("no boundary"))?;
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| malformed("a boundary is not followed by a line break"))?;
        if parts.len() == MAX_PARTS {
            return Err(malformed("too many parts"));
        }
        let head_end =
            find(rest, b"\r\n\r\n").ok_or_else(|| malformed("a part has no header end"))?;
        if head_end > MAX_PART_HEADERS {
            return Err(malformed("a part's headers are too long"));
        }
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| malformed("a part's headers are not text"))?;
        rest = &rest[head_end + 4..];
        let mut closing = Vec::with_capacity(delimiter.len() + 2);
        closing.extend_from_slice(b"\r\n");
        closing.extend_from_slice(delimiter);
        let data_end = find(rest, &closing).ok_or_else(|| malformed("a part is not closed"))?;
        let (name, filename) = disposition(head)?;
        parts.push(Part {
            name,
            filename,
            data: &rest[..data_end],
        });
        rest = &rest[data_end + closing.len()..];
    }
}

/// `Content-Disposition: form-data; name="x"; filename="y"`.
fn disposition(head: &str) -> Result<(String, Option<String>), ApiError> {
    let line = head
        .split("\r\n")
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-disposition")
                .then_some(v)
        })
        .ok_or_else(|| malformed("a part has no Content-Disposition"))?;
    let mut name = None;
    let mut filename = None;
    for param in line.split(';').skip(1) {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v)
            .to_owned();
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v),
            "filename" => filename = Some(v),
            _ => {}
        }
    }
    Ok((
        name.ok_or_else(|| malformed("a part has no name"))?,
        filename,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_sdk_style_form() {
        let ct = "multipart/form-data; boundary=abc123";
        let b = boundary(ct).unwrap();
        let body = b"--abc123\r\nContent-Disposition: form-data; name=\"is_create_group\"\r\n\r\ntrue\r\n--abc123\r\nContent-Disposition: form-data; name=\"file_name\"; filename=\"api.yaml\"\r\nContent-Type: application/x-yaml\r\n\r\nswagger: '2.0'\r\n--abc123--\r\n";
        let parts = parse(&b, body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "is_create_group");
        assert_eq!(parts[0].data, b"true");
        assert_eq!(parts[1].filename.as_deref(), Some("api.yaml"));
        assert_eq!(parts[1].data, b"swagger: '2.0'");
    }

    #[test]
    fn refuses_broken_forms() {
        assert!(boundary("application/json").is_none());
        assert!(boundary("multipart/form-data").is_none());
        for body in [
            &b"nothing"[..],
            b"--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
            b"--abc\r\nX: y\r\n\r\nv\r\n--abc--",
            b"--abcgarbage",
        ] {
            assert!(parse("abc", body).is_err(), "{}", body.escape_ascii());
        }
    }
}
