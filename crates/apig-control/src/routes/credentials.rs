//! Project-level identity, beyond APIG's V2 API (a self-hosted gateway has no IAM service):
//!
//! - `POST /v2/{project_id}/apigw/projects` (administrator credential only): create a tenant
//!   project and its first AK/SK credential;
//! - `GET|POST /v2/{project_id}/apigw/credentials`, `DELETE …/credentials/{access_key}`: the
//!   project's AK/SK credentials (they sign management calls and IAM-authenticated API calls);
//! - `POST /v2/{project_id}/apigw/tokens`: a short-lived token for the calling credential, sent
//!   as `X-Auth-Token` to IAM-authenticated APIs and verified by replicas without a round trip.
//!
//! Secrets are shown once, in the create answers.

use std::sync::Arc;

use apig_model::instance::Instance;
use apig_model::project::{self, Project};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::{created, no_content, ok, Result};
use crate::auth::{Caller, Credential};
use crate::bootstrap::random;
use crate::error::parse_json;
use crate::tx::{Reader, Tx};
use crate::{keys, ControlState};

pub const MAX_CREDENTIALS_PER_PROJECT: usize = 20;
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 3600;
pub const MAX_TOKEN_TTL_SECS: i64 = 24 * 3600;

fn credentials_of(
    r: &(impl Reader + ?Sized),
    project: &str,
) -> std::result::Result<Vec<Credential>, ApiError> {
    let all: Vec<Credential> = r.scan_json(keys::CREDENTIALS)?;
    Ok(all
        .into_iter()
        .filter(|c| c.project_id == project)
        .collect())
}

/// Instances of a project: their snapshots carry the project's credentials.
fn instances_of(
    r: &(impl Reader + ?Sized),
    project: &str,
) -> std::result::Result<Vec<String>, ApiError> {
    let all: Vec<Instance> = r.scan_json(keys::INSTANCES)?;
    Ok(all
        .into_iter()
        .filter(|i| i.project_id == project)
        .map(|i| i.id)
        .collect())
}

fn new_credential(project: &str) -> Credential {
    Credential {
        access_key: random(20).to_uppercase(),
        secret_key: random(40),
        project_id: project.to_owned(),
        create_time: time::now_rfc3339(),
        admin: false,
    }
}

fn shown(c: &Credential) -> serde_json::Value {
    json!({"access_key": c.access_key, "project_id": c.project_id, "create_time": c.create_time, "admin": c.admin})
}

async fn commit_for_project(
    s: &ControlState,
    tx: Tx<'_>,
    project: &str,
) -> std::result::Result<(), ApiError> {
    let instances = instances_of(s.reader(), project)?;
    let refs: Vec<&str> = instances.iter().map(String::as_str).collect();
    s.commit(tx, &refs).await
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path(project): Path<String>,
) -> Result<Response> {
    let mut all = credentials_of(s.reader(), &project)?;
    all.sort_by(|a, b| (&a.create_time, &a.access_key).cmp(&(&b.create_time, &b.access_key)));
    let items: Vec<_> = all.iter().map(shown).collect();
    Ok(ok(
        json!({"total": items.len(), "size": items.len(), "credentials": items}),
    ))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path(project): Path<String>,
) -> Result<Response> {
    let _w = s.write_lock().await;
    if credentials_of(s.reader(), &project)?.len() >= MAX_CREDENTIALS_PER_PROJECT {
        return Err(ApiError::invalid(
            "credentials",
            format!("a project has at most {MAX_CREDENTIALS_PER_PROJECT} credentials"),
        )
        .into());
    }
    let c = new_credential(&project);
    let mut tx = s.tx();
    tx.put(keys::credential(&c.access_key), &c)?;
    commit_for_project(&s, tx, &project).await?;
    let mut body = shown(&c);
    body["secret_key"] = c.secret_key.clone().into();
    Ok(created(body))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Extension(caller): Extension<Caller>,
    Path((project, ak)): Path<(String, String)>,
) -> Result<Response> {
    let _w = s.write_lock().await;
    let c: Option<Credential> = Reader::get_json(s.reader(), &keys::credential(&ak))?;
    let Some(c) = c.filter(|c| c.project_id == project) else {
        return Err(ApiError::new(
            ErrorCode::CredentialNotFound,
            format!("The credential {ak} does not exist"),
        )
        .into());
    };
    if c.access_key == caller.access_key {
        return Err(ApiError::invalid(
            "access_key",
            "a credential cannot delete itself; use another credential of the project",
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::credential(&ak));
    commit_for_project(&s, tx, &project).await?;
    Ok(no_content())
}

#[derive(Deserialize, Default)]
struct ProjectCreate {
    project_id: Option<String>,
    /// The account name (`DOMAIN` access control policies); unique.
    name: Option<String>,
}

pub async fn create_project(
    State(s): State<Arc<ControlState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response> {
    if !caller.admin {
        return Err(ApiError::new(
            ErrorCode::AdminOnly,
            "Only an administrator credential may create projects.",
        )
        .into());
    }
    let req: ProjectCreate = if body.is_empty() {
        ProjectCreate::default()
    } else {
        parse_json(&body)?
    };
    let project = match req.project_id {
        Some(p)
            if p.len() == 32
                && p.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            p
        }
        Some(_) => {
            return Err(
                ApiError::invalid("project_id", "32 lowercase hexadecimal characters").into(),
            )
        }
        None => ids::new_id(),
    };
    let name = match req.name {
        Some(name) => {
            project::validate_name("name", &name)?;
            name
        }
        None => project::default_name(&project),
    };
    let _w = s.write_lock().await;
    if Reader::exists(s.reader(), &keys::project(&project))? {
        return Err(ApiError::invalid("project_id", "the project already exists").into());
    }
    let projects: Vec<Project> = Reader::scan_json(s.reader(), keys::PROJECTS)?;
    if projects.iter().any(|p| p.name() == name) {
        return Err(ApiError::invalid("name", "another project has this name").into());
    }
    let c = new_credential(&project);
    let mut tx = s.tx();
    tx.put(
        keys::project(&project),
        &Project {
            id: project.clone(),
            name: Some(name.clone()),
            create_time: time::now_rfc3339(),
        },
    )?;
    tx.put(keys::credential(&c.access_key), &c)?;
    s.commit(tx, &[]).await?;
    Ok(created(
        json!({"project_id": project, "name": name, "access_key": c.access_key, "secret_key": c.secret_key}),
    ))
}

#[derive(Deserialize, Default)]
struct TokenRequest {
    ttl_seconds: Option<i64>,
}

pub async fn token(
    State(s): State<Arc<ControlState>>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let req: TokenRequest = if body.is_empty() {
        TokenRequest::default()
    } else {
        parse_json(&body)?
    };
    let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if !(60..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid(
            "ttl_seconds",
            format!("60 to {MAX_TOKEN_TTL_SECS} seconds"),
        )
        .into());
    }
    let now = chrono::Utc::now().timestamp();
    let token = s
        .token_signer
        .issue(&project, &caller.access_key, now, ttl, &ids::new_id());
    let expires = chrono::DateTime::from_timestamp(now + ttl, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let mut resp = (
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": expires, "project_id": project, "access_key": caller.access_key})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}
