//! `GET /v2/{project_id}/apigw/audit-logs` (a self-hosted addition, not an APIG operation): the
//! project's audit log, newest first. Filters: `since`, `until` (RFC 3339), `method`,
//! `resource` (a resource type such as `apps`, matching `apps/...` too, or a resource id),
//! `access_key`; the administrator credential may pass `all_projects=true`.

use std::sync::Arc;

use apig_model::{ApiError, ErrorCode};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ok, page_of, paged, Params, Result};
use crate::audit::AuditEntry;
use crate::auth::Caller;
use crate::tx::Reader;
use crate::{keys, ControlState};

fn time_param(
    q: &std::collections::HashMap<String, String>,
    name: &str,
) -> std::result::Result<Option<DateTime<Utc>>, ApiError> {
    match q.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                ApiError::invalid(name, "must be an RFC 3339 time, e.g. 2024-01-31T12:00:00Z")
            }),
    }
}

fn matches(
    e: &AuditEntry,
    q: &std::collections::HashMap<String, String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> bool {
    let want = |k: &str| q.get(k).filter(|v| !v.is_empty());
    if let Some(m) = want("method") {
        if !e.method.eq_ignore_ascii_case(m) {
            return false;
        }
    }
    if let Some(ak) = want("access_key") {
        if &e.access_key != ak {
            return false;
        }
    }
    if let Some(r) = want("resource") {
        let by_type = e.resource_type == *r || e.resource_type.starts_with(&format!("{r}/"));
        if !by_type && e.resource_id.as_ref() != Some(r) {
            return false;
        }
    }
    if since.is_some() || until.is_some() {
        let Ok(t) = DateTime::parse_from_rfc3339(&e.time) else {
            return false;
        };
        let t = t.with_timezone(&Utc);
        if since.is_some_and(|s| t < s) || until.is_some_and(|u| t > u) {
            return false;
        }
    }
    true
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    let since = time_param(&q, "since")?;
    let until = time_param(&q, "until")?;
    let all = match q.get("all_projects").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("all_projects", "must be true or false").into()),
    };
    if all && !caller.admin {
        return Err(ApiError::new(
            ErrorCode::AdminOnly,
            "Only an administrator credential may read the audit log of all projects.",
        )
        .into());
    }
    let prefix = if all {
        keys::AUDIT.to_owned()
    } else {
        keys::audits(&caller.project_id)
    };
    let store = s.store.clone();
    let mut entries: Vec<AuditEntry> =
        tokio::task::spawn_blocking(move || Reader::scan_json(store.as_ref(), &prefix))
            .await
            .map_err(ApiError::internal)??;
    entries.retain(|e| matches(e, &q, since, until));
    // Ids are time-ordered across projects: newest first.
    entries.sort_by(|a, b| b.id.cmp(&a.id));
    let items: Vec<Value> = entries
        .into_iter()
        .map(|e| serde_json::to_value(e).map_err(ApiError::internal))
        .collect::<std::result::Result<_, _>>()?;
    Ok(ok(paged(items, page, "audit_logs")))
}
