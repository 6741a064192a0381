//! Client side: produce `X-Sdk-Date` and `Authorization` for a request.

use crate::authorization::{authorization_header, is_valid_header_name};
use crate::canonical::{canonical_prefix, trim_value};
use crate::crypto::{signature, string_to_sign};
use crate::date::{format_sdk_date, parse_sdk_date};
use crate::payload::payload_hashes_from;
use crate::{
    RequestView, SignError, HEADER_CONTENT_SHA256, HEADER_DATE, HEADER_HOST, MAX_AUTHORIZATION_LEN,
    MAX_SIGNED_HEADERS,
};

/// Signs requests with one access key / secret pair (app key and secret, or IAM AK/SK).
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    pub key: &'a str,
    pub secret: &'a [u8],
}

impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Signer<'_> {
    /// Signs `req` as sent at `now_unix` and returns the headers to add (replacing any of the
    /// same name): `X-Sdk-Date` and `Authorization`.
    ///
    /// Like SIG-APP, every given header is signed (lowercased, sorted), `Authorization` and any
    /// given `X-Sdk-Date` excepted, so the caller must send exactly these headers, with
    /// `path` and `query` unchanged. `host` must be among them, as it will be sent (with the
    /// port if the URL has one). A given `x-sdk-content-sha256` is signed literally and
    /// must be `UNSIGNED-PAYLOAD` or the body's hash. Errors are those a verifier would raise
    /// for the resulting request.
    pub fn sign(
        &self,
        req: &RequestView,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Vec<(String, String)>, SignError> {
        // Keys the verifier's Authorization parser would not read back.
        if self.key.is_empty() || self.key.contains([' ', '\t', ',']) {
            return Err(SignError::MalformedAuthorization("invalid access key"));
        }
        let date = format_sdk_date(now_unix);
        parse_sdk_date(&date)?;

        let mut headers: Vec<(String, &str)> = Vec::with_capacity(req.headers.len() + 1);
        for (name, value) in req.headers {
            let lower = name.to_ascii_lowercase();
            if lower == HEADER_DATE || lower == "authorization" {
                continue;
            }
            if !is_valid_header_name(&lower) {
                return Err(SignError::InvalidHeaderName((*name).to_owned()));
            }
            if headers.iter().any(|(n, _)| *n == lower) {
                return Err(SignError::DuplicateSignedHeader(lower));
            }
            headers.push((lower, trim_value(value)));
        }
        if !headers.iter().any(|(n, _)| n == HEADER_HOST) {
            return Err(SignError::MissingSignedHeader(HEADER_HOST));
        }
        headers.push((HEADER_DATE.to_owned(), &date));
        if headers.len() > MAX_SIGNED_HEADERS {
            return Err(SignError::MalformedAuthorization("too many SignedHeaders"));
        }
        headers.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        let values: Vec<&str> = headers.iter().map(|(_, v)| *v).collect();
        let literal = headers
            .iter()
            .find(|(n, _)| n == HEADER_CONTENT_SHA256)
            .map(|(_, v)| *v);
        let payload = payload_hashes_from(literal, body)?;
        let mut canonical = canonical_prefix(req, &names, &values)?;
        canonical.push_str(&payload.primary);

        let sig = signature(self.secret, &string_to_sign(&date, &canonical));
        let auth = authorization_header(self.key, &names, &sig);
        if auth.len() > MAX_AUTHORIZATION_LEN {
            return Err(SignError::MalformedAuthorization("header too long"));
        }
        Ok(vec![
            ("X-Sdk-Date".to_owned(), date),
            ("Authorization".to_owned(), auth),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNER: Signer<'static> = Signer {
        key: "AK123",
        secret: b"SK456",
    };

    fn view<'a>(headers: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
        RequestView {
            method: "GET",
            path: "/v1/a%20b/c",
            query: Some("b=2&a=1&a=0&x=%7E%20"),
            headers,
        }
    }

    #[test]
    fn reproduces_spec_vector() {
        let headers = [
            ("Content-Type", "application/json"),
            ("host", "api.example.com"),
            ("X-Sdk-Date", "19990101T000000Z"),
            ("Authorization", "stale"),
        ];
        let out = SIGNER.sign(&view(&headers), b"", 1_704_067_200).unwrap();
        assert_eq!(
            out,
            vec![
                ("X-Sdk-Date".to_owned(), "20240101T000000Z".to_owned()),
                (
                    "Authorization".to_owned(),
                    "SDK-HMAC-SHA256 Access=AK123, SignedHeaders=content-type;host;x-sdk-date, \
                     Signature=2cdaa154ff349e3e1a592900e739155712dec2a246496e002136d28720e48616"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn errors() {
        let now = 1_704_067_200;
        assert_eq!(
            SIGNER.sign(&view(&[("X-Other", "1")]), b"", now),
            Err(SignError::MissingSignedHeader("host"))
        );
        assert_eq!(
            SIGNER.sign(&view(&[("Host", "a"), ("host", "b")]), b"", now),
            Err(SignError::DuplicateSignedHeader("host".into()))
        );
        assert_eq!(
            SIGNER.sign(&view(&[("host", "a"), ("bad;name", "b")]), b"", now),
            Err(SignError::InvalidHeaderName("bad;name".into()))
        );
        assert_eq!(
            SIGNER.sign(
                &view(&[("host", "a"), (HEADER_CONTENT_SHA256, "00")]),
                b"",
                now
            ),
            Err(SignError::BodyHashMismatch)
        );
        let bad_path = RequestView {
            path: "/%zz",
            ..view(&[("host", "a")])
        };
        assert_eq!(
            SIGNER.sign(&bad_path, b"", now),
            Err(SignError::InvalidEncoding)
        );
        assert_eq!(
            SIGNER.sign(&view(&[("host", "a")]), b"", i64::MAX),
            Err(SignError::MalformedDate)
        );
        let no_key = Signer { key: "", ..SIGNER };
        assert!(matches!(
            no_key.sign(&view(&[("host", "a")]), b"", now),
            Err(SignError::MalformedAuthorization(_))
        ));
        let names: Vec<String> = (0..MAX_SIGNED_HEADERS).map(|i| format!("h{i}")).collect();
        let mut many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        many[0] = ("host", "a");
        assert!(matches!(
            SIGNER.sign(&view(&many), b"", now),
            Err(SignError::MalformedAuthorization(_))
        ));
    }

    #[test]
    fn debug_hides_secret() {
        assert!(!format!("{SIGNER:?}").contains("SK456"));
    }
}
