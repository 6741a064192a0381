//! Signature keys (`/signs`) and their bindings (`/sign-bindings`). The secret appears in the
//! create and update answers only; listings mask it.

use std::sync::Arc;

use apig_model::policy::Binding;
use apig_model::sign::{Sign, SignSpec, MAX_SIGNS};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::bindings::{self, Catalog, SIGN};
use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::bootstrap::random;
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

type Res<T> = std::result::Result<T, ApiError>;

pub fn load(r: &(impl Reader + ?Sized), inst: &str, id: &str) -> Res<Sign> {
    r.get_json(&keys::sign(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::SignNotFound,
            format!("The signature key {id} does not exist"),
        )
    })
}

fn check_name(all: &[Sign], name: &str, except: Option<&str>) -> Res<()> {
    super::unique_name(
        all.iter().map(|x| (x.id.as_str(), x.name.as_str())),
        name,
        except,
        ErrorCode::SignNameExists,
        "signature key",
    )
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let mut all: Vec<Sign> = Reader::scan_json(s.reader(), &keys::signs(&inst))?;
    all.retain(|x| eq_filter(&q, "id", &x.id) && name_matches(&q, "name", &x.name));
    all.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    let binds = bindings::all(s.reader(), &SIGN, &inst)?;
    let items = all
        .iter()
        .map(|x| {
            let mut v = x.to_json();
            v["bind_num"] = binds.iter().filter(|b| b.policy_id == x.id).count().into();
            v["ldapi_bind_num"] = 0.into();
            v
        })
        .collect();
    Ok(ok(paged(items, page, "signs")))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: SignSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let all: Vec<Sign> = Reader::scan_json(s.reader(), &keys::signs(&inst))?;
    if all.len() >= MAX_SIGNS {
        return Err(ApiError::new(
            ErrorCode::SignQuota,
            format!(
                "The number of signature keys exceeds the maximum allowed limit ({MAX_SIGNS})."
            ),
        )
        .into());
    }
    check_name(&all, spec.name.as_deref().unwrap_or_default(), None)?;
    let now = time::now_rfc3339();
    let sign = spec.into_sign(ids::new_id(), now.clone(), now, random);
    s.save(&inst, keys::sign(&inst, &sign.id), &sign).await?;
    Ok(created(sign.to_json_with_secret()))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: SignSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let old = load(s.reader(), &inst, &id)?;
    let all: Vec<Sign> = Reader::scan_json(s.reader(), &keys::signs(&inst))?;
    check_name(&all, spec.name.as_deref().unwrap_or_default(), Some(&id))?;
    let sign = spec.into_sign(id.clone(), old.create_time, time::now_rfc3339(), random);
    // Bound APIs sign with the new key from the next snapshot on.
    s.save(&inst, keys::sign(&inst, &id), &sign).await?;
    Ok(ok(sign.to_json_with_secret()))
}

/// Deleting a key unbinds it from its APIs, as APIG does.
pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    let mut tx = s.tx();
    for b in bindings::all(s.reader(), &SIGN, &inst)? {
        if b.policy_id == id {
            tx.delete(keys::binding(SIGN.store, &inst, &b.id));
        }
    }
    tx.delete(keys::sign(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

#[derive(Deserialize, Default)]
struct SignBindingCreate {
    sign_id: Option<String>,
    publish_ids: Option<Vec<String>>,
}

/// One binding row as APIG answers it (SignApiBindingInfo), the secret masked.
fn binding_row(cat: &Catalog, b: &Binding, sign: &Sign) -> serde_json::Value {
    let mut row = cat
        .api_row(&b.api_id, &b.env_id)
        .unwrap_or_else(|| json!({}));
    row["id"] = b.id.clone().into();
    row["api_id"] = b.api_id.clone().into();
    row["binding_time"] = b.apply_time.clone().into();
    row["sign_id"] = sign.id.clone().into();
    row["sign_name"] = sign.name.clone().into();
    row["sign_key"] = sign.sign_key.clone().into();
    row["sign_secret"] = apig_model::sign::MASKED.into();
    row["sign_type"] = sign.sign_type.clone().into();
    row
}

pub async fn bind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: SignBindingCreate = parse_json(&body)?;
    let sign_id = apig_model::validate::required("sign_id", &req.sign_id)?.to_owned();
    let _w = s.lock_instance(&project, &inst).await?;
    let sign = load(s.reader(), &inst, &sign_id)?;
    let pubs = bindings::publications(
        s.reader(),
        &inst,
        req.publish_ids.as_deref().unwrap_or_default(),
    )?;
    let mut tx = s.tx();
    let made = bindings::bind(&mut tx, &SIGN, &inst, &sign_id, &pubs, |_| {
        Some("an API has one signature key per environment; unbind the other one first".into())
    })?;
    s.commit(tx, &[&inst]).await?;
    let cat = Catalog::load(s.reader(), &inst)?;
    let rows: Vec<_> = made.iter().map(|b| binding_row(&cat, b, &sign)).collect();
    Ok(created(json!({"bindings": rows})))
}

pub async fn unbind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    bindings::unbind_one(&s, &SIGN, &project, &inst, &id).await?;
    Ok(no_content())
}

/// `GET /sign-bindings/binded-apis?sign_id=`.
pub async fn bound_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let sign_id = apig_model::validate::required("sign_id", &q.get("sign_id").cloned())?.to_owned();
    let sign = load(s.reader(), &inst, &sign_id)?;
    let cat = Catalog::load(s.reader(), &inst)?;
    let rows = bindings::bound_rows(s.reader(), &SIGN, &inst, &sign_id, &q)?
        .into_iter()
        .map(|(b, _)| binding_row(&cat, &b, &sign))
        .collect();
    Ok(ok(paged(rows, page, "bindings")))
}

/// `GET /sign-bindings/unbinded-apis?sign_id=`.
pub async fn unbound_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let sign_id = apig_model::validate::required("sign_id", &q.get("sign_id").cloned())?.to_owned();
    load(s.reader(), &inst, &sign_id)?;
    let rows = bindings::unbound_rows(s.reader(), &SIGN, &inst, &sign_id, &q)?;
    Ok(ok(paged(rows, page, "apis")))
}

/// `GET /sign-bindings/binded-signs?api_id=`: the keys bound to an API.
pub async fn bound_signs(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let api = apig_model::validate::required("api_id", &q.get("api_id").cloned())?.to_owned();
    let cat = Catalog::load(s.reader(), &inst)?;
    let mut rows = Vec::new();
    for b in bindings::all(s.reader(), &SIGN, &inst)? {
        if b.api_id != api
            || !eq_filter(&q, "env_id", &b.env_id)
            || !eq_filter(&q, "sign_id", &b.policy_id)
        {
            continue;
        }
        let sign = load(s.reader(), &inst, &b.policy_id)?;
        if !name_matches(&q, "sign_name", &sign.name) {
            continue;
        }
        rows.push(binding_row(&cat, &b, &sign));
    }
    Ok(ok(paged(rows, page, "bindings")))
}
