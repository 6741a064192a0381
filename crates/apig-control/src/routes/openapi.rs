//! OpenAPI import and export (`ImportApiDefinitionsV2`, `ExportApiDefinitionsV2`).
//!
//! The conversion is `apig-openapi`'s; here names are resolved against the store (groups,
//! channels, policies) and every API goes through the checks of `CreateApiV2` / `UpdateApiV2`.
//! An import is one transaction: an API that fails its checks adds nothing to it and is
//! answered in `failure`; the rest commit together, or nothing does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apig_model::api::{Api, ApiSpec};
use apig_model::channel::Channel;
use apig_model::env::Env;
use apig_model::group::Group;
use apig_model::ids::RELEASE_ENV_ID;
use apig_model::policy::{Acl, Binding, Throttle, ThrottleSpecial};
use apig_model::publish::{ApiVersion, Publication};
use apig_model::{ids, time, validate, ApiError, ErrorCode};
use apig_openapi::{
    AccessControl, ApiDefinition, Definitions, ExportOptions, ImportOptions, OasVersion, Operation,
    RateLimit,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::bindings::{self, ACL, THROTTLE};
use super::{ok, Params, Result};
use crate::error::parse_json;
use crate::tx::{Reader, Tx};
use crate::{backend_address, keys, multipart, ControlState};

/// The form fields of ImportApiDefinitionsV2RequestBody.
struct ImportForm<'a> {
    is_create_group: bool,
    group_id: Option<String>,
    override_extensions: bool,
    override_apis: bool,
    mock_mode: bool,
    document: &'a [u8],
}

fn form<'a>(headers: &HeaderMap, body: &'a [u8]) -> std::result::Result<ImportForm<'a>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multipart::boundary(content_type).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ParameterError,
            "Parameter error: the body must be multipart/form-data with a file_name part",
        )
    })?;
    let parts = multipart::parse(&boundary, body)?;
    let text = |name: &str| -> std::result::Result<Option<String>, ApiError> {
        match parts.iter().find(|p| p.name == name) {
            Some(p) => std::str::from_utf8(p.data)
                .map(|s| Some(s.trim().to_owned()))
                .map_err(|_| ApiError::invalid(name, "text")),
            None => Ok(None),
        }
    };
    let flag = |name: &str, default: bool| -> std::result::Result<bool, ApiError> {
        match text(name)?.as_deref() {
            None | Some("") => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(ApiError::invalid(name, "true or false")),
        }
    };
    let mode = |name: &str| -> std::result::Result<bool, ApiError> {
        match text(name)?.as_deref() {
            None | Some("") | Some("merge") => Ok(false),
            Some("override") => Ok(true),
            Some(_) => Err(ApiError::invalid(name, "merge or override")),
        }
    };
    let document = parts
        .iter()
        .find(|p| p.name == "file_name")
        .map(|p| p.data)
        .ok_or_else(|| ApiError::required("file_name"))?;
    // simple_mode (APIG's "fast import") changes no result here: it is accepted and checked.
    flag("simple_mode", false)?;
    Ok(ImportForm {
        is_create_group: flag("is_create_group", true)?,
        group_id: text("group_id")?.filter(|g| !g.is_empty()),
        override_extensions: mode("extend_mode")?,
        override_apis: mode("api_mode")?,
        mock_mode: flag("mock_mode", false)?,
        document,
    })
}

/// `POST /instances/{instance_id}/openapi/import` (multipart/form-data).
pub async fn import(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let form = form(&headers, &body)?;
    if !form.is_create_group && form.group_id.is_none() {
        return Err(ApiError::required("group_id").into());
    }
    let doc = apig_openapi::parse_document(form.document).map_err(ApiError::from)?;
    let converted = apig_openapi::import(
        &doc,
        &ImportOptions {
            mock_mode: form.mock_mode,
        },
    )
    .map_err(ApiError::from)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut tx = s.tx();
    let group_id = if form.is_create_group {
        create_group(&s, &mut tx, &inst, &converted.definitions)?
    } else {
        let id = form.group_id.clone().unwrap_or_default();
        super::groups::load(s.reader(), &inst, &id)?;
        id
    };
    let mut run = Import {
        inst: &inst,
        group_id: &group_id,
        override_apis: form.override_apis,
        override_extensions: form.override_extensions,
        definitions: &converted.definitions,
        channels: Reader::scan_json::<Channel>(s.reader(), &keys::channels(&inst))?
            .into_iter()
            .map(|c| (c.name, c.id))
            .collect(),
        made_throttles: HashMap::new(),
        made_acls: HashMap::new(),
    };
    let mut success = Vec::new();
    let mut failure: Vec<Value> = converted
        .failures
        .iter()
        .map(|f| failure_json(&f.operation, &f.error))
        .collect();
    for (op, def) in &converted.definitions.apis {
        match run.api(&s, &mut tx, def) {
            Ok((id, action)) => success.push(json!({
                "path": op.path, "method": op.method, "action": action, "id": id,
            })),
            Err(e) => failure.push(failure_json(op, &e)),
        }
    }
    s.commit(tx, &[&inst]).await?;
    let ignore: Vec<Value> = converted
        .ignored
        .iter()
        .map(|o| json!({"method": o.method, "path": o.path}))
        .collect();
    Ok(ok(json!({
        "group_id": group_id, "success": success, "failure": failure, "ignore": ignore,
    })))
}

fn failure_json(op: &Operation, e: &ApiError) -> Value {
    json!({"path": op.path, "method": op.method, "error_code": e.code.code(), "error_msg": e.message})
}

/// A new group named after `info.title`, like `CreateApiGroupV2`.
fn create_group(
    s: &ControlState,
    tx: &mut Tx<'_>,
    inst: &str,
    defs: &Definitions,
) -> std::result::Result<String, ApiError> {
    let name = defs.title.trim().to_owned();
    if name.is_empty() {
        return Err(ApiError::required(
            "info.title (the name of the group to create)",
        ));
    }
    validate::group_name(&name)?;
    super::groups::check_unique_name(s.reader(), inst, &name, None)?;
    let id = ids::new_id();
    let now = time::now_rfc3339();
    let group = Group {
        sl_domain: format!("{id}.{}", s.domain_suffix),
        id: id.clone(),
        instance_id: inst.to_owned(),
        name,
        remark: defs.description.chars().take(255).collect(),
        register_time: now.clone(),
        update_time: now,
    };
    tx.put(keys::group(inst, &id), &group)?;
    Ok(id)
}

struct Import<'a> {
    inst: &'a str,
    group_id: &'a str,
    override_apis: bool,
    override_extensions: bool,
    definitions: &'a Definitions,
    /// Channel name → id.
    channels: HashMap<String, String>,
    /// Policies this import wrote, name → id: each is written once.
    made_throttles: HashMap<String, String>,
    made_acls: HashMap<String, String>,
}

impl Import<'_> {
    /// Checks and writes one API (and the policies it uses); on error nothing of it is written.
    fn api(
        &mut self,
        s: &ControlState,
        tx: &mut Tx<'_>,
        def: &ApiDefinition,
    ) -> std::result::Result<(String, &'static str), ApiError> {
        let mut spec = def.spec.clone();
        spec.group_id = Some(self.group_id.to_owned());
        apig_openapi::map_channels(&mut spec, |name| {
            self.channels.get(name).cloned().ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ChannelNotFound,
                    format!("The load balance channel {name} does not exist"),
                )
            })
        })?;
        spec.validate_and_normalize()?;
        backend_address::check_api(&spec)?;
        super::orchestrations::check_api(&*tx, self.inst, &spec)?;
        let all: Vec<Api> = tx.scan_json(&keys::apis(self.inst))?;
        let existing = all
            .iter()
            .find(|a| a.spec.route_key() == spec.route_key())
            .cloned();
        if existing.is_some() && !self.override_apis {
            let e = existing.as_ref().map(|a| a.id.as_str()).unwrap_or_default();
            return Err(ApiError::new(
                ErrorCode::ApiExists,
                format!("The API already exists: the same method, path and match mode are defined by API {e} (import with api_mode override to replace it)"),
            ));
        }
        super::apis::check_unique(&all, &spec, existing.as_ref().map(|a| a.id.as_str()))?;
        // The policies are checked before anything is written, so a bad one fails the API
        // and leaves nothing behind.
        let throttle = match &def.ratelimit {
            Some(name) => Some(self.throttle(s, tx, name)?),
            None => None,
        };
        let acl = match &def.access_control {
            Some(name) => Some(self.acl(s, tx, name)?),
            None => None,
        };
        let throttle = match throttle {
            Some(plan) => Some(self.write_throttle(tx, plan)?),
            None => None,
        };
        let acl = match acl {
            Some(plan) => Some(self.write_acl(tx, plan)?),
            None => None,
        };
        let now = time::now_rfc3339();
        let (api, action) = match existing {
            Some(mut api) => {
                super::apis::stamp_backend(&mut spec, &now, Some(&api.spec));
                api.spec = spec;
                api.update_time = now;
                (api, "update")
            }
            None => {
                super::apis::stamp_backend(&mut spec, &now, None);
                let api = Api {
                    id: ids::new_id(),
                    instance_id: self.inst.to_owned(),
                    spec,
                    register_time: now.clone(),
                    update_time: now,
                };
                (api, "create")
            }
        };
        tx.put(keys::api(self.inst, &api.id), &api)?;
        if let Some(policy) = throttle {
            self.bind(tx, &THROTTLE, &api.id, &policy, |_| true)?;
        }
        if let Some(policy) = acl {
            let entities: HashMap<String, String> =
                Reader::scan_json::<Acl>(&*tx, &keys::acls(self.inst))?
                    .into_iter()
                    .map(|a| (a.id, a.entity_type))
                    .collect();
            let entity = entities.get(&policy).cloned();
            // One ACL per entity type per API and environment.
            self.bind(tx, &ACL, &api.id, &policy, |b| {
                entities.get(&b.policy_id) == entity.as_ref()
            })?;
        }
        Ok((api.id, action))
    }

    /// Binds the policy to the API in RELEASE. An existing binding of the same kind (for ACLs:
    /// the same entity type) is replaced only with `extend_mode` override.
    fn bind(
        &self,
        tx: &mut Tx<'_>,
        kind: &bindings::Kind,
        api: &str,
        policy: &str,
        same_slot: impl Fn(&Binding) -> bool,
    ) -> std::result::Result<(), ApiError> {
        let current: Vec<Binding> = bindings::all(&*tx, kind, self.inst)?
            .into_iter()
            .filter(|b| b.api_id == api && b.env_id == RELEASE_ENV_ID && same_slot(b))
            .collect();
        if current.iter().any(|b| b.policy_id == policy) {
            return Ok(());
        }
        if !current.is_empty() {
            if !self.override_extensions {
                return Ok(());
            }
            for b in &current {
                tx.delete(keys::binding(kind.store, self.inst, &b.id));
            }
        }
        let b = Binding {
            id: ids::new_id(),
            policy_id: policy.to_owned(),
            api_id: api.to_owned(),
            env_id: RELEASE_ENV_ID.to_owned(),
            apply_time: time::now_rfc3339(),
        };
        tx.put(keys::binding(kind.store, self.inst, &b.id), &b)
    }

    /// What to do for the throttling policy `name`: the document's definition is created (or,
    /// with `extend_mode` override, written over an existing one of that name), else an
    /// existing policy of that name is used. Checked here, written by `write_throttle`.
    fn throttle(
        &self,
        s: &ControlState,
        tx: &Tx<'_>,
        name: &str,
    ) -> std::result::Result<Plan<(Throttle, Vec<ThrottleSpecial>)>, ApiError> {
        if let Some(id) = self.made_throttles.get(name) {
            return Ok(Plan::Use(id.clone()));
        }
        let existing = Reader::scan_json::<Throttle>(tx, &keys::throttles(self.inst))?
            .into_iter()
            .find(|t| t.name == name);
        let Some(def) = self.definitions.ratelimits.get(name) else {
            return existing.map(|t| Plan::Use(t.id)).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ThrottleNotFound,
                    format!("x-apigateway-ratelimit {name}: no such policy in the document or the instance"),
                )
            });
        };
        if let (Some(t), false) = (&existing, self.override_extensions) {
            return Ok(Plan::Use(t.id.clone()));
        }
        let bad = |e| named(e, "x-apigateway-ratelimits", name);
        let spec = def.to_spec(name);
        spec.validate().map_err(bad)?;
        let (id, created) = match &existing {
            Some(t) => (t.id.clone(), t.create_time.clone()),
            None => {
                super::throttles::check_name(s, self.inst, name, None)?;
                (ids::new_id(), time::now_rfc3339())
            }
        };
        let t = spec.into_throttle(id, created);
        let mut specials: Vec<ThrottleSpecial> = Vec::new();
        for sp in def.special_specs() {
            sp.validate(true).map_err(bad)?;
            let sp =
                super::throttles::checked_special(tx, self.inst, &t, sp, &specials).map_err(bad)?;
            specials.push(sp);
        }
        Ok(Plan::Write(name.to_owned(), (t, specials)))
    }

    fn write_throttle(
        &mut self,
        tx: &mut Tx<'_>,
        plan: Plan<(Throttle, Vec<ThrottleSpecial>)>,
    ) -> std::result::Result<String, ApiError> {
        let (name, (t, specials)) = match plan {
            Plan::Use(id) => return Ok(id),
            Plan::Write(name, v) => (name, v),
        };
        // The document's excluded limits replace the policy's.
        tx.delete_prefix(&keys::specials_of(self.inst, &t.id))?;
        tx.put(keys::throttle(self.inst, &t.id), &t)?;
        for sp in &specials {
            tx.put(keys::special(self.inst, &t.id, &sp.id), sp)?;
        }
        self.made_throttles.insert(name, t.id.clone());
        Ok(t.id)
    }

    /// Like `throttle`, for the access control policy `name`.
    fn acl(
        &self,
        s: &ControlState,
        tx: &Tx<'_>,
        name: &str,
    ) -> std::result::Result<Plan<Acl>, ApiError> {
        if let Some(id) = self.made_acls.get(name) {
            return Ok(Plan::Use(id.clone()));
        }
        let existing = Reader::scan_json::<Acl>(tx, &keys::acls(self.inst))?
            .into_iter()
            .find(|a| a.acl_name == name);
        let Some(def) = self.definitions.access_controls.get(name) else {
            return existing.map(|a| Plan::Use(a.id)).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::AclNotFound,
                    format!("x-apigateway-access-control {name}: no such policy in the document or the instance"),
                )
            });
        };
        if let (Some(a), false) = (&existing, self.override_extensions) {
            return Ok(Plan::Use(a.id.clone()));
        }
        let bad = |e| named(e, "x-apigateway-access-controls", name);
        let id = match &existing {
            Some(a) => a.id.clone(),
            None => {
                super::acls::check_name(s, self.inst, name, None)?;
                ids::new_id()
            }
        };
        let acl = super::acls::checked(def.to_spec(name), id).map_err(bad)?;
        if let Some(old) = &existing {
            let bound = bindings::all(tx, &ACL, self.inst)?
                .iter()
                .any(|b| b.policy_id == old.id);
            if bound && old.entity_type != acl.entity_type {
                return Err(bad(ApiError::invalid(
                    "entity-type",
                    "cannot change while the policy is bound",
                )));
            }
        }
        Ok(Plan::Write(name.to_owned(), acl))
    }

    fn write_acl(
        &mut self,
        tx: &mut Tx<'_>,
        plan: Plan<Acl>,
    ) -> std::result::Result<String, ApiError> {
        match plan {
            Plan::Use(id) => Ok(id),
            Plan::Write(name, acl) => {
                tx.put(keys::acl(self.inst, &acl.id), &acl)?;
                self.made_acls.insert(name, acl.id.clone());
                Ok(acl.id)
            }
        }
    }
}

/// A policy an API refers to: one that exists (or this import already wrote), or one to write.
enum Plan<T> {
    Use(String),
    Write(String, T),
}

fn named(e: ApiError, extension: &str, name: &str) -> ApiError {
    ApiError::new(e.code, format!("{extension}.{name}: {}", e.message))
}

/// ExportOpenApiReq.
#[derive(Deserialize)]
struct ExportRequest {
    env_id: Option<String>,
    group_id: Option<String>,
    define: Option<String>,
    #[serde(rename = "type")]
    format: Option<String>,
    version: Option<String>,
    apis: Option<Vec<String>>,
}

/// `POST /instances/{instance_id}/openapi/export?oas_version=2.0|3.0`: the document as a file.
pub async fn export(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
    body: Bytes,
) -> Result<Response> {
    let req: ExportRequest = parse_json(&body)?;
    let oas = match q.get("oas_version").map(String::as_str) {
        None | Some("") | Some("2.0") => OasVersion::Swagger2,
        Some("3.0") => OasVersion::OpenApi3,
        Some(_) => return Err(ApiError::invalid("oas_version", "2.0 or 3.0").into()),
    };
    let env_id = req
        .env_id
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::required("env_id"))?;
    let group_id = req
        .group_id
        .filter(|g| !g.is_empty())
        .ok_or_else(|| ApiError::required("group_id"))?;
    let define = req.define.unwrap_or_else(|| "spec".into());
    if !["spec", "proxy", "all", "dev"].contains(&define.as_str()) {
        return Err(ApiError::invalid("define", "spec, proxy, all or dev").into());
    }
    let format = req.format.unwrap_or_else(|| "json".into());
    let yaml = match format.as_str() {
        "json" => false,
        "yaml" | "yml" => true,
        _ => return Err(ApiError::invalid("type", "json, yaml or yml").into()),
    };
    let version = match req.version {
        Some(v) => {
            validate::max_chars("version", &v, 64)?;
            v
        }
        None => time::now_rfc3339(),
    };
    let r = s.reader();
    s.instance(r, &project, &inst)?;
    let group = super::groups::load(r, &inst, &group_id)?;
    let env: Env = Reader::get_json(r, &keys::env(&inst, &env_id))?
        .ok_or_else(|| ApiError::env_not_found(&env_id))?;
    let mut apis: Vec<Api> = Reader::scan_json(r, &keys::apis(&inst))?;
    apis.retain(|a| a.spec.group_id() == group_id);
    if let Some(wanted) = &req.apis {
        apis.retain(|a| wanted.contains(&a.id));
    }
    apis.sort_by(|a, b| (&a.register_time, &a.id).cmp(&(&b.register_time, &b.id)));
    // spec, proxy and all: what runs in the environment (the published versions); dev: the
    // current definitions, published or not.
    let pubs: Vec<Publication> = Reader::scan_json(r, &keys::pubs(&inst))?;
    let mut specs: Vec<(String, ApiSpec)> = Vec::new();
    for a in apis {
        if define == "dev" {
            specs.push((a.id, a.spec));
            continue;
        }
        let Some(p) = pubs.iter().find(|p| p.api_id == a.id && p.env_id == env_id) else {
            continue;
        };
        let v: Option<ApiVersion> =
            Reader::get_json(r, &keys::version(&inst, &a.id, &p.version_id))?;
        specs.push((a.id, v.map_or(a.spec, |v| v.spec)));
    }
    let channels: HashMap<String, String> =
        Reader::scan_json::<Channel>(r, &keys::channels(&inst))?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
    let policies = define == "all";
    let mut defs = Definitions {
        title: group.name.clone(),
        description: group.remark.clone(),
        apis: Vec::new(),
        ratelimits: BTreeMap::new(),
        access_controls: BTreeMap::new(),
    };
    let throttles: HashMap<String, Throttle> =
        Reader::scan_json::<Throttle>(r, &keys::throttles(&inst))?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
    let acls: HashMap<String, Acl> = Reader::scan_json::<Acl>(r, &keys::acls(&inst))?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let tbinds = bindings::all(r, &THROTTLE, &inst)?;
    let abinds = bindings::all(r, &ACL, &inst)?;
    for (id, mut spec) in specs {
        apig_openapi::map_channels(&mut spec, |cid| {
            Ok(channels.get(cid).cloned().unwrap_or_else(|| cid.to_owned()))
        })?;
        let mut def = ApiDefinition {
            spec,
            ratelimit: None,
            access_control: None,
        };
        if policies {
            if let Some(t) = tbinds
                .iter()
                .find(|b| b.api_id == id && b.env_id == env_id)
                .and_then(|b| throttles.get(&b.policy_id))
            {
                let specials: Vec<ThrottleSpecial> =
                    Reader::scan_json(r, &keys::specials_of(&inst, &t.id))?;
                defs.ratelimits
                    .insert(t.name.clone(), RateLimit::from_throttle(t, &specials));
                def.ratelimit = Some(t.name.clone());
            }
            // APIG's extension names one access control per API: the IP one first.
            let mut bound: Vec<&Acl> = abinds
                .iter()
                .filter(|b| b.api_id == id && b.env_id == env_id)
                .filter_map(|b| acls.get(&b.policy_id))
                .collect();
            bound.sort_by_key(|a| (a.entity_type != "IP", a.entity_type.clone()));
            if let Some(a) = bound.first() {
                defs.access_controls
                    .insert(a.acl_name.clone(), AccessControl::from_acl(a));
                def.access_control = Some(a.acl_name.clone());
            }
        }
        let op = Operation {
            method: def.spec.req_method.clone().unwrap_or_default(),
            path: def.spec.req_uri.clone().unwrap_or_default(),
        };
        defs.apis.push((op, def));
    }
    let doc = apig_openapi::export(
        &defs,
        &ExportOptions {
            oas,
            backends: define != "spec",
            policies,
            version: version.clone(),
            host: group.sl_domain.clone(),
        },
    );
    let text = apig_openapi::render(&doc, yaml).map_err(ApiError::internal)?;
    let ext = if yaml { format.as_str() } else { "json" };
    let filename: String = format!("{}_{}_{}.{ext}", group.name, env.name, version)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut resp = (StatusCode::OK, text).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if yaml {
            "application/x-yaml"
        } else {
            "application/json"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// `POST …/openapi/async-import`, `…/async-export`, `GET …/async-tasks/{id}`: not offered;
/// the synchronous calls do the same work within the request.
pub async fn not_async() -> Result<Response> {
    Err(ApiError::not_supported(
        "Asynchronous import and export (use POST …/openapi/import and …/openapi/export)",
    )
    .into())
}
