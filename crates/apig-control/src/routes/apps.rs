//! Apps (credentials for APP authentication), their AppCodes and IP ACLs.
//!
//! Every change here recompiles the instance's snapshot, so a deleted app, a reset secret or a
//! new ACL reaches every replica with the next snapshot, without republishing APIs.

use std::sync::Arc;

use apig_model::app::{
    check_app_code, check_app_secret, App, AppAcl, AppAclSpec, AppAuth, AppCode, AppCodeCreate,
    AppSpec, MAX_APP_CODES,
};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::bootstrap::random;
use crate::error::parse_json;
use crate::tx::{Reader, Tx};
use crate::{keys, ControlState};

pub fn load(
    r: &(impl Reader + ?Sized),
    inst: &str,
    id: &str,
) -> std::result::Result<App, ApiError> {
    r.get_json(&keys::app(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::AppNotFound,
            format!("The app {id} does not exist"),
        )
    })
}

fn check_unique(
    all: &[App],
    name: &str,
    key: Option<&str>,
    except: Option<&str>,
) -> std::result::Result<(), ApiError> {
    for a in all.iter().filter(|a| Some(a.id.as_str()) != except) {
        if a.name == name {
            return Err(ApiError::new(
                ErrorCode::AppNameExists,
                format!("The app name already exists: {name}"),
            ));
        }
        if key.is_some_and(|k| k == a.app_key) {
            return Err(ApiError::new(
                ErrorCode::AppKeyExists,
                "The AppKey already exists.",
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
    let mut all: Vec<App> = Reader::scan_json(s.reader(), &keys::apps(&inst))?;
    all.retain(|a| {
        eq_filter(&q, "id", &a.id)
            && name_matches(&q, "name", &a.name)
            && eq_filter(&q, "app_key", &a.app_key)
    });
    all.sort_by(|a, b| (&a.register_time, &a.id).cmp(&(&b.register_time, &b.id)));
    let auths: Vec<AppAuth> = Reader::scan_json(s.reader(), &keys::app_auths(&inst))?;
    let items = all
        .iter()
        .map(|a| {
            let mut v = a.to_json();
            v["bind_num"] = auths.iter().filter(|x| x.app_id == a.id).count().into();
            v
        })
        .collect();
    Ok(ok(paged(items, page, "apps")))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: AppSpec = parse_json(&body)?;
    spec.validate(true)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let all: Vec<App> = Reader::scan_json(s.reader(), &keys::apps(&inst))?;
    let name = spec.name.unwrap_or_default();
    let app_key = spec.app_key.unwrap_or_else(ids::new_id);
    check_unique(&all, &name, Some(&app_key), None)?;
    let now = time::now_rfc3339();
    let app = App {
        id: ids::new_id(),
        instance_id: inst.clone(),
        name,
        remark: spec.remark.unwrap_or_default(),
        app_key,
        app_secret: spec.app_secret.unwrap_or_else(|| random(40)),
        register_time: now.clone(),
        update_time: now,
    };
    s.save(&inst, keys::app(&inst, &app.id), &app).await?;
    Ok(created(app.to_json_with_secret()))
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    Ok(ok(load(s.reader(), &inst, &id)?.to_json()))
}

/// `GET /apps/validation/{app_id}`: whether the app exists (APIG answers its id and name).
pub async fn validation(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let app = load(s.reader(), &inst, &id)?;
    Ok(ok(
        json!({"id": app.id, "name": app.name, "remark": app.remark}),
    ))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: AppSpec = parse_json(&body)?;
    spec.validate(false)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut app = load(s.reader(), &inst, &id)?;
    if spec.app_key.as_deref().is_some_and(|k| k != app.app_key)
        || spec
            .app_secret
            .as_deref()
            .is_some_and(|k| k != app.app_secret)
    {
        return Err(ApiError::invalid(
            "app_key",
            "the key and secret are changed with PUT /apps/secret/{app_id}",
        )
        .into());
    }
    let all: Vec<App> = Reader::scan_json(s.reader(), &keys::apps(&inst))?;
    let name = spec.name.unwrap_or_default();
    check_unique(&all, &name, None, Some(&id))?;
    app.name = name;
    if let Some(r) = spec.remark {
        app.remark = r;
    }
    app.update_time = time::now_rfc3339();
    s.save(&inst, keys::app(&inst, &id), &app).await?;
    Ok(ok(app.to_json()))
}

#[derive(Deserialize, Default)]
struct SecretReset {
    app_secret: Option<String>,
}

/// `PUT /apps/secret/{app_id}`: a new secret (given or generated); the old one stops working on
/// every replica with the next snapshot.
pub async fn reset_secret(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: SecretReset = if body.is_empty() {
        SecretReset::default()
    } else {
        parse_json(&body)?
    };
    if let Some(secret) = &spec.app_secret {
        check_app_secret(secret)?;
    }
    let _w = s.lock_instance(&project, &inst).await?;
    let mut app = load(s.reader(), &inst, &id)?;
    app.app_secret = spec.app_secret.unwrap_or_else(|| random(40));
    app.update_time = time::now_rfc3339();
    s.save(&inst, keys::app(&inst, &id), &app).await?;
    Ok(ok(app.to_json_with_secret()))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    let mut tx = s.tx();
    tx.delete(keys::app(&inst, &id));
    tx.delete(keys::app_acl(&inst, &id));
    tx.delete(keys::quota_binding(&inst, &id));
    tx.delete_prefix(&keys::app_codes_of(&inst, &id))?;
    let auths: Vec<AppAuth> = tx.scan_json(&keys::app_auths(&inst))?;
    for a in auths.iter().filter(|a| a.app_id == id) {
        tx.delete(keys::app_auth(&inst, &a.id));
    }
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

// ---- AppCodes -------------------------------------------------------------------------------

async fn add_code(
    s: &ControlState,
    project: &str,
    inst: &str,
    app_id: &str,
    code: String,
) -> Result<Response> {
    let _w = s.write_lock().await;
    s.instance(s.reader(), project, inst)?;
    load(s.reader(), inst, app_id)?;
    let existing: Vec<AppCode> = Reader::scan_json(s.reader(), &keys::app_codes_of(inst, app_id))?;
    if existing.len() >= MAX_APP_CODES {
        return Err(ApiError::new(
            ErrorCode::AppCodeQuota,
            format!("An app has at most {MAX_APP_CODES} AppCodes."),
        )
        .into());
    }
    // AppCodes are credentials: one code may identify one app only, across the instance.
    let all: Vec<AppCode> = Reader::scan_json(s.reader(), &keys::app_codes(inst))?;
    if all.iter().any(|c| c.app_code == code) {
        return Err(ApiError::invalid("app_code", "this AppCode is already in use").into());
    }
    let c = AppCode {
        id: ids::new_id(),
        app_id: app_id.to_owned(),
        app_code: code,
        create_time: time::now_rfc3339(),
    };
    let mut tx: Tx<'_> = s.tx();
    tx.put(keys::app_code(inst, app_id, &c.id), &c)?;
    s.commit(tx, &[inst]).await?;
    Ok(created(c.to_json()))
}

pub async fn create_code(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, app_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: AppCodeCreate = parse_json(&body)?;
    let code = apig_model::validate::required("app_code", &spec.app_code)?.to_owned();
    check_app_code(&code)?;
    add_code(&s, &project, &inst, &app_id, code).await
}

/// `PUT /apps/{app_id}/app-codes`: an AppCode generated by the gateway.
pub async fn generate_code(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, app_id)): Path<(String, String, String)>,
) -> Result<Response> {
    add_code(&s, &project, &inst, &app_id, random(64)).await
}

pub async fn list_codes(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, app_id)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    load(s.reader(), &inst, &app_id)?;
    let mut all: Vec<AppCode> = Reader::scan_json(s.reader(), &keys::app_codes_of(&inst, &app_id))?;
    all.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    Ok(ok(paged(
        all.iter().map(AppCode::to_json).collect(),
        page,
        "app_codes",
    )))
}

fn load_code(
    r: &(impl Reader + ?Sized),
    inst: &str,
    app: &str,
    id: &str,
) -> std::result::Result<AppCode, ApiError> {
    r.get_json(&keys::app_code(inst, app, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::AppCodeNotFound,
            format!("The AppCode {id} does not exist"),
        )
    })
}

pub async fn show_code(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, app_id, code_id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    load(s.reader(), &inst, &app_id)?;
    Ok(ok(
        load_code(s.reader(), &inst, &app_id, &code_id)?.to_json()
    ))
}

pub async fn delete_code(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, app_id, code_id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &app_id)?;
    load_code(s.reader(), &inst, &app_id, &code_id)?;
    let mut tx = s.tx();
    tx.delete(keys::app_code(&inst, &app_id, &code_id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

// ---- App ACL --------------------------------------------------------------------------------

pub async fn put_acl(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, app_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: AppAclSpec = parse_json(&body)?;
    spec.validate()?;
    let acl = AppAcl {
        app_id: app_id.clone(),
        app_acl_type: spec.app_acl_type.unwrap_or_default(),
        app_acl_values: spec.app_acl_values.unwrap_or_default(),
    };
    // The same parser the gateway uses: a value it would reject is refused here.
    apig_policy::IpAcl::parse(acl.app_acl_type == "PERMIT", &acl.app_acl_values)
        .map_err(|e| ApiError::invalid("app_acl_values", e.to_string()))?;
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &app_id)?;
    s.save(&inst, keys::app_acl(&inst, &app_id), &acl).await?;
    Ok(ok(serde_json::to_value(&acl).unwrap_or_default()))
}

pub async fn show_acl(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, app_id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    load(s.reader(), &inst, &app_id)?;
    let acl: Option<AppAcl> = Reader::get_json(s.reader(), &keys::app_acl(&inst, &app_id))?;
    Ok(ok(match acl {
        Some(a) => serde_json::to_value(&a).unwrap_or_default(),
        None => json!({"app_id": app_id, "app_acl_type": null, "app_acl_values": []}),
    }))
}

pub async fn delete_acl(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, app_id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &app_id)?;
    let mut tx = s.tx();
    tx.delete(keys::app_acl(&inst, &app_id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}
