//! Signing the requests the gateway sends to a backend with the API's signature key, so the
//! backend can tell they came through the gateway.
//!
//! - `hmac`: `X-Sdk-Date` and `Authorization: SDK-HMAC-SHA256 Access=<key>,
//!   SignedHeaders=host;x-sdk-date, Signature=…` (APIG's app signature, the key's secret as the
//!   HMAC key), over the request exactly as sent: method, path, query, `Host`, and the body's
//!   SHA-256. A body the gateway streams without holding it is signed as `UNSIGNED-PAYLOAD`
//!   (then `x-sdk-content-sha256: UNSIGNED-PAYLOAD` is sent and signed too), as APIG's
//!   verifiers accept.
//! - `basic`: `Authorization: Basic base64(key:secret)`.
//! - `aes` (APIG leaves the layout unstated; this is ours, documented in the README):
//!   `X-Sdk-Date` and `X-Apig-Signature-Aes: base64(AES-CFB(key, iv, text))` with the key's
//!   `sign_key` as the AES key (16 bytes: AES-128, 32: AES-256), `sign_secret` as the 16-byte
//!   IV and `text` = `<X-Sdk-Date>\n<METHOD>\n<path>\n<query>\n<Host>`. The backend computes
//!   the same and compares (constant time), and checks the date is within 15 minutes.

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use apig_proto::{BackendSign, SignType};
use apig_sign::{RequestView, Signer, HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::{HeaderMap, Method, Uri};

use crate::respond::GatewayErrorKind;

/// The AES signature header.
pub(crate) const X_APIG_SIGNATURE_AES: &str = "x-apig-signature-aes";

/// A prepared signature key.
#[derive(Clone)]
pub(crate) enum BackendSigner {
    Hmac { key: String, secret: Box<[u8]> },
    Basic { authorization: HeaderValue },
    Aes { key: Box<[u8]>, iv: [u8; 16] },
}

impl std::fmt::Debug for BackendSigner {
    // Secrets never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Hmac { .. } => "hmac",
            Self::Basic { .. } => "basic",
            Self::Aes { .. } => "aes",
        };
        f.debug_struct("BackendSigner")
            .field("type", &kind)
            .finish_non_exhaustive()
    }
}

/// What the signer needs of the outgoing request's body.
pub(crate) enum SignedBody<'a> {
    /// The gateway holds the whole body.
    Bytes(&'a [u8]),
    /// The body is streamed through; its hash is not known.
    Streamed,
}

impl BackendSigner {
    pub(crate) fn prepare(s: &BackendSign) -> Result<Self, String> {
        match SignType::try_from(s.r#type) {
            Ok(SignType::Hmac) => {
                if s.key.is_empty() || s.key.contains([' ', ',', '\t']) || s.secret.is_empty() {
                    return Err("invalid hmac signature key".into());
                }
                Ok(Self::Hmac {
                    key: s.key.clone(),
                    secret: s.secret.as_bytes().into(),
                })
            }
            Ok(SignType::Basic) => {
                let token = STANDARD.encode(format!("{}:{}", s.key, s.secret));
                let authorization = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| "invalid basic signature key")?;
                Ok(Self::Basic { authorization })
            }
            Ok(SignType::Aes) => {
                let want = match s.algorithm.as_str() {
                    "aes-128-cfb" => 16,
                    "aes-256-cfb" => 32,
                    other => return Err(format!("unknown AES algorithm {other:?}")),
                };
                if s.key.len() != want {
                    return Err(format!("{} needs a {want}-byte key", s.algorithm));
                }
                let iv: [u8; 16] = s
                    .secret
                    .as_bytes()
                    .try_into()
                    .map_err(|_| "the AES IV (sign_secret) must be 16 bytes")?;
                Ok(Self::Aes {
                    key: s.key.as_bytes().into(),
                    iv,
                })
            }
            Err(_) => Err(format!("unknown signature type {}", s.r#type)),
        }
    }

    /// Adds the signature headers to a backend request about to be sent.
    pub(crate) fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: SignedBody<'_>,
        now_unix: i64,
    ) -> Result<(), GatewayErrorKind> {
        let failed = |what: &str| {
            tracing::error!(error = what, "backend signature failed");
            GatewayErrorKind::BackendSignatureFailed
        };
        match self {
            Self::Basic { authorization } => {
                headers.insert(AUTHORIZATION, authorization.clone());
                Ok(())
            }
            Self::Hmac { key, secret } => {
                let host = headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .ok_or_else(|| failed("no Host header"))?
                    .to_owned();
                let (bytes, streamed) = match body {
                    SignedBody::Bytes(b) => (b, false),
                    SignedBody::Streamed => (&[][..], true),
                };
                let mut signed: Vec<(&str, &str)> = vec![("host", host.as_str())];
                if streamed {
                    signed.push((HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD));
                }
                let view = RequestView {
                    method: method.as_str(),
                    path: uri.path(),
                    query: uri.query(),
                    headers: &signed,
                };
                let added = Signer { key, secret }
                    .sign(&view, bytes, now_unix)
                    .map_err(|e| failed(&e.to_string()))?;
                if streamed {
                    headers.insert(
                        HeaderName::from_static(HEADER_CONTENT_SHA256),
                        HeaderValue::from_static(UNSIGNED_PAYLOAD),
                    );
                }
                for (name, value) in added {
                    let name = HeaderName::try_from(name).map_err(|_| failed("header name"))?;
                    let value = HeaderValue::try_from(value).map_err(|_| failed("header value"))?;
                    headers.insert(name, value);
                }
                Ok(())
            }
            Self::Aes { key, iv } => {
                let date = apig_sign::format_sdk_date(now_unix);
                let host = headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default();
                let mut text = format!(
                    "{date}\n{}\n{}\n{}\n{host}",
                    method.as_str(),
                    uri.path(),
                    uri.query().unwrap_or_default()
                )
                .into_bytes();
                aes_cfb_encrypt(key, iv, &mut text).map_err(|_| failed("AES key"))?;
                let value = HeaderValue::try_from(STANDARD.encode(&text))
                    .map_err(|_| failed("header value"))?;
                headers.insert(
                    HeaderName::from_static("x-sdk-date"),
                    HeaderValue::try_from(date).map_err(|_| failed("date"))?,
                );
                headers.insert(HeaderName::from_static(X_APIG_SIGNATURE_AES), value);
                Ok(())
            }
        }
    }
}

fn aes_cfb_encrypt(key: &[u8], iv: &[u8; 16], buf: &mut [u8]) -> Result<(), ()> {
    match key.len() {
        16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| ())?
            .encrypt(buf),
        32 => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| ())?
            .encrypt(buf),
        _ => return Err(()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(kind: SignType, key: &str, secret: &str, algorithm: &str) -> BackendSigner {
        BackendSigner::prepare(&BackendSign {
            sign_id: "s".into(),
            r#type: kind as i32,
            key: key.into(),
            secret: secret.into(),
            algorithm: algorithm.into(),
        })
        .unwrap()
    }

    fn headers(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    #[test]
    fn hmac_signatures_verify_with_the_shared_verifier() {
        let s = signer(
            SignType::Hmac,
            "backend_key_1",
            "backend_secret_0123456789",
            "",
        );
        let uri: Uri = "http://10.0.0.1:8080/orders/a%20b?x=1&y=2".parse().unwrap();
        let now = 1_700_000_000;
        for body in [SignedBody::Bytes(b"{\"a\":1}"), SignedBody::Streamed] {
            let streamed = matches!(body, SignedBody::Streamed);
            let mut h = headers("orders.internal");
            s.sign(&Method::POST, &uri, &mut h, body, now).unwrap();
            let auth = h.get(AUTHORIZATION).unwrap().to_str().unwrap().to_owned();
            let date = h.get("x-sdk-date").unwrap().to_str().unwrap().to_owned();
            let mut signed = vec![
                ("host", "orders.internal"),
                ("x-sdk-date", date.as_str()),
                ("authorization", auth.as_str()),
            ];
            if streamed {
                assert_eq!(h.get(HEADER_CONTENT_SHA256).unwrap(), UNSIGNED_PAYLOAD);
                signed.push((HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD));
            }
            let view = RequestView {
                method: "POST",
                path: "/orders/a%20b",
                query: Some("x=1&y=2"),
                headers: &signed,
            };
            let lookup =
                |k: &str| (k == "backend_key_1").then(|| b"backend_secret_0123456789".to_vec());
            let body: &[u8] = if streamed { b"" } else { b"{\"a\":1}" };
            assert!(
                apig_sign::verify(&view, body, now, lookup).is_ok(),
                "streamed={streamed}: {auth}"
            );
        }
    }

    #[test]
    fn basic_and_aes() {
        let s = signer(SignType::Basic, "user", "pass:word", "");
        let mut h = headers("b");
        s.sign(
            &Method::GET,
            &"/".parse().unwrap(),
            &mut h,
            SignedBody::Streamed,
            0,
        )
        .unwrap();
        assert_eq!(h.get(AUTHORIZATION).unwrap(), "Basic dXNlcjpwYXNzOndvcmQ=");

        let s = signer(
            SignType::Aes,
            "0123456789abcdef",
            "fedcba9876543210",
            "aes-128-cfb",
        );
        let mut h = headers("b.internal");
        let uri: Uri = "/x?q=1".parse().unwrap();
        s.sign(
            &Method::GET,
            &uri,
            &mut h,
            SignedBody::Streamed,
            1_700_000_000,
        )
        .unwrap();
        let date = h.get("x-sdk-date").unwrap().to_str().unwrap().to_owned();
        let got = STANDARD
            .decode(h.get(X_APIG_SIGNATURE_AES).unwrap().as_bytes())
            .unwrap();
        // The backend's check: encrypt the same text, compare.
        let mut want = format!("{date}\nGET\n/x\nq=1\nb.internal").into_bytes();
        aes_cfb_encrypt(b"0123456789abcdef", b"fedcba9876543210", &mut want).unwrap();
        assert_eq!(got, want);

        for (alg, key, iv) in [
            ("aes-256-cfb", "0123456789abcdef", "fedcba9876543210"),
            ("aes-128-cfb", "0123456789abcdef", "short"),
            ("des", "0123456789abcdef", "fedcba9876543210"),
        ] {
            assert!(BackendSigner::prepare(&BackendSign {
                r#type: SignType::Aes as i32,
                key: key.into(),
                secret: iv.into(),
                algorithm: alg.into(),
                ..Default::default()
            })
            .is_err());
        }
    }
}
