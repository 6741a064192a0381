//! Gateway instances: the logical gateways replicas join.

use std::sync::Arc;

use apig_model::instance::{Instance, InstanceCreate};
use apig_model::{env::Env, ids, time, validate, ApiError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{eq_filter, name_matches, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path(project): Path<String>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    let mut all: Vec<Instance> = Reader::scan_json(s.reader(), keys::INSTANCES)?;
    all.retain(|i| {
        i.project_id == project
            && eq_filter(&q, "instance_id", &i.id)
            && name_matches(&q, "instance_name", &i.instance_name)
    });
    all.sort_by(|a, b| (a.create_time, &a.id).cmp(&(b.create_time, &b.id)));
    Ok(ok(paged(
        all.iter().map(Instance::to_json).collect(),
        page,
        "instances",
    )))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let spec: InstanceCreate = parse_json(&body)?;
    spec.validate()?;
    let _w = s.write_lock().await;
    let inst = spec.into_instance(&project, time::now_unix_ms());
    let mut tx = s.tx();
    if tx.exists(&keys::instance(&inst.id))? {
        return Err(
            ApiError::invalid("instance_id", "an instance with this id already exists").into(),
        );
    }
    create_instance(&mut tx, &inst)?;
    let id = inst.id.clone();
    s.commit(tx, &[&id]).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"instance_id": id, "message": "success", "job_id": ids::new_id()})),
    )
        .into_response())
}

/// Writes a new instance with its built-in RELEASE environment.
pub fn create_instance(
    tx: &mut crate::tx::Tx<'_>,
    inst: &Instance,
) -> std::result::Result<(), ApiError> {
    tx.put(keys::instance(&inst.id), inst)?;
    let release = Env::release(time::now_rfc3339());
    tx.put(keys::env(&inst.id, &release.id), &release)
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response> {
    let inst = s.instance(s.reader(), &project, &id)?;
    Ok(ok(inst.to_json()))
}

#[derive(Deserialize, Default)]
pub struct InstanceUpdate {
    instance_name: Option<String>,
    description: Option<String>,
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let upd: InstanceUpdate = parse_json(&body)?;
    let mut p = validate::Problems::new();
    if let Some(n) = &upd.instance_name {
        p.check(validate::instance_name(n));
    }
    if let Some(d) = &upd.description {
        p.check(validate::max_chars("description", d, 255));
    }
    p.into_result()?;
    let _w = s.write_lock().await;
    let mut inst = s.instance(s.reader(), &project, &id)?;
    if let Some(n) = upd.instance_name {
        inst.instance_name = n;
    }
    if let Some(d) = upd.description {
        inst.description = d;
    }
    let mut tx = s.tx();
    tx.put(keys::instance(&id), &inst)?;
    s.commit(tx, &[&id]).await?;
    Ok(ok(inst.to_json()))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response> {
    let _w = s.write_lock().await;
    s.instance(s.reader(), &project, &id)?;
    let mut tx = s.tx();
    tx.delete(keys::instance(&id));
    super::certificates::delete_of_instance(s.reader(), &mut tx, &project, &id)?;
    for kind in keys::INSTANCE_KINDS {
        tx.delete_prefix(&format!("v1/{kind}/{id}/"))?;
    }
    s.commit(tx, &[&id]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
