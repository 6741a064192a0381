//! Document → API definitions. Each operation converts on its own: one that cannot be
//! represented lands in the failures with the reason, the others still import.

use std::collections::BTreeMap;

use apig_model::api::{
    ApiSpec, AuthOpt, BackendApi, BackendParam, MockInfo, ReqParam, VpcChannelInfo,
};
use apig_model::backend_policy::{Condition, FunctionPolicy, HttpPolicy, MockPolicy};
use apig_model::function::FuncInfo;
use apig_model::ApiError;
use serde_json::Value;

use crate::value::{obj, opt_array, opt_bool, opt_int, opt_obj, opt_string, scalar_text, Obj};
use crate::{
    AccessControl, ApiDefinition, Definitions, Failure, ImportError, Imported, OasVersion,
    Operation, RateLimit, SpecialLimit, MAX_APIS,
};

/// Options of an import that change the conversion itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// APIG's `mock_mode`: an operation without `x-apigateway-backend` gets a MOCK backend
    /// (empty answer) instead of failing.
    pub mock_mode: bool,
}

/// Path item keys that are operations, with the method they define.
const METHODS: &[(&str, &str)] = &[
    ("get", "GET"),
    ("put", "PUT"),
    ("post", "POST"),
    ("delete", "DELETE"),
    ("options", "OPTIONS"),
    ("head", "HEAD"),
    ("patch", "PATCH"),
    ("x-apigateway-any-method", "ANY"),
];

/// Operation extensions this gateway reads; any other `x-apigateway-*` fails the operation
/// rather than being dropped unnoticed.
const KNOWN_OPERATION_EXTENSIONS: &[&str] = &[
    "x-apigateway-request-type",
    "x-apigateway-match-mode",
    "x-apigateway-cors",
    "x-apigateway-is-send-fg-body-base64",
    "x-apigateway-backend",
    "x-apigateway-backend-policies",
    "x-apigateway-ratelimit",
    "x-apigateway-access-control",
    "x-apigateway-plugins",
    "x-apigateway-response",
];

/// Converts a parsed document (see [`crate::parse_document`]).
pub fn import(doc: &Value, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let root = doc
        .as_object()
        .ok_or_else(|| ImportError::NotOpenApi("the document is not an object".into()))?;
    let version = version_of(root)?;
    let info = root.get("info").and_then(Value::as_object);
    let text = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(|v| scalar_text(v, k).ok())
            .unwrap_or_default()
    };
    let no_paths = Obj::new();
    let paths = match root.get("paths") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => &no_paths,
        Some(_) => return Err(ImportError::NotOpenApi("paths is not an object".into())),
    };
    let count: usize = paths
        .values()
        .filter_map(Value::as_object)
        .map(|item| {
            METHODS
                .iter()
                .filter(|(k, _)| item.contains_key(*k))
                .count()
        })
        .sum();
    if count > MAX_APIS {
        return Err(ImportError::TooManyApis { count });
    }
    let ctx = Ctx {
        root,
        version,
        opts: *opts,
        ratelimits: policies(root, "x-apigateway-ratelimits", rate_limit),
        access_controls: policies(root, "x-apigateway-access-controls", access_control),
    };
    let base_path = match version {
        OasVersion::Swagger2 => root
            .get("basePath")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned(),
        OasVersion::OpenApi3 => String::new(),
    };
    let mut definitions = Definitions {
        title: text("title"),
        description: text("description"),
        apis: Vec::new(),
        ratelimits: BTreeMap::new(),
        access_controls: BTreeMap::new(),
    };
    let mut failures = Vec::new();
    let mut ignored = Vec::new();
    for (path, item) in paths {
        let full = format!("{base_path}{path}");
        let Some(item) = item.as_object() else {
            failures.push(Failure {
                operation: Operation {
                    method: String::new(),
                    path: full,
                },
                error: ApiError::invalid("paths", "each path item is an object"),
            });
            continue;
        };
        let shared = opt_array(item, "parameters", "paths.parameters").unwrap_or_default();
        for (key, value) in item {
            let operation = |method: &str| Operation {
                method: method.to_owned(),
                path: full.clone(),
            };
            match METHODS.iter().find(|(k, _)| k == key) {
                Some((_, method)) => match ctx.operation(method, &full, shared, value) {
                    Ok(def) => definitions.apis.push((operation(method), def)),
                    Err(error) => failures.push(Failure {
                        operation: operation(method),
                        error,
                    }),
                },
                // An operation APIG has no method for.
                None if key == "trace" => ignored.push(operation("TRACE")),
                None if key == "$ref" => failures.push(Failure {
                    operation: operation(""),
                    error: ApiError::not_supported("$ref path items"),
                }),
                None => {}
            }
        }
    }
    // Only the policies some imported API refers to are created.
    for (_, def) in &definitions.apis {
        if let Some(name) = &def.ratelimit {
            if let Some(Ok(r)) = ctx.ratelimits.get(name) {
                definitions.ratelimits.insert(name.clone(), r.clone());
            }
        }
        if let Some(name) = &def.access_control {
            if let Some(Ok(a)) = ctx.access_controls.get(name) {
                definitions.access_controls.insert(name.clone(), a.clone());
            }
        }
    }
    Ok(Imported {
        definitions,
        failures,
        ignored,
    })
}

fn version_of(root: &Obj) -> Result<OasVersion, ImportError> {
    let text = |k: &str| root.get(k).and_then(|v| scalar_text(v, k).ok());
    if let Some(v) = text("swagger") {
        return match v.as_str() {
            "2.0" | "2" => Ok(OasVersion::Swagger2),
            _ => Err(ImportError::NotOpenApi(format!("swagger version {v}"))),
        };
    }
    if let Some(v) = text("openapi") {
        return if v.starts_with("3.0") {
            Ok(OasVersion::OpenApi3)
        } else {
            Err(ImportError::NotOpenApi(format!(
                "openapi version {v} (3.0 is supported)"
            )))
        };
    }
    Err(ImportError::NotOpenApi(
        "neither swagger: \"2.0\" nor openapi: 3.0.x".into(),
    ))
}

type Policies<T> = BTreeMap<String, Result<T, ApiError>>;

/// Root policy definitions (also accepted under `components` in OpenAPI 3), each parsed on
/// its own so that a bad one fails only the APIs that use it.
fn policies<T>(root: &Obj, key: &str, parse: fn(&Obj, &str) -> Result<T, ApiError>) -> Policies<T> {
    let components = root.get("components").and_then(Value::as_object);
    let defs = root
        .get(key)
        .or_else(|| components.and_then(|c| c.get(key)))
        .and_then(Value::as_object);
    defs.into_iter()
        .flatten()
        .map(|(name, v)| {
            let field = format!("{key}.{name}");
            let parsed = obj(v, &field).and_then(|o| parse(o, &field));
            (name.clone(), parsed)
        })
        .collect()
}

fn rate_limit(o: &Obj, field: &str) -> Result<RateLimit, ApiError> {
    let required =
        |k: &str| opt_int(o, k, field)?.ok_or_else(|| ApiError::required(&format!("{field}.{k}")));
    let mut special = Vec::new();
    for (i, s) in opt_array(o, "special", field)?.iter().enumerate() {
        let f = format!("{field}.special[{i}]");
        let s = obj(s, &f)?;
        special.push(SpecialLimit {
            kind: opt_string(s, "type", &f)?
                .ok_or_else(|| ApiError::required(&format!("{f}.type")))?,
            limit: opt_int(s, "limit", &f)?
                .ok_or_else(|| ApiError::required(&format!("{f}.limit")))?,
            instance: opt_string(s, "instance", &f)?
                .ok_or_else(|| ApiError::required(&format!("{f}.instance")))?,
        });
    }
    special.sort();
    Ok(RateLimit {
        api_limit: required("api-limit")?,
        user_limit: opt_int(o, "user-limit", field)?,
        app_limit: opt_int(o, "app-limit", field)?,
        ip_limit: opt_int(o, "ip-limit", field)?,
        interval: required("interval")?,
        unit: opt_string(o, "unit", field)?
            .ok_or_else(|| ApiError::required(&format!("{field}.unit")))?,
        shared: opt_bool(o, "shared", field)?.unwrap_or(false),
        special,
    })
}

fn access_control(o: &Obj, field: &str) -> Result<AccessControl, ApiError> {
    let required = |k: &str| {
        opt_string(o, k, field)?.ok_or_else(|| ApiError::required(&format!("{field}.{k}")))
    };
    Ok(AccessControl {
        acl_type: required("acl-type")?,
        entity_type: required("entity-type")?,
        value: required("value")?,
    })
}

struct Ctx<'a> {
    root: &'a Obj,
    version: OasVersion,
    opts: ImportOptions,
    ratelimits: Policies<RateLimit>,
    access_controls: Policies<AccessControl>,
}

impl Ctx<'_> {
    fn operation(
        &self,
        method: &str,
        path: &str,
        shared_params: &[Value],
        op: &Value,
    ) -> Result<ApiDefinition, ApiError> {
        let op = obj(op, "operation")?;
        for key in op.keys().filter(|k| k.starts_with("x-apigateway-")) {
            if !KNOWN_OPERATION_EXTENSIONS.contains(&key.as_str()) {
                return Err(ApiError::not_supported(format!("the extension {key}")));
            }
        }
        if !opt_array(op, "x-apigateway-plugins", "operation")?.is_empty() {
            return Err(ApiError::not_supported("x-apigateway-plugins (plug-ins)"));
        }
        if let Some(r) = opt_string(op, "x-apigateway-response", "operation")? {
            if r != "default" {
                return Err(ApiError::not_supported(
                    "x-apigateway-response (custom gateway responses)",
                ));
            }
        }
        let mut spec = ApiSpec {
            name: Some(match opt_string(op, "operationId", "operation")? {
                Some(id) => id,
                None => generated_name(method, path),
            }),
            api_type: Some(
                match opt_string(op, "x-apigateway-request-type", "operation")?.as_deref() {
                    None | Some("public") => 1,
                    Some("private") => 2,
                    Some(_) => {
                        return Err(ApiError::invalid(
                            "x-apigateway-request-type",
                            "public or private",
                        ))
                    }
                },
            ),
            req_protocol: Some(self.protocol(op)?),
            req_method: Some(method.to_owned()),
            req_uri: Some(path.to_owned()),
            match_mode: Some(
                opt_string(op, "x-apigateway-match-mode", "operation")?
                    .unwrap_or_else(|| "NORMAL".into()),
            ),
            cors: Some(opt_bool(op, "x-apigateway-cors", "operation")?.unwrap_or(false)),
            is_send_fg_body_base64: opt_bool(
                op,
                "x-apigateway-is-send-fg-body-base64",
                "operation",
            )?,
            remark: opt_string(op, "description", "operation")?.or(opt_string(
                op,
                "summary",
                "operation",
            )?),
            ..ApiSpec::default()
        };
        self.auth(op, &mut spec)?;
        spec.req_params = Some(self.req_params(shared_params, op)?);
        match opt_obj(op, "x-apigateway-backend", "operation")? {
            Some(b) => self.backend(b, &mut spec)?,
            None if self.opts.mock_mode => {
                spec.backend_type = Some("MOCK".into());
                spec.mock_info = Some(MockInfo {
                    result_content: Some(String::new()),
                    ..MockInfo::default()
                });
            }
            None => {
                return Err(ApiError::required(
                    "x-apigateway-backend (or import with mock_mode)",
                ))
            }
        }
        self.backend_policies(op, &mut spec)?;
        let ratelimit = opt_string(op, "x-apigateway-ratelimit", "operation")?;
        if let Some(Some(Err(e))) = ratelimit.as_ref().map(|n| self.ratelimits.get(n)) {
            return Err(e.clone());
        }
        let access_control = opt_string(op, "x-apigateway-access-control", "operation")?;
        if let Some(Some(Err(e))) = access_control.as_ref().map(|n| self.access_controls.get(n)) {
            return Err(e.clone());
        }
        Ok(ApiDefinition {
            spec,
            ratelimit,
            access_control,
        })
    }

    /// `schemes` (2.0) or the scheme of `servers` (3.0), the operation's before the root's.
    fn protocol(&self, op: &Obj) -> Result<String, ApiError> {
        let mut schemes: Vec<String> = Vec::new();
        for source in [op, self.root] {
            match self.version {
                OasVersion::Swagger2 => {
                    for s in opt_array(source, "schemes", "schemes")? {
                        schemes.push(scalar_text(s, "schemes")?.to_ascii_lowercase());
                    }
                }
                OasVersion::OpenApi3 => {
                    for s in opt_array(source, "servers", "servers")? {
                        let url = s.get("url").and_then(Value::as_str).unwrap_or_default();
                        if let Some((scheme, _)) = url.split_once("://") {
                            schemes.push(scheme.to_ascii_lowercase());
                        }
                    }
                }
            }
            if !schemes.is_empty() {
                break;
            }
        }
        let has = |s: &str| schemes.iter().any(|x| x == s);
        Ok(match (has("http"), has("https"), has("grpcs")) {
            (_, _, true) => "GRPCS",
            (true, true, _) => "BOTH",
            (true, false, _) => "HTTP",
            // APIG's default for an API is HTTPS.
            _ => "HTTPS",
        }
        .into())
    }

    fn security_scheme(&self, name: &str) -> Option<&Obj> {
        let schemes = match self.version {
            OasVersion::Swagger2 => self.root.get("securityDefinitions"),
            OasVersion::OpenApi3 => self
                .root
                .get("components")
                .and_then(|c| c.get("securitySchemes")),
        };
        schemes?.get(name)?.as_object()
    }

    /// `security` names a scheme whose `x-apigateway-auth-type` says APP (AppSigv1) or IAM;
    /// no requirement means no authentication.
    fn auth(&self, op: &Obj, spec: &mut ApiSpec) -> Result<(), ApiError> {
        let security = match op.get("security") {
            Some(s) => Some(s),
            None => self.root.get("security"),
        };
        let requirements = match security {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(ApiError::invalid("security", "a list")),
        };
        let names: Vec<&String> = requirements
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|r| r.keys())
            .collect();
        let (auth, header) = match names.as_slice() {
            [] => ("NONE", false),
            [name] => {
                let scheme = self.security_scheme(name).ok_or_else(|| {
                    ApiError::invalid(
                        "security",
                        format!("{name} is not a defined security scheme"),
                    )
                })?;
                let kind = opt_string(scheme, "x-apigateway-auth-type", name)?;
                let header = opt_obj(scheme, "x-apigateway-auth-opt", name)?
                    .and_then(|o| o.get("appcode-auth-type"))
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("header"));
                match kind.as_deref() {
                    Some("AppSigv1") => ("APP", header),
                    Some("IAM") => ("IAM", false),
                    Some(other) => {
                        return Err(ApiError::not_supported(format!(
                            "x-apigateway-auth-type {other}"
                        )))
                    }
                    None => {
                        return Err(ApiError::not_supported(format!(
                        "security scheme {name} without x-apigateway-auth-type (AppSigv1 or IAM)"
                    )))
                    }
                }
            }
            _ => {
                return Err(ApiError::not_supported(
                    "more than one security requirement per API",
                ))
            }
        };
        spec.auth_type = Some(auth.into());
        spec.auth_opt = Some(AuthOpt {
            app_code_auth_type: Some(if header { "HEADER" } else { "DISABLE" }.into()),
        });
        Ok(())
    }

    /// A `$ref` to `#/parameters/…` (2.0) or `#/components/parameters/…` (3.0), one level.
    fn resolve<'v>(&'v self, p: &'v Value) -> Result<&'v Value, ApiError> {
        let Some(r) = p.get("$ref") else {
            return Ok(p);
        };
        let r = r.as_str().unwrap_or_default();
        let name = r
            .strip_prefix("#/parameters/")
            .or_else(|| r.strip_prefix("#/components/parameters/"))
            .ok_or_else(|| ApiError::not_supported(format!("the parameter reference {r}")))?;
        let defs = match self.version {
            OasVersion::Swagger2 => self.root.get("parameters"),
            OasVersion::OpenApi3 => self
                .root
                .get("components")
                .and_then(|c| c.get("parameters")),
        };
        match defs.and_then(|d| d.get(name)) {
            Some(v) if v.get("$ref").is_none() => Ok(v),
            _ => Err(ApiError::invalid(
                "parameters",
                format!("{r} does not name a parameter definition"),
            )),
        }
    }

    fn req_params(&self, shared: &[Value], op: &Obj) -> Result<Vec<ReqParam>, ApiError> {
        let own = opt_array(op, "parameters", "operation")?;
        // The operation's parameters override the path item's of the same name and place.
        let mut merged: Vec<&Value> = Vec::new();
        for p in shared.iter().chain(own) {
            let p = self.resolve(p)?;
            let key = |v: &Value| {
                (
                    v.get("name").cloned().unwrap_or_default(),
                    v.get("in").cloned().unwrap_or_default(),
                )
            };
            merged.retain(|q| key(q) != key(p));
            merged.push(p);
        }
        let mut out = Vec::new();
        for p in merged {
            if let Some(rp) = self.req_param(obj(p, "parameters")?)? {
                out.push(rp);
            }
        }
        Ok(out)
    }

    fn req_param(&self, p: &Obj) -> Result<Option<ReqParam>, ApiError> {
        let name = opt_string(p, "name", "parameters")?
            .ok_or_else(|| ApiError::required("parameters.name"))?;
        let field = format!("parameters.{name}");
        let location = match opt_string(p, "in", &field)?.as_deref() {
            Some("path") => "PATH",
            Some("query") => "QUERY",
            Some("header") => "HEADER",
            // The body goes to the backend as it is; APIG does not describe it either.
            Some("body") => return Ok(None),
            Some(other) => {
                return Err(ApiError::not_supported(format!(
                    "request parameters in {other} ({name})"
                )))
            }
            None => return Err(ApiError::required(&format!("{field}.in"))),
        };
        let schema = match self.version {
            OasVersion::Swagger2 => p,
            OasVersion::OpenApi3 => opt_obj(p, "schema", &field)?.unwrap_or(p),
        };
        let mut rp = ReqParam {
            name: Some(name.clone()),
            location: Some(location.into()),
            remark: opt_string(p, "description", &field)?,
            required: match opt_bool(p, "required", &field)? {
                Some(true) => Some(1),
                Some(false) if location != "PATH" => Some(2),
                // A path parameter is always required (OpenAPI says so too).
                _ if location == "PATH" => Some(1),
                _ => None,
            },
            sample_value: match self.version {
                OasVersion::Swagger2 => opt_string(p, "x-example", &field)?,
                OasVersion::OpenApi3 => opt_string(p, "example", &field)?,
            },
            pass_through: match opt_string(p, "x-apigateway-pass-through", &field)?.as_deref() {
                None | Some("always") => None,
                Some("never") => Some(2),
                Some(_) => {
                    return Err(ApiError::invalid(
                        &format!("{field}.x-apigateway-pass-through"),
                        "always or never",
                    ))
                }
            },
            ..ReqParam::default()
        };
        let kind = opt_string(schema, "type", &field)?.unwrap_or_else(|| "string".into());
        let mut enumerations: Vec<String> = opt_array(schema, "enum", &field)?
            .iter()
            .map(|v| scalar_text(v, &format!("{field}.enum")))
            .collect::<Result<_, _>>()?;
        match kind.as_str() {
            "string" => {
                rp.param_type = Some("STRING".into());
                let (min, max) = (
                    opt_int(schema, "minLength", &field)?,
                    opt_int(schema, "maxLength", &field)?,
                );
                // APIG's own exports write 0 for "no limit".
                if !(max == Some(0) && min.unwrap_or(0) == 0) {
                    rp.min_size = min;
                    rp.max_size = max;
                }
            }
            "number" | "integer" => {
                rp.param_type = Some("NUMBER".into());
                let (min, max) = (
                    opt_int(schema, "minimum", &field)?,
                    opt_int(schema, "maximum", &field)?,
                );
                if !(max == Some(0) && min.unwrap_or(0) == 0) {
                    rp.min_num = min;
                    rp.max_num = max;
                }
            }
            // A boolean is a string that is true or false.
            "boolean" => {
                rp.param_type = Some("STRING".into());
                if enumerations.is_empty() {
                    enumerations = vec!["true".into(), "false".into()];
                }
            }
            other => {
                return Err(ApiError::not_supported(format!(
                    "request parameters of type {other} ({name})"
                )))
            }
        }
        if let Some(d) = schema.get("default").filter(|d| !d.is_null()) {
            rp.default_value = Some(scalar_text(d, &format!("{field}.default"))?);
        }
        // `enum: [""]` constrains nothing APIG can store.
        if enumerations.len() == 1 && enumerations[0].is_empty() {
            enumerations.clear();
        }
        if !enumerations.is_empty() {
            if enumerations.iter().any(|e| e.contains(',')) {
                return Err(ApiError::invalid(
                    &format!("{field}.enum"),
                    "enumeration values may not contain a comma",
                ));
            }
            rp.enumerations = Some(enumerations.join(","));
        }
        let validated = rp.enumerations.is_some()
            || rp.min_num.is_some()
            || rp.max_num.is_some()
            || rp.min_size.is_some()
            || rp.max_size.is_some();
        rp.valid_enable = Some(if validated { 1 } else { 2 });
        Ok(Some(rp))
    }

    fn backend(&self, b: &Obj, spec: &mut ApiSpec) -> Result<(), ApiError> {
        let f = "x-apigateway-backend";
        let kind =
            opt_string(b, "type", f)?.ok_or_else(|| ApiError::required(&format!("{f}.type")))?;
        spec.backend_params = Some(backend_params(b, f)?);
        match kind.as_str() {
            "HTTP" | "HTTP-VPC" | "GRPC" => {
                let (backend, channel) = http_endpoint(b, &kind, f)?;
                spec.backend_type = Some(if kind == "GRPC" { "GRPC" } else { "HTTP" }.into());
                spec.backend_api = Some(BackendApi {
                    url_domain: backend.url_domain,
                    req_protocol: backend.req_protocol,
                    req_method: backend.req_method,
                    req_uri: backend.req_uri,
                    timeout: backend.timeout,
                    retry_count: backend.retry_count,
                    remark: backend.remark,
                    vpc_channel_status: channel.as_ref().map(|_| 1),
                    vpc_channel_info: channel,
                    ..BackendApi::default()
                });
            }
            "FUNCTION" => {
                spec.backend_type = Some("FUNCTION".into());
                spec.func_info = Some(function_endpoint(b, f)?);
            }
            "MOCK" => {
                spec.backend_type = Some("MOCK".into());
                spec.mock_info = Some(MockInfo {
                    result_content: Some(mock_endpoint(b, f)?),
                    ..MockInfo::default()
                });
            }
            other => {
                return Err(ApiError::not_supported(format!(
                    "{f}.type {other} (HTTP, HTTP-VPC, FUNCTION, MOCK or GRPC)"
                )))
            }
        }
        Ok(())
    }

    fn backend_policies(&self, op: &Obj, spec: &mut ApiSpec) -> Result<(), ApiError> {
        let list = opt_array(op, "x-apigateway-backend-policies", "operation")?;
        if list.is_empty() {
            return Ok(());
        }
        let (mut https, mut mocks, mut functions) = (Vec::new(), Vec::new(), Vec::new());
        for (i, p) in list.iter().enumerate() {
            let f = format!("x-apigateway-backend-policies[{i}]");
            let p = obj(p, &f)?;
            let kind = opt_string(p, "type", &f)?
                .ok_or_else(|| ApiError::required(&format!("{f}.type")))?;
            let name = opt_string(p, "name", &f)?;
            let effect_mode =
                Some(opt_string(p, "effect-mode", &f)?.unwrap_or_else(|| "ANY".into()));
            let mut conditions = Vec::new();
            for (j, c) in opt_array(p, "conditions", &f)?.iter().enumerate() {
                conditions.push(condition(obj(c, &format!("{f}.conditions[{j}]"))?, &f)?);
            }
            let conditions = Some(conditions);
            let backend_params = Some(backend_params(p, &f)?);
            match kind.as_str() {
                "HTTP" | "HTTP-VPC" => {
                    let (b, channel) = http_endpoint(p, &kind, &f)?;
                    https.push(HttpPolicy {
                        name,
                        effect_mode,
                        conditions,
                        backend_params,
                        url_domain: b.url_domain,
                        req_protocol: b.req_protocol,
                        req_method: b.req_method,
                        req_uri: b.req_uri,
                        timeout: b.timeout,
                        retry_count: b.retry_count,
                        vpc_channel_status: channel.as_ref().map(|_| 1),
                        vpc_channel_info: channel,
                        ..HttpPolicy::default()
                    });
                }
                "MOCK" => mocks.push(MockPolicy {
                    name,
                    effect_mode,
                    conditions,
                    backend_params,
                    result_content: Some(mock_endpoint(p, &f)?),
                    ..MockPolicy::default()
                }),
                "FUNCTION" => {
                    let func = function_endpoint(p, &f)?;
                    functions.push(FunctionPolicy {
                        name,
                        effect_mode,
                        conditions,
                        backend_params,
                        function_urn: func.function_urn,
                        invocation_type: func.invocation_type,
                        network_type: func.network_type,
                        version: func.version,
                        alias_urn: func.alias_urn,
                        timeout: func.timeout,
                        ..FunctionPolicy::default()
                    });
                }
                other => {
                    return Err(ApiError::not_supported(format!(
                        "{f}.type {other} (HTTP, HTTP-VPC, FUNCTION or MOCK)"
                    )))
                }
            }
        }
        spec.policy_https = Some(https);
        spec.policy_mocks = Some(mocks);
        spec.policy_functions = Some(functions);
        Ok(())
    }
}

/// `GET /a/{b}` without an operationId: `GET_a_b`.
fn generated_name(method: &str, path: &str) -> String {
    let mut name: String = format!("{method}_{path}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    name.trim_end_matches('_').chars().take(255).collect()
}

fn backend_params(b: &Obj, f: &str) -> Result<Vec<BackendParam>, ApiError> {
    let mut out = Vec::new();
    for (i, p) in opt_array(b, "parameters", f)?.iter().enumerate() {
        let field = format!("{f}.parameters[{i}]");
        let p = obj(p, &field)?;
        out.push(BackendParam {
            name: opt_string(p, "name", &field)?,
            value: opt_string(p, "value", &field)?,
            location: opt_string(p, "in", &field)?.map(|s| s.to_ascii_uppercase()),
            origin: opt_string(p, "origin", &field)?.map(|s| s.to_ascii_uppercase()),
            remark: opt_string(p, "description", &field)?,
            ..BackendParam::default()
        });
    }
    Ok(out)
}

/// The fields of `httpEndpoints` / `httpVpcEndpoints`.
struct Endpoint {
    url_domain: Option<String>,
    req_protocol: Option<String>,
    req_method: Option<String>,
    req_uri: Option<String>,
    timeout: Option<i64>,
    retry_count: Option<String>,
    remark: Option<String>,
}

/// `httpEndpoints` (or `httpVpcEndpoints` naming a channel) as backend fields; the channel's
/// name is carried in `vpc_channel_id` until the control plane resolves it.
fn http_endpoint(
    b: &Obj,
    kind: &str,
    f: &str,
) -> Result<(Endpoint, Option<VpcChannelInfo>), ApiError> {
    // gRPC backends may use a channel too; they say so by the endpoint's key.
    let vpc = kind == "HTTP-VPC" || (kind == "GRPC" && b.contains_key("httpVpcEndpoints"));
    let key = if vpc {
        "httpVpcEndpoints"
    } else {
        "httpEndpoints"
    };
    let field = format!("{f}.{key}");
    let e = opt_obj(b, key, f)?.ok_or_else(|| ApiError::required(&field))?;
    let channel = if vpc {
        Some(VpcChannelInfo {
            vpc_channel_id: Some(
                opt_string(e, "name", &field)?
                    .ok_or_else(|| ApiError::required(&format!("{field}.name")))?,
            ),
            vpc_channel_proxy_host: opt_string(e, "proxy-host", &field)?,
        })
    } else {
        None
    };
    let address = match e.get("address") {
        // The documentation calls it an array; one address is what a backend has.
        Some(Value::Array(a)) if a.len() == 1 => {
            Some(scalar_text(&a[0], &format!("{field}.address"))?)
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::not_supported(format!(
                "{field}.address with several addresses (use HTTP-VPC and a channel)"
            )))
        }
        _ => opt_string(e, "address", &field)?,
    };
    if !vpc && address.is_none() {
        return Err(ApiError::required(&format!("{field}.address")));
    }
    if opt_bool(e, "enableClientSsl", &field)? == Some(true) {
        return Err(ApiError::not_supported(format!(
            "{field}.enableClientSsl (backend client certificates)"
        )));
    }
    let endpoint = Endpoint {
        url_domain: address,
        req_protocol: opt_string(e, "scheme", &field)?.map(|s| s.to_ascii_uppercase()),
        req_method: opt_string(e, "method", &field)?.map(|s| s.to_ascii_uppercase()),
        req_uri: opt_string(e, "path", &field)?,
        timeout: Some(opt_int(e, "timeout", &field)?.unwrap_or(5000)),
        retry_count: opt_string(e, "retryCount", &field)?,
        remark: opt_string(e, "description", &field)?.filter(|d| !d.is_empty()),
    };
    Ok((endpoint, channel))
}

fn function_endpoint(b: &Obj, f: &str) -> Result<FuncInfo, ApiError> {
    let field = format!("{f}.functionEndpoints");
    let e = opt_obj(b, "functionEndpoints", f)?.ok_or_else(|| ApiError::required(&field))?;
    Ok(FuncInfo {
        function_urn: opt_string(e, "function-urn", &field)?,
        version: opt_string(e, "version", &field)?,
        invocation_type: opt_string(e, "invocation-type", &field)?,
        network_type: opt_string(e, "network-type", &field)?,
        alias_urn: opt_string(e, "alias-urn", &field)?,
        timeout: Some(opt_int(e, "timeout", &field)?.unwrap_or(5000)),
        ..FuncInfo::default()
    })
}

fn mock_endpoint(b: &Obj, f: &str) -> Result<String, ApiError> {
    let field = format!("{f}.mockEndpoints");
    Ok(match opt_obj(b, "mockEndpoints", f)? {
        Some(e) => opt_string(e, "result-content", &field)?.unwrap_or_default(),
        None => String::new(),
    })
}

fn condition(c: &Obj, f: &str) -> Result<Condition, ApiError> {
    let field = format!("{f}.conditions");
    let kind = match opt_string(c, "type", &field)?.as_deref() {
        None => None,
        Some("equal" | "exact") => Some("exact"),
        Some("enum") => Some("enum"),
        Some("pattern") => Some("pattern"),
        Some(_) => {
            return Err(ApiError::invalid(
                &format!("{field}.type"),
                "equal, enum or pattern",
            ))
        }
    };
    let parameter = match opt_string(c, "parameter", &field)? {
        Some(p) => Some(p),
        None => opt_string(c, "parameter_name", &field)?,
    };
    let mut out = Condition {
        condition_type: kind.map(str::to_owned),
        condition_value: opt_string(c, "value", &field)?,
        ..Condition::default()
    };
    match opt_string(c, "origin", &field)?.as_deref() {
        Some("source") => out.condition_origin = Some("source".into()),
        Some("request" | "request_parameter" | "param") => {
            out.condition_origin = Some("param".into());
            out.req_param_name = parameter;
        }
        Some("system") => {
            out.condition_origin = Some("system".into());
            out.sys_param_name = parameter;
        }
        Some("cookie") => {
            out.condition_origin = Some("cookie".into());
            out.cookie_param_name = parameter;
        }
        Some("orchestration") => {
            out.condition_origin = Some("orchestration".into());
            out.mapped_param_name = parameter;
        }
        Some(other) => {
            return Err(ApiError::not_supported(format!(
                "{field}.origin {other} (source, request, system, cookie or orchestration)"
            )))
        }
        None => return Err(ApiError::required(&format!("{field}.origin"))),
    }
    Ok(out)
}
