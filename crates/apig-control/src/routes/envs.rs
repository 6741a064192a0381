//! Environments. RELEASE is built in: listed, never changed or deleted.

use std::sync::Arc;

use apig_model::env::{Env, EnvSpec, Variable, MAX_ENVS};
use apig_model::ids::RELEASE_ENV_ID;
use apig_model::publish::Publication;
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{created, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

pub fn load(
    r: &(impl Reader + ?Sized),
    instance: &str,
    id: &str,
) -> std::result::Result<Env, ApiError> {
    r.get_json(&keys::env(instance, id))?
        .ok_or_else(|| ApiError::env_not_found(id))
}

fn check_unique_name(
    all: &[Env],
    name: &str,
    except: Option<&str>,
) -> std::result::Result<(), ApiError> {
    if all
        .iter()
        .any(|e| e.name.eq_ignore_ascii_case(name) && Some(e.id.as_str()) != except)
    {
        return Err(ApiError::new(
            ErrorCode::EnvNameExists,
            format!("The environment name already exists: {name}"),
        ));
    }
    Ok(())
}

fn sorted(mut all: Vec<Env>) -> Vec<Env> {
    // RELEASE first, then by creation.
    all.sort_by(|a, b| {
        (a.id != RELEASE_ENV_ID, &a.create_time, &a.id).cmp(&(
            b.id != RELEASE_ENV_ID,
            &b.create_time,
            &b.id,
        ))
    });
    all
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let mut all: Vec<Env> = Reader::scan_json(s.reader(), &keys::envs(&inst))?;
    all.retain(|e| name_matches(&q, "name", &e.name));
    Ok(ok(paged(
        sorted(all).iter().map(Env::to_json).collect(),
        page,
        "envs",
    )))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: EnvSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let all: Vec<Env> = Reader::scan_json(s.reader(), &keys::envs(&inst))?;
    let name = spec.name.unwrap_or_default();
    check_unique_name(&all, &name, None)?;
    if all.len() >= MAX_ENVS {
        return Err(ApiError::new(
            ErrorCode::EnvQuota,
            format!("The number of environments exceeds the maximum allowed limit ({MAX_ENVS})."),
        )
        .into());
    }
    let env = Env {
        id: ids::new_id(),
        name,
        remark: spec.remark.unwrap_or_default(),
        create_time: time::now_rfc3339(),
    };
    s.save(&inst, keys::env(&inst, &env.id), &env).await?;
    Ok(created(env.to_json()))
}

fn refuse_release(id: &str) -> std::result::Result<(), ApiError> {
    if id == RELEASE_ENV_ID {
        return Err(ApiError::new(
            ErrorCode::DefaultEnvReadOnly,
            "The built-in RELEASE environment cannot be changed or deleted.",
        ));
    }
    Ok(())
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: EnvSpec = parse_json(&body)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut env = load(s.reader(), &inst, &id)?;
    refuse_release(&id)?;
    spec.validate()?;
    let all: Vec<Env> = Reader::scan_json(s.reader(), &keys::envs(&inst))?;
    let name = spec.name.unwrap_or_default();
    check_unique_name(&all, &name, Some(&id))?;
    env.name = name;
    if let Some(r) = spec.remark {
        env.remark = r;
    }
    s.save(&inst, keys::env(&inst, &id), &env).await?;
    Ok(ok(env.to_json()))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    refuse_release(&id)?;
    let pubs: Vec<Publication> = Reader::scan_json(s.reader(), &keys::pubs(&inst))?;
    if pubs.iter().any(|p| p.env_id == id) {
        return Err(ApiError::new(
            ErrorCode::EnvHasPublishedApis,
            "The environment contains published APIs.",
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::env(&inst, &id));
    let vars: Vec<Variable> = Reader::scan_json(s.reader(), &keys::vars(&inst))?;
    for v in vars.iter().filter(|v| v.env_id == id) {
        tx.delete(keys::var(&inst, &v.id));
    }
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}
