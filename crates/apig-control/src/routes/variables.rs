//! Environment variables: per group and environment, substituted into backend addresses and
//! paths when the snapshot is compiled (so a change takes effect without republishing).

use std::sync::Arc;

use apig_model::env::{Variable, VariableCreate, VariableUpdate, MAX_VARIABLES_PER_GROUP_ENV};
use apig_model::{ids, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

fn load(
    r: &(impl Reader + ?Sized),
    instance: &str,
    id: &str,
) -> std::result::Result<Variable, ApiError> {
    r.get_json(&keys::var(instance, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::EnvVariableNotFound,
            format!("The environment variable {id} does not exist"),
        )
    })
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let mut all: Vec<Variable> = Reader::scan_json(s.reader(), &keys::vars(&inst))?;
    all.retain(|v| {
        eq_filter(&q, "group_id", &v.group_id)
            && eq_filter(&q, "env_id", &v.env_id)
            && name_matches(&q, "variable_name", &v.variable_name)
    });
    all.sort_by(|a, b| {
        (&a.group_id, &a.env_id, &a.variable_name).cmp(&(&b.group_id, &b.env_id, &b.variable_name))
    });
    Ok(ok(paged(
        all.iter().map(Variable::to_json).collect(),
        page,
        "variables",
    )))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: VariableCreate = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let group_id = spec.group_id.unwrap_or_default();
    let env_id = spec.env_id.unwrap_or_default();
    super::groups::load(s.reader(), &inst, &group_id)?;
    super::envs::load(s.reader(), &inst, &env_id)?;
    let name = spec.variable_name.unwrap_or_default();
    let all: Vec<Variable> = Reader::scan_json(s.reader(), &keys::vars(&inst))?;
    let same_scope: Vec<_> = all
        .iter()
        .filter(|v| v.group_id == group_id && v.env_id == env_id)
        .collect();
    if same_scope.iter().any(|v| v.variable_name == name) {
        return Err(ApiError::new(
            ErrorCode::EnvVariableExists,
            format!("The environment variable already exists: {name}"),
        )
        .into());
    }
    if same_scope.len() >= MAX_VARIABLES_PER_GROUP_ENV {
        return Err(ApiError::new(
            ErrorCode::VariableQuota,
            "The number of variables exceeds the maximum allowed limit.",
        )
        .into());
    }
    let var = Variable {
        id: ids::new_id(),
        group_id,
        env_id,
        variable_name: name,
        variable_value: spec.variable_value.unwrap_or_default(),
    };
    s.save(&inst, keys::var(&inst, &var.id), &var).await?;
    Ok(created(var.to_json()))
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    Ok(ok(load(s.reader(), &inst, &id)?.to_json()))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: VariableUpdate = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut var = load(s.reader(), &inst, &id)?;
    var.variable_value = spec.variable_value.unwrap_or_default();
    let mut tx = s.tx();
    tx.put(keys::var(&inst, &id), &var)?;
    // Recompiling the snapshot here also refuses a value that breaks a published backend address.
    s.commit(tx, &[&inst]).await?;
    Ok(ok(var.to_json()))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    let mut tx = s.tx();
    tx.delete(keys::var(&inst, &id));
    // A variable a published API still uses cannot go: the snapshot would not compile.
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}
