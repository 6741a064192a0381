//! `GET /v2/{project_id}/apigw/backup` (administrator only; a self-hosted addition): a backup
//! file of the whole store of a running control plane, in the format `apig restore` reads
//! (`backup.rs`). Taken under the write lock, so it is one consistent point in time.

use std::sync::Arc;

use apig_model::{ApiError, ErrorCode};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::Result;
use crate::auth::Caller;
use crate::ControlState;

pub async fn download(
    State(s): State<Arc<ControlState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response> {
    if !caller.admin {
        return Err(ApiError::new(
            ErrorCode::AdminOnly,
            "Only an administrator credential may download a backup.",
        )
        .into());
    }
    let _guard = s.write_lock().await;
    let store = s.store.clone();
    let (bytes, summary) =
        tokio::task::spawn_blocking(move || crate::backup::encode(store.as_ref()))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    tracing::info!(entries = summary.entries, access_key = %caller.access_key, "backup downloaded");
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"apig.backup\""),
    );
    if let Ok(v) = HeaderValue::from_str(&summary.sha256) {
        h.insert("x-backup-sha256", v);
    }
    Ok(resp)
}
