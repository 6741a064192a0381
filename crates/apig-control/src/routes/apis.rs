//! APIs: definitions. Changing one does not change what runs until it is published again.

use std::collections::HashMap;
use std::sync::Arc;

use apig_model::api::{Api, ApiSpec};
use apig_model::env::Env;
use apig_model::group::Group;
use apig_model::publish::Publication;
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{backend_address, keys, ControlState};

pub fn load(
    r: &(impl Reader + ?Sized),
    instance: &str,
    id: &str,
) -> std::result::Result<Api, ApiError> {
    r.get_json(&keys::api(instance, id))?
        .ok_or_else(|| ApiError::api_not_found(id))
}

/// (env id, env name, publish id, publish time) of each environment the API runs in.
pub fn published_in(
    r: &(impl Reader + ?Sized),
    instance: &str,
    api: &str,
) -> std::result::Result<Vec<(String, String, String, String)>, ApiError> {
    let pubs: Vec<Publication> = r.scan_json(&keys::pubs_of(instance, api))?;
    let mut out = Vec::with_capacity(pubs.len());
    for p in pubs {
        let name = r
            .get_json::<Env>(&keys::env(instance, &p.env_id))?
            .map(|e| e.name)
            .unwrap_or_default();
        out.push((p.env_id, name, p.publish_id, p.publish_time));
    }
    Ok(out)
}

pub fn view(
    r: &(impl Reader + ?Sized),
    instance: &str,
    api: &Api,
) -> std::result::Result<Value, ApiError> {
    let group = r
        .get_json::<Group>(&keys::group(instance, api.spec.group_id()))?
        .map(|g| g.name)
        .unwrap_or_default();
    Ok(api.to_json(&group, &published_in(r, instance, &api.id)?))
}

/// Uniqueness rules of APIG: name unique within the group; group + method + path + match mode
/// unique within the instance.
pub(super) fn check_unique(
    all: &[Api],
    spec: &ApiSpec,
    except: Option<&str>,
) -> std::result::Result<(), ApiError> {
    let key = spec.route_key();
    for other in all.iter().filter(|a| Some(a.id.as_str()) != except) {
        if other.spec.group_id() == spec.group_id() && other.spec.name == spec.name {
            return Err(ApiError::new(
                ErrorCode::ApiNameExists,
                format!(
                    "The API name already exists: {}",
                    spec.name.as_deref().unwrap_or_default()
                ),
            ));
        }
        if other.spec.route_key() == key {
            return Err(ApiError::new(
                ErrorCode::ApiExists,
                format!(
                    "The API already exists: {} {} ({}) is defined by API {}",
                    key.1, key.2, key.3, other.id
                ),
            ));
        }
    }
    Ok(())
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let mut all: Vec<Api> = Reader::scan_json(s.reader(), &keys::apis(&inst))?;
    let env_filter = q.get("env_id").filter(|e| !e.is_empty()).cloned();
    let published: HashMap<String, Vec<String>> = {
        let pubs: Vec<Publication> = Reader::scan_json(s.reader(), &keys::pubs(&inst))?;
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for p in pubs {
            m.entry(p.api_id).or_default().push(p.env_id);
        }
        m
    };
    all.retain(|a| {
        let sp = &a.spec;
        eq_filter(&q, "id", &a.id)
            && name_matches(&q, "name", sp.name.as_deref().unwrap_or_default())
            && eq_filter(&q, "group_id", sp.group_id())
            && eq_filter(
                &q,
                "req_protocol",
                sp.req_protocol.as_deref().unwrap_or_default(),
            )
            && eq_filter(
                &q,
                "req_method",
                sp.req_method.as_deref().unwrap_or_default(),
            )
            && name_matches(&q, "req_uri", sp.req_uri.as_deref().unwrap_or_default())
            && eq_filter(&q, "auth_type", sp.auth_type.as_deref().unwrap_or_default())
            && eq_filter(&q, "type", &sp.api_type.unwrap_or_default().to_string())
            && env_filter
                .as_ref()
                .is_none_or(|e| published.get(&a.id).is_some_and(|envs| envs.contains(e)))
    });
    all.sort_by(|a, b| (&a.register_time, &a.id).cmp(&(&b.register_time, &b.id)));
    let total = all.len();
    let mut items = Vec::new();
    for a in page.apply(all) {
        items.push(view(s.reader(), &inst, &a)?);
    }
    let mut body = paged(
        items,
        apig_model::page::Page {
            offset: 0,
            limit: usize::MAX,
        },
        "apis",
    );
    body["total"] = total.into();
    Ok(ok(body))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let mut spec: ApiSpec = parse_json(&body)?;
    spec.validate_and_normalize()?;
    backend_address::check_api(&spec)?;
    let _w = s.lock_instance(&project, &inst).await?;
    super::groups::load(s.reader(), &inst, spec.group_id())?;
    for channel in spec.channel_ids() {
        super::channels::load(s.reader(), &inst, channel)?;
    }
    super::orchestrations::check_api(s.reader(), &inst, &spec)?;
    super::authorizers::check_api(s.reader(), &inst, &spec)?;
    let all: Vec<Api> = Reader::scan_json(s.reader(), &keys::apis(&inst))?;
    check_unique(&all, &spec, None)?;
    let now = time::now_rfc3339();
    stamp_backend(&mut spec, &now, None);
    let api = Api {
        id: ids::new_id(),
        instance_id: inst.clone(),
        spec,
        register_time: now.clone(),
        update_time: now,
    };
    s.save(&inst, keys::api(&inst, &api.id), &api).await?;
    Ok(created(view(s.reader(), &inst, &api)?))
}

/// Backend sub-objects carry their own register/update times in APIG's answers.
pub(super) fn stamp_backend(spec: &mut ApiSpec, now: &str, previous: Option<&ApiSpec>) {
    if let Some(b) = &mut spec.backend_api {
        let registered = previous
            .and_then(|p| p.backend_api.as_ref())
            .and_then(|b| b.register_time.clone());
        b.register_time = Some(registered.unwrap_or_else(|| now.to_owned()));
        b.update_time = Some(now.to_owned());
    }
    if let Some(m) = &mut spec.mock_info {
        let registered = previous
            .and_then(|p| p.mock_info.as_ref())
            .and_then(|m| m.register_time.clone());
        m.register_time = Some(registered.unwrap_or_else(|| now.to_owned()));
        m.update_time = Some(now.to_owned());
    }
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let api = load(s.reader(), &inst, &id)?;
    Ok(ok(view(s.reader(), &inst, &api)?))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let mut spec: ApiSpec = parse_json(&body)?;
    spec.validate_and_normalize()?;
    backend_address::check_api(&spec)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut api = load(s.reader(), &inst, &id)?;
    super::groups::load(s.reader(), &inst, spec.group_id())?;
    for channel in spec.channel_ids() {
        super::channels::load(s.reader(), &inst, channel)?;
    }
    super::orchestrations::check_api(s.reader(), &inst, &spec)?;
    super::authorizers::check_api(s.reader(), &inst, &spec)?;
    let all: Vec<Api> = Reader::scan_json(s.reader(), &keys::apis(&inst))?;
    check_unique(&all, &spec, Some(&id))?;
    let now = time::now_rfc3339();
    stamp_backend(&mut spec, &now, Some(&api.spec));
    api.spec = spec;
    api.update_time = now;
    s.save(&inst, keys::api(&inst, &id), &api).await?;
    Ok(ok(view(s.reader(), &inst, &api)?))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    if !published_in(s.reader(), &inst, &id)?.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ApiPublished,
            "The API cannot be deleted because it has been published.",
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::api(&inst, &id));
    tx.delete_prefix(&keys::versions_of(&inst, &id))?;
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}
