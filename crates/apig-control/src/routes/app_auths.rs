//! App authorizations: which apps may call which APIs in which environment. They take effect
//! with the next snapshot; no republish is needed.

use std::collections::HashMap;
use std::sync::Arc;

use apig_model::api::Api;
use apig_model::app::{auth_exists, App, AppAuth, AppAuthCreate};
use apig_model::env::Env;
use apig_model::group::Group;
use apig_model::publish::Publication;
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: AppAuthCreate = parse_json(&body)?;
    req.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let env_id = req.env_id.unwrap_or_default();
    super::envs::load(s.reader(), &inst, &env_id)?;
    let existing: Vec<AppAuth> = Reader::scan_json(s.reader(), &keys::app_auths(&inst))?;
    let mut tx = s.tx();
    let mut auths = Vec::new();
    let now = time::now_rfc3339();
    for app_id in req.app_ids.unwrap_or_default() {
        let app = super::apps::load(s.reader(), &inst, &app_id)?;
        for api_id in req.api_ids.clone().unwrap_or_default() {
            let api = super::apis::load(s.reader(), &inst, &api_id)?;
            if !Reader::exists(s.reader(), &keys::publication(&inst, &api_id, &env_id))? {
                return Err(ApiError::new(
                    ErrorCode::ApiNotPublished,
                    format!("The API {api_id} is not published in environment {env_id}; publish it before authorizing apps."),
                )
                .into());
            }
            if existing
                .iter()
                .any(|a| a.app_id == app_id && a.api_id == api_id && a.env_id == env_id)
            {
                return Err(auth_exists().into());
            }
            let auth = AppAuth {
                id: ids::new_id(),
                app_id: app_id.clone(),
                api_id: api_id.clone(),
                env_id: env_id.clone(),
                auth_time: now.clone(),
            };
            tx.put(keys::app_auth(&inst, &auth.id), &auth)?;
            auths.push(json!({
                "id": auth.id, "api_id": api_id, "app_id": app_id, "auth_time": now,
                "auth_role": "PROVIDER", "auth_tunnel": "NORMAL", "auth_whitelist": [], "auth_blacklist": [],
                "auth_result": {"status": "SUCCESS", "api_name": api.spec.name, "app_name": app.name},
            }));
        }
    }
    s.commit(tx, &[&inst]).await?;
    Ok(created(json!({"auths": auths})))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    if !Reader::exists(s.reader(), &keys::app_auth(&inst, &id))? {
        return Err(ApiError::new(
            ErrorCode::AppAuthNotFound,
            format!("The app authorization record {id} does not exist"),
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::app_auth(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

/// Everything an authorization row shows, loaded once per request.
struct Lookup {
    apis: HashMap<String, Api>,
    apps: HashMap<String, App>,
    groups: HashMap<String, Group>,
    envs: HashMap<String, Env>,
    pubs: HashMap<(String, String), Publication>,
}

impl Lookup {
    fn load(s: &ControlState, inst: &str) -> std::result::Result<Lookup, ApiError> {
        let r = s.reader();
        let apis: Vec<Api> = Reader::scan_json(r, &keys::apis(inst))?;
        let apps: Vec<App> = Reader::scan_json(r, &keys::apps(inst))?;
        let groups: Vec<Group> = Reader::scan_json(r, &keys::groups(inst))?;
        let envs: Vec<Env> = Reader::scan_json(r, &keys::envs(inst))?;
        let pubs: Vec<Publication> = Reader::scan_json(r, &keys::pubs(inst))?;
        Ok(Lookup {
            apis: apis.into_iter().map(|a| (a.id.clone(), a)).collect(),
            apps: apps.into_iter().map(|a| (a.id.clone(), a)).collect(),
            groups: groups.into_iter().map(|g| (g.id.clone(), g)).collect(),
            envs: envs.into_iter().map(|e| (e.id.clone(), e)).collect(),
            pubs: pubs
                .into_iter()
                .map(|p| ((p.api_id.clone(), p.env_id.clone()), p))
                .collect(),
        })
    }

    fn row(&self, a: &AppAuth) -> Option<Value> {
        let api = self.apis.get(&a.api_id)?;
        let app = self.apps.get(&a.app_id)?;
        let group = self.groups.get(api.spec.group_id());
        Some(json!({
            "id": a.id, "api_id": a.api_id, "api_name": api.spec.name, "api_type": api.spec.api_type,
            "api_remark": api.spec.remark, "group_id": api.spec.group_id(),
            "group_name": group.map(|g| g.name.clone()).unwrap_or_default(),
            "env_id": a.env_id, "env_name": self.envs.get(&a.env_id).map(|e| e.name.clone()).unwrap_or_default(),
            "publish_id": self.pubs.get(&(a.api_id.clone(), a.env_id.clone())).map(|p| p.publish_id.clone()).unwrap_or_default(),
            "auth_role": "PROVIDER", "auth_time": a.auth_time, "auth_tunnel": "NORMAL",
            "auth_whitelist": [], "auth_blacklist": [], "visit_param": "",
            "app_id": a.app_id, "app_name": app.name, "app_remark": app.remark, "app_type": "apig", "app_creator": "USER",
            "tags": api.spec.tags.clone().unwrap_or_default(),
        }))
    }
}

fn list_rows(
    s: &ControlState,
    inst: &str,
    q: &Params,
    keep: impl Fn(&AppAuth, &Value) -> bool,
) -> std::result::Result<Response, ApiError> {
    let page = page_of(q)?;
    let lookup = Lookup::load(s, inst)?;
    let mut auths: Vec<AppAuth> = Reader::scan_json(s.reader(), &keys::app_auths(inst))?;
    auths.sort_by(|a, b| (&a.auth_time, &a.id).cmp(&(&b.auth_time, &b.id)));
    let rows = auths
        .iter()
        .filter_map(|a| lookup.row(a).map(|row| (a, row)))
        .filter(|(a, row)| keep(a, row))
        .map(|(_, row)| row)
        .collect();
    Ok(ok(paged(rows, page, "auths")))
}

fn text<'v>(row: &'v Value, field: &str) -> &'v str {
    row[field].as_str().unwrap_or_default()
}

/// `GET /app-auths/binded-apis?app_id=`: the APIs an app may call.
pub async fn bound_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let app_id = apig_model::validate::required("app_id", &q.get("app_id").cloned())?.to_owned();
    Ok(list_rows(&s, &inst, &q, |a, row| {
        a.app_id == app_id
            && eq_filter(&q, "api_id", &a.api_id)
            && eq_filter(&q, "env_id", &a.env_id)
            && eq_filter(&q, "group_id", text(row, "group_id"))
            && name_matches(&q, "api_name", text(row, "api_name"))
            && name_matches(&q, "group_name", text(row, "group_name"))
    })?)
}

/// `GET /app-auths/binded-apps?api_id=`: the apps that may call an API.
pub async fn bound_apps(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let api_id = apig_model::validate::required("api_id", &q.get("api_id").cloned())?.to_owned();
    Ok(list_rows(&s, &inst, &q, |a, row| {
        a.api_id == api_id
            && eq_filter(&q, "app_id", &a.app_id)
            && eq_filter(&q, "env_id", &a.env_id)
            && name_matches(&q, "app_name", text(row, "app_name"))
    })?)
}

/// `GET /app-auths/unbinded-apis?app_id=&env_id=`: APIs published in the environment that the
/// app may not call yet.
pub async fn unbound_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let app_id = apig_model::validate::required("app_id", &q.get("app_id").cloned())?.to_owned();
    super::apps::load(s.reader(), &inst, &app_id)?;
    let env_filter = q.get("env_id").filter(|e| !e.is_empty()).cloned();
    let lookup = Lookup::load(&s, &inst)?;
    let auths: Vec<AppAuth> = Reader::scan_json(s.reader(), &keys::app_auths(&inst))?;
    let mut pubs: Vec<&Publication> = lookup.pubs.values().collect();
    pubs.sort_by(|a, b| (&a.api_id, &a.env_id).cmp(&(&b.api_id, &b.env_id)));
    let mut rows = Vec::new();
    for p in pubs {
        if env_filter.as_ref().is_some_and(|e| *e != p.env_id)
            || auths
                .iter()
                .any(|a| a.app_id == app_id && a.api_id == p.api_id && a.env_id == p.env_id)
        {
            continue;
        }
        let Some(api) = lookup.apis.get(&p.api_id) else {
            continue;
        };
        let sp = &api.spec;
        if !(eq_filter(&q, "api_id", &api.id)
            && eq_filter(&q, "group_id", sp.group_id())
            && name_matches(&q, "api_name", sp.name.as_deref().unwrap_or_default()))
        {
            continue;
        }
        rows.push(json!({
            "id": api.id, "name": sp.name, "remark": sp.remark, "auth_type": sp.auth_type, "req_uri": sp.req_uri,
            "group_id": sp.group_id(), "group_name": lookup.groups.get(sp.group_id()).map(|g| g.name.clone()).unwrap_or_default(),
            "run_env_id": p.env_id, "run_env_name": lookup.envs.get(&p.env_id).map(|e| e.name.clone()).unwrap_or_default(),
            "publish_id": p.publish_id, "tags": sp.tags.clone().unwrap_or_default(),
        }));
    }
    Ok(ok(paged(rows, page, "apis")))
}
