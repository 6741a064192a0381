//! Access control policies (IP; DOMAIN_ID and DOMAIN for IAM callers) and their bindings.

use std::sync::Arc;

use apig_model::policy::{Acl, AclSpec, BindingCreate};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::bindings::{self, Catalog, ACL};
use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

pub fn load(
    r: &(impl Reader + ?Sized),
    inst: &str,
    id: &str,
) -> std::result::Result<Acl, ApiError> {
    r.get_json(&keys::acl(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::AclNotFound,
            format!("The access control policy {id} does not exist"),
        )
    })
}

/// Validates a body and parses IP values with the gateway's own parser.
pub(super) fn checked(spec: AclSpec, id: String) -> std::result::Result<Acl, ApiError> {
    spec.validate()?;
    let acl = Acl {
        id,
        acl_name: spec.acl_name.unwrap_or_default(),
        acl_type: spec.acl_type.unwrap_or_default(),
        acl_value: spec.acl_value.unwrap_or_default(),
        entity_type: spec.entity_type.unwrap_or_default(),
        update_time: time::now_rfc3339(),
    };
    if acl.entity_type == "IP" {
        apig_policy::IpAcl::parse(acl.acl_type == "PERMIT", &acl.values())
            .map_err(|e| ApiError::invalid("acl_value", e.to_string()))?;
    }
    Ok(acl)
}

pub(super) fn check_name(
    s: &ControlState,
    inst: &str,
    name: &str,
    except: Option<&str>,
) -> std::result::Result<(), ApiError> {
    let all: Vec<Acl> = Reader::scan_json(s.reader(), &keys::acls(inst))?;
    if all
        .iter()
        .any(|a| a.acl_name == name && Some(a.id.as_str()) != except)
    {
        return Err(ApiError::new(
            ErrorCode::AclNameExists,
            format!("The access control policy name already exists: {name}"),
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
    let mut all: Vec<Acl> = Reader::scan_json(s.reader(), &keys::acls(&inst))?;
    all.retain(|a| {
        eq_filter(&q, "id", &a.id)
            && name_matches(&q, "name", &a.acl_name)
            && eq_filter(&q, "acl_type", &a.acl_type)
            && eq_filter(&q, "entity_type", &a.entity_type)
    });
    all.sort_by(|a, b| (&a.update_time, &a.id).cmp(&(&b.update_time, &b.id)));
    let binds = bindings::all(s.reader(), &ACL, &inst)?;
    let items = all
        .iter()
        .map(|a| {
            let mut v = a.to_json();
            v["bind_num"] = binds.iter().filter(|b| b.policy_id == a.id).count().into();
            v
        })
        .collect();
    Ok(ok(paged(items, page, "acls")))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let acl = checked(parse_json(&body)?, ids::new_id())?;
    let _w = s.lock_instance(&project, &inst).await?;
    check_name(&s, &inst, &acl.acl_name, None)?;
    s.save(&inst, keys::acl(&inst, &acl.id), &acl).await?;
    Ok(created(acl.to_json()))
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
    let acl = checked(parse_json(&body)?, id.clone())?;
    let _w = s.lock_instance(&project, &inst).await?;
    let old = load(s.reader(), &inst, &id)?;
    check_name(&s, &inst, &acl.acl_name, Some(&id))?;
    if old.entity_type != acl.entity_type
        && bindings::all(s.reader(), &ACL, &inst)?
            .iter()
            .any(|b| b.policy_id == id)
    {
        return Err(
            ApiError::invalid("entity_type", "cannot change while the policy is bound").into(),
        );
    }
    s.save(&inst, keys::acl(&inst, &id), &acl).await?;
    Ok(ok(acl.to_json()))
}

fn refuse_bound(s: &ControlState, inst: &str, id: &str) -> std::result::Result<(), ApiError> {
    if bindings::all(s.reader(), &ACL, inst)?
        .iter()
        .any(|b| b.policy_id == id)
    {
        return Err(ApiError::new(
            ErrorCode::AclBound,
            "The access control policy cannot be deleted because it has been bound to APIs.",
        ));
    }
    Ok(())
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    refuse_bound(&s, &inst, &id)?;
    let mut tx = s.tx();
    tx.delete(keys::acl(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

#[derive(Deserialize, Default)]
struct BatchDelete {
    acls: Option<Vec<String>>,
}

/// `PUT /acls?action=delete {"acls": [...]}`.
pub async fn delete_batch(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
    body: Bytes,
) -> Result<Response> {
    if q.get("action").map(String::as_str) != Some("delete") {
        return Err(ApiError::invalid("action", "delete").into());
    }
    let req: BatchDelete = parse_json(&body)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut tx = s.tx();
    let (mut success, mut failure) = (0, Vec::new());
    for id in req.acls.unwrap_or_default() {
        match load(s.reader(), &inst, &id).and_then(|_| refuse_bound(&s, &inst, &id)) {
            Ok(()) => {
                tx.delete(keys::acl(&inst, &id));
                success += 1;
            }
            Err(e) => failure
                .push(json!({"acl_id": id, "error_code": e.code.code(), "error_msg": e.message})),
        }
    }
    s.commit(tx, &[&inst]).await?;
    Ok(ok(json!({"success_count": success, "failure": failure})))
}

pub async fn bind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: BindingCreate = parse_json(&body)?;
    let policy = apig_model::validate::required("acl_id", &req.acl_id)?.to_owned();
    let _w = s.lock_instance(&project, &inst).await?;
    let acl = load(s.reader(), &inst, &policy)?;
    let pubs = bindings::publications(
        s.reader(),
        &inst,
        req.publish_ids.as_deref().unwrap_or_default(),
    )?;
    let mut tx = s.tx();
    let others: Vec<Acl> = Reader::scan_json(s.reader(), &keys::acls(&inst))?;
    let made = bindings::bind(&mut tx, &ACL, &inst, &policy, &pubs, |b| {
        let other = others.iter().find(|o| o.id == b.policy_id)?;
        (other.entity_type == acl.entity_type).then(|| {
            format!(
                "an API has one {} access control policy per environment; unbind {} first",
                acl.entity_type, other.acl_name
            )
        })
    })?;
    s.commit(tx, &[&inst]).await?;
    let rows: Vec<_> = made
        .iter()
        .map(|b| json!({"id": b.id, "api_id": b.api_id, "env_id": b.env_id, "acl_id": policy, "create_time": b.apply_time}))
        .collect();
    Ok(created(json!({"acl_bindings": rows})))
}

pub async fn unbind_one(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    bindings::unbind_one(&s, &ACL, &project, &inst, &id).await?;
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
        &s, &ACL, &project, &inst, action, &body,
    )
    .await?))
}

/// `GET /acl-bindings/binded-apis?acl_id=`.
pub async fn bound_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let policy = apig_model::validate::required("acl_id", &q.get("acl_id").cloned())?.to_owned();
    load(s.reader(), &inst, &policy)?;
    let rows = bindings::bound_rows(s.reader(), &ACL, &inst, &policy, &q)?
        .into_iter()
        .map(|(b, mut row)| {
            row["bind_id"] = b.id.into();
            row["bind_time"] = b.apply_time.into();
            row
        })
        .collect();
    Ok(ok(paged(rows, page, "apis")))
}

/// `GET /acl-bindings/unbinded-apis?acl_id=`.
pub async fn unbound_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let policy = apig_model::validate::required("acl_id", &q.get("acl_id").cloned())?.to_owned();
    load(s.reader(), &inst, &policy)?;
    let rows = bindings::unbound_rows(s.reader(), &ACL, &inst, &policy, &q)?;
    Ok(ok(paged(rows, page, "apis")))
}

/// `GET /acl-bindings/binded-acls?api_id=`.
pub async fn bound_acls(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let api = apig_model::validate::required("api_id", &q.get("api_id").cloned())?.to_owned();
    let cat = Catalog::load(s.reader(), &inst)?;
    let mut rows = Vec::new();
    for b in bindings::all(s.reader(), &ACL, &inst)? {
        if b.api_id != api
            || !eq_filter(&q, "env_id", &b.env_id)
            || !eq_filter(&q, "acl_id", &b.policy_id)
        {
            continue;
        }
        let a = load(s.reader(), &inst, &b.policy_id)?;
        rows.push(json!({
            "acl_id": a.id, "acl_name": a.acl_name, "entity_type": a.entity_type, "acl_type": a.acl_type,
            "acl_value": a.acl_value, "env_id": b.env_id, "env_name": cat.env_name(&b.env_id),
            "bind_id": b.id, "bind_time": b.apply_time,
        }));
    }
    Ok(ok(paged(rows, page, "acls")))
}
