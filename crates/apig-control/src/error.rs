//! Turning failures into APIG management answers. Every handler returns `Result<_, ApiError>`;
//! this is the one place an `ApiError` becomes an HTTP response.

use apig_model::{ApiError, ErrorCode};
use apig_store::StoreError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Wrapper so `ApiError` (from a crate that knows nothing of axum) can be returned by handlers.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0.body()).unwrap_or_default();
        if status.is_server_error() {
            tracing::error!(code = self.0.code.code(), message = %self.0.message, "management request failed");
        }
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        resp
    }
}

pub fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "store failure");
    ApiError::new(
        ErrorCode::StoreUnavailable,
        "System error: the store is unavailable",
    )
}

/// Parses a JSON request body, mapping serde's complaint to APIG's parameter errors.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ParameterRequired,
            "The request body must be specified.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => ErrorCode::InvalidParameter,
            _ => ErrorCode::ParameterError,
        };
        ApiError::new(code, format!("Parameter error: the body is not valid: {e}"))
    })
}
