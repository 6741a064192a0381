//! Server side: check a signed request.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::canonical::{canonical_prefix, resolve_signed_headers};
use crate::crypto::{hmac_sha256, string_to_sign_from_hash};
use crate::date::parse_sdk_date;
use crate::payload::payload_hashes_from;
use crate::{
    Authorization, RequestView, SignError, HEADER_CONTENT_SHA256, HEADER_DATE, HEADER_HOST,
    MAX_CLOCK_SKEW_SECS,
};

/// Key for requests whose access key is unknown, so that they cost the same HMAC work as a
/// known key; its result is never accepted (see [`verify`]), so knowing it gains nothing.
const DUMMY_SECRET: &[u8] = b"apig-sign: secret for unknown access keys, never accepted";

/// A request whose signature checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The access key (app key or AK) from `Authorization`, borrowed from the request.
    pub access_key: &'a str,
    /// `X-Sdk-Date` as unix seconds.
    pub signed_at: i64,
}

/// Verifies an `SDK-HMAC-SHA256` signed request; `lookup` maps an access key to its secret.
///
/// Checks, in order: `Authorization` present once and well formed; `host` and `x-sdk-date`
/// signed; each signed header present exactly once; the date strict and within
/// [`MAX_CLOCK_SKEW_SECS`] of `now_unix` either way; path and query correctly encoded; a
/// signed `x-sdk-content-sha256` consistent with the body; finally the HMAC.
///
/// The `Host` header is used as received, port included (the SDKs sign the URL authority).
/// An unknown access key is not reported as such: the HMAC is computed with a dummy secret,
/// compared in constant time, and the result is [`SignError::BadSignature`] like any wrong
/// signature. For an empty body with a signed `x-sdk-content-sha256` both the literal value
/// (SIG-APP) and the empty-body hash (SIG-CORE) are tried.
pub fn verify<'a, F, S>(
    req: &RequestView<'a>,
    body: &[u8],
    now_unix: i64,
    lookup: F,
) -> Result<Verified<'a>, SignError>
where
    F: FnOnce(&str) -> Option<S>,
    S: AsRef<[u8]>,
{
    let auth = Authorization::parse(single_authorization(req.headers)?)?;
    for required in [HEADER_HOST, HEADER_DATE] {
        if !auth.signed_headers.contains(&required) {
            return Err(SignError::MissingSignedHeader(required));
        }
    }
    let values =
        resolve_signed_headers(req.headers, &auth.signed_headers).map_err(|e| match e {
            SignError::HeaderNotPresent(name) if name == HEADER_DATE => SignError::MissingDate,
            other => other,
        })?;
    let value_of = |name: &str| {
        auth.signed_headers
            .iter()
            .zip(&values)
            .find(|(n, _)| **n == name)
            .map(|(_, v)| *v)
    };
    let sdk_date = value_of(HEADER_DATE).ok_or(SignError::MissingDate)?;
    let signed_at = parse_sdk_date(sdk_date)?;
    if now_unix.abs_diff(signed_at) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(SignError::Expired {
            signed: signed_at,
            now: now_unix,
        });
    }
    let prefix = canonical_prefix(req, &auth.signed_headers, &values)?;
    let payload = payload_hashes_from(value_of(HEADER_CONTENT_SHA256), body)?;

    let mut provided = [0u8; 32];
    hex::decode_to_slice(auth.signature, &mut provided)
        .map_err(|_| SignError::MalformedAuthorization("Signature is not 64 hex digits"))?;

    // From here on the work done must not depend on whether the key exists.
    let secret = lookup(auth.access);
    let known = Choice::from(u8::from(secret.is_some()));
    let key: &[u8] = secret.as_ref().map_or(DUMMY_SECRET, |s| s.as_ref());
    let prefix_hash = Sha256::new_with_prefix(prefix.as_bytes());
    let mut matched = Choice::from(0);
    for payload_hash in payload.iter() {
        let canonical_hash = hex::encode(prefix_hash.clone().chain_update(payload_hash).finalize());
        let sts = string_to_sign_from_hash(sdk_date, &canonical_hash);
        if let Some(mac) = hmac_sha256(key, sts.as_bytes()) {
            matched |= mac.ct_eq(&provided);
        }
    }
    if bool::from(matched & known) {
        Ok(Verified {
            access_key: auth.access,
            signed_at,
        })
    } else {
        Err(SignError::BadSignature)
    }
}

fn single_authorization<'a>(headers: &[(&'a str, &'a str)]) -> Result<&'a str, SignError> {
    let mut found = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") {
            if found.is_some() {
                return Err(SignError::MalformedAuthorization(
                    "more than one Authorization header",
                ));
            }
            found = Some(*value);
        }
    }
    found.ok_or(SignError::MissingAuthorization)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signer;

    const NOW: i64 = 1_704_067_200;
    const SIGNER: Signer<'static> = Signer {
        key: "AK123",
        secret: b"SK456",
    };

    fn lookup(k: &str) -> Option<&'static [u8]> {
        (k == "AK123").then_some(b"SK456".as_slice())
    }

    /// Signs `base` at `signed_at` and returns the headers as they would arrive.
    fn signed(base: &[(&str, &str)], body: &[u8], signed_at: i64) -> Vec<(String, String)> {
        let req = RequestView {
            method: "POST",
            path: "/v1/x",
            query: Some("a=1"),
            headers: base,
        };
        let mut headers: Vec<(String, String)> = base
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        headers.extend(SIGNER.sign(&req, body, signed_at).unwrap());
        headers
    }

    /// Verifies with the fixed test request line; returns the verified `signed_at`.
    fn check(headers: &[(String, String)], body: &[u8], now: i64) -> Result<i64, SignError> {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let req = RequestView {
            method: "POST",
            path: "/v1/x",
            query: Some("a=1"),
            headers: &pairs,
        };
        let verified = verify(&req, body, now, lookup)?;
        assert_eq!(verified.access_key, "AK123");
        Ok(verified.signed_at)
    }

    fn set(headers: &mut [(String, String)], name: &str, value: &str) {
        for (n, v) in headers.iter_mut() {
            if n.eq_ignore_ascii_case(name) {
                *v = value.to_owned();
            }
        }
    }

    #[test]
    fn round_trip() {
        let h = signed(&[("Host", "gw:9080")], b"{}", NOW);
        assert_eq!(check(&h, b"{}", NOW), Ok(NOW));
    }

    #[test]
    fn clock_window_both_ways() {
        let h = signed(&[("Host", "gw")], b"", NOW);
        for now in [NOW - 899, NOW - 900, NOW, NOW + 899, NOW + 900] {
            assert!(check(&h, b"", now).is_ok(), "{now}");
        }
        for now in [
            NOW - 901,
            NOW - 86_400,
            NOW + 901,
            NOW + 86_400,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(
                check(&h, b"", now),
                Err(SignError::Expired { signed: NOW, now }),
                "{now}"
            );
        }
    }

    #[test]
    fn unknown_key_is_a_bad_signature() {
        let h = signed(&[("Host", "gw")], b"", NOW);
        let pairs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let req = RequestView {
            method: "POST",
            path: "/v1/x",
            query: Some("a=1"),
            headers: &pairs,
        };
        let unknown = verify(&req, b"", NOW, |_| None::<&[u8]>);
        let wrong = verify(&req, b"", NOW, |_| Some(b"other".as_slice()));
        assert_eq!(unknown, Err(SignError::BadSignature));
        assert_eq!(wrong, Err(SignError::BadSignature));
    }

    #[test]
    fn dummy_secret_is_never_accepted() {
        let dummy = Signer {
            key: "nobody",
            secret: DUMMY_SECRET,
        };
        let base = [("Host", "gw")];
        let req = RequestView {
            method: "POST",
            path: "/v1/x",
            query: Some("a=1"),
            headers: &base,
        };
        let mut h: Vec<(String, String)> = vec![("Host".into(), "gw".into())];
        h.extend(dummy.sign(&req, b"", NOW).unwrap());
        assert_eq!(check(&h, b"", NOW), Err(SignError::BadSignature));
    }

    #[test]
    fn header_checks() {
        let h = signed(&[("Host", "gw")], b"", NOW);

        let mut no_auth = h.clone();
        no_auth.retain(|(n, _)| n != "Authorization");
        assert_eq!(
            check(&no_auth, b"", NOW),
            Err(SignError::MissingAuthorization)
        );

        let mut two_auth = h.clone();
        two_auth.push(h[2].clone());
        assert!(matches!(
            check(&two_auth, b"", NOW),
            Err(SignError::MalformedAuthorization(_))
        ));

        let mut dup_host = h.clone();
        dup_host.push(("host".into(), "evil".into()));
        assert_eq!(
            check(&dup_host, b"", NOW),
            Err(SignError::DuplicateSignedHeader("host".into()))
        );

        let mut dup_date = h.clone();
        dup_date.push(("x-sdk-date".into(), "20240101T000000Z".into()));
        assert_eq!(
            check(&dup_date, b"", NOW),
            Err(SignError::DuplicateSignedHeader("x-sdk-date".into()))
        );

        let mut no_date = h.clone();
        no_date.retain(|(n, _)| n != "X-Sdk-Date");
        assert_eq!(check(&no_date, b"", NOW), Err(SignError::MissingDate));

        let mut bad_date = h.clone();
        set(&mut bad_date, "x-sdk-date", "2024-01-01T00:00:00Z");
        assert_eq!(check(&bad_date, b"", NOW), Err(SignError::MalformedDate));

        let mut no_host = h.clone();
        no_host.retain(|(n, _)| n != "Host");
        assert_eq!(
            check(&no_host, b"", NOW),
            Err(SignError::HeaderNotPresent("host".into()))
        );

        let with_extra = signed(&[("Host", "gw"), ("X-Extra", "1")], b"", NOW);
        let mut missing_extra = with_extra.clone();
        missing_extra.retain(|(n, _)| n != "X-Extra");
        assert_eq!(
            check(&missing_extra, b"", NOW),
            Err(SignError::HeaderNotPresent("x-extra".into()))
        );
    }

    #[test]
    fn host_and_date_must_be_signed() {
        let sig = "0".repeat(64);
        for (signed_headers, missing) in [
            ("x-sdk-date", "host"),
            ("host", "x-sdk-date"),
            ("content-type", "host"),
        ] {
            let auth = format!(
                "SDK-HMAC-SHA256 Access=AK123, SignedHeaders={signed_headers}, Signature={sig}"
            );
            let h = vec![
                ("Host".to_owned(), "gw".to_owned()),
                ("X-Sdk-Date".to_owned(), "20240101T000000Z".to_owned()),
                ("Content-Type".to_owned(), "text/plain".to_owned()),
                ("Authorization".to_owned(), auth),
            ];
            assert_eq!(
                check(&h, b"", NOW),
                Err(SignError::MissingSignedHeader(missing))
            );
        }
    }

    #[test]
    fn body_hash_header() {
        let body = b"payload";
        let good = crate::sha256_hex(body);
        let h = signed(
            &[("Host", "gw"), ("X-Sdk-Content-Sha256", &good)],
            body,
            NOW,
        );
        assert!(check(&h, body, NOW).is_ok());
        assert_eq!(check(&h, b"payloaD", NOW), Err(SignError::BodyHashMismatch));

        let h = signed(
            &[("Host", "gw"), ("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD")],
            body,
            NOW,
        );
        assert!(check(&h, body, NOW).is_ok());
        assert!(check(&h, b"anything else", NOW).is_ok());
        assert!(check(&h, b"", NOW).is_ok());

        let mut bogus = h.clone();
        set(&mut bogus, "x-sdk-content-sha256", "not-a-hash");
        assert_eq!(check(&bogus, body, NOW), Err(SignError::BodyHashMismatch));
    }

    #[test]
    fn bad_encoding_is_an_error() {
        let h = signed(&[("Host", "gw")], b"", NOW);
        let pairs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        for (path, query) in [
            ("/v1/%x", None),
            ("/v1/x", Some("a=%")),
            ("/%C3", None),
            ("/x", Some("%ff=1")),
        ] {
            let req = RequestView {
                method: "POST",
                path,
                query,
                headers: &pairs,
            };
            assert_eq!(
                verify(&req, b"", NOW, lookup),
                Err(SignError::InvalidEncoding)
            );
        }
    }

    #[test]
    fn oversized_authorization() {
        let mut h = signed(&[("Host", "gw")], b"", NOW);
        let padded = format!("{}{}", h[2].1, " ".repeat(4096));
        h[2].1 = padded;
        assert!(matches!(
            check(&h, b"", NOW),
            Err(SignError::MalformedAuthorization(_))
        ));
    }
}
