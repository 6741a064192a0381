//! Management authentication: every `/v2/{project_id}/...` request must carry an
//! `SDK-HMAC-SHA256` signature (as `huaweicloudsdkcore` signs) by a credential of that project.

use std::sync::Arc;

use apig_model::{ApiError, ErrorCode};
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::HttpError;
use crate::keys;
use crate::tx::Reader;
use crate::ControlState;

/// Largest management request body accepted.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// An AK/SK pair of a project.
#[derive(Serialize, Deserialize, Clone)]
pub struct Credential {
    pub access_key: String,
    pub secret_key: String,
    pub project_id: String,
    pub create_time: String,
    /// Administrator credentials may create projects (tenants).
    #[serde(default)]
    pub admin: bool,
}

impl std::fmt::Debug for Credential {
    // Never print the secret, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key", &self.access_key)
            .field("project_id", &self.project_id)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Who made a verified management request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub project_id: String,
    pub access_key: String,
    pub admin: bool,
}

fn unauthorized(code: ErrorCode, msg: impl Into<String>) -> Response {
    HttpError(ApiError::new(code, msg)).into_response()
}

/// The `{project_id}` of `/v2/{project_id}/apigw/...`.
fn path_project(path: &str) -> Option<&str> {
    let mut it = path.split('/');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(""), Some("v2"), Some(project), Some("apigw")) if !project.is_empty() => {
            Some(project)
        }
        _ => None,
    }
}

pub async fn require_signature(
    State(state): State<Arc<ControlState>>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let Some(project) = path_project(parts.uri.path()).map(str::to_owned) else {
        return HttpError(ApiError::new(
            ErrorCode::ResourceNotFound,
            "The resource does not exist.",
        ))
        .into_response();
    };
    if !parts.headers.contains_key("authorization") {
        return unauthorized(
            ErrorCode::AuthMissing,
            "Token missing: sign the request with SDK-HMAC-SHA256 (AK/SK).",
        );
    }
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return HttpError(ApiError::new(
                ErrorCode::BodyTooLarge,
                "The request body is too large.",
            ))
            .into_response()
        }
    };
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        match value.to_str() {
            Ok(v) => headers.push((name.as_str(), v)),
            // A signed header must be text; an unsigned binary one is simply left out.
            Err(_) => continue,
        }
    }
    let view = apig_sign::RequestView {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
    };
    let now = chrono::Utc::now().timestamp();
    let store = state.reader();
    let mut credential: Option<Credential> = None;
    let verified = apig_sign::verify(&view, &body, now, |ak| {
        // A store failure looks like an unknown key here (fail closed); it is logged.
        credential = match Reader::get_json::<Credential>(store, &keys::credential(ak)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e.message, "credential lookup failed");
                None
            }
        };
        credential
            .as_ref()
            .map(|c| c.secret_key.clone().into_bytes())
    });
    let access_key = match verified {
        Ok(v) => v.access_key.to_owned(),
        Err(e) => {
            tracing::info!(reason = %e, "management request rejected");
            return unauthorized(
                ErrorCode::AuthInvalid,
                format!("Incorrect token or token resolution failed: {e}"),
            );
        }
    };
    let Some(credential) = credential else {
        return unauthorized(
            ErrorCode::AuthInvalid,
            "Incorrect token or token resolution failed.",
        );
    };
    if credential.project_id != project {
        return HttpError(ApiError::new(
            ErrorCode::AuthInvalid,
            "Incorrect token or token resolution failed: the credential does not belong to this project.",
        ))
        .into_response();
    }
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(Caller {
        project_id: project,
        access_key,
        admin: credential.admin,
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_from_path() {
        assert_eq!(path_project("/v2/p1/apigw/instances"), Some("p1"));
        assert_eq!(path_project("/v2//apigw/instances"), None);
        assert_eq!(path_project("/v3/p/apigw"), None);
        assert_eq!(path_project("/v2/p/other"), None);
    }

    #[test]
    fn debug_hides_secret() {
        let c = Credential {
            access_key: "AK".into(),
            secret_key: "topsecret".into(),
            project_id: "p".into(),
            create_time: String::new(),
            admin: false,
        };
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
