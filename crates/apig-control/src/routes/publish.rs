//! Publishing: freezing an API's definition as a version in an environment, taking it offline,
//! the history of versions, switching versions, and the runtime definition.

use std::sync::Arc;

use apig_model::api::Api;
use apig_model::env::Env;
use apig_model::ids::RELEASE_ENV_ID;
use apig_model::publish::{
    check_action, ApiAction, ApiVersion, BatchPublish, Publication, MAX_VERSIONS_PER_ENV,
};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{created, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::{Reader, Tx};
use crate::{keys, ControlState};

fn publication_not_found(api: &str, env: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PublicationNotFound,
        format!("The API publication record does not exist: API {api} is not published in environment {env}"),
    )
}

fn version_no(now: &chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y%m%d%H%M%S%3f").to_string()
}

/// Publishes the current definition of `api` in `env` within `tx`. Returns the publish answer.
fn publish_one(
    tx: &mut Tx<'_>,
    inst: &str,
    api: &Api,
    env: &Env,
    remark: &str,
) -> std::result::Result<Value, ApiError> {
    let now = chrono::Utc::now();
    let publish_time = time::now_rfc3339();
    let version = ApiVersion {
        version_id: ids::new_id(),
        version_no: version_no(&now),
        api_id: api.id.clone(),
        env_id: env.id.clone(),
        remark: remark.to_owned(),
        publish_time: publish_time.clone(),
        spec: api.spec.clone(),
    };
    // The publication record keeps its id across republishing, so references to it stay valid.
    let previous: Option<Publication> = tx.get_json(&keys::publication(inst, &api.id, &env.id))?;
    let publication = Publication {
        publish_id: previous.map(|p| p.publish_id).unwrap_or_else(ids::new_id),
        api_id: api.id.clone(),
        env_id: env.id.clone(),
        version_id: version.version_id.clone(),
        publish_time: publish_time.clone(),
        remark: remark.to_owned(),
    };
    tx.put(keys::version(inst, &api.id, &version.version_id), &version)?;
    tx.put(keys::publication(inst, &api.id, &env.id), &publication)?;
    // Keep the newest versions of this API in this environment, as APIG does.
    let mut versions: Vec<ApiVersion> = tx.scan_json(&keys::versions_of(inst, &api.id))?;
    versions.retain(|v| v.env_id == env.id);
    versions.sort_by(|a, b| b.version_no.cmp(&a.version_no));
    for old in versions.iter().skip(MAX_VERSIONS_PER_ENV) {
        tx.delete(keys::version(inst, &api.id, &old.version_id));
    }
    Ok(json!({
        "publish_id": publication.publish_id,
        "api_id": api.id,
        "api_name": api.spec.name,
        "env_id": env.id,
        "remark": remark,
        "publish_time": publish_time,
        "version_id": version.version_id,
    }))
}

fn offline_one(
    tx: &mut Tx<'_>,
    inst: &str,
    api: &Api,
    env: &Env,
) -> std::result::Result<Value, ApiError> {
    let key = keys::publication(inst, &api.id, &env.id);
    let p: Publication = tx
        .get_json(&key)?
        .ok_or_else(|| publication_not_found(&api.id, &env.id))?;
    tx.delete(key);
    Ok(json!({
        "publish_id": p.publish_id,
        "api_id": api.id,
        "api_name": api.spec.name,
        "env_id": env.id,
        "remark": p.remark,
        "publish_time": p.publish_time,
        "version_id": p.version_id,
    }))
}

pub async fn action(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: ApiAction = parse_json(&body)?;
    req.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let api = super::apis::load(s.reader(), &inst, req.api_id.as_deref().unwrap_or_default())?;
    let env = super::envs::load(s.reader(), &inst, req.env_id.as_deref().unwrap_or_default())?;
    let mut tx = s.tx();
    let answer = match check_action(req.action.as_deref())? {
        "online" => publish_one(
            &mut tx,
            &inst,
            &api,
            &env,
            req.remark.as_deref().unwrap_or_default(),
        )?,
        _ => offline_one(&mut tx, &inst, &api, &env)?,
    };
    s.commit(tx, &[&inst]).await?;
    Ok(created(answer))
}

pub async fn batch(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
    body: Bytes,
) -> Result<Response> {
    let action = check_action(q.get("action").map(String::as_str))?.to_owned();
    let req: BatchPublish = parse_json(&body)?;
    req.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let env = super::envs::load(s.reader(), &inst, req.env_id.as_deref().unwrap_or_default())?;
    let ids: Vec<String> = match (&req.apis, &req.group_id) {
        (Some(apis), _) if !apis.is_empty() => apis.clone(),
        (_, Some(group)) => {
            super::groups::load(s.reader(), &inst, group)?;
            let all: Vec<Api> = Reader::scan_json(s.reader(), &keys::apis(&inst))?;
            all.into_iter()
                .filter(|a| a.spec.group_id() == group)
                .map(|a| a.id)
                .collect()
        }
        _ => Vec::new(),
    };
    let mut tx = s.tx();
    let (mut success, mut failure) = (Vec::new(), Vec::new());
    for id in ids {
        let result = super::apis::load(&tx, &inst, &id).and_then(|api| {
            let r = if action == "online" {
                publish_one(
                    &mut tx,
                    &inst,
                    &api,
                    &env,
                    req.remark.as_deref().unwrap_or_default(),
                )
            } else {
                offline_one(&mut tx, &inst, &api, &env)
            };
            r.map_err(|e| (e, api.spec.name.clone()))
                .map_err(|(e, name)| {
                    ApiError::new(
                        e.code,
                        format!("{}\u{0}{}", name.unwrap_or_default(), e.message),
                    )
                })
        });
        match result {
            Ok(v) => success.push(v),
            Err(e) => {
                let (name, msg) = e.message.split_once('\u{0}').unwrap_or(("", &e.message));
                failure.push(json!({"api_id": id, "api_name": name, "error_code": e.code.code(), "error_msg": msg}));
            }
        }
    }
    s.commit(tx, &[&inst]).await?;
    Ok(ok(json!({"success": success, "failure": failure})))
}

fn env_name(
    r: &(impl Reader + ?Sized),
    inst: &str,
    env: &str,
) -> std::result::Result<String, ApiError> {
    Ok(r.get_json::<Env>(&keys::env(inst, env))?
        .map(|e| e.name)
        .unwrap_or_default())
}

pub async fn history(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, api_id)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    super::apis::load(s.reader(), &inst, &api_id)?;
    let mut versions: Vec<ApiVersion> =
        Reader::scan_json(s.reader(), &keys::versions_of(&inst, &api_id))?;
    let pubs: Vec<Publication> = Reader::scan_json(s.reader(), &keys::pubs_of(&inst, &api_id))?;
    versions.sort_by(|a, b| b.version_no.cmp(&a.version_no));
    let mut items = Vec::new();
    for v in versions {
        let name = env_name(s.reader(), &inst, &v.env_id)?;
        if q.get("env_id")
            .is_some_and(|e| !e.is_empty() && *e != v.env_id)
            || q.get("env_name")
                .is_some_and(|e| !e.is_empty() && *e != name)
        {
            continue;
        }
        let effective = pubs.iter().any(|p| p.version_id == v.version_id);
        items.push(json!({
            "version_id": v.version_id,
            "version_no": v.version_no,
            "api_id": v.api_id,
            "env_id": v.env_id,
            "env_name": name,
            "remark": v.remark,
            "publish_time": v.publish_time,
            "status": if effective { 1 } else { 2 },
        }));
    }
    Ok(ok(paged(items, page, "api_versions")))
}

fn find_version(
    r: &(impl Reader + ?Sized),
    inst: &str,
    version_id: &str,
) -> std::result::Result<ApiVersion, ApiError> {
    let all: Vec<ApiVersion> = r.scan_json(&keys::versions(inst))?;
    all.into_iter()
        .find(|v| v.version_id == version_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::VersionNotFound,
                format!("The API version {version_id} does not exist"),
            )
        })
}

fn version_view(
    r: &(impl Reader + ?Sized),
    inst: &str,
    v: &ApiVersion,
) -> std::result::Result<Value, ApiError> {
    let api = Api {
        id: v.api_id.clone(),
        instance_id: inst.to_owned(),
        spec: v.spec.clone(),
        register_time: v.publish_time.clone(),
        update_time: v.publish_time.clone(),
    };
    let mut out = super::apis::view(r, inst, &api)?;
    let name = env_name(r, inst, &v.env_id)?;
    out["run_env_id"] = v.env_id.clone().into();
    out["run_env_name"] = name.into();
    out["publish_time"] = v.publish_time.clone().into();
    out["version_id"] = v.version_id.clone().into();
    Ok(out)
}

pub async fn runtime(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, api_id)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    super::apis::load(s.reader(), &inst, &api_id)?;
    let env = q
        .get("env_id")
        .filter(|e| !e.is_empty())
        .cloned()
        .unwrap_or_else(|| RELEASE_ENV_ID.to_owned());
    let p: Publication = Reader::get_json(s.reader(), &keys::publication(&inst, &api_id, &env))?
        .ok_or_else(|| publication_not_found(&api_id, &env))?;
    let v: ApiVersion =
        Reader::get_json(s.reader(), &keys::version(&inst, &api_id, &p.version_id))?
            .ok_or_else(|| ApiError::internal("the published version is missing"))?;
    let mut out = version_view(s.reader(), &inst, &v)?;
    out["publish_id"] = p.publish_id.into();
    Ok(ok(out))
}

pub async fn version_detail(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, version_id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let v = find_version(s.reader(), &inst, &version_id)?;
    Ok(ok(version_view(s.reader(), &inst, &v)?))
}

#[derive(Deserialize)]
struct SwitchVersion {
    version_id: Option<String>,
}

/// Makes an earlier published version effective again in its environment.
pub async fn switch_version(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, api_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: SwitchVersion = parse_json(&body)?;
    let version_id = apig_model::validate::required("version_id", &req.version_id)?.to_owned();
    let _w = s.lock_instance(&project, &inst).await?;
    let api = super::apis::load(s.reader(), &inst, &api_id)?;
    let v: ApiVersion = Reader::get_json(s.reader(), &keys::version(&inst, &api_id, &version_id))?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::VersionNotFound,
                format!("The API version {version_id} does not exist"),
            )
        })?;
    let publish_time = time::now_rfc3339();
    let p = Publication {
        publish_id: ids::new_id(),
        api_id: api_id.clone(),
        env_id: v.env_id.clone(),
        version_id: v.version_id.clone(),
        publish_time: publish_time.clone(),
        remark: v.remark.clone(),
    };
    s.save(&inst, keys::publication(&inst, &api_id, &v.env_id), &p)
        .await?;
    Ok(ok(json!({
        "publish_id": p.publish_id, "api_id": api_id, "api_name": api.spec.name, "env_id": v.env_id,
        "remark": v.remark, "publish_time": publish_time, "version_id": v.version_id,
    })))
}

/// Takes a version offline: if it is the effective one, the API goes offline in that environment.
pub async fn version_offline(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, version_id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    let v = find_version(s.reader(), &inst, &version_id)?;
    let key = keys::publication(&inst, &v.api_id, &v.env_id);
    let p: Option<Publication> = Reader::get_json(s.reader(), &key)?;
    if p.is_none_or(|p| p.version_id != version_id) {
        return Err(ApiError::new(
            ErrorCode::PublicationNotFound,
            "The API version is not the effective one.",
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(key);
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}
