//! Policy bindings, shared by request throttling (`/throttle-bindings`), access control
//! (`/acl-bindings`) and signature keys (`/sign-bindings`): made through publication ids, kept
//! per API and environment.

use std::collections::HashMap;

use apig_model::api::Api;
use apig_model::env::Env;
use apig_model::group::Group;
use apig_model::policy::Binding;
use apig_model::publish::Publication;
use apig_model::{ids, time, ApiError, ErrorCode};
use serde_json::{json, Value};

use crate::tx::{Reader, Tx};
use crate::{keys, ControlState};

/// What differs between the two kinds of binding.
pub struct Kind {
    /// Key prefix kind: `tbind` or `abind`.
    pub store: &'static str,
    pub not_found: ErrorCode,
    /// The list field of the batch-unbind body (`PUT …-bindings?action=delete`).
    pub batch_field: &'static str,
}

pub const THROTTLE: Kind = Kind {
    store: "tbind",
    not_found: ErrorCode::BindingNotFound,
    batch_field: "throttle_bindings",
};
pub const SIGN: Kind = Kind {
    store: "sbind",
    not_found: ErrorCode::SignBindingNotFound,
    batch_field: "sign_bindings",
};
pub const ACL: Kind = Kind {
    store: "abind",
    not_found: ErrorCode::AclBindingNotFound,
    batch_field: "acl_bindings",
};

pub fn all(r: &(impl Reader + ?Sized), kind: &Kind, inst: &str) -> Result<Vec<Binding>, ApiError> {
    let mut b: Vec<Binding> = r.scan_json(&keys::bindings(kind.store, inst))?;
    b.sort_by(|x, y| (&x.apply_time, &x.id).cmp(&(&y.apply_time, &y.id)));
    Ok(b)
}

/// Resolves publication ids to (API, environment) pairs of this instance.
pub fn publications(
    r: &(impl Reader + ?Sized),
    inst: &str,
    publish_ids: &[String],
) -> Result<Vec<Publication>, ApiError> {
    if publish_ids.is_empty() || publish_ids.len() > 1000 {
        return Err(ApiError::invalid(
            "publish_ids",
            "1 to 1000 publication ids",
        ));
    }
    let pubs: Vec<Publication> = r.scan_json(&keys::pubs(inst))?;
    publish_ids
        .iter()
        .map(|id| {
            pubs.iter()
                .find(|p| &p.publish_id == id)
                .cloned()
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::PublicationNotFound,
                        format!("The API publication record does not exist: {id}"),
                    )
                })
        })
        .collect()
}

/// Writes one binding per publication; `conflicts` says why an existing binding forbids it.
pub fn bind(
    tx: &mut Tx<'_>,
    kind: &Kind,
    inst: &str,
    policy_id: &str,
    pubs: &[Publication],
    conflicts: impl Fn(&Binding) -> Option<String>,
) -> Result<Vec<Binding>, ApiError> {
    let existing = all(tx, kind, inst)?;
    let now = time::now_rfc3339();
    let mut made: Vec<Binding> = Vec::new();
    for p in pubs {
        for b in existing
            .iter()
            .chain(made.iter())
            .filter(|b| b.api_id == p.api_id && b.env_id == p.env_id)
        {
            if b.policy_id == policy_id {
                return Err(ApiError::invalid(
                    "publish_ids",
                    format!(
                        "the policy is already bound to publication {}",
                        p.publish_id
                    ),
                ));
            }
            if let Some(why) = conflicts(b) {
                return Err(ApiError::invalid("publish_ids", why));
            }
        }
        let b = Binding {
            id: ids::new_id(),
            policy_id: policy_id.to_owned(),
            api_id: p.api_id.clone(),
            env_id: p.env_id.clone(),
            apply_time: now.clone(),
        };
        tx.put(keys::binding(kind.store, inst, &b.id), &b)?;
        made.push(b);
    }
    Ok(made)
}

/// Deletes bindings by id; answers APIG's batch result.
pub fn unbind(tx: &mut Tx<'_>, kind: &Kind, inst: &str, ids: &[String]) -> Result<Value, ApiError> {
    let mut failure = Vec::new();
    let mut ok = 0;
    for id in ids {
        if tx.exists(&keys::binding(kind.store, inst, id))? {
            tx.delete(keys::binding(kind.store, inst, id));
            ok += 1;
        } else {
            failure.push(json!({"bind_id": id, "error_code": kind.not_found.code(), "error_msg": "The binding record does not exist."}));
        }
    }
    Ok(json!({"success_count": ok, "failure": failure}))
}

/// `DELETE …-bindings/{id}`.
pub async fn unbind_one(
    s: &ControlState,
    kind: &Kind,
    project: &str,
    inst: &str,
    id: &str,
) -> Result<(), ApiError> {
    let _w = s.lock_instance(project, inst).await?;
    if !Reader::exists(s.reader(), &keys::binding(kind.store, inst, id))? {
        return Err(ApiError::new(
            kind.not_found,
            format!("The binding record {id} does not exist"),
        ));
    }
    let mut tx = s.tx();
    tx.delete(keys::binding(kind.store, inst, id));
    s.commit(tx, &[inst]).await
}

/// `PUT …-bindings?action=delete {"<batch_field>": [ids]}`: APIG's batch answer.
pub async fn unbind_batch(
    s: &ControlState,
    kind: &Kind,
    project: &str,
    inst: &str,
    action: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    if action != Some("delete") {
        return Err(ApiError::invalid("action", "delete"));
    }
    let req: serde_json::Map<String, Value> = crate::error::parse_json(body)?;
    let ids: Vec<String> = match req.get(kind.batch_field) {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::invalid(kind.batch_field, "a list of binding ids"))?,
        None => return Err(ApiError::required(kind.batch_field)),
    };
    let _w = s.lock_instance(project, inst).await?;
    let mut tx = s.tx();
    let result = unbind(&mut tx, kind, inst, &ids)?;
    s.commit(tx, &[inst]).await?;
    Ok(result)
}

/// APIs, groups, environments and publications of an instance, for binding listings.
pub struct Catalog {
    pub apis: HashMap<String, Api>,
    pub groups: HashMap<String, Group>,
    pub envs: HashMap<String, Env>,
    pub pubs: HashMap<(String, String), Publication>,
}

impl Catalog {
    pub fn load(r: &(impl Reader + ?Sized), inst: &str) -> Result<Catalog, ApiError> {
        let apis: Vec<Api> = r.scan_json(&keys::apis(inst))?;
        let groups: Vec<Group> = r.scan_json(&keys::groups(inst))?;
        let envs: Vec<Env> = r.scan_json(&keys::envs(inst))?;
        let pubs: Vec<Publication> = r.scan_json(&keys::pubs(inst))?;
        Ok(Catalog {
            apis: apis.into_iter().map(|a| (a.id.clone(), a)).collect(),
            groups: groups.into_iter().map(|g| (g.id.clone(), g)).collect(),
            envs: envs.into_iter().map(|e| (e.id.clone(), e)).collect(),
            pubs: pubs
                .into_iter()
                .map(|p| ((p.api_id.clone(), p.env_id.clone()), p))
                .collect(),
        })
    }

    pub fn env_name(&self, env: &str) -> String {
        self.envs
            .get(env)
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    /// The fields every API row of a binding listing carries.
    pub fn api_row(&self, api_id: &str, env_id: &str) -> Option<Value> {
        let api = self.apis.get(api_id)?;
        let sp = &api.spec;
        Some(json!({
            "id": api.id, "api_id": api.id, "name": sp.name, "api_name": sp.name, "api_type": sp.api_type,
            "type": sp.api_type, "remark": sp.remark, "api_remark": sp.remark, "auth_type": sp.auth_type,
            "req_uri": sp.req_uri, "req_method": sp.req_method, "group_id": sp.group_id(),
            "group_name": self.groups.get(sp.group_id()).map(|g| g.name.clone()).unwrap_or_default(),
            "env_id": env_id, "run_env_id": env_id, "env_name": self.env_name(env_id), "run_env_name": self.env_name(env_id),
            "publish_id": self.pubs.get(&(api_id.to_owned(), env_id.to_owned())).map(|p| p.publish_id.clone()).unwrap_or_default(),
            "tags": sp.tags.clone().unwrap_or_default(),
        }))
    }

    /// Published APIs (per environment) that match the usual listing filters.
    pub fn published(&self, q: &HashMap<String, String>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .pubs
            .keys()
            .filter(|(api, env)| {
                let Some(a) = self.apis.get(api) else {
                    return false;
                };
                super::eq_filter(q, "env_id", env)
                    && super::eq_filter(q, "group_id", a.spec.group_id())
                    && super::eq_filter(q, "api_id", api)
                    && super::name_matches(
                        q,
                        "api_name",
                        a.spec.name.as_deref().unwrap_or_default(),
                    )
            })
            .cloned()
            .collect();
        out.sort();
        out
    }
}

/// Published APIs (per environment) the policy is not bound to, as listing rows.
pub fn unbound_rows(
    r: &(impl Reader + ?Sized),
    kind: &Kind,
    inst: &str,
    policy: &str,
    q: &HashMap<String, String>,
) -> Result<Vec<Value>, ApiError> {
    let cat = Catalog::load(r, inst)?;
    let bound = all(r, kind, inst)?;
    Ok(cat
        .published(q)
        .into_iter()
        .filter(|(api, env)| {
            !bound
                .iter()
                .any(|b| b.policy_id == policy && &b.api_id == api && &b.env_id == env)
        })
        .filter_map(|(api, env)| cat.api_row(&api, &env))
        .collect())
}

/// The APIs a policy is bound to, as listing rows with the binding's id and time.
pub fn bound_rows(
    r: &(impl Reader + ?Sized),
    kind: &Kind,
    inst: &str,
    policy: &str,
    q: &HashMap<String, String>,
) -> Result<Vec<(Binding, Value)>, ApiError> {
    let cat = Catalog::load(r, inst)?;
    Ok(all(r, kind, inst)?
        .into_iter()
        .filter(|b| {
            b.policy_id == policy
                && super::eq_filter(q, "env_id", &b.env_id)
                && super::eq_filter(q, "api_id", &b.api_id)
        })
        .filter_map(|b| cat.api_row(&b.api_id, &b.env_id).map(|row| (b, row)))
        .filter(|(_, row)| {
            super::eq_filter(q, "group_id", row["group_id"].as_str().unwrap_or_default())
        })
        .collect())
}
