//! `SDK-HMAC-SHA256`: the request signature of Huawei Cloud APIG app authentication and of the
//! management API's AK/SK authentication.
//!
//! Pure code: no I/O and no clock reads (callers pass `now` as unix seconds), so the control
//! plane, the gateway, backend signing and the client-side test kit share one implementation.
//!
//! Compatibility was checked by running the two official Python signers (see
//! `tests/gen_vectors.py` and `tests/vectors.json`):
//!
//! * SIG-APP, `apigateway_sdk_python.signer` (app authentication SDK);
//! * SIG-CORE, `huaweicloudsdkcore.signer.signer` (management SDK).
//!
//! Where they disagree the verifier accepts what either produces:
//!
//! * **Payload hash of an empty body.** With a signed `x-sdk-content-sha256` header SIG-APP
//!   signs the header's literal value (e.g. `UNSIGNED-PAYLOAD`) while SIG-CORE signs the hash
//!   of the empty body. [`verify`] accepts both for an empty body.
//! * **Headers with `_`.** SIG-CORE leaves them out of `SignedHeaders`, SIG-APP signs them.
//!   Irrelevant to the verifier, which takes the list from the `Authorization` header.
//!
//! Where they agree, and what a caller has to know:
//!
//! * **Host.** Both sign the URL's authority *including a port* when one is present: the
//!   management SDK with endpoint `http://127.0.0.1:9080` signs and sends
//!   `Host: 127.0.0.1:9080`. The verifier therefore uses the `Host` header exactly as received.
//!   For HTTP/2 the caller must put `:authority` into the headers under the name `host`.
//! * **`+` in a query** is a literal plus (Python `unquote`, not `unquote_plus`): `q=a+b`
//!   signs as `q=a%2Bb`. Both SDKs rewrite the query they send into canonical form, so they
//!   never put a raw `+` on the wire themselves.
//! * **`%2F` in a path** is decoded before the path is split, so `/a%2Fb` signs as `/a/b/`
//!   (SIG-CORE percent-encodes `/` inside path parameters and relies on this).
//! * **Invalid encodings.** Python's `unquote` leaves a malformed `%` escape as is and turns
//!   invalid UTF-8 into U+FFFD; both would let different wire requests share a signature, so
//!   this crate rejects them with [`SignError::InvalidEncoding`] instead.
//!
//! The [`token`] module holds the other credential the gateway verifies offline: `APIGT1`
//! tokens (`X-Auth-Token`), Ed25519-signed by the control plane.

mod authorization;
mod canonical;
mod crypto;
mod date;
mod encoding;
mod error;
mod payload;
mod sign;
pub mod token;
mod verify;

pub use authorization::{authorization_header, Authorization};
pub use canonical::{canonical_query, canonical_request, canonical_uri};
pub use crypto::{sha256_hex, signature, string_to_sign};
pub use date::{format_sdk_date, parse_sdk_date};
pub use error::SignError;
pub use payload::{payload_hashes, PayloadHashes};
pub use sign::Signer;
pub use token::{TokenClaims, TokenError, TokenSigner, TokenVerifier};
pub use verify::{verify, Verified};

/// The only algorithm token accepted in `Authorization`.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// Signing date header (UTC, `YYYYMMDDTHHMMSSZ`); must be signed.
pub const HEADER_DATE: &str = "x-sdk-date";
/// Optional header whose signed literal value replaces the body hash.
pub const HEADER_CONTENT_SHA256: &str = "x-sdk-content-sha256";
/// Header that must be signed, so a signature cannot be replayed against another host.
pub const HEADER_HOST: &str = "host";
/// Literal `x-sdk-content-sha256` value that leaves the body unsigned.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Hex SHA-256 of the empty byte string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Largest accepted distance between `X-Sdk-Date` and the verifier's clock, both directions.
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;
/// Longest accepted `Authorization` header value, in bytes.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;
/// Most names accepted in `SignedHeaders`.
pub const MAX_SIGNED_HEADERS: usize = 64;

/// What the verifier/signer sees of a request.
///
/// `path` is the raw request-target path as sent on the wire (still percent-encoded), `query`
/// the raw query string without `?`, headers as (name, value) pairs in any case (duplicates
/// allowed in the slice: a duplicated *signed* header is rejected when verifying).
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
}
