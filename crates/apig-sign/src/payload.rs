//! Which payload hash goes into the canonical request.

use std::borrow::Cow;

use crate::canonical::resolve_signed_headers;
use crate::crypto::sha256_hex;
use crate::{RequestView, SignError, EMPTY_SHA256, HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD};

/// The payload hashes a signature may have been computed with: one, or two for an empty body.
///
/// Two because SIG-CORE signs the empty-body hash whenever the body is empty, even with a
/// signed `x-sdk-content-sha256: UNSIGNED-PAYLOAD`, while SIG-APP signs the literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadHashes<'a> {
    /// The hash SIG-APP (and [`crate::Signer`]) would sign.
    pub primary: Cow<'a, str>,
    /// The empty-body hash when it differs from `primary` (SIG-CORE's choice).
    pub empty_body_alternative: Option<&'static str>,
}

impl PayloadHashes<'_> {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary.as_ref()).chain(self.empty_body_alternative)
    }
}

/// Payload hashes acceptable for `req` and `body`, given the header names that were signed.
///
/// With `x-sdk-content-sha256` signed, its literal (trimmed) value is used: `UNSIGNED-PAYLOAD`
/// as is, a hex hash only if it is the body's hash (else [`SignError::BodyHashMismatch`]);
/// anything else is rejected. Without it, the hex SHA-256 of `body`.
pub fn payload_hashes<'a>(
    req: &RequestView<'a>,
    signed_headers: &[&str],
    body: &[u8],
) -> Result<PayloadHashes<'a>, SignError> {
    let literal = match signed_headers
        .iter()
        .find(|n| n.eq_ignore_ascii_case(HEADER_CONTENT_SHA256))
    {
        Some(name) => resolve_signed_headers(req.headers, &[name])?.pop(),
        None => None,
    };
    payload_hashes_from(literal, body)
}

pub(crate) fn payload_hashes_from<'a>(
    literal: Option<&'a str>,
    body: &[u8],
) -> Result<PayloadHashes<'a>, SignError> {
    let Some(literal) = literal else {
        return Ok(PayloadHashes {
            primary: Cow::Owned(sha256_hex(body)),
            empty_body_alternative: None,
        });
    };
    if literal != UNSIGNED_PAYLOAD {
        let is_hex = literal.len() == 64 && literal.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex || !literal.eq_ignore_ascii_case(&sha256_hex(body)) {
            return Err(SignError::BodyHashMismatch);
        }
    }
    let empty_body_alternative =
        (body.is_empty() && literal != EMPTY_SHA256).then_some(EMPTY_SHA256);
    Ok(PayloadHashes {
        primary: Cow::Borrowed(literal),
        empty_body_alternative,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(literal: Option<&str>, body: &[u8]) -> Result<Vec<String>, SignError> {
        payload_hashes_from(literal, body).map(|h| h.iter().map(str::to_owned).collect())
    }

    #[test]
    fn rules() {
        let hello = sha256_hex(b"hello");
        assert_eq!(hashes(None, b"hello"), Ok(vec![hello.clone()]));
        assert_eq!(hashes(None, b""), Ok(vec![EMPTY_SHA256.to_owned()]));
        assert_eq!(
            hashes(Some(UNSIGNED_PAYLOAD), b"x"),
            Ok(vec![UNSIGNED_PAYLOAD.to_owned()])
        );
        assert_eq!(
            hashes(Some(UNSIGNED_PAYLOAD), b""),
            Ok(vec![UNSIGNED_PAYLOAD.to_owned(), EMPTY_SHA256.to_owned()])
        );
        assert_eq!(hashes(Some(&hello), b"hello"), Ok(vec![hello.clone()]));
        let upper = hello.to_ascii_uppercase();
        assert_eq!(hashes(Some(&upper), b"hello"), Ok(vec![upper.clone()]));
        assert_eq!(
            hashes(Some(EMPTY_SHA256), b""),
            Ok(vec![EMPTY_SHA256.to_owned()])
        );
        assert_eq!(
            hashes(Some(&hello), b"hellO"),
            Err(SignError::BodyHashMismatch)
        );
        assert_eq!(
            hashes(Some("unsigned-payload"), b""),
            Err(SignError::BodyHashMismatch)
        );
        assert_eq!(hashes(Some(""), b""), Err(SignError::BodyHashMismatch));
    }
}
