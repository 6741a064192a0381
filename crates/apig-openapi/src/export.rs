//! API definitions → document: the inverse of `import` for everything import reads, so
//! that exporting and importing again gives the same definitions.

use apig_model::api::{ApiSpec, BackendParam, ReqParam};
use apig_model::backend_policy::Condition;
use serde_json::{json, Map, Value};

use crate::{Definitions, OasVersion};

/// What to put in the document (APIG's `define`, `oas_version`, `version`).
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub oas: OasVersion,
    /// Backends and backend policies (`define` proxy, all, dev).
    pub backends: bool,
    /// Throttling and access control policies (`define` all).
    pub policies: bool,
    /// `info.version`.
    pub version: String,
    /// The group's domain (Swagger `host`, OpenAPI `servers`).
    pub host: String,
}

const SCHEME_APP: &str = "apig-auth-app";
const SCHEME_APP_HEADER: &str = "apig-auth-app-header";
const SCHEME_IAM: &str = "apig-auth-iam";
/// Custom authorizers are not part of APIG's import format: the scheme is defined so the
/// exported document is valid, and importing it answers "not supported".
const SCHEME_AUTHORIZER: &str = "apig-auth-authorizer";

/// The document for `defs`. HTTP-VPC backends must name their channel by name in
/// `vpc_channel_id` (see [`crate::map_channels`]).
pub fn export(defs: &Definitions, opts: &ExportOptions) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (_, def) in &defs.apis {
        let spec = &def.spec;
        let mut op = operation(spec, opts);
        if opts.policies {
            if let Some(r) = &def.ratelimit {
                op.insert("x-apigateway-ratelimit".into(), r.clone().into());
            }
            if let Some(a) = &def.access_control {
                op.insert("x-apigateway-access-control".into(), a.clone().into());
            }
        }
        let key = match spec.req_method.as_deref().unwrap_or("GET") {
            "ANY" => "x-apigateway-any-method".to_owned(),
            m => m.to_ascii_lowercase(),
        };
        let item = paths
            .entry(spec.req_uri.clone().unwrap_or_else(|| "/".into()))
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(item) = item.as_object_mut() {
            item.insert(key, Value::Object(op));
        }
    }
    let schemes = json!({
        SCHEME_APP: {"type": "apiKey", "name": "Authorization", "in": "header",
                     "x-apigateway-auth-type": "AppSigv1"},
        SCHEME_APP_HEADER: {"type": "apiKey", "name": "Authorization", "in": "header",
                            "x-apigateway-auth-type": "AppSigv1",
                            "x-apigateway-auth-opt": {"appcode-auth-type": "header"}},
        SCHEME_IAM: {"type": "apiKey", "name": "unused", "in": "header",
                     "x-apigateway-auth-type": "IAM"},
        SCHEME_AUTHORIZER: {"type": "apiKey", "name": "unused", "in": "header",
                            "x-apigateway-auth-type": "AUTHORIZER"},
    });
    let info =
        json!({"title": defs.title, "description": defs.description, "version": opts.version});
    let mut doc = match opts.oas {
        OasVersion::Swagger2 => json!({
            "swagger": "2.0", "info": info, "host": opts.host, "paths": paths,
            "securityDefinitions": schemes,
        }),
        OasVersion::OpenApi3 => json!({
            "openapi": "3.0.1", "info": info,
            "servers": [{"url": format!("http://{}", opts.host)}, {"url": format!("https://{}", opts.host)}],
            "paths": paths, "components": {"securitySchemes": schemes},
        }),
    };
    if opts.policies {
        let ratelimits: Map<String, Value> = defs
            .ratelimits
            .iter()
            .map(|(name, r)| {
                let mut o = Map::new();
                o.insert("api-limit".into(), r.api_limit.into());
                for (k, v) in [
                    ("user-limit", r.user_limit),
                    ("app-limit", r.app_limit),
                    ("ip-limit", r.ip_limit),
                ] {
                    if let Some(v) = v {
                        o.insert(k.into(), v.into());
                    }
                }
                o.insert("interval".into(), r.interval.into());
                o.insert("unit".into(), r.unit.clone().into());
                o.insert("shared".into(), r.shared.into());
                if !r.special.is_empty() {
                    o.insert(
                        "special".into(),
                        r.special
                            .iter()
                            .map(|s| json!({"type": s.kind, "limit": s.limit, "instance": s.instance}))
                            .collect(),
                    );
                }
                (name.clone(), Value::Object(o))
            })
            .collect();
        let acls: Map<String, Value> = defs
            .access_controls
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    json!({"acl-type": a.acl_type, "entity-type": a.entity_type, "value": a.value}),
                )
            })
            .collect();
        if let Some(d) = doc.as_object_mut() {
            if !ratelimits.is_empty() {
                d.insert("x-apigateway-ratelimits".into(), Value::Object(ratelimits));
            }
            if !acls.is_empty() {
                d.insert("x-apigateway-access-controls".into(), Value::Object(acls));
            }
        }
    }
    doc
}

fn operation(spec: &ApiSpec, opts: &ExportOptions) -> Map<String, Value> {
    let mut op = Map::new();
    let mut put = |k: &str, v: Value| {
        op.insert(k.into(), v);
    };
    put("operationId", spec.name.clone().unwrap_or_default().into());
    if let Some(r) = spec.remark.as_ref().filter(|r| !r.is_empty()) {
        put("description", r.clone().into());
    }
    let schemes: &[&str] = match spec.req_protocol.as_deref() {
        Some("HTTP") => &["http"],
        Some("BOTH") => &["http", "https"],
        Some("GRPCS") => &["grpcs"],
        _ => &["https"],
    };
    match opts.oas {
        OasVersion::Swagger2 => put("schemes", json!(schemes)),
        OasVersion::OpenApi3 => put(
            "servers",
            schemes
                .iter()
                .map(|s| json!({"url": format!("{s}://{}", opts.host)}))
                .collect(),
        ),
    }
    let security = match spec.auth_type.as_deref() {
        Some("APP") => {
            let header = spec
                .auth_opt
                .as_ref()
                .and_then(|o| o.app_code_auth_type.as_deref())
                == Some("HEADER");
            json!([{ (if header { SCHEME_APP_HEADER } else { SCHEME_APP }): [] }])
        }
        Some("IAM") => json!([{ SCHEME_IAM: [] }]),
        Some("AUTHORIZER") => json!([{ SCHEME_AUTHORIZER: [] }]),
        _ => json!([]),
    };
    put("security", security);
    let params: Vec<Value> = spec
        .req_params
        .iter()
        .flatten()
        .map(|p| req_param(p, opts.oas))
        .collect();
    put("parameters", params.into());
    put(
        "responses",
        json!({"default": {"description": "default response"}}),
    );
    put(
        "x-apigateway-request-type",
        if spec.api_type == Some(2) {
            "private"
        } else {
            "public"
        }
        .into(),
    );
    put(
        "x-apigateway-match-mode",
        spec.match_mode
            .clone()
            .unwrap_or_else(|| "NORMAL".into())
            .into(),
    );
    put("x-apigateway-cors", spec.cors.unwrap_or(false).into());
    if let Some(b) = spec.is_send_fg_body_base64 {
        put("x-apigateway-is-send-fg-body-base64", b.into());
    }
    if opts.backends {
        put("x-apigateway-backend", backend(spec));
        let policies = backend_policies(spec);
        if !policies.is_empty() {
            put("x-apigateway-backend-policies", policies.into());
        }
    }
    op
}

fn req_param(p: &ReqParam, oas: OasVersion) -> Value {
    let mut o = Map::new();
    let mut schema = Map::new();
    o.insert("name".into(), p.name.clone().unwrap_or_default().into());
    o.insert(
        "in".into(),
        p.location
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .into(),
    );
    if let Some(r) = p.remark.as_ref() {
        o.insert("description".into(), r.clone().into());
    }
    o.insert("required".into(), (p.required == Some(1)).into());
    let number = p.param_type.as_deref() == Some("NUMBER");
    schema.insert(
        "type".into(),
        if number { "number" } else { "string" }.into(),
    );
    if let Some(d) = &p.default_value {
        schema.insert("default".into(), d.clone().into());
    }
    // Constraints that are not enforced (valid_enable 2) have no meaning to carry.
    if p.valid_enable == Some(1) {
        if let Some(e) = p.enumerations.as_ref().filter(|e| !e.is_empty()) {
            schema.insert("enum".into(), e.split(',').collect::<Vec<_>>().into());
        }
        for (k, v) in [
            ("minimum", p.min_num),
            ("maximum", p.max_num),
            ("minLength", p.min_size),
            ("maxLength", p.max_size),
        ] {
            if let Some(v) = v {
                schema.insert(k.into(), v.into());
            }
        }
    }
    if p.pass_through == Some(2) {
        o.insert("x-apigateway-pass-through".into(), "never".into());
    }
    match oas {
        OasVersion::Swagger2 => {
            if let Some(s) = &p.sample_value {
                o.insert("x-example".into(), s.clone().into());
            }
            o.extend(schema);
        }
        OasVersion::OpenApi3 => {
            if let Some(s) = &p.sample_value {
                o.insert("example".into(), s.clone().into());
            }
            o.insert("schema".into(), Value::Object(schema));
        }
    }
    Value::Object(o)
}

fn backend_params(params: Option<&Vec<BackendParam>>) -> Value {
    params
        .into_iter()
        .flatten()
        .map(|p| {
            // Only the fields the definition has: an absent one must stay absent.
            let mut o = Map::new();
            for (k, v) in [
                ("name", p.name.clone()),
                ("value", p.value.clone()),
                ("in", p.location.as_ref().map(|l| l.to_ascii_lowercase())),
                ("origin", p.origin.clone()),
                ("description", p.remark.clone()),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v.into());
                }
            }
            Value::Object(o)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn http_endpoint(
    url_domain: Option<&String>,
    req_protocol: Option<&String>,
    req_method: Option<&String>,
    req_uri: Option<&String>,
    timeout: Option<i64>,
    retry_count: Option<&String>,
    remark: Option<&String>,
    channel: Option<&apig_model::api::VpcChannelInfo>,
) -> (&'static str, &'static str, Value) {
    let mut e = Map::new();
    let vpc = channel.is_some();
    if let Some(c) = channel {
        e.insert(
            "name".into(),
            c.vpc_channel_id.clone().unwrap_or_default().into(),
        );
        if let Some(h) = &c.vpc_channel_proxy_host {
            e.insert("proxy-host".into(), h.clone().into());
        }
    }
    if let Some(a) = url_domain.filter(|a| !a.is_empty()) {
        e.insert("address".into(), a.clone().into());
    }
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            e.insert(k.into(), v.clone().into());
        }
    };
    put(
        "scheme",
        req_protocol.map(|s| s.to_ascii_lowercase()).as_ref(),
    );
    put("method", req_method);
    put("path", req_uri);
    put("retryCount", retry_count);
    put("description", remark.filter(|r| !r.is_empty()));
    if let Some(t) = timeout {
        e.insert("timeout".into(), t.into());
    }
    if vpc {
        ("HTTP-VPC", "httpVpcEndpoints", Value::Object(e))
    } else {
        ("HTTP", "httpEndpoints", Value::Object(e))
    }
}

fn channel_of(
    status: Option<i64>,
    info: Option<&apig_model::api::VpcChannelInfo>,
) -> Option<&apig_model::api::VpcChannelInfo> {
    if status == Some(1) {
        info
    } else {
        None
    }
}

fn function_endpoint(
    urn: Option<&String>,
    version: Option<&String>,
    invocation: Option<&String>,
    network: Option<&String>,
    alias: Option<&String>,
    timeout: Option<i64>,
) -> Value {
    let mut e = Map::new();
    for (k, v) in [
        ("function-urn", urn),
        ("version", version),
        ("invocation-type", invocation),
        ("network-type", network),
        ("alias-urn", alias),
    ] {
        if let Some(v) = v {
            e.insert(k.into(), v.clone().into());
        }
    }
    if let Some(t) = timeout {
        e.insert("timeout".into(), t.into());
    }
    Value::Object(e)
}

fn backend(spec: &ApiSpec) -> Value {
    let mut o = Map::new();
    match spec.backend_type.as_deref() {
        Some("MOCK") => {
            o.insert("type".into(), "MOCK".into());
            let content = spec
                .mock_info
                .as_ref()
                .and_then(|m| m.result_content.clone())
                .unwrap_or_default();
            o.insert("mockEndpoints".into(), json!({ "result-content": content }));
        }
        Some("FUNCTION") => {
            o.insert("type".into(), "FUNCTION".into());
            if let Some(f) = &spec.func_info {
                o.insert(
                    "functionEndpoints".into(),
                    function_endpoint(
                        f.function_urn.as_ref(),
                        f.version.as_ref(),
                        f.invocation_type.as_ref(),
                        f.network_type.as_ref(),
                        f.alias_urn.as_ref(),
                        f.timeout,
                    ),
                );
            }
        }
        kind => {
            if let Some(b) = &spec.backend_api {
                let (t, key, e) = http_endpoint(
                    b.url_domain.as_ref(),
                    b.req_protocol.as_ref(),
                    b.req_method.as_ref(),
                    b.req_uri.as_ref(),
                    b.timeout,
                    b.retry_count.as_ref(),
                    b.remark.as_ref(),
                    channel_of(b.vpc_channel_status, b.vpc_channel_info.as_ref()),
                );
                let t = if kind == Some("GRPC") { "GRPC" } else { t };
                o.insert("type".into(), t.into());
                o.insert(key.into(), e);
            }
        }
    }
    o.insert(
        "parameters".into(),
        backend_params(spec.backend_params.as_ref()),
    );
    Value::Object(o)
}

fn conditions(list: Option<&Vec<Condition>>) -> Value {
    list.into_iter()
        .flatten()
        .map(|c| {
            let mut o = Map::new();
            if let Some(t) = &c.condition_type {
                let t = if t == "exact" { "equal" } else { t.as_str() };
                o.insert("type".into(), t.into());
            }
            o.insert(
                "value".into(),
                c.condition_value.clone().unwrap_or_default().into(),
            );
            let (origin, parameter) = match c.condition_origin.as_deref() {
                Some("param") => ("request", c.req_param_name.as_ref()),
                Some("system") => ("system", c.sys_param_name.as_ref()),
                Some("cookie") => ("cookie", c.cookie_param_name.as_ref()),
                Some("orchestration") => ("orchestration", c.mapped_param_name.as_ref()),
                Some(other) => (other, None),
                None => ("source", None),
            };
            o.insert("origin".into(), origin.into());
            if let Some(p) = parameter {
                o.insert("parameter".into(), p.clone().into());
            }
            Value::Object(o)
        })
        .collect()
}

fn backend_policies(spec: &ApiSpec) -> Vec<Value> {
    let mut out = Vec::new();
    let common = |name: &Option<String>,
                  mode: &Option<String>,
                  conds: Option<&Vec<Condition>>,
                  params: Option<&Vec<BackendParam>>| {
        let mut o = Map::new();
        o.insert("name".into(), name.clone().unwrap_or_default().into());
        o.insert(
            "effect-mode".into(),
            mode.clone().unwrap_or_else(|| "ANY".into()).into(),
        );
        o.insert("conditions".into(), conditions(conds));
        o.insert("parameters".into(), backend_params(params));
        o
    };
    for p in spec.policy_https.iter().flatten() {
        let mut o = common(
            &p.name,
            &p.effect_mode,
            p.conditions.as_ref(),
            p.backend_params.as_ref(),
        );
        let (t, key, e) = http_endpoint(
            p.url_domain.as_ref(),
            p.req_protocol.as_ref(),
            p.req_method.as_ref(),
            p.req_uri.as_ref(),
            p.timeout,
            p.retry_count.as_ref(),
            None,
            channel_of(p.vpc_channel_status, p.vpc_channel_info.as_ref()),
        );
        o.insert("type".into(), t.into());
        o.insert(key.into(), e);
        out.push(Value::Object(o));
    }
    for p in spec.policy_mocks.iter().flatten() {
        let mut o = common(
            &p.name,
            &p.effect_mode,
            p.conditions.as_ref(),
            p.backend_params.as_ref(),
        );
        o.insert("type".into(), "MOCK".into());
        o.insert(
            "mockEndpoints".into(),
            json!({"result-content": p.result_content.clone().unwrap_or_default()}),
        );
        out.push(Value::Object(o));
    }
    for p in spec.policy_functions.iter().flatten() {
        let mut o = common(
            &p.name,
            &p.effect_mode,
            p.conditions.as_ref(),
            p.backend_params.as_ref(),
        );
        o.insert("type".into(), "FUNCTION".into());
        o.insert(
            "functionEndpoints".into(),
            function_endpoint(
                p.function_urn.as_ref(),
                p.version.as_ref(),
                p.invocation_type.as_ref(),
                p.network_type.as_ref(),
                p.alias_urn.as_ref(),
                p.timeout,
            ),
        );
        out.push(Value::Object(o));
    }
    out
}

/// The document as JSON or YAML text, its version and `info` first as readers expect
/// (the maps themselves keep their keys sorted).
pub fn render(doc: &Value, yaml: bool) -> Result<String, String> {
    let ordered = TopLevel(doc);
    if yaml {
        yaml_serde::to_string(&ordered).map_err(|e| e.to_string())
    } else {
        serde_json::to_string_pretty(&ordered).map_err(|e| e.to_string())
    }
}

const FIRST_KEYS: &[&str] = &[
    "swagger", "openapi", "info", "host", "basePath", "servers", "schemes", "paths",
];

struct TopLevel<'a>(&'a Value);

impl serde::Serialize for TopLevel<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(m) = self.0 else {
            return self.0.serialize(s);
        };
        let mut out = s.serialize_map(Some(m.len()))?;
        for k in FIRST_KEYS {
            if let Some(v) = m.get(*k) {
                out.serialize_entry(k, v)?;
            }
        }
        for (k, v) in m.iter().filter(|(k, _)| !FIRST_KEYS.contains(&k.as_str())) {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}
