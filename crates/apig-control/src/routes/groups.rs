//! API groups.

use std::sync::Arc;

use std::collections::HashMap;

use apig_model::api::Api;
use apig_model::certificate::Certificate;
use apig_model::group::{Group, GroupSpec};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

pub fn load(
    r: &(impl Reader + ?Sized),
    instance: &str,
    id: &str,
) -> std::result::Result<Group, ApiError> {
    r.get_json(&keys::group(instance, id))?
        .ok_or_else(|| ApiError::group_not_found(id))
}

pub(super) fn check_unique_name(
    r: &(impl Reader + ?Sized),
    instance: &str,
    name: &str,
    except: Option<&str>,
) -> std::result::Result<(), ApiError> {
    let groups: Vec<Group> = r.scan_json(&keys::groups(instance))?;
    if groups
        .iter()
        .any(|g| g.name == name && Some(g.id.as_str()) != except)
    {
        return Err(ApiError::new(
            ErrorCode::GroupNameExists,
            format!("The API group name already exists: {name}"),
        ));
    }
    Ok(())
}

/// ApiGroupInfo with the group's bound domains (and their certificates).
fn with_domains(
    g: &Group,
    domains: &[apig_model::domain::BoundDomain],
    certs: &HashMap<String, Certificate>,
) -> serde_json::Value {
    let mut v = g.to_json();
    v["url_domains"] = domains
        .iter()
        .filter(|d| d.group_id == g.id)
        .map(|d| d.to_group_json(d.ssl_id.as_ref().and_then(|c| certs.get(c))))
        .collect();
    v
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let mut all: Vec<Group> = Reader::scan_json(s.reader(), &keys::groups(&inst))?;
    all.retain(|g| eq_filter(&q, "id", &g.id) && name_matches(&q, "name", &g.name));
    all.sort_by(|a, b| (&a.register_time, &a.id).cmp(&(&b.register_time, &b.id)));
    let domains = super::domains::all(s.reader(), &inst)?;
    let certs = super::certificates::by_id(s.reader(), &project)?;
    Ok(ok(paged(
        all.iter()
            .map(|g| with_domains(g, &domains, &certs))
            .collect(),
        page,
        "groups",
    )))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: GroupSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let name = spec.name.unwrap_or_default();
    check_unique_name(s.reader(), &inst, &name, None)?;
    let id = ids::new_id();
    let now = time::now_rfc3339();
    let group = Group {
        sl_domain: format!("{id}.{}", s.domain_suffix),
        id,
        instance_id: inst.clone(),
        name,
        remark: spec.remark.unwrap_or_default(),
        register_time: now.clone(),
        update_time: now,
    };
    s.save(&inst, keys::group(&inst, &group.id), &group).await?;
    Ok(created(group.to_json()))
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let group = load(s.reader(), &inst, &id)?;
    Ok(ok(with_domains(
        &group,
        &super::domains::all(s.reader(), &inst)?,
        &super::certificates::by_id(s.reader(), &project)?,
    )))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: GroupSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut group = load(s.reader(), &inst, &id)?;
    let name = spec.name.unwrap_or_default();
    check_unique_name(s.reader(), &inst, &name, Some(&id))?;
    group.name = name;
    if let Some(r) = spec.remark {
        group.remark = r;
    }
    group.update_time = time::now_rfc3339();
    s.save(&inst, keys::group(&inst, &id), &group).await?;
    Ok(ok(group.to_json()))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    let apis: Vec<Api> = Reader::scan_json(s.reader(), &keys::apis(&inst))?;
    if apis.iter().any(|a| a.spec.group_id() == id) {
        return Err(ApiError::new(
            ErrorCode::GroupHasApis,
            "The API group cannot be deleted because it contains APIs.",
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::group(&inst, &id));
    let vars: Vec<apig_model::env::Variable> = Reader::scan_json(s.reader(), &keys::vars(&inst))?;
    for v in vars.iter().filter(|v| v.group_id == id) {
        tx.delete(keys::var(&inst, &v.id));
    }
    // Its bound domains go with it.
    for d in super::domains::all(s.reader(), &inst)? {
        if d.group_id == id {
            tx.delete(keys::domain(&inst, &d.id));
        }
    }
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}
