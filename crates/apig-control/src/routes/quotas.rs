//! Credential quotas (`/app-quotas`) and the apps bound to them.

use std::sync::Arc;

use apig_model::app::App;
use apig_model::quota::{Quota, QuotaBinding, QuotaBindingCreate, QuotaSpec};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::{created, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

fn load(r: &(impl Reader + ?Sized), inst: &str, id: &str) -> std::result::Result<Quota, ApiError> {
    r.get_json(&keys::quota(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::QuotaNotFound,
            format!("The credential quota {id} does not exist"),
        )
    })
}

fn bindings(s: &ControlState, inst: &str) -> std::result::Result<Vec<QuotaBinding>, ApiError> {
    Reader::scan_json(s.reader(), &keys::quota_bindings(inst))
}

fn view(s: &ControlState, inst: &str, q: &Quota) -> std::result::Result<Value, ApiError> {
    let bound = bindings(s, inst)?
        .iter()
        .filter(|b| b.app_quota_id == q.id)
        .count();
    Ok(q.to_json(bound))
}

fn check_name(
    s: &ControlState,
    inst: &str,
    name: &str,
    except: Option<&str>,
) -> std::result::Result<(), ApiError> {
    let all: Vec<Quota> = Reader::scan_json(s.reader(), &keys::quotas(inst))?;
    if all
        .iter()
        .any(|q| q.name == name && Some(q.id.as_str()) != except)
    {
        return Err(ApiError::invalid(
            "name",
            format!("the credential quota name already exists: {name}"),
        ));
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
    let mut all: Vec<Quota> = Reader::scan_json(s.reader(), &keys::quotas(&inst))?;
    all.retain(|x| name_matches(&q, "name", &x.name));
    all.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    let mut items = Vec::new();
    for x in &all {
        items.push(view(&s, &inst, x)?);
    }
    Ok(ok(paged(items, page, "quotas")))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: QuotaSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    check_name(&s, &inst, spec.name.as_deref().unwrap_or_default(), None)?;
    let quota = spec.into_quota(ids::new_id(), time::now_rfc3339());
    s.save(&inst, keys::quota(&inst, &quota.id), &quota).await?;
    Ok(created(view(&s, &inst, &quota)?))
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let quota = load(s.reader(), &inst, &id)?;
    Ok(ok(view(&s, &inst, &quota)?))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: QuotaSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let old = load(s.reader(), &inst, &id)?;
    check_name(
        &s,
        &inst,
        spec.name.as_deref().unwrap_or_default(),
        Some(&id),
    )?;
    let quota = spec.into_quota(id.clone(), old.create_time);
    s.save(&inst, keys::quota(&inst, &id), &quota).await?;
    Ok(ok(view(&s, &inst, &quota)?))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    if bindings(&s, &inst)?.iter().any(|b| b.app_quota_id == id) {
        // Deleting would silently lift the limit of its apps: unbind them first, on purpose.
        return Err(ApiError::invalid(
            "app_quota_id",
            "the credential quota is bound to apps; unbind them first",
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::quota(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

fn app_row(app: &App, binding: Option<(&QuotaBinding, &str)>) -> Value {
    let mut v = json!({
        "app_id": app.id, "name": app.name, "status": 1, "app_key": app.app_key, "remark": app.remark,
        "register_time": app.register_time, "update_time": app.update_time,
    });
    if let Some((b, quota_name)) = binding {
        v["app_quota_id"] = b.app_quota_id.clone().into();
        v["app_quota_name"] = quota_name.into();
        v["bound_time"] = b.bound_time.clone().into();
    }
    v
}

/// `POST /app-quotas/{id}/binding-apps {"app_ids": [...]}`: an app has at most one quota.
pub async fn bind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: QuotaBindingCreate = parse_json(&body)?;
    let app_ids = req.app_ids.unwrap_or_default();
    if app_ids.is_empty() || app_ids.len() > 100 {
        return Err(ApiError::invalid("app_ids", "1 to 100 app ids").into());
    }
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    let existing = bindings(&s, &inst)?;
    let now = time::now_rfc3339();
    let mut tx = s.tx();
    let mut applies = Vec::new();
    for app_id in app_ids {
        super::apps::load(s.reader(), &inst, &app_id)?;
        if existing.iter().any(|b| b.app_id == app_id) {
            return Err(ApiError::invalid(
                "app_ids",
                format!("app {app_id} is already bound to a credential quota"),
            )
            .into());
        }
        let b = QuotaBinding {
            app_id: app_id.clone(),
            app_quota_id: id.clone(),
            bound_time: now.clone(),
        };
        tx.put(keys::quota_binding(&inst, &app_id), &b)?;
        applies.push(json!({"app_quota_id": id, "app_id": app_id, "bound_time": now}));
    }
    s.commit(tx, &[&inst]).await?;
    Ok(created(json!({"applies": applies})))
}

pub async fn unbind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id, app_id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    let key = keys::quota_binding(&inst, &app_id);
    let b: Option<QuotaBinding> = Reader::get_json(s.reader(), &key)?;
    if b.is_none_or(|b| b.app_quota_id != id) {
        return Err(ApiError::new(
            ErrorCode::AppNotFound,
            format!("The app {app_id} is not bound to this credential quota"),
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(key);
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

/// `GET /app-quotas/{id}/bound-apps`.
pub async fn bound_apps(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let quota = load(s.reader(), &inst, &id)?;
    let apps: Vec<App> = Reader::scan_json(s.reader(), &keys::apps(&inst))?;
    let binds = bindings(&s, &inst)?;
    let rows = binds
        .iter()
        .filter(|b| b.app_quota_id == id)
        .filter_map(|b| apps.iter().find(|a| a.id == b.app_id).map(|a| (a, b)))
        .filter(|(a, _)| name_matches(&q, "app_name", &a.name))
        .map(|(a, b)| app_row(a, Some((b, &quota.name))))
        .collect();
    Ok(ok(paged(rows, page, "apps")))
}

/// `GET /app-quotas/{id}/bindable-apps`: apps bound to no quota.
pub async fn bindable_apps(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    load(s.reader(), &inst, &id)?;
    let mut apps: Vec<App> = Reader::scan_json(s.reader(), &keys::apps(&inst))?;
    apps.sort_by(|a, b| (&a.register_time, &a.id).cmp(&(&b.register_time, &b.id)));
    let binds = bindings(&s, &inst)?;
    let rows = apps
        .iter()
        .filter(|a| {
            !binds.iter().any(|b| b.app_id == a.id) && name_matches(&q, "app_name", &a.name)
        })
        .map(|a| app_row(a, None))
        .collect();
    Ok(ok(paged(rows, page, "apps")))
}
