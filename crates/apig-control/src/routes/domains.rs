//! Independent domains bound to API groups (`/api-groups/{group_id}/domains`). A domain is
//! bound to one group of an instance at most; every change reaches the replicas with the next
//! snapshot (the group's host names).

use std::sync::Arc;

use apig_model::domain::{check_domain, BoundDomain, DomainSpec, MAX_PER_GROUP};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{created, no_content, ok, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

type Res<T> = std::result::Result<T, ApiError>;

/// The domains of an instance.
pub fn all(r: &(impl Reader + ?Sized), inst: &str) -> Res<Vec<BoundDomain>> {
    let mut d: Vec<BoundDomain> = r.scan_json(&keys::domains(inst))?;
    d.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    Ok(d)
}

fn load(r: &(impl Reader + ?Sized), inst: &str, group: &str, id: &str) -> Res<BoundDomain> {
    let d: BoundDomain = r.get_json(&keys::domain(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::DomainNotFound,
            format!("The URL domain {id} does not exist"),
        )
    })?;
    if d.group_id != group {
        return Err(ApiError::new(
            ErrorCode::DomainNotFound,
            format!("The URL domain {id} is not bound to the API group {group}"),
        ));
    }
    Ok(d)
}

pub async fn bind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: DomainSpec = parse_json(&body)?;
    spec.validate(true)?;
    let name = check_domain(spec.url_domain.as_deref().unwrap_or_default())?;
    let _w = s.lock_instance(&project, &inst).await?;
    let g = super::groups::load(s.reader(), &inst, &group)?;
    let existing = all(s.reader(), &inst)?;
    if existing.iter().any(|d| d.url_domain == name) || g.sl_domain == name {
        return Err(ApiError::new(
            ErrorCode::DomainExists,
            format!("The URL domain name already exists: {name}"),
        )
        .into());
    }
    if existing.iter().filter(|d| d.group_id == group).count() >= MAX_PER_GROUP {
        return Err(ApiError::new(
            ErrorCode::DomainQuota,
            format!("An API group has at most {MAX_PER_GROUP} domain names."),
        )
        .into());
    }
    let d = BoundDomain {
        id: ids::new_id(),
        group_id: group,
        url_domain: name,
        min_ssl_version: spec.min_ssl_version.unwrap_or_else(|| "TLSv1.1".into()),
        is_http_redirect_to_https: false,
        create_time: time::now_rfc3339(),
    };
    s.save(&inst, keys::domain(&inst, &d.id), &d).await?;
    Ok(created(d.to_json()))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: DomainSpec = parse_json(&body)?;
    spec.validate(false)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut d = load(s.reader(), &inst, &group, &id)?;
    if let Some(v) = spec.min_ssl_version {
        d.min_ssl_version = v;
    }
    s.save(&inst, keys::domain(&inst, &id), &d).await?;
    Ok(ok(d.to_json()))
}

pub async fn unbind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &group, &id)?;
    let mut tx = s.tx();
    tx.delete(keys::domain(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}
