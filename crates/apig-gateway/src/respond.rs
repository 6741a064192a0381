//! The one place where a request's failure becomes an APIG error response: status, `APIG.xxxx`
//! code and message, as a JSON body `{"error_code","error_msg","request_id"}` with `X-Request-Id`.
//!
//! Codes and messages follow APIG's runtime error table (semantics digest §2.3).
//!
//! A gRPC request (`content-type: application/grpc...`) gets the same answer plus `grpc-status`
//! and `grpc-message` headers: gRPC clients read those first (a trailers-only status), where
//! they would otherwise fail to decode the JSON body as gRPC messages.

use std::borrow::Cow;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::body::ResponseBody;
use crate::context::RequestId;

/// The response header carrying the request id on every answer.
pub(crate) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Every reason the gateway itself answers a request instead of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GatewayErrorKind {
    /// No snapshot has been applied yet.
    NotReady,
    /// The request target exceeds `max_uri_bytes`.
    UriTooLarge,
    /// The request headers exceed `max_header_bytes` or `max_header_line_bytes`.
    HeadersTooLarge,
    /// The request is malformed (path, host, framing); the text says what.
    BadRequest(Cow<'static, str>),
    /// The domain verifies client certificates and this connection presented none verified
    /// for it.
    ClientCertificateRequired,
    /// No API matches host, stage and path.
    ApiNotFound,
    /// An API matches the path but not the method.
    MethodNotFound,
    /// APP API without any app credential the API accepts (APIG's `AUTH_HEADER_MISSING`).
    AppAuthMissing,
    /// APP credentials that do not verify; the text says why (`APIG.0303`).
    AppAuthFailed(Cow<'static, str>),
    /// The app authenticated but is not authorized for the API in this environment.
    AppNotAuthorized,
    /// The app's IP ACL refuses the client address.
    AppIpDenied,
    /// The API's IP access control policy refuses the client address.
    ApiIpDenied,
    /// The API's DOMAIN_ID or DOMAIN access control policy refuses the IAM caller's project.
    IamProjectDenied,
    /// A throttle counter of the API refused the call.
    Throttled,
    /// The app's credential quota for the current window is used up.
    AppQuotaExhausted,
    /// IAM API without a token or signature (APIG's `AUTH_HEADER_MISSING`).
    IamAuthMissing,
    /// IAM credentials that do not verify; the text says why (`APIG.0301`).
    IamAuthFailed(Cow<'static, str>),
    /// An identity source of the frontend custom authorizer is missing, repeated or fails its
    /// validation expression (the function was not called).
    AuthorizerIdentitiesFailure,
    /// The custom authorizer answered `deny`.
    AuthorizerDenied,
    /// The custom authorizer could not be called or gave no valid answer: fail closed.
    AuthorizerFailed,
    /// The request body exceeds `max_body_bytes` (or, signed, `max_signed_body_bytes`).
    BodyTooLarge,
    /// The client did not send a body the gateway had to read in time.
    RequestTimeout,
    /// A required request parameter is absent.
    MissingParameter {
        name: String,
        location: &'static str,
    },
    /// A request parameter fails its validation rule.
    InvalidParameter { name: String, reason: String },
    /// The backend did not answer with response headers within the API's timeout.
    BackendTimeout,
    /// The backend refused, reset or broke the connection.
    BackendUnavailable,
    /// No member of the API's load-balance channel is healthy (or every one was tried).
    NoBackendAvailable,
    /// The API's signature key could not sign the backend request.
    BackendSignatureFailed,
    /// No orchestration rule maps the parameter's value (and there is no default rule).
    OrchestrationFailed(String),
    /// A function endpoint failed, or answered something that is not a function answer.
    FunctionAnswerInvalid,
    /// A bug or an impossible state; logged where it happens.
    Internal,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error_code: &'a str,
    error_msg: &'a str,
    request_id: &'a str,
}

// === impl GatewayErrorKind ===

impl GatewayErrorKind {
    /// HTTP status of the error response.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::UriTooLarge => StatusCode::URI_TOO_LONG,
            // nginx's (and so APIG's) non-standard "Request Header Too Large".
            Self::HeadersTooLarge => {
                StatusCode::from_u16(494).unwrap_or(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            Self::BadRequest(_)
            | Self::MissingParameter { .. }
            | Self::InvalidParameter { .. }
            | Self::OrchestrationFailed(_)
            | Self::ClientCertificateRequired => StatusCode::BAD_REQUEST,
            Self::ApiNotFound | Self::MethodNotFound => StatusCode::NOT_FOUND,
            Self::AppAuthMissing
            | Self::AppAuthFailed(_)
            | Self::IamAuthMissing
            | Self::IamAuthFailed(_)
            | Self::AuthorizerIdentitiesFailure => StatusCode::UNAUTHORIZED,
            Self::AppNotAuthorized
            | Self::AppIpDenied
            | Self::ApiIpDenied
            | Self::IamProjectDenied => StatusCode::FORBIDDEN,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            // APIG answers an exhausted credential quota with 405 (semantics digest §2.3).
            Self::AppQuotaExhausted => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BackendUnavailable | Self::NoBackendAvailable | Self::FunctionAnswerInvalid => {
                StatusCode::BAD_GATEWAY
            }
            // APIG's default statuses of AUTHORIZER_FAILURE and AUTHORIZER_CONF_FAILURE.
            Self::Internal
            | Self::BackendSignatureFailed
            | Self::AuthorizerDenied
            | Self::AuthorizerFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// APIG error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::NotReady => "APIG.0606",
            Self::UriTooLarge
            | Self::HeadersTooLarge
            | Self::BadRequest(_)
            | Self::BodyTooLarge
            | Self::RequestTimeout
            | Self::MissingParameter { .. }
            | Self::InvalidParameter { .. }
            | Self::BackendTimeout
            | Self::BackendUnavailable => "APIG.0201",
            Self::ApiNotFound | Self::MethodNotFound => "APIG.0101",
            Self::ClientCertificateRequired => "APIG.0205",
            Self::AppAuthMissing | Self::AppAuthFailed(_) => "APIG.0303",
            Self::AppNotAuthorized => "APIG.0304",
            Self::AppIpDenied => "APIG.0405",
            Self::ApiIpDenied => "APIG.0402",
            Self::IamProjectDenied => "APIG.0302",
            Self::Throttled => "APIG.0308",
            Self::AppQuotaExhausted => "APIG.0501",
            Self::IamAuthMissing | Self::IamAuthFailed(_) => "APIG.0301",
            Self::AuthorizerIdentitiesFailure | Self::AuthorizerDenied => "APIG.0305",
            Self::AuthorizerFailed => "APIG.0601",
            Self::NoBackendAvailable => "APIG.0610",
            Self::FunctionAnswerInvalid => "APIG.0202",
            Self::OrchestrationFailed(_) => "APIG.0106",
            Self::BackendSignatureFailed => "APIG.0705",
            Self::Internal => "APIG.0601",
        }
    }

    /// APIG error message.
    pub(crate) fn message(&self) -> Cow<'static, str> {
        match self {
            Self::NotReady => "Failed to load the API configurations.".into(),
            Self::UriTooLarge => "Request URI too large.".into(),
            Self::HeadersTooLarge => "Request headers too large.".into(),
            Self::BadRequest(what) => format!("API request error: {what}").into(),
            Self::ApiNotFound => {
                "The API does not exist or has not been published in the environment.".into()
            }
            Self::MethodNotFound => "The API does not exist.".into(),
            Self::ClientCertificateRequired => "Verify client certificate failed".into(),
            Self::AppAuthMissing => {
                "Incorrect app authentication information: Authorization header is missing".into()
            }
            Self::AppAuthFailed(why) => {
                format!("Incorrect app authentication information: {why}").into()
            }
            Self::AppNotAuthorized => "The app is not authorized to access the API.".into(),
            Self::AppIpDenied => "The app is not accessed from a trusted IP address.".into(),
            Self::ApiIpDenied => "The IP address is not authorized to access the API.".into(),
            Self::IamProjectDenied => "The IAM user is not authorized to access the API.".into(),
            Self::Throttled => "The throttling threshold has been reached.".into(),
            Self::AppQuotaExhausted => "The app quota has been used up.".into(),
            Self::IamAuthMissing => "Incorrect IAM authentication information: \
                                     X-Auth-Token or Authorization header is missing"
                .into(),
            Self::IamAuthFailed(why) => {
                format!("Incorrect IAM authentication information: {why}").into()
            }
            Self::AuthorizerIdentitiesFailure => "Incorrect authentication information: \
                                                  the identity source is missing or invalid"
                .into(),
            Self::AuthorizerDenied => {
                "Incorrect authentication information: the custom authorizer denied the request"
                    .into()
            }
            Self::AuthorizerFailed => "Internal server error: the custom authorizer failed.".into(),
            Self::BodyTooLarge => "Request entity too large.".into(),
            Self::RequestTimeout => "Request timeout.".into(),
            Self::MissingParameter { name, location } => {
                format!("API request error: missing required {location} parameter: {name}").into()
            }
            Self::InvalidParameter { name, reason } => {
                format!("API request error: invalid parameter {name}: {reason}").into()
            }
            Self::BackendTimeout => "Backend timeout.".into(),
            Self::BackendUnavailable => "Backend unavailable.".into(),
            Self::NoBackendAvailable => "No backend available.".into(),
            Self::OrchestrationFailed(why) => format!("Orchestration error: {why}.").into(),
            Self::FunctionAnswerInvalid => {
                "Backend unavailable: the function's answer is not a valid function response."
                    .into()
            }
            Self::BackendSignatureFailed => "Backend signature calculation failed.".into(),
            Self::Internal => "Internal server error.".into(),
        }
    }

    /// The APIG gateway response type this error answers with (semantics digest §2.2), for
    /// per-group customised responses.
    ///
    /// An exhausted credential quota is `DEFAULT_4XX`, not `THROTTLED`: APIG answers it with
    /// 405, and `THROTTLED`'s default status is 429, while `DEFAULT_4XX` keeps the underlying
    /// status, so only `DEFAULT_4XX` yields APIG's observed 405 with default responses (the
    /// mapping is inferred; APIG documents none).
    pub(crate) fn response_type(&self) -> &'static str {
        match self {
            Self::ApiNotFound | Self::MethodNotFound => "NOT_FOUND",
            Self::AppAuthMissing | Self::IamAuthMissing => "AUTH_HEADER_MISSING",
            Self::AppAuthFailed(_) | Self::IamAuthFailed(_) => "AUTH_FAILURE",
            Self::AuthorizerIdentitiesFailure => "AUTHORIZER_IDENTITIES_FAILURE",
            Self::AuthorizerDenied => "AUTHORIZER_FAILURE",
            Self::AuthorizerFailed => "AUTHORIZER_CONF_FAILURE",
            Self::AppNotAuthorized => "UNAUTHORIZED",
            Self::AppIpDenied | Self::ApiIpDenied | Self::IamProjectDenied => "ACCESS_DENIED",
            Self::Throttled => "THROTTLED",
            Self::BadRequest(_) | Self::MissingParameter { .. } | Self::InvalidParameter { .. } => {
                "REQUEST_PARAMETERS_FAILURE"
            }
            Self::BackendTimeout => "BACKEND_TIMEOUT",
            Self::BackendUnavailable | Self::NoBackendAvailable | Self::FunctionAnswerInvalid => {
                "BACKEND_UNAVAILABLE"
            }
            Self::NotReady | Self::Internal | Self::BackendSignatureFailed => "DEFAULT_5XX",
            Self::OrchestrationFailed(_) => "ORCHESTRATION_FAILURE",
            Self::UriTooLarge
            | Self::HeadersTooLarge
            | Self::BodyTooLarge
            | Self::RequestTimeout
            | Self::AppQuotaExhausted
            | Self::ClientCertificateRequired => "DEFAULT_4XX",
        }
    }

    /// The gRPC status code of this error, by meaning (gRPC's `Code` numbers).
    pub(crate) fn grpc_code(&self) -> u8 {
        const INVALID_ARGUMENT: u8 = 3;
        const DEADLINE_EXCEEDED: u8 = 4;
        const PERMISSION_DENIED: u8 = 7;
        const RESOURCE_EXHAUSTED: u8 = 8;
        const UNIMPLEMENTED: u8 = 12;
        const INTERNAL: u8 = 13;
        const UNAVAILABLE: u8 = 14;
        const UNAUTHENTICATED: u8 = 16;
        match self {
            Self::UriTooLarge
            | Self::HeadersTooLarge
            | Self::BadRequest(_)
            | Self::MissingParameter { .. }
            | Self::InvalidParameter { .. }
            | Self::OrchestrationFailed(_) => INVALID_ARGUMENT,
            Self::RequestTimeout | Self::BackendTimeout => DEADLINE_EXCEEDED,
            Self::AppNotAuthorized
            | Self::AppIpDenied
            | Self::ApiIpDenied
            | Self::IamProjectDenied
            | Self::AuthorizerDenied => PERMISSION_DENIED,
            Self::Throttled | Self::AppQuotaExhausted | Self::BodyTooLarge => RESOURCE_EXHAUSTED,
            Self::ApiNotFound | Self::MethodNotFound => UNIMPLEMENTED,
            Self::Internal | Self::BackendSignatureFailed | Self::AuthorizerFailed => INTERNAL,
            Self::NotReady
            | Self::BackendUnavailable
            | Self::NoBackendAvailable
            | Self::FunctionAnswerInvalid => UNAVAILABLE,
            Self::AppAuthMissing
            | Self::AppAuthFailed(_)
            | Self::IamAuthMissing
            | Self::IamAuthFailed(_)
            | Self::AuthorizerIdentitiesFailure
            | Self::ClientCertificateRequired => UNAUTHENTICATED,
        }
    }

    /// The complete error response for this request.
    pub(crate) fn into_response(self, request_id: &RequestId) -> Response<ResponseBody> {
        error_response(self.status(), self.code(), &self.message(), request_id)
    }
}

/// Builds an APIG error response. Never fails: the body is serialised from plain strings.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &RequestId,
) -> Response<ResponseBody> {
    let body = serde_json::to_vec(&ErrorBody {
        error_code: code,
        error_msg: message,
        request_id: request_id.as_str(),
    })
    .unwrap_or_default();
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_REQUEST_ID, request_id.header_value());
    response
}

/// Whether a request is a gRPC call (`application/grpc`, `application/grpc+proto`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// What gRPC's `grpc-message` percent-encodes: everything outside printable ASCII, and `%`.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// Adds `grpc-status` and `grpc-message` to an error answer to a gRPC call.
pub(crate) fn add_grpc_status(headers: &mut HeaderMap, code: u8, message: &str) {
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    let encoded = utf8_percent_encode(message, GRPC_MESSAGE).to_string();
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-message", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn grpc_calls_get_a_grpc_status_too() {
        let grpc = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            is_grpc(&h)
        };
        assert!(grpc("application/grpc"));
        assert!(grpc("application/grpc+proto"));
        assert!(grpc("Application/GRPC; charset=x"));
        assert!(!grpc("application/grpc-web"));
        assert!(!grpc("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));

        assert_eq!(GatewayErrorKind::IamAuthMissing.grpc_code(), 16);
        assert_eq!(GatewayErrorKind::Throttled.grpc_code(), 8);
        assert_eq!(GatewayErrorKind::BackendTimeout.grpc_code(), 4);
        assert_eq!(GatewayErrorKind::ApiNotFound.grpc_code(), 12);
        let mut h = HeaderMap::new();
        add_grpc_status(&mut h, 16, "100% wrong: é");
        assert_eq!(h["grpc-status"], "16");
        assert_eq!(h["grpc-message"], "100%25 wrong: %C3%A9");
    }

    fn all_kinds() -> Vec<GatewayErrorKind> {
        use GatewayErrorKind::*;
        vec![
            NotReady,
            UriTooLarge,
            HeadersTooLarge,
            BadRequest("bad path".into()),
            ClientCertificateRequired,
            ApiNotFound,
            MethodNotFound,
            AppAuthMissing,
            AppAuthFailed("verify signature fail".into()),
            AppNotAuthorized,
            AppIpDenied,
            ApiIpDenied,
            IamProjectDenied,
            Throttled,
            AppQuotaExhausted,
            IamAuthMissing,
            IamAuthFailed("token expired".into()),
            AuthorizerIdentitiesFailure,
            AuthorizerDenied,
            AuthorizerFailed,
            BodyTooLarge,
            RequestTimeout,
            MissingParameter {
                name: "id".into(),
                location: "QUERY",
            },
            InvalidParameter {
                name: "n".into(),
                reason: "not a number".into(),
            },
            BackendTimeout,
            BackendUnavailable,
            Internal,
        ]
    }

    #[test]
    fn codes_and_statuses_follow_apig() {
        use GatewayErrorKind::*;
        let cases: &[(GatewayErrorKind, u16, &str)] = &[
            (UriTooLarge, 414, "APIG.0201"),
            (HeadersTooLarge, 494, "APIG.0201"),
            (BadRequest("x".into()), 400, "APIG.0201"),
            (ClientCertificateRequired, 400, "APIG.0205"),
            (ApiNotFound, 404, "APIG.0101"),
            (MethodNotFound, 404, "APIG.0101"),
            (AppAuthMissing, 401, "APIG.0303"),
            (AppAuthFailed("x".into()), 401, "APIG.0303"),
            (AppNotAuthorized, 403, "APIG.0304"),
            (AppIpDenied, 403, "APIG.0405"),
            (ApiIpDenied, 403, "APIG.0402"),
            (IamProjectDenied, 403, "APIG.0302"),
            (Throttled, 429, "APIG.0308"),
            (AppQuotaExhausted, 405, "APIG.0501"),
            (IamAuthMissing, 401, "APIG.0301"),
            (IamAuthFailed("x".into()), 401, "APIG.0301"),
            (AuthorizerIdentitiesFailure, 401, "APIG.0305"),
            (AuthorizerDenied, 500, "APIG.0305"),
            (AuthorizerFailed, 500, "APIG.0601"),
            (BodyTooLarge, 413, "APIG.0201"),
            (RequestTimeout, 408, "APIG.0201"),
            (BackendTimeout, 504, "APIG.0201"),
            (BackendUnavailable, 502, "APIG.0201"),
            (Internal, 500, "APIG.0601"),
            (NotReady, 503, "APIG.0606"),
        ];
        for (kind, status, code) in cases {
            assert_eq!(kind.status().as_u16(), *status, "{kind:?}");
            assert_eq!(kind.code(), *code, "{kind:?}");
        }
        assert_eq!(
            ApiNotFound.message(),
            "The API does not exist or has not been published in the environment."
        );
        assert_eq!(UriTooLarge.message(), "Request URI too large.");
        assert_eq!(BodyTooLarge.message(), "Request entity too large.");
        assert_eq!(BackendTimeout.message(), "Backend timeout.");
        assert_eq!(BackendUnavailable.message(), "Backend unavailable.");
        assert_eq!(
            AppAuthMissing.message(),
            "Incorrect app authentication information: Authorization header is missing"
        );
        assert_eq!(
            AppAuthFailed("verify signature fail".into()).message(),
            "Incorrect app authentication information: verify signature fail"
        );
        assert_eq!(
            AppNotAuthorized.message(),
            "The app is not authorized to access the API."
        );
        assert_eq!(
            AppIpDenied.message(),
            "The app is not accessed from a trusted IP address."
        );
        assert!(IamAuthMissing
            .message()
            .starts_with("Incorrect IAM authentication information: "));
        assert_eq!(
            IamAuthFailed("token expired".into()).message(),
            "Incorrect IAM authentication information: token expired"
        );
        assert_eq!(AppAuthMissing.response_type(), "AUTH_HEADER_MISSING");
        assert_eq!(AppAuthFailed("x".into()).response_type(), "AUTH_FAILURE");
        assert_eq!(AppNotAuthorized.response_type(), "UNAUTHORIZED");
        assert_eq!(AppIpDenied.response_type(), "ACCESS_DENIED");
        assert_eq!(ApiIpDenied.response_type(), "ACCESS_DENIED");
        assert_eq!(IamProjectDenied.response_type(), "ACCESS_DENIED");
        assert_eq!(Throttled.response_type(), "THROTTLED");
        assert_eq!(
            ApiIpDenied.message(),
            "The IP address is not authorized to access the API."
        );
        assert_eq!(
            IamProjectDenied.message(),
            "The IAM user is not authorized to access the API."
        );
        assert_eq!(
            Throttled.message(),
            "The throttling threshold has been reached."
        );
        assert_eq!(
            AppQuotaExhausted.message(),
            "The app quota has been used up."
        );
        assert_eq!(AppQuotaExhausted.response_type(), "DEFAULT_4XX");
    }

    #[tokio::test]
    async fn every_error_is_an_apig_json_body_with_request_id() {
        for kind in all_kinds() {
            let id = RequestId::random();
            let status = kind.status();
            let code = kind.code();
            let message = kind.message().into_owned();
            let response = kind.into_response(&id);
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(response.headers()[X_REQUEST_ID], id.as_str());
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["error_code"], code);
            assert_eq!(json["error_msg"], message.as_str());
            assert_eq!(json["request_id"], id.as_str());
            assert_eq!(json.as_object().unwrap().len(), 3);
        }
    }

    #[test]
    fn parameter_messages_name_the_parameter() {
        let missing = GatewayErrorKind::MissingParameter {
            name: "userId".into(),
            location: "HEADER",
        };
        assert!(missing.message().contains("userId"));
        assert!(missing.message().contains("HEADER"));
    }
}
