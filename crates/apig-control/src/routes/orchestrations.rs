//! Parameter orchestration rules (`/orchestrations`). APIs reference rules by id from their
//! request parameters; the snapshot carries the rules' current content, so editing a rule applies
//! to published APIs without republishing.

use std::collections::HashMap;
use std::sync::Arc;

use apig_model::api::{Api, ApiSpec};
use apig_model::orchestration::{self, Rule, RuleSpec, MAX_RULES};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::json;

use super::bindings::Catalog;
use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

type Res<T> = std::result::Result<T, ApiError>;

pub fn load(r: &(impl Reader + ?Sized), inst: &str, id: &str) -> Res<Rule> {
    r.get_json(&keys::orchestration(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::OrchestrationNotFound,
            format!("The orchestration rule {id} does not exist"),
        )
    })
}

fn all(r: &(impl Reader + ?Sized), inst: &str) -> Res<Vec<Rule>> {
    r.scan_json(&keys::orchestrations(inst))
}

fn check_name(rules: &[Rule], name: &str, except: Option<&str>) -> Res<()> {
    super::unique_name(
        rules.iter().map(|x| (x.id.as_str(), x.name.as_str())),
        name,
        except,
        ErrorCode::OrchestrationNameExists,
        "orchestration rule",
    )
}

/// APIs (current definitions) whose request parameters list the rule.
fn attached(r: &(impl Reader + ?Sized), inst: &str, id: &str) -> Res<Vec<Api>> {
    let apis: Vec<Api> = r.scan_json(&keys::apis(inst))?;
    Ok(apis
        .into_iter()
        .filter(|a| {
            a.spec
                .req_params
                .iter()
                .flatten()
                .any(|rp| rp.orchestrations.iter().flatten().any(|o| o == id))
        })
        .collect())
}

/// Checks an API's use of orchestration rules: they exist, one parameter at most uses them,
/// their order is valid, and their mapped parameters do not clash with request parameters.
pub fn check_api(r: &(impl Reader + ?Sized), inst: &str, spec: &ApiSpec) -> Res<()> {
    let params = spec.req_params.as_deref().unwrap_or_default();
    let orchestrated: Vec<_> = params
        .iter()
        .filter(|rp| rp.orchestrations.as_ref().is_some_and(|o| !o.is_empty()))
        .collect();
    if orchestrated.len() > 1 {
        return Err(ApiError::invalid(
            "req_params.orchestrations",
            "one request parameter per API can be orchestrated",
        ));
    }
    let Some(param) = orchestrated.first() else {
        return Ok(());
    };
    let ids = param.orchestrations.as_deref().unwrap_or_default();
    if ids.len() > 10 {
        return Err(ApiError::new(
            ErrorCode::OrchestrationQuota,
            "The number of orchestration rules bound to the API exceeds the maximum (10).",
        ));
    }
    let rules = ids
        .iter()
        .map(|id| load(r, inst, id))
        .collect::<Res<Vec<_>>>()?;
    orchestration::check_sequence(&rules.iter().collect::<Vec<_>>())?;
    for rule in &rules {
        let mapped = rule
            .mapped_param
            .as_ref()
            .and_then(|m| m.mapped_param_name.as_deref());
        if let Some(name) = mapped {
            if params.iter().any(|rp| {
                rp.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }) {
                return Err(ApiError::invalid(
                    "req_params.orchestrations",
                    format!(
                        "rule {} maps to {name}, which is already a request parameter",
                        rule.name
                    ),
                ));
            }
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
    let mut rules = all(s.reader(), &inst)?;
    rules.retain(|r| {
        eq_filter(&q, "orchestration_id", &r.id) && name_matches(&q, "orchestration_name", &r.name)
    });
    rules.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    let items = rules.iter().map(Rule::to_json).collect();
    Ok(ok(paged(items, page, "orchestrations")))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: RuleSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let rules = all(s.reader(), &inst)?;
    if rules.len() >= MAX_RULES {
        return Err(ApiError::new(
            ErrorCode::OrchestrationQuota,
            format!("The number of orchestration rules exceeds the maximum ({MAX_RULES})."),
        )
        .into());
    }
    check_name(
        &rules,
        spec.orchestration_name.as_deref().unwrap_or_default(),
        None,
    )?;
    let now = time::now_rfc3339();
    let rule = spec.into_rule(ids::new_id(), now.clone(), now);
    s.save(&inst, keys::orchestration(&inst, &rule.id), &rule)
        .await?;
    Ok(created(rule.to_json()))
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
    let spec: RuleSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let old = load(s.reader(), &inst, &id)?;
    check_name(
        &all(s.reader(), &inst)?,
        spec.orchestration_name.as_deref().unwrap_or_default(),
        Some(&id),
    )?;
    let rule = spec.into_rule(id.clone(), old.create_time.clone(), time::now_rfc3339());
    // APIs rely on the mapped parameter (and on the rule's place in their sequence).
    if !attached(s.reader(), &inst, &id)?.is_empty()
        && (rule.mapped_param != old.mapped_param || rule.is_preprocessing != old.is_preprocessing)
    {
        return Err(ApiError::new(
            ErrorCode::NotSupported,
            "orchestration_mapped_param and is_preprocessing cannot be modified while APIs use the rule",
        )
        .into());
    }
    s.save(&inst, keys::orchestration(&inst, &id), &rule)
        .await?;
    Ok(ok(rule.to_json()))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    if !attached(s.reader(), &inst, &id)?.is_empty() {
        return Err(ApiError::new(
            ErrorCode::OrchestrationInUse,
            "The orchestration rule is currently in use by another API.",
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::orchestration(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

/// `GET /orchestrations/{id}/attached-apis`.
pub async fn attached_apis(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    load(s.reader(), &inst, &id)?;
    let cat = Catalog::load(s.reader(), &inst)?;
    let groups: HashMap<&str, &str> = cat
        .groups
        .values()
        .map(|g| (g.id.as_str(), g.name.as_str()))
        .collect();
    let rows = attached(s.reader(), &inst, &id)?
        .into_iter()
        .filter(|a| {
            eq_filter(&q, "api_id", &a.id)
                && name_matches(&q, "api_name", a.spec.name.as_deref().unwrap_or_default())
        })
        .map(|a| {
            json!({"api_id": a.id, "api_name": a.spec.name, "req_method": a.spec.req_method,
                "req_uri": a.spec.req_uri, "auth_type": a.spec.auth_type, "match_mode": a.spec.match_mode,
                "group_id": a.spec.group_id(), "group_name": groups.get(a.spec.group_id()).copied().unwrap_or_default(),
                "attached_time": a.update_time})
        })
        .collect();
    Ok(ok(paged(rows, page, "apis")))
}
