/// Why a request could not be signed or did not verify.
///
/// Variants are fine-grained for log messages and metrics; a gateway answering a client maps
/// them all to one APIG error (APIG.0303 / APIG.0301). An unknown access key is deliberately
/// indistinguishable from a wrong signature ([`SignError::BadSignature`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("Authorization header is missing")]
    MissingAuthorization,
    /// Syntax, length bounds, duplicated fields or an algorithm other than `SDK-HMAC-SHA256`.
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(&'static str),
    /// `host` and `x-sdk-date` must both be signed.
    #[error("{0} is not in SignedHeaders")]
    MissingSignedHeader(&'static str),
    #[error("X-Sdk-Date header is missing")]
    MissingDate,
    #[error("X-Sdk-Date is not in YYYYMMDDTHHMMSSZ format")]
    MalformedDate,
    /// More than [`crate::MAX_CLOCK_SKEW_SECS`] away from `now`, in either direction.
    #[error("signature expired, signature time:{signed},server time:{now}")]
    Expired { signed: i64, now: i64 },
    /// A signed header occurs more than once in the request: which copy was signed is ambiguous.
    #[error("signed header {0} occurs more than once")]
    DuplicateSignedHeader(String),
    #[error("signed header {0} is not present in the request")]
    HeaderNotPresent(String),
    /// A signed `x-sdk-content-sha256` that is neither the body's hash nor `UNSIGNED-PAYLOAD`.
    #[error("x-sdk-content-sha256 does not match the body")]
    BodyHashMismatch,
    #[error("signature does not match")]
    BadSignature,
    /// Bad `%` escape, or escapes that do not decode to UTF-8, in the path or query.
    #[error("invalid percent-encoding in path or query")]
    InvalidEncoding,
    /// Signing only: a header name that cannot appear in `SignedHeaders`.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
}
