//! Request throttling policies, their excluded (special) limits, and their bindings. A change
//! takes effect on every replica with the next snapshot, without republishing.

use std::sync::Arc;

use apig_model::app::App;
use apig_model::policy::{
    BindingCreate, SpecialSpec, Throttle, ThrottleSpec, ThrottleSpecial, MAX_SPECIALS_PER_KIND,
};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::json;

use super::bindings::{self, Catalog, THROTTLE};
use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

pub fn load(
    r: &(impl Reader + ?Sized),
    inst: &str,
    id: &str,
) -> std::result::Result<Throttle, ApiError> {
    r.get_json(&keys::throttle(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::ThrottleNotFound,
            format!("The request throttling policy {id} does not exist"),
        )
    })
}

fn view(
    s: &ControlState,
    inst: &str,
    t: &Throttle,
) -> std::result::Result<serde_json::Value, ApiError> {
    let binds = bindings::all(s.reader(), &THROTTLE, inst)?
        .iter()
        .filter(|b| b.policy_id == t.id)
        .count();
    let specials: Vec<ThrottleSpecial> =
        Reader::scan_json(s.reader(), &keys::specials_of(inst, &t.id))?;
    Ok(t.to_json(binds, !specials.is_empty()))
}

pub(super) fn check_name(
    s: &ControlState,
    inst: &str,
    name: &str,
    except: Option<&str>,
) -> std::result::Result<(), ApiError> {
    let all: Vec<Throttle> = Reader::scan_json(s.reader(), &keys::throttles(inst))?;
    if all
        .iter()
        .any(|t| t.name == name && Some(t.id.as_str()) != except)
    {
        return Err(ApiError::new(
            ErrorCode::ThrottleNameExists,
            format!("The request throttling policy name already exists: {name}"),
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
    let mut all: Vec<Throttle> = Reader::scan_json(s.reader(), &keys::throttles(&inst))?;
    all.retain(|t| eq_filter(&q, "id", &t.id) && name_matches(&q, "name", &t.name));
    all.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    let mut items = Vec::new();
    for t in &all {
        items.push(view(&s, &inst, t)?);
    }
    Ok(ok(paged(items, page, "throttles")))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: ThrottleSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    check_name(&s, &inst, spec.name.as_deref().unwrap_or_default(), None)?;
    let t = spec.into_throttle(ids::new_id(), time::now_rfc3339());
    s.save(&inst, keys::throttle(&inst, &t.id), &t).await?;
    Ok(created(view(&s, &inst, &t)?))
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let t = load(s.reader(), &inst, &id)?;
    Ok(ok(view(&s, &inst, &t)?))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: ThrottleSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let old = load(s.reader(), &inst, &id)?;
    check_name(
        &s,
        &inst,
        spec.name.as_deref().unwrap_or_default(),
        Some(&id),
    )?;
    let t = spec.into_throttle(id.clone(), old.create_time);
    let specials: Vec<ThrottleSpecial> =
        Reader::scan_json(s.reader(), &keys::specials_of(&inst, &id))?;
    if specials.iter().any(|sp| sp.call_limits > t.api_call_limits) {
        return Err(ApiError::invalid(
            "api_call_limits",
            "an excluded limit of this policy is above it",
        )
        .into());
    }
    s.save(&inst, keys::throttle(&inst, &id), &t).await?;
    Ok(ok(view(&s, &inst, &t)?))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    if bindings::all(s.reader(), &THROTTLE, &inst)?
        .iter()
        .any(|b| b.policy_id == id)
    {
        return Err(ApiError::new(
            ErrorCode::ThrottleBound,
            "The request throttling policy cannot be deleted because it has been bound to APIs.",
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::throttle(&inst, &id));
    tx.delete_prefix(&keys::specials_of(&inst, &id))?;
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

// ---- excluded (special) limits ---------------------------------------------------------------

fn special_view(s: &ControlState, inst: &str, sp: &ThrottleSpecial) -> serde_json::Value {
    let app_name = if sp.object_type == "APP" {
        Reader::get_json::<App>(s.reader(), &keys::app(inst, &sp.object_id))
            .ok()
            .flatten()
            .map(|a| a.name)
    } else {
        None
    };
    json!({
        "id": sp.id, "throttle_id": sp.throttle_id, "object_type": sp.object_type, "object_id": sp.object_id,
        "object_name": app_name.clone().unwrap_or_else(|| sp.object_id.clone()), "call_limits": sp.call_limits,
        "apply_time": sp.apply_time, "app_id": if sp.object_type == "APP" { sp.object_id.clone() } else { String::new() },
        "app_name": app_name.unwrap_or_default(),
    })
}

pub async fn list_specials(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, throttle)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    load(s.reader(), &inst, &throttle)?;
    let mut all: Vec<ThrottleSpecial> =
        Reader::scan_json(s.reader(), &keys::specials_of(&inst, &throttle))?;
    all.retain(|sp| eq_filter(&q, "object_type", &sp.object_type));
    all.sort_by(|a, b| (&a.apply_time, &a.id).cmp(&(&b.apply_time, &b.id)));
    Ok(ok(paged(
        all.iter().map(|sp| special_view(&s, &inst, sp)).collect(),
        page,
        "throttle_specials",
    )))
}

pub async fn create_special(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, throttle)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: SpecialSpec = parse_json(&body)?;
    spec.validate(true)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let t = load(s.reader(), &inst, &throttle)?;
    let existing: Vec<ThrottleSpecial> =
        Reader::scan_json(s.reader(), &keys::specials_of(&inst, &throttle))?;
    let sp = checked_special(s.reader(), &inst, &t, spec, &existing)?;
    s.save(&inst, keys::special(&inst, &throttle, &sp.id), &sp)
        .await?;
    Ok(created(special_view(&s, &inst, &sp)))
}

/// The checks of an excluded limit (after `SpecialSpec::validate`) against its policy and the
/// policy's other excluded limits; shared with the OpenAPI import.
pub(super) fn checked_special(
    r: &(impl Reader + ?Sized),
    inst: &str,
    t: &Throttle,
    spec: SpecialSpec,
    existing: &[ThrottleSpecial],
) -> std::result::Result<ThrottleSpecial, ApiError> {
    let object_type = spec.object_type.unwrap_or_default();
    let object_id = spec.object_id.unwrap_or_default();
    let limit = spec.call_limits.unwrap_or(1);
    if limit > t.api_call_limits {
        return Err(ApiError::invalid(
            "call_limits",
            "may not exceed the policy's api_call_limits",
        ));
    }
    match object_type.as_str() {
        "APP" => {
            super::apps::load(r, inst, &object_id)?;
        }
        // A tenant is a project; this instance's own project is the only one its callers have
        // unless other projects' apps are supported later, so any well-formed id is accepted.
        _ if object_id.len() > 64 || object_id.contains('/') => {
            return Err(ApiError::invalid("object_id", "a project id"));
        }
        _ => {}
    }
    if existing
        .iter()
        .any(|sp| sp.object_type == object_type && sp.object_id == object_id)
    {
        return Err(ApiError::new(
            ErrorCode::SpecialExists,
            "The excluded request throttling configuration already exists.",
        ));
    }
    if existing
        .iter()
        .filter(|sp| sp.object_type == object_type)
        .count()
        >= MAX_SPECIALS_PER_KIND
    {
        return Err(ApiError::invalid(
            "object_id",
            format!("at most {MAX_SPECIALS_PER_KIND} excluded {object_type} limits per policy"),
        ));
    }
    Ok(ThrottleSpecial {
        id: ids::new_id(),
        throttle_id: t.id.clone(),
        object_type,
        object_id,
        call_limits: limit,
        apply_time: time::now_rfc3339(),
    })
}

fn load_special(
    r: &(impl Reader + ?Sized),
    inst: &str,
    throttle: &str,
    id: &str,
) -> std::result::Result<ThrottleSpecial, ApiError> {
    r.get_json(&keys::special(inst, throttle, id))?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::SpecialNotFound,
                format!("The excluded request throttling configuration {id} does not exist"),
            )
        })
}

pub async fn update_special(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, throttle, id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: SpecialSpec = parse_json(&body)?;
    spec.validate(false)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let t = load(s.reader(), &inst, &throttle)?;
    let mut sp = load_special(s.reader(), &inst, &throttle, &id)?;
    sp.call_limits = spec.call_limits.unwrap_or(sp.call_limits);
    if sp.call_limits > t.api_call_limits {
        return Err(ApiError::invalid(
            "call_limits",
            "may not exceed the policy's api_call_limits",
        )
        .into());
    }
    s.save(&inst, keys::special(&inst, &throttle, &id), &sp)
        .await?;
    Ok(ok(special_view(&s, &inst, &sp)))
}

pub async fn delete_special(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, throttle, id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &throttle)?;
    load_special(s.reader(), &inst, &throttle, &id)?;
    let mut tx = s.tx();
    tx.delete(keys::special(&inst, &throttle, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

// ---- bindings -------------------------------------------------------------------------------

pub async fn bind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: BindingCreate = parse_json(&body)?;
    let policy = apig_model::validate::required("strategy_id", &req.strategy_id)?.to_owned();
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &policy)?;
    let pubs = bindings::publications(
        s.reader(),
        &inst,
        req.publish_ids.as_deref().unwrap_or_default(),
    )?;
    let mut tx = s.tx();
    let made = bindings::bind(&mut tx, &THROTTLE, &inst, &policy, &pubs, |_| {
        Some(
            "an API has one request throttling policy per environment; unbind the other one first"
                .into(),
        )
    })?;
    s.commit(tx, &[&inst]).await?;
    let applys: Vec<_> = made
        .iter()
        .zip(&pubs)
        .map(|(b, p)| json!({"id": b.id, "publish_id": p.publish_id, "scope": 1, "strategy_id": policy, "apply_time": b.apply_time}))
        .collect();
    Ok(created(json!({"throttle_applys": applys})))
}

pub async fn unbind_one(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    bindings::unbind_one(&s, &THROTTLE, &project, &inst, &id).await?;
    Ok(no_content())
}

pub async fn unbind_batch(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
    body: Bytes,
) -> Result<Response> {
    let action = q.get("action").map(String::as_str);
    Ok(ok(bindings::unbind_batch(
        &s, &THROTTLE, &project, &inst, action, &body,
    )
    .await?))
}

/// `GET /throttle-bindings/binded-apis?throttle_id=`.
pub async fn bound_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let policy =
        apig_model::validate::required("throttle_id", &q.get("throttle_id").cloned())?.to_owned();
    let t = load(s.reader(), &inst, &policy)?;
    let rows = bindings::bound_rows(s.reader(), &THROTTLE, &inst, &policy, &q)?
        .into_iter()
        .map(|(b, mut row)| {
            row["throttle_apply_id"] = b.id.into();
            row["apply_time"] = b.apply_time.into();
            row["throttle_name"] = t.name.clone().into();
            row
        })
        .collect();
    Ok(ok(paged(rows, page, "apis")))
}

/// `GET /throttle-bindings/unbinded-apis?throttle_id=`: published APIs this policy is not bound to.
pub async fn unbound_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let policy =
        apig_model::validate::required("throttle_id", &q.get("throttle_id").cloned())?.to_owned();
    load(s.reader(), &inst, &policy)?;
    let rows = bindings::unbound_rows(s.reader(), &THROTTLE, &inst, &policy, &q)?;
    Ok(ok(paged(rows, page, "apis")))
}

/// `GET /throttle-bindings/binded-throttles?api_id=`: the policies bound to an API.
pub async fn bound_throttles(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let api = apig_model::validate::required("api_id", &q.get("api_id").cloned())?.to_owned();
    let cat = Catalog::load(s.reader(), &inst)?;
    let mut rows = Vec::new();
    for b in bindings::all(s.reader(), &THROTTLE, &inst)? {
        if b.api_id != api
            || !eq_filter(&q, "env_id", &b.env_id)
            || !eq_filter(&q, "throttle_id", &b.policy_id)
        {
            continue;
        }
        let t = load(s.reader(), &inst, &b.policy_id)?;
        let mut row = view(&s, &inst, &t)?;
        row["env_name"] = cat.env_name(&b.env_id).into();
        row["bind_id"] = b.id.into();
        row["bind_time"] = b.apply_time.into();
        rows.push(row);
    }
    Ok(ok(paged(rows, page, "throttles")))
}
