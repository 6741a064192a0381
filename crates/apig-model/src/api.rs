//! APIs (CreateApiV2 / UpdateApiV2 and their views).
//!
//! [`ApiSpec`] is the request body; after [`ApiSpec::validate_and_normalize`] it is also the
//! stored definition (defaults filled, ids given to parameters). Responses are the stored spec
//! plus the server-side fields.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backend_policy::{self, FunctionPolicy, HttpPolicy, MockPolicy};
use crate::env::variable_refs;
use crate::function::FuncInfo;
use crate::validate::{self, Problems};
use crate::{ids, ApiError, ErrorCode};

pub const MAX_PARAMS: usize = 50;
pub const MAX_BACKEND_TIMEOUT_MS: i64 = 600_000;
pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "ANY",
];
pub const SYSTEM_PARAMS: &[&str] = &[
    "$context.sourceIp",
    "$context.stage",
    "$context.apiId",
    "$context.apiName",
    "$context.appId",
    "$context.appName",
    "$context.requestId",
    "$context.serverAddr",
    "$context.serverName",
    "$context.handleTime",
];

opt_struct! {
    pub struct AuthOpt {
        pub app_code_auth_type: String,
    }
}

opt_struct! {
    /// ReqParamBase (+ `id` in responses).
    pub struct ReqParam {
        pub id: String,
        pub name: String,
        #[serde(rename = "type")]
        pub param_type: String,
        pub location: String,
        pub default_value: String,
        pub sample_value: String,
        pub required: i64,
        pub valid_enable: i64,
        pub remark: String,
        pub enumerations: String,
        pub min_num: i64,
        pub max_num: i64,
        pub min_size: i64,
        pub max_size: i64,
        pub regular: String,
        pub json_schema: String,
        pub pass_through: i64,
        pub orchestrations: Vec<String>,
    }
}

opt_struct! {
    /// BackendParamBase (+ `id`, `req_param_id` in responses).
    pub struct BackendParam {
        pub id: String,
        pub origin: String,
        pub name: String,
        pub remark: String,
        pub location: String,
        pub value: String,
        pub req_param_id: String,
    }
}

opt_struct! {
    pub struct VpcChannelInfo {
        pub vpc_channel_id: String,
        pub vpc_channel_proxy_host: String,
    }
}

opt_struct! {
    /// BackendApiCreate (+ id, status, times in responses).
    pub struct BackendApi {
        pub id: String,
        pub authorizer_id: String,
        pub url_domain: String,
        pub req_protocol: String,
        pub remark: String,
        pub req_method: String,
        pub version: String,
        pub req_uri: String,
        pub timeout: i64,
        pub enable_client_ssl: bool,
        pub retry_count: String,
        pub enable_sm_channel: bool,
        pub member_group_url_infos: Vec<Value>,
        pub vpc_channel_info: VpcChannelInfo,
        pub vpc_channel_status: i64,
        pub status: i64,
        pub register_time: String,
        pub update_time: String,
    }
}

opt_struct! {
    /// ApiMockCreate (+ id, status, times in responses).
    pub struct MockInfo {
        pub id: String,
        pub remark: String,
        pub result_content: String,
        pub version: String,
        pub authorizer_id: String,
        pub status: i64,
        pub register_time: String,
        pub update_time: String,
    }
}

opt_struct! {
    /// ApiCreate: the request body of create and update, and the stored definition.
    pub struct ApiSpec {
        pub name: String,
        #[serde(rename = "type")]
        pub api_type: i64,
        pub version: String,
        pub req_protocol: String,
        pub req_method: String,
        pub req_uri: String,
        pub auth_type: String,
        pub auth_opt: AuthOpt,
        pub cors: bool,
        pub trace_enabled: bool,
        pub sampling_strategy: String,
        pub sampling_param: String,
        pub match_mode: String,
        pub backend_type: String,
        pub remark: String,
        pub group_id: String,
        pub body_remark: String,
        pub result_normal_sample: String,
        pub result_failure_sample: String,
        pub authorizer_id: String,
        pub tags: Vec<String>,
        pub tag: String,
        pub response_id: String,
        pub roma_app_id: String,
        pub domain_name: String,
        pub content_type: String,
        pub is_send_fg_body_base64: bool,
        pub req_params: Vec<ReqParam>,
        pub backend_params: Vec<BackendParam>,
        pub backend_api: BackendApi,
        pub mock_info: MockInfo,
        pub func_info: FuncInfo,
        pub policy_https: Vec<HttpPolicy>,
        pub policy_functions: Vec<FunctionPolicy>,
        pub policy_mocks: Vec<MockPolicy>,
    }
}

/// A stored API: its definition and the server-side fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Api {
    pub id: String,
    pub instance_id: String,
    pub spec: ApiSpec,
    pub register_time: String,
    pub update_time: String,
}

/// A `{name}` or `{name+}` parameter of a path template.
#[derive(Debug, PartialEq, Eq)]
pub struct TemplateParam<'a> {
    pub name: &'a str,
    pub greedy: bool,
}

/// Checks a path template's shape and returns its parameters. Frontend templates allow
/// `{name+}` as the last segment; backend ones allow `prefix-{x}`/`{x}-suffix` but no `+`.
pub fn template_params<'a>(
    field: &str,
    template: &'a str,
    frontend: bool,
) -> Result<Vec<TemplateParam<'a>>, ApiError> {
    let bad = |why: &str| ApiError::invalid(field, why);
    if !template.starts_with('/') {
        return Err(bad("the path must start with /"));
    }
    if template.chars().count() > 512 {
        return Err(bad("the path may have at most 512 characters"));
    }
    let mut params = Vec::new();
    let segments: Vec<&str> = template[1..].split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() && i != last {
            return Err(bad("the path may not contain empty segments (//)"));
        }
        if seg == &"." || seg == &".." {
            return Err(bad("the path may not contain . or .. segments"));
        }
        let opens = seg.matches('{').count();
        let closes = seg.matches('}').count();
        if opens != closes || opens > 1 {
            return Err(bad("each segment may hold at most one {parameter}"));
        }
        if opens == 1 {
            let (start, end) = match (seg.find('{'), seg.find('}')) {
                (Some(s), Some(e)) if s < e => (s, e),
                _ => return Err(bad("unbalanced braces")),
            };
            let inner = &seg[start + 1..end];
            let (name, greedy) = match inner.strip_suffix('+') {
                Some(n) => (n, true),
                None => (inner, false),
            };
            if validate::param_name(field, name).is_err() {
                return Err(bad(
                    "parameter names are 1 to 32 letters, digits and -_., starting with a letter",
                ));
            }
            let whole = start == 0 && end == seg.len() - 1;
            if frontend && !whole {
                return Err(bad("a request path parameter must be a whole segment"));
            }
            if greedy && (!frontend || i != last) {
                return Err(bad(
                    "{name+} is allowed only as the last segment of the request path",
                ));
            }
            if params
                .iter()
                .any(|p: &TemplateParam| p.name.eq_ignore_ascii_case(name))
            {
                return Err(bad("a path parameter is repeated"));
            }
            params.push(TemplateParam { name, greedy });
        }
        let literal_ok = seg.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || "-_.~*%{}+#:@!$&'(),;=".contains(c)
                || (!c.is_ascii() && !c.is_control())
        });
        if !literal_ok {
            return Err(bad("the path contains characters that are not allowed"));
        }
    }
    Ok(params)
}

/// What a `backend_api` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendKind {
    /// `backend_type` HTTP: HTTP or HTTPS, any method, a path template.
    Http,
    /// `backend_type` GRPC: GRPC (h2c) or GRPCS (TLS), POST, the request path.
    Grpc,
}

fn check_opt_enum(p: &mut Problems, field: &str, v: &Option<String>, allowed: &[&str]) {
    if let Some(v) = v {
        p.check(validate::one_of(field, v, allowed));
    }
}

impl ApiSpec {
    /// Validates a create or update body, collecting every problem, then fills defaults and
    /// gives ids to parameters. `group_exists` is checked by the caller (it needs the store).
    pub fn validate_and_normalize(&mut self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("name", &self.name) {
            Ok(n) => p.check(validate::api_name(n)),
            Err(e) => p.push(e),
        }
        match self.api_type {
            Some(1) | Some(2) => {}
            Some(_) => p.push(ApiError::invalid("type", "1 (public) or 2 (private)")),
            None => p.push(ApiError::required("type")),
        }
        if let Some(v) = &self.version {
            p.check(validate::max_chars("version", v, 16));
        }
        match validate::required("req_protocol", &self.req_protocol) {
            Ok(v) => p.check(validate::one_of(
                "req_protocol",
                v,
                &["HTTP", "HTTPS", "BOTH", "GRPCS"],
            )),
            Err(e) => p.push(e),
        }
        match validate::required("req_method", &self.req_method) {
            Ok(v) => p.check(validate::one_of("req_method", v, METHODS)),
            Err(e) => p.push(e),
        }
        let mut path_params: Vec<String> = Vec::new();
        match validate::required("req_uri", &self.req_uri) {
            Ok(v) => match template_params("req_uri", v, true) {
                Ok(ps) => path_params = ps.iter().map(|t| t.name.to_owned()).collect(),
                Err(e) => p.push(e),
            },
            Err(e) => p.push(e),
        }
        match validate::required("auth_type", &self.auth_type) {
            Ok(v) => p.check(validate::one_of(
                "auth_type",
                v,
                &["NONE", "APP", "IAM", "AUTHORIZER"],
            )),
            Err(e) => p.push(e),
        }
        if let Some(opt) = &self.auth_opt {
            check_opt_enum(
                &mut p,
                "auth_opt.app_code_auth_type",
                &opt.app_code_auth_type,
                &["DISABLE", "HEADER"],
            );
        }
        check_opt_enum(&mut p, "match_mode", &self.match_mode, &["NORMAL", "SWA"]);
        let backend_type = match validate::required("backend_type", &self.backend_type) {
            Ok(v @ ("HTTP" | "MOCK" | "FUNCTION" | "GRPC")) => Some(v.to_owned()),
            Ok(_) => {
                p.push(ApiError::invalid(
                    "backend_type",
                    "HTTP, MOCK, FUNCTION or GRPC",
                ));
                None
            }
            Err(e) => {
                p.push(e);
                None
            }
        };
        p.check(validate::required("group_id", &self.group_id).map(|_| ()));
        for (field, v, max) in [
            ("remark", &self.remark, 255),
            ("body_remark", &self.body_remark, 20480),
            ("result_normal_sample", &self.result_normal_sample, 20480),
            ("result_failure_sample", &self.result_failure_sample, 20480),
        ] {
            if let Some(v) = v {
                p.check(validate::max_chars(field, v, max));
            }
        }
        check_opt_enum(
            &mut p,
            "content_type",
            &self.content_type,
            &[
                "application/json",
                "application/xml",
                "multipart/form-data",
                "text/plain",
            ],
        );
        if let Some(tags) = &self.tags {
            if tags.len() > 10 {
                p.push(ApiError::invalid("tags", "at most 10 tags"));
            }
            for t in tags {
                let ok = (1..=128).contains(&t.len())
                    && t.starts_with(|c: char| c.is_ascii_alphabetic())
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-*#%.:_".contains(c));
                if !ok {
                    p.push(ApiError::invalid(
                        "tags",
                        "1 to 128 letters, digits and -*#%.:_, starting with a letter",
                    ));
                }
            }
        }
        for (field, present) in [
            (
                "roma_app_id",
                self.roma_app_id.as_deref().is_some_and(|s| !s.is_empty()),
            ),
            (
                "domain_name",
                self.domain_name.as_deref().is_some_and(|s| !s.is_empty()),
            ),
            (
                "response_id",
                self.response_id.as_deref().is_some_and(|s| !s.is_empty()),
            ),
        ] {
            if present {
                p.push(ApiError::not_supported(format!("{field} (not yet)")));
            }
        }
        self.check_req_params(&mut p, &path_params);
        backend_policy::check(
            &mut p,
            backend_type.as_deref(),
            self.policy_https.as_deref().unwrap_or_default(),
            self.policy_mocks.as_deref().unwrap_or_default(),
            self.policy_functions.as_deref().unwrap_or_default(),
            self.req_params.as_deref().unwrap_or_default(),
        );
        let grpc = self.req_protocol.as_deref() == Some("GRPCS");
        match (grpc, backend_type.as_deref()) {
            // APIG's gRPC APIs take GRPC (or FUNCTION) backends, and only they do.
            (true, Some("HTTP" | "MOCK")) => p.push(ApiError::invalid(
                "backend_type",
                "GRPC for an API whose req_protocol is GRPCS",
            )),
            (false, Some("GRPC")) => p.push(ApiError::invalid(
                "req_protocol",
                "GRPCS for an API whose backend_type is GRPC",
            )),
            _ => {}
        }
        if grpc {
            self.check_grpc_frontend(&mut p);
        }
        self.check_authorizer_use(&mut p);
        match backend_type.as_deref() {
            Some("HTTP") => self.check_backend_api(&mut p, BackendKind::Http),
            Some("GRPC") => self.check_backend_api(&mut p, BackendKind::Grpc),
            Some("FUNCTION") => match &self.func_info {
                Some(f) => {
                    crate::function::check(&mut p, f, "func_info");
                    check_backend_params(
                        &mut p,
                        self.req_params.as_deref().unwrap_or_default(),
                        self.backend_params.as_deref().unwrap_or_default(),
                        &[],
                        "backend_params",
                    );
                }
                None => p.push(ApiError::required("func_info")),
            },
            Some("MOCK") => {
                let mock = self.mock_info.get_or_insert_with(MockInfo::default);
                if let Some(rc) = &mock.result_content {
                    p.check(validate::max_chars("mock_info.result_content", rc, 2048));
                }
            }
            _ => {}
        }
        p.into_result()?;
        self.fill_defaults();
        Ok(())
    }

    fn check_req_params(&self, p: &mut Problems, path_params: &[String]) {
        let params = self.req_params.as_deref().unwrap_or_default();
        if params.len() > MAX_PARAMS {
            p.push(ApiError::invalid(
                "req_params",
                format!("at most {MAX_PARAMS} parameters"),
            ));
        }
        let mut seen = HashSet::new();
        for rp in params {
            let name = match validate::required("req_params.name", &rp.name) {
                Ok(n) => n,
                Err(e) => {
                    p.push(e);
                    continue;
                }
            };
            p.check(validate::param_name("req_params.name", name));
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("x-apig-") || lower.starts_with("x-sdk-") || lower == "x-stage" {
                p.push(ApiError::invalid(
                    "req_params.name",
                    "names starting x-apig- or x-sdk-, and x-stage, are reserved",
                ));
            }
            let location = rp.location.as_deref().unwrap_or("");
            match validate::one_of(
                "req_params.location",
                location,
                &["PATH", "QUERY", "HEADER"],
            ) {
                Ok(()) => {
                    if !seen.insert((location.to_owned(), lower.clone())) {
                        p.push(ApiError::new(
                            ErrorCode::ParamNameExists,
                            format!("The parameter name already exists: {name}"),
                        ));
                    }
                }
                Err(e) => p.push(e),
            }
            if location == "HEADER"
                && (lower == "authorization" || lower == "x-auth-token" || name.contains('_'))
            {
                p.push(ApiError::invalid(
                    "req_params.name",
                    "a header parameter may not be Authorization or X-Auth-Token, nor contain _",
                ));
            }
            match rp.param_type.as_deref() {
                Some("STRING" | "NUMBER") => {}
                Some(_) => p.push(ApiError::invalid("req_params.type", "STRING or NUMBER")),
                None => p.push(ApiError::required("req_params.type")),
            }
            for (field, v) in [
                ("req_params.required", rp.required),
                ("req_params.valid_enable", rp.valid_enable),
                ("req_params.pass_through", rp.pass_through),
            ] {
                if v.is_some_and(|v| v != 1 && v != 2) {
                    p.push(ApiError::invalid(field, "1 (yes) or 2 (no)"));
                }
            }
            if location == "PATH" && !path_params.iter().any(|pp| pp == name) {
                p.push(ApiError::new(
                    ErrorCode::PathParamsUndefined,
                    format!(
                        "The request path parameters are not defined: {name} is not in req_uri"
                    ),
                ));
            }
            if location == "PATH" && rp.required == Some(2) {
                p.push(ApiError::invalid(
                    "req_params.required",
                    "path parameters are always required",
                ));
            }
            for (field, v, max) in [
                ("req_params.default_value", &rp.default_value, 255),
                ("req_params.sample_value", &rp.sample_value, 255),
                ("req_params.remark", &rp.remark, 255),
                ("req_params.enumerations", &rp.enumerations, 1024),
            ] {
                if let Some(v) = v {
                    p.check(validate::max_chars(field, v, max));
                }
            }
            if let (Some(a), Some(b)) = (rp.min_num, rp.max_num) {
                if a > b {
                    p.push(ApiError::invalid(
                        "req_params.min_num",
                        "min_num may not exceed max_num",
                    ));
                }
            }
            if let (Some(a), Some(b)) = (rp.min_size, rp.max_size) {
                if a > b || a < 0 {
                    p.push(ApiError::invalid(
                        "req_params.min_size",
                        "0 <= min_size <= max_size",
                    ));
                }
            }
            if rp.regular.as_deref().is_some_and(|s| !s.is_empty())
                || rp.json_schema.as_deref().is_some_and(|s| !s.is_empty())
            {
                p.push(ApiError::not_supported(
                    "req_params.regular and json_schema",
                ));
            }
        }
        for pp in path_params {
            if !params
                .iter()
                .any(|rp| rp.name.as_deref() == Some(pp) && rp.location.as_deref() == Some("PATH"))
            {
                p.push(ApiError::new(ErrorCode::PathParamsUndefined, format!("The request path parameters are not defined: {{{pp}}} needs a PATH parameter")));
            }
        }
    }

    /// The frontend authorizer: required with `auth_type` AUTHORIZER, a second factor with APP
    /// or IAM, meaningless without authentication. Authorizer context (backend parameters,
    /// `frontend_authorizer` conditions) needs the authorizer that produces it (APIG.2036).
    fn check_authorizer_use(&self, p: &mut Problems) {
        let auth = self.auth_type.as_deref().unwrap_or_default();
        let frontend = self.frontend_authorizer_id().is_some();
        match auth {
            "AUTHORIZER" if !frontend => p.push(ApiError::required("authorizer_id")),
            "NONE" if frontend => p.push(ApiError::invalid(
                "authorizer_id",
                "a frontend authorizer needs auth_type AUTHORIZER, or APP or IAM (two-factor)",
            )),
            _ => {}
        }
        let without = |what: &str| {
            ApiError::new(
                ErrorCode::AuthorizerParamsUnavailable,
                format!(
                    "Only APIs that use custom authentication can have authorizer parameters: {what}"
                ),
            )
        };
        let check_params =
            |p: &mut Problems, params: &[BackendParam], backend: bool, field: &str| {
                for bp in params
                    .iter()
                    .filter(|bp| bp.origin.as_deref() == Some("SYSTEM"))
                {
                    match bp
                        .value
                        .as_deref()
                        .and_then(crate::authorizer::context_param)
                    {
                        Some((true, _)) if !frontend => {
                            p.push(without(&format!("{field} needs a frontend authorizer")))
                        }
                        Some((false, _)) if !backend => {
                            p.push(without(&format!("{field} needs a backend authorizer")))
                        }
                        _ => {}
                    }
                }
            };
        let default_backend = self.default_backend_authorizer_id().is_some();
        check_params(
            p,
            self.backend_params.as_deref().unwrap_or_default(),
            default_backend,
            "backend_params",
        );
        for (field, params, conditions, authorizer) in self.policy_parts() {
            check_params(p, params, authorizer.is_some_and(|a| !a.is_empty()), field);
            if !frontend
                && conditions
                    .iter()
                    .any(|c| c.condition_origin.as_deref() == Some("frontend_authorizer"))
            {
                p.push(without(&format!(
                    "{field}.conditions of origin frontend_authorizer need a frontend authorizer"
                )));
            }
        }
    }

    /// Each backend policy's field name, backend parameters, conditions and authorizer id.
    #[allow(clippy::type_complexity)]
    fn policy_parts(
        &self,
    ) -> Vec<(
        &'static str,
        &[BackendParam],
        &[backend_policy::Condition],
        Option<&str>,
    )> {
        let mut out = Vec::new();
        for h in self.policy_https.iter().flatten() {
            out.push((
                "policy_https",
                h.backend_params.as_deref().unwrap_or_default(),
                h.conditions.as_deref().unwrap_or_default(),
                h.authorizer_id.as_deref(),
            ));
        }
        for f in self.policy_functions.iter().flatten() {
            out.push((
                "policy_functions",
                f.backend_params.as_deref().unwrap_or_default(),
                f.conditions.as_deref().unwrap_or_default(),
                f.authorizer_id.as_deref(),
            ));
        }
        for m in self.policy_mocks.iter().flatten() {
            out.push((
                "policy_mocks",
                m.backend_params.as_deref().unwrap_or_default(),
                m.conditions.as_deref().unwrap_or_default(),
                m.authorizer_id.as_deref(),
            ));
        }
        out
    }

    /// The frontend custom authorizer (AUTHORIZER authentication or two-factor).
    pub fn frontend_authorizer_id(&self) -> Option<&str> {
        self.authorizer_id.as_deref().filter(|a| !a.is_empty())
    }

    /// The backend authorizer of the default backend (of its type).
    pub fn default_backend_authorizer_id(&self) -> Option<&str> {
        let id = match self.backend_type.as_deref() {
            Some("FUNCTION") => self.func_info.as_ref()?.authorizer_id.as_deref(),
            Some("MOCK") => self.mock_info.as_ref()?.authorizer_id.as_deref(),
            _ => self.backend_api.as_ref()?.authorizer_id.as_deref(),
        };
        id.filter(|a| !a.is_empty())
    }

    /// Every backend authorizer the API names (`field`, id): its default backend's and its
    /// backend policies'.
    pub fn backend_authorizer_ids(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = self
            .default_backend_authorizer_id()
            .map(|a| ("backend_api.authorizer_id", a))
            .into_iter()
            .collect();
        for (field, _, _, authorizer) in self.policy_parts() {
            if let Some(a) = authorizer.filter(|a| !a.is_empty()) {
                out.push((field, a));
            }
        }
        out
    }

    /// APIG's rules for gRPC APIs: method POST; path `/`, `/package.Service` or
    /// `/package.Service/Method` (NORMAL only for the last); no parameters, samples or custom
    /// authorizer.
    fn check_grpc_frontend(&self, p: &mut Problems) {
        if self.req_method.as_deref().is_some_and(|m| m != "POST") {
            p.push(ApiError::invalid("req_method", "POST for a gRPC API"));
        }
        if let Some(uri) = self.req_uri.as_deref() {
            let segments = uri.split('/').filter(|s| !s.is_empty()).count();
            if uri.contains(['{', '}']) || segments > 2 {
                p.push(ApiError::invalid(
                    "req_uri",
                    "/, /package.Service or /package.Service/Method for a gRPC API",
                ));
            } else if segments < 2 && self.match_mode.as_deref() != Some("SWA") {
                p.push(ApiError::invalid(
                    "match_mode",
                    "SWA unless the gRPC API's path names a method",
                ));
            }
        }
        if self.auth_type.as_deref() == Some("AUTHORIZER") {
            p.push(ApiError::invalid(
                "auth_type",
                "NONE, APP or IAM for a gRPC API",
            ));
        } else if self.frontend_authorizer_id().is_some() {
            p.push(ApiError::invalid(
                "authorizer_id",
                "custom authorizers are not available for gRPC APIs",
            ));
        }
        for (field, present) in [
            (
                "req_params",
                self.req_params.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "backend_params",
                self.backend_params.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "result_normal_sample",
                self.result_normal_sample
                    .as_deref()
                    .is_some_and(|s| !s.is_empty()),
            ),
            (
                "result_failure_sample",
                self.result_failure_sample
                    .as_deref()
                    .is_some_and(|s| !s.is_empty()),
            ),
        ] {
            if present {
                p.push(ApiError::invalid(field, "not available for gRPC APIs"));
            }
        }
    }

    fn check_backend_api(&self, p: &mut Problems, kind: BackendKind) {
        let Some(b) = &self.backend_api else {
            p.push(ApiError::required("backend_api"));
            return;
        };
        let backend_path_params = check_http_backend(p, b, "backend_api", kind);
        check_backend_params(
            p,
            self.req_params.as_deref().unwrap_or_default(),
            self.backend_params.as_deref().unwrap_or_default(),
            &backend_path_params,
            "backend_params",
        );
    }
}

/// Checks an HTTP backend definition (the API's `backend_api` or a backend policy, whose
/// fields are named `<prefix>.<field>` in errors); returns the backend path's parameters.
pub(crate) fn check_http_backend(
    p: &mut Problems,
    b: &BackendApi,
    prefix: &str,
    kind: BackendKind,
) -> Vec<String> {
    let uses_channel = match b.vpc_channel_status {
        None | Some(2) => false,
        Some(1) => true,
        Some(4) => {
            p.push(ApiError::not_supported(
                "vpc_channel_status 4 (member group URLs)",
            ));
            false
        }
        Some(_) => {
            p.push(ApiError::invalid(
                &format!("{prefix}.vpc_channel_status"),
                "1 (use a load balance channel) or 2 (url_domain)",
            ));
            false
        }
    };
    if uses_channel {
        let info = b.vpc_channel_info.clone().unwrap_or_default();
        if let Err(e) = validate::required(
            &format!("{prefix}.vpc_channel_info.vpc_channel_id"),
            &info.vpc_channel_id,
        ) {
            p.push(e);
        }
        if let Some(h) = info
            .vpc_channel_proxy_host
            .as_deref()
            .filter(|h| !h.is_empty())
        {
            if check_url_domain(h).is_err() || h.contains('#') {
                p.push(ApiError::invalid(
                    &format!("{prefix}.vpc_channel_info.vpc_channel_proxy_host"),
                    "host[:port]",
                ));
            }
        }
    }
    if b.member_group_url_infos
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        p.push(ApiError::not_supported("member_group_url_infos (not yet)"));
    }
    if kind == BackendKind::Grpc && b.authorizer_id.as_deref().is_some_and(|s| !s.is_empty()) {
        p.push(ApiError::invalid(
            &format!("{prefix}.authorizer_id"),
            "custom authorizers are not available for gRPC APIs",
        ));
    }
    if b.enable_client_ssl == Some(true) || b.enable_sm_channel == Some(true) {
        p.push(ApiError::not_supported(
            "backend client certificates and SM channels",
        ));
    }
    if !uses_channel {
        match validate::required(&format!("{prefix}.url_domain"), &b.url_domain) {
            Ok(d) => p.check(check_url_domain(d)),
            Err(e) => p.push(e),
        }
    }
    let protocols: &[&str] = match kind {
        BackendKind::Http => &["HTTP", "HTTPS"],
        BackendKind::Grpc => &["GRPC", "GRPCS"],
    };
    match validate::required(&format!("{prefix}.req_protocol"), &b.req_protocol) {
        Ok(v) => p.check(validate::one_of(
            &format!("{prefix}.req_protocol"),
            v,
            protocols,
        )),
        Err(e) => p.push(e),
    }
    if kind == BackendKind::Grpc {
        // APIG fixes both: the gateway calls `POST /package.Service/Method`, the request's
        // own path. Absent, they are filled in.
        if b.req_method.as_deref().is_some_and(|m| m != "POST") {
            p.push(ApiError::invalid(
                &format!("{prefix}.req_method"),
                "POST for a GRPC backend",
            ));
        }
        if b.req_uri.as_deref().is_some_and(|u| u != "/") {
            p.push(ApiError::invalid(
                &format!("{prefix}.req_uri"),
                "/ for a GRPC backend (the request path is forwarded)",
            ));
        }
        check_backend_timing(p, b, prefix);
        return Vec::new();
    }
    match validate::required(&format!("{prefix}.req_method"), &b.req_method) {
        Ok(v) => p.check(validate::one_of(
            &format!("{prefix}.req_method"),
            v,
            METHODS,
        )),
        Err(e) => p.push(e),
    }
    let mut backend_path_params = Vec::new();
    match validate::required(&format!("{prefix}.req_uri"), &b.req_uri) {
        Ok(v) => {
            // Variables may stand anywhere in the backend path; check the shape without them.
            let mut stripped = v.to_owned();
            for r in variable_refs(v) {
                stripped = stripped.replacen(&format!("#{r}#"), "v", 1);
            }
            match template_params(&format!("{prefix}.req_uri"), &stripped, false) {
                Ok(ps) => backend_path_params = ps.iter().map(|t| t.name.to_owned()).collect(),
                Err(e) => p.push(e),
            }
        }
        Err(e) => p.push(e),
    }
    check_backend_timing(p, b, prefix);
    backend_path_params
}

/// Timeout, retries and the free-text fields of any backend.
fn check_backend_timing(p: &mut Problems, b: &BackendApi, prefix: &str) {
    match b.timeout {
        Some(t) if (1..=MAX_BACKEND_TIMEOUT_MS).contains(&t) => {}
        Some(_) => p.push(ApiError::invalid(
            &format!("{prefix}.timeout"),
            format!("1 to {MAX_BACKEND_TIMEOUT_MS} ms"),
        )),
        None => p.push(ApiError::required(&format!("{prefix}.timeout"))),
    }
    if let Some(r) = &b.retry_count {
        if !r.parse::<i64>().is_ok_and(|n| (-1..=10).contains(&n)) {
            p.push(ApiError::invalid(
                &format!("{prefix}.retry_count"),
                "-1 to 10",
            ));
        }
    }
    for (field, v, max) in [
        (&format!("{prefix}.remark"), &b.remark, 255),
        (&format!("{prefix}.version"), &b.version, 16),
    ] {
        if let Some(v) = v {
            p.check(validate::max_chars(field, v, max));
        }
    }
}

/// Checks backend parameters against the API's request parameters and the backend path
/// parameters; fields are named `<field>.<name>` in errors (`backend_params`).
pub(crate) fn check_backend_params(
    p: &mut Problems,
    req_params: &[ReqParam],
    params: &[BackendParam],
    backend_path_params: &[String],
    field: &str,
) {
    if params.len() > MAX_PARAMS {
        p.push(ApiError::invalid(
            field,
            format!("at most {MAX_PARAMS} parameters"),
        ));
    }
    let mut seen = HashSet::new();
    for bp in params {
        let name = match validate::required(&format!("{field}.name"), &bp.name) {
            Ok(n) => n,
            Err(e) => {
                p.push(e);
                continue;
            }
        };
        p.check(validate::param_name(&format!("{field}.name"), name));
        let location = bp.location.as_deref().unwrap_or("");
        match validate::one_of(
            &format!("{field}.location"),
            location,
            &["PATH", "QUERY", "HEADER"],
        ) {
            Ok(()) => {
                if !seen.insert((location.to_owned(), name.to_ascii_lowercase())) {
                    p.push(ApiError::new(
                        ErrorCode::ParamNameExists,
                        format!("The parameter name already exists: {name}"),
                    ));
                }
            }
            Err(e) => p.push(e),
        }
        if location == "PATH" && !backend_path_params.iter().any(|x| x == name) {
            p.push(ApiError::new(ErrorCode::BackendPathParamsUndefined, format!("The backend path parameters are not defined: {name} is not in backend_api.req_uri")));
        }
        let value = match validate::required(&format!("{field}.value"), &bp.value) {
            Ok(v) => v,
            Err(e) => {
                p.push(e);
                continue;
            }
        };
        p.check(validate::max_chars(&format!("{field}.value"), value, 255));
        match bp.origin.as_deref() {
            Some("REQUEST") => {
                if !req_params
                    .iter()
                    .any(|rp| rp.name.as_deref() == Some(value))
                {
                    p.push(ApiError::new(ErrorCode::MappedParamUndefined, format!("The request parameters mapped to the backend parameters are not defined: {value}")));
                }
            }
            Some("CONSTANT") => {}
            Some("SYSTEM") => {
                if let Some((_, key)) = crate::authorizer::context_param(value) {
                    if !crate::authorizer::is_context_key(key) {
                        p.push(ApiError::invalid(
                            &format!("{field}.value"),
                            "an authorizer context key: a letter, then up to 63 letters, digits, _ and -",
                        ));
                    }
                } else if !SYSTEM_PARAMS.contains(&value) {
                    p.push(ApiError::invalid(
                        &format!("{field}.value"),
                        format!(
                            "unknown system parameter; known: {}",
                            SYSTEM_PARAMS.join(", ")
                        ),
                    ));
                }
            }
            Some(_) => p.push(ApiError::invalid(
                &format!("{field}.origin"),
                "REQUEST, CONSTANT or SYSTEM",
            )),
            None => p.push(ApiError::required(&format!("{field}.origin"))),
        }
    }
    for bpp in backend_path_params {
        if !params
            .iter()
            .any(|bp| bp.name.as_deref() == Some(bpp) && bp.location.as_deref() == Some("PATH"))
        {
            p.push(ApiError::new(ErrorCode::BackendPathParamsUndefined, format!("The backend path parameters are not defined: {{{bpp}}} needs a PATH backend parameter")));
        }
    }
}

impl ApiSpec {
    fn fill_defaults(&mut self) {
        self.match_mode.get_or_insert_with(|| "NORMAL".into());
        self.cors.get_or_insert(false);
        self.auth_opt
            .get_or_insert_with(AuthOpt::default)
            .app_code_auth_type
            .get_or_insert_with(|| "DISABLE".into());
        self.remark.get_or_insert_with(String::new);
        self.trace_enabled.get_or_insert(false);
        let req_params = self.req_params.get_or_insert_with(Vec::new);
        for rp in req_params.iter_mut() {
            rp.id = Some(ids::new_id());
            let is_path = rp.location.as_deref() == Some("PATH");
            rp.required.get_or_insert(if is_path { 1 } else { 2 });
            rp.valid_enable.get_or_insert(2);
            rp.pass_through.get_or_insert(1);
        }
        let lookup: Vec<(String, String)> = req_params
            .iter()
            .filter_map(|rp| Some((rp.name.clone()?, rp.id.clone()?)))
            .collect();
        for bp in self.backend_params.get_or_insert_with(Vec::new).iter_mut() {
            bp.id = Some(ids::new_id());
            if bp.origin.as_deref() == Some("REQUEST") {
                bp.req_param_id = lookup
                    .iter()
                    .find(|(n, _)| Some(n) == bp.value.as_ref())
                    .map(|(_, id)| id.clone());
            }
        }
        if let Some(b) = &mut self.backend_api {
            if self.backend_type.as_deref() == Some("GRPC") {
                b.req_method.get_or_insert_with(|| "POST".into());
                b.req_uri.get_or_insert_with(|| "/".into());
            }
            b.retry_count.get_or_insert_with(|| "-1".into());
            b.vpc_channel_status.get_or_insert(2);
            b.enable_client_ssl.get_or_insert(false);
            b.status.get_or_insert(1);
            b.id.get_or_insert_with(ids::new_id);
        }
        let req_params = self.req_params.clone().unwrap_or_default();
        backend_policy::fill_defaults(
            self.policy_https.get_or_insert_with(Vec::new),
            self.policy_mocks.get_or_insert_with(Vec::new),
            self.policy_functions.get_or_insert_with(Vec::new),
            &req_params,
        );
        if self.backend_type.as_deref() == Some("FUNCTION") {
            self.backend_api = None;
            self.mock_info = None;
            if let Some(f) = &mut self.func_info {
                crate::function::fill_defaults(f);
            }
            return;
        }
        self.func_info = None;
        if self.backend_type.as_deref() == Some("MOCK") {
            self.backend_api = None;
            if let Some(m) = &mut self.mock_info {
                m.id.get_or_insert_with(ids::new_id);
                m.status.get_or_insert(1);
                m.result_content.get_or_insert_with(String::new);
            }
        } else {
            self.mock_info = None;
        }
    }

    pub fn group_id(&self) -> &str {
        self.group_id.as_deref().unwrap_or_default()
    }

    /// Every load-balance channel the API uses: its backend's and its backend policies'.
    pub fn channel_ids(&self) -> impl Iterator<Item = &str> {
        self.channel_id().into_iter().chain(
            self.policy_https
                .iter()
                .flatten()
                .filter_map(HttpPolicy::channel_id),
        )
    }

    /// The load-balance channel the default backend uses, if it uses one.
    pub fn channel_id(&self) -> Option<&str> {
        let b = self.backend_api.as_ref()?;
        if b.vpc_channel_status != Some(1) {
            return None;
        }
        b.vpc_channel_info
            .as_ref()?
            .vpc_channel_id
            .as_deref()
            .filter(|id| !id.is_empty())
    }

    /// The uniqueness key of APIG: group + method + path + match mode.
    pub fn route_key(&self) -> (String, String, String, String) {
        (
            self.group_id().to_owned(),
            self.req_method.clone().unwrap_or_default(),
            self.req_uri.clone().unwrap_or_default(),
            self.match_mode.clone().unwrap_or_else(|| "NORMAL".into()),
        )
    }
}

/// `host[:port]` with optional `#var#` references; no scheme, path or userinfo.
pub fn check_url_domain(d: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::invalid("backend_api.url_domain", why);
    if d.len() > 255 {
        return Err(bad("at most 255 characters"));
    }
    if d.contains("://") || d.contains('/') || d.contains('@') || d.contains('?') {
        return Err(bad("host[:port] only, without scheme, path or user info"));
    }
    if !d
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:#[]".contains(c))
    {
        return Err(bad("letters, digits, -._: and #variables# only"));
    }
    Ok(())
}

impl Api {
    /// The API as the management API shows it (ApiInfoPerPage / ShowDetailsOfApiV2Response).
    pub fn to_json(
        &self,
        group_name: &str,
        published: &[(String, String, String, String)],
    ) -> Value {
        let mut v =
            serde_json::to_value(&self.spec).unwrap_or_else(|_| Value::Object(Default::default()));
        if let Value::Object(m) = &mut v {
            m.insert("id".into(), self.id.clone().into());
            m.insert("status".into(), 1.into());
            m.insert("arrange_necessary".into(), 2.into());
            m.insert("register_time".into(), self.register_time.clone().into());
            m.insert("update_time".into(), self.update_time.clone().into());
            m.insert("group_name".into(), group_name.into());
            m.insert("group_version".into(), "V1".into());
            // run_env_*, publish_*: one value per environment joined with '|' as APIG does.
            let join = |f: fn(&(String, String, String, String)) -> &String| {
                published
                    .iter()
                    .map(f)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("|")
            };
            if !published.is_empty() {
                m.insert("run_env_id".into(), join(|p| &p.0).into());
                m.insert("run_env_name".into(), join(|p| &p.1).into());
                m.insert("publish_id".into(), join(|p| &p.2).into());
                m.insert("publish_time".into(), join(|p| &p.3).into());
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> ApiSpec {
        serde_json::from_value(v).unwrap()
    }

    fn good() -> Value {
        json!({
            "name": "get_user", "type": 1, "req_protocol": "HTTP", "req_method": "GET",
            "req_uri": "/users/{id}", "auth_type": "NONE", "backend_type": "HTTP", "group_id": "g",
            "req_params": [{"name": "id", "type": "STRING", "location": "PATH"}],
            "backend_api": {"url_domain": "#host#:8080", "req_protocol": "HTTP", "req_method": "GET",
                            "req_uri": "/v1/users/{uid}", "timeout": 5000},
            "backend_params": [{"origin": "REQUEST", "name": "uid", "location": "PATH", "value": "id"},
                               {"origin": "SYSTEM", "name": "X-Rid", "location": "HEADER", "value": "$context.requestId"}]
        })
    }

    #[test]
    fn valid_api_gets_defaults_and_ids() {
        let mut s = spec(good());
        s.validate_and_normalize().unwrap();
        assert_eq!(s.match_mode.as_deref(), Some("NORMAL"));
        let rp = &s.req_params.as_ref().unwrap()[0];
        assert_eq!(rp.required, Some(1));
        let bp = &s.backend_params.as_ref().unwrap()[0];
        assert_eq!(bp.req_param_id, rp.id);
        assert_eq!(
            s.backend_api.as_ref().unwrap().retry_count.as_deref(),
            Some("-1")
        );
    }

    #[test]
    fn undefined_path_params_are_reported() {
        let mut v = good();
        v["req_params"] = json!([]);
        let e = spec(v).validate_and_normalize().unwrap_err();
        assert_eq!(e.code, ErrorCode::PathParamsUndefined);
        // The REQUEST mapping to the missing parameter is reported too.
        assert!(e.message.contains("mapped"), "{}", e.message);
    }

    #[test]
    fn collects_all_problems() {
        let e = spec(json!({"name": "x", "type": 7}))
            .validate_and_normalize()
            .unwrap_err();
        for f in [
            "name",
            "type",
            "req_protocol",
            "req_method",
            "req_uri",
            "auth_type",
            "backend_type",
            "group_id",
        ] {
            assert!(e.message.contains(f), "{f} missing in {}", e.message);
        }
    }

    #[test]
    fn templates() {
        assert_eq!(template_params("f", "/a/{b}/{c+}", true).unwrap().len(), 2);
        assert!(template_params("f", "/a/{c+}/d", true).is_err());
        assert!(template_params("f", "/a/x{c}", true).is_err());
        assert!(template_params("f", "/a/x-{c}", false).is_ok());
        assert!(template_params("f", "/a/{b}{c}", false).is_err());
        assert!(template_params("f", "a", true).is_err());
        assert!(template_params("f", "/a//b", true).is_err());
        assert!(template_params("f", "/a/../b", true).is_err());
        assert!(template_params("f", "/", true).unwrap().is_empty());
        assert!(template_params("f", "/a/{}", true).is_err());
        assert!(template_params("f", "/a/{b}/{B}", true).is_err());
    }

    #[test]
    fn unsupported_features_say_so() {
        let mut v = good();
        v["response_id"] = json!("custom-responses");
        let e = spec(v).validate_and_normalize().unwrap_err();
        assert_eq!(e.status(), 412);
    }

    fn grpc() -> Value {
        json!({
            "name": "greeter", "type": 1, "req_protocol": "GRPCS", "req_method": "POST",
            "req_uri": "/helloworld.Greeter", "match_mode": "SWA", "auth_type": "NONE",
            "backend_type": "GRPC", "group_id": "g",
            "backend_api": {"url_domain": "grpc.local:50051", "req_protocol": "GRPC",
                            "timeout": 5000}
        })
    }

    #[test]
    fn grpc_apis_follow_apig() {
        let mut s = spec(grpc());
        s.validate_and_normalize().unwrap();
        let b = s.backend_api.as_ref().unwrap();
        assert_eq!(b.req_method.as_deref(), Some("POST"));
        assert_eq!(b.req_uri.as_deref(), Some("/"));
        // TLS to the backend, and a whole method path matched exactly.
        let mut v = grpc();
        v["backend_api"]["req_protocol"] = json!("GRPCS");
        v["req_uri"] = json!("/helloworld.Greeter/SayHello");
        v["match_mode"] = json!("NORMAL");
        spec(v).validate_and_normalize().unwrap();

        let refused = |patch: Value, field: &str| {
            let mut v = grpc();
            merge(&mut v, patch);
            let e = spec(v.clone()).validate_and_normalize().unwrap_err();
            assert_eq!(e.status(), 400, "{v}: {}", e.message);
            assert!(e.message.contains(field), "{field} not in {}", e.message);
        };
        refused(json!({"req_protocol": "HTTPS"}), "req_protocol");
        refused(json!({"backend_type": "HTTP"}), "backend_type");
        refused(json!({"req_method": "GET"}), "req_method");
        refused(json!({"req_uri": "/a/b/c"}), "req_uri");
        refused(json!({"req_uri": "/{svc}"}), "req_uri");
        refused(json!({"match_mode": "NORMAL"}), "match_mode");
        refused(json!({"auth_type": "AUTHORIZER"}), "auth_type");
        refused(
            json!({"req_params": [{"name": "q", "type": "STRING", "location": "QUERY"}]}),
            "req_params",
        );
        refused(
            json!({"backend_api": {"req_protocol": "HTTP"}}),
            "backend_api.req_protocol",
        );
        refused(
            json!({"backend_api": {"req_method": "GET"}}),
            "backend_api.req_method",
        );
        refused(
            json!({"backend_api": {"req_uri": "/x"}}),
            "backend_api.req_uri",
        );
        refused(
            json!({"backend_api": {"timeout": 0}}),
            "backend_api.timeout",
        );
    }

    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, p) => *b = p,
        }
    }

    #[test]
    fn authorizers_and_their_context() {
        let ok = |patch: Value| {
            let mut v = good();
            merge(&mut v, patch);
            let mut s = spec(v.clone());
            s.validate_and_normalize()
                .unwrap_or_else(|e| panic!("{v}: {}", e.message));
            s
        };
        let refused = |patch: Value, code: &str, field: &str| {
            let mut v = good();
            merge(&mut v, patch);
            let e = spec(v.clone()).validate_and_normalize().unwrap_err();
            assert_eq!(e.code.code(), code, "{v}: {}", e.message);
            assert!(e.message.contains(field), "{field} not in {}", e.message);
        };
        let s = ok(json!({"auth_type": "AUTHORIZER", "authorizer_id": "fa",
            "backend_params": [{"origin": "SYSTEM", "name": "X-User", "location": "HEADER",
                                "value": "$context.authorizer.frontend.user"},
                               {"origin": "REQUEST", "name": "uid", "location": "PATH", "value": "id"}]}));
        assert_eq!(s.frontend_authorizer_id(), Some("fa"));
        // Two-factor: APP (or IAM) plus a frontend authorizer.
        ok(json!({"auth_type": "APP", "authorizer_id": "fa"}));
        let s = ok(json!({"backend_api": {"authorizer_id": "ba"},
            "backend_params": [{"origin": "SYSTEM", "name": "X-Sig", "location": "HEADER",
                                "value": "$context.authorizer.backend.sig"},
                               {"origin": "REQUEST", "name": "uid", "location": "PATH", "value": "id"}]}));
        assert_eq!(
            s.backend_authorizer_ids(),
            vec![("backend_api.authorizer_id", "ba")]
        );
        refused(
            json!({"auth_type": "AUTHORIZER"}),
            "APIG.2001",
            "authorizer_id",
        );
        refused(json!({"authorizer_id": "fa"}), "APIG.2012", "authorizer_id");
        refused(
            json!({"backend_params": [{"origin": "SYSTEM", "name": "X-User", "location": "HEADER",
                                       "value": "$context.authorizer.frontend.user"},
                                      {"origin": "REQUEST", "name": "uid", "location": "PATH", "value": "id"}]}),
            "APIG.2036",
            "frontend authorizer",
        );
        refused(
            json!({"auth_type": "AUTHORIZER", "authorizer_id": "fa",
                   "backend_params": [{"origin": "SYSTEM", "name": "X-S", "location": "HEADER",
                                       "value": "$context.authorizer.backend.sig"},
                                      {"origin": "REQUEST", "name": "uid", "location": "PATH", "value": "id"}]}),
            "APIG.2036",
            "backend authorizer",
        );
        refused(
            json!({"auth_type": "AUTHORIZER", "authorizer_id": "fa",
                   "backend_params": [{"origin": "SYSTEM", "name": "X-U", "location": "HEADER",
                                       "value": "$context.authorizer.frontend.2bad"},
                                      {"origin": "REQUEST", "name": "uid", "location": "PATH", "value": "id"}]}),
            "APIG.2012",
            "context key",
        );
        let policy = json!([{"name": "vip_users", "effect_mode": "ANY",
            "url_domain": "vip.local:80", "req_protocol": "HTTP", "req_method": "GET",
            "req_uri": "/vip", "timeout": 1000,
            "conditions": [{"condition_origin": "frontend_authorizer", "condition_type": "exact",
                            "frontend_authorizer_param_name": "$context.authorizer.frontend.tier",
                            "condition_value": "gold"}]}]);
        ok(
            json!({"auth_type": "AUTHORIZER", "authorizer_id": "fa", "policy_https": policy.clone()}),
        );
        refused(
            json!({"policy_https": policy}),
            "APIG.2036",
            "frontend_authorizer",
        );
    }

    #[test]
    fn url_domains() {
        assert!(check_url_domain("backend.local:8080").is_ok());
        assert!(check_url_domain("#h#:#p#").is_ok());
        assert!(check_url_domain("http://x").is_err());
        assert!(check_url_domain("a/b").is_err());
        assert!(check_url_domain("u@h").is_err());
    }
}
