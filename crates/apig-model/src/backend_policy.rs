//! Backend policies of an API (`policy_https`, `policy_mocks`, `policy_functions`): alternative backends chosen per
//! request by conditions, tried in order, the first match winning, else the default backend
//! (semantics digest §3.6).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::api::{
    check_backend_params, check_http_backend, BackendApi, BackendKind, BackendParam, ReqParam,
    VpcChannelInfo,
};
use crate::function::FuncInfo;
use crate::validate::{self, Problems};
use crate::{ids, ApiError};

/// Backend policies per API (APIG's quota).
pub const MAX_POLICIES: usize = 5;
/// Conditions per policy.
pub const MAX_CONDITIONS: usize = 10;
/// Longest `pattern` condition, in bytes (the gateway compiles it with a size limit too).
pub const MAX_PATTERN_LEN: usize = 255;

static POLICY_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_]{2,63}$").expect("static regex"));

opt_struct! {
    /// ApiConditionBase (+ `id` in answers).
    pub struct Condition {
        pub id: String,
        pub req_param_name: String,
        pub req_param_id: String,
        pub req_param_location: String,
        pub sys_param_name: String,
        pub cookie_param_name: String,
        pub frontend_authorizer_param_name: String,
        pub condition_type: String,
        pub condition_value: String,
        pub condition_origin: String,
        pub mapped_param_name: String,
        pub mapped_param_location: String,
    }
}

opt_struct! {
    /// ApiPolicyHttpCreate (+ `id` in answers).
    pub struct HttpPolicy {
        pub id: String,
        pub name: String,
        pub effect_mode: String,
        pub conditions: Vec<Condition>,
        pub backend_params: Vec<BackendParam>,
        pub authorizer_id: String,
        pub url_domain: String,
        pub req_protocol: String,
        pub req_method: String,
        pub req_uri: String,
        pub timeout: i64,
        pub retry_count: String,
        pub enable_sm_channel: bool,
        pub member_group_url_infos: Vec<Value>,
        pub vpc_channel_info: VpcChannelInfo,
        pub vpc_channel_status: i64,
    }
}

opt_struct! {
    /// ApiPolicyMockCreate (+ `id` in answers).
    pub struct MockPolicy {
        pub id: String,
        pub name: String,
        pub effect_mode: String,
        pub conditions: Vec<Condition>,
        pub backend_params: Vec<BackendParam>,
        pub authorizer_id: String,
        pub result_content: String,
    }
}

opt_struct! {
    /// ApiPolicyFunctionCreate (+ `id` in answers).
    pub struct FunctionPolicy {
        pub id: String,
        pub name: String,
        pub effect_mode: String,
        pub conditions: Vec<Condition>,
        pub backend_params: Vec<BackendParam>,
        pub authorizer_id: String,
        pub function_urn: String,
        pub invocation_type: String,
        pub network_type: String,
        pub version: String,
        pub alias_urn: String,
        pub timeout: i64,
        pub req_protocol: String,
    }
}

impl FunctionPolicy {
    /// The policy's function in the shape of the API's `func_info` (same rules).
    pub fn function(&self) -> FuncInfo {
        FuncInfo {
            function_urn: self.function_urn.clone(),
            invocation_type: self.invocation_type.clone(),
            network_type: self.network_type.clone(),
            version: self.version.clone(),
            alias_urn: self.alias_urn.clone(),
            timeout: self.timeout,
            req_protocol: self.req_protocol.clone(),
            ..FuncInfo::default()
        }
    }
}

impl HttpPolicy {
    /// The policy's backend in the shape of the API's default backend (same rules).
    pub fn backend(&self) -> BackendApi {
        BackendApi {
            url_domain: self.url_domain.clone(),
            req_protocol: self.req_protocol.clone(),
            req_method: self.req_method.clone(),
            req_uri: self.req_uri.clone(),
            timeout: self.timeout,
            retry_count: self.retry_count.clone(),
            enable_sm_channel: self.enable_sm_channel,
            member_group_url_infos: self.member_group_url_infos.clone(),
            vpc_channel_info: self.vpc_channel_info.clone(),
            vpc_channel_status: self.vpc_channel_status,
            authorizer_id: self.authorizer_id.clone(),
            ..BackendApi::default()
        }
    }

    /// The channel the policy's backend uses, if any.
    pub fn channel_id(&self) -> Option<&str> {
        if self.vpc_channel_status != Some(1) {
            return None;
        }
        self.vpc_channel_info
            .as_ref()?
            .vpc_channel_id
            .as_deref()
            .filter(|id| !id.is_empty())
    }
}

/// What every policy kind shares, for validation.
struct Common<'a> {
    field: &'static str,
    name: &'a Option<String>,
    effect_mode: &'a Option<String>,
    conditions: &'a Option<Vec<Condition>>,
}

/// Checks the API's backend policies; `backend_type` is the API's (policies must be of the same
/// kind).
pub fn check(
    p: &mut Problems,
    backend_type: Option<&str>,
    https: &[HttpPolicy],
    mocks: &[MockPolicy],
    functions: &[FunctionPolicy],
    req_params: &[ReqParam],
) {
    if https.len() + mocks.len() + functions.len() > MAX_POLICIES {
        p.push(ApiError::invalid(
            "policy_https",
            format!("at most {MAX_POLICIES} backend policies per API"),
        ));
    }
    if !https.is_empty() && backend_type != Some("HTTP") {
        p.push(ApiError::invalid(
            "policy_https",
            "only for backend_type HTTP",
        ));
    }
    if !mocks.is_empty() && backend_type != Some("MOCK") {
        p.push(ApiError::invalid(
            "policy_mocks",
            "only for backend_type MOCK",
        ));
    }
    let mut names = HashSet::new();
    for h in https {
        check_common(
            p,
            &Common {
                field: "policy_https",
                name: &h.name,
                effect_mode: &h.effect_mode,
                conditions: &h.conditions,
            },
            req_params,
            &mut names,
        );
        let path_params = check_http_backend(p, &h.backend(), "policy_https", BackendKind::Http);
        check_backend_params(
            p,
            req_params,
            h.backend_params.as_deref().unwrap_or_default(),
            &path_params,
            "policy_https.backend_params",
        );
    }
    for f in functions {
        check_common(
            p,
            &Common {
                field: "policy_functions",
                name: &f.name,
                effect_mode: &f.effect_mode,
                conditions: &f.conditions,
            },
            req_params,
            &mut names,
        );
        crate::function::check(p, &f.function(), "policy_functions");
        check_backend_params(
            p,
            req_params,
            f.backend_params.as_deref().unwrap_or_default(),
            &[],
            "policy_functions.backend_params",
        );
    }
    for m in mocks {
        check_common(
            p,
            &Common {
                field: "policy_mocks",
                name: &m.name,
                effect_mode: &m.effect_mode,
                conditions: &m.conditions,
            },
            req_params,
            &mut names,
        );
        if let Some(rc) = &m.result_content {
            p.check(validate::max_chars("policy_mocks.result_content", rc, 2048));
        }
        check_backend_params(
            p,
            req_params,
            m.backend_params.as_deref().unwrap_or_default(),
            &[],
            "policy_mocks.backend_params",
        );
    }
}

fn check_common<'a>(
    p: &mut Problems,
    c: &Common<'a>,
    req_params: &[ReqParam],
    names: &mut HashSet<&'a str>,
) {
    let field = c.field;
    match validate::required(&format!("{field}.name"), c.name) {
        Ok(n) => {
            if !POLICY_NAME.is_match(n) {
                p.push(ApiError::invalid(
                    &format!("{field}.name"),
                    "3 to 64 letters, digits and underscores, starting with a letter",
                ));
            }
            if !names.insert(n) {
                p.push(ApiError::invalid(
                    &format!("{field}.name"),
                    format!("{n} is used by another backend policy of the API"),
                ));
            }
        }
        Err(e) => p.push(e),
    }
    match c.effect_mode.as_deref() {
        Some("ALL" | "ANY") => {}
        Some(_) => p.push(ApiError::invalid(
            &format!("{field}.effect_mode"),
            "ALL or ANY",
        )),
        None => p.push(ApiError::required(&format!("{field}.effect_mode"))),
    }
    let conditions = c.conditions.as_deref().unwrap_or_default();
    if conditions.is_empty() || conditions.len() > MAX_CONDITIONS {
        p.push(ApiError::invalid(
            &format!("{field}.conditions"),
            format!("1 to {MAX_CONDITIONS} conditions"),
        ));
    }
    for cond in conditions {
        check_condition(p, field, cond, req_params);
    }
}

fn check_condition(p: &mut Problems, field: &str, c: &Condition, req_params: &[ReqParam]) {
    let f = |name: &str| format!("{field}.conditions.{name}");
    let value = match validate::required(&f("condition_value"), &c.condition_value) {
        Ok(v) => v,
        Err(e) => {
            p.push(e);
            return;
        }
    };
    if value.len() > 1024 {
        p.push(ApiError::invalid(
            &f("condition_value"),
            "at most 1024 characters",
        ));
    }
    let kind = c.condition_type.as_deref();
    let check_type = |p: &mut Problems, allowed: &[&str]| match kind {
        Some(t) if allowed.contains(&t) => {}
        Some(_) => p.push(ApiError::invalid(
            &f("condition_type"),
            format!("one of {}", allowed.join(", ")),
        )),
        None => p.push(ApiError::required(&f("condition_type"))),
    };
    match c.condition_origin.as_deref() {
        Some("param") => {
            check_type(p, &["exact", "enum", "pattern"]);
            match validate::required(&f("req_param_name"), &c.req_param_name) {
                Ok(n) => {
                    if !req_params.iter().any(|rp| rp.name.as_deref() == Some(n)) {
                        p.push(ApiError::invalid(
                            &f("req_param_name"),
                            format!("{n} is not a request parameter of the API"),
                        ));
                    }
                }
                Err(e) => p.push(e),
            }
        }
        Some("system") => match c.sys_param_name.as_deref() {
            Some("req_path" | "reqPath") => check_type(p, &["exact", "enum", "pattern"]),
            Some("req_method" | "reqMethod") => check_type(p, &["exact", "enum"]),
            Some(_) => p.push(ApiError::invalid(
                &f("sys_param_name"),
                "req_path or req_method",
            )),
            None => p.push(ApiError::required(&f("sys_param_name"))),
        },
        Some("cookie") => {
            check_type(p, &["exact", "enum", "pattern"]);
            match validate::required(&f("cookie_param_name"), &c.cookie_param_name) {
                Ok(n)
                    if n.len() <= 255
                        && n.bytes()
                            .all(|b| b.is_ascii_graphic() && b != b'=' && b != b';') => {}
                Ok(_) => p.push(ApiError::invalid(
                    &f("cookie_param_name"),
                    "a cookie name, at most 255 characters",
                )),
                Err(e) => p.push(e),
            }
        }
        Some("source") => {
            for ip in value.split(',') {
                let ip = ip.trim();
                let ok = ip.parse::<IpAddr>().is_ok()
                    || ip.split_once('/').is_some_and(|(a, m)| {
                        a.parse::<IpAddr>().is_ok() && m.parse::<u8>().is_ok_and(|m| m <= 128)
                    });
                if !ok {
                    p.push(ApiError::invalid(
                        &f("condition_value"),
                        "source: comma-separated IP addresses or CIDR blocks",
                    ));
                    break;
                }
            }
        }
        Some("frontend_authorizer") => {
            check_type(p, &["exact", "enum", "pattern"]);
            match validate::required(
                &f("frontend_authorizer_param_name"),
                &c.frontend_authorizer_param_name,
            ) {
                Ok(n) => {
                    let key = n
                        .strip_prefix(crate::authorizer::FRONTEND_CONTEXT)
                        .unwrap_or(n);
                    if !crate::authorizer::is_context_key(key) {
                        p.push(ApiError::invalid(
                            &f("frontend_authorizer_param_name"),
                            "a frontend authorizer context key",
                        ));
                    }
                }
                Err(e) => p.push(e),
            }
        }
        Some("orchestration") => {
            check_type(p, &["exact", "enum", "pattern"]);
            if let Err(e) = validate::required(&f("mapped_param_name"), &c.mapped_param_name) {
                p.push(e);
            }
        }
        Some(_) => p.push(ApiError::invalid(
            &f("condition_origin"),
            "param, source, system, cookie, frontend_authorizer or orchestration",
        )),
        None => p.push(ApiError::required(&f("condition_origin"))),
    }
    if kind == Some("pattern") {
        if value.len() > MAX_PATTERN_LEN {
            p.push(ApiError::invalid(
                &f("condition_value"),
                format!("a pattern has at most {MAX_PATTERN_LEN} characters"),
            ));
        } else if regex::RegexBuilder::new(value)
            .size_limit(1 << 20)
            .build()
            .is_err()
        {
            p.push(ApiError::invalid(
                &f("condition_value"),
                "not a valid regular expression",
            ));
        }
    }
}

/// Fills ids (policies and conditions) and the request parameter ids conditions refer to.
pub fn fill_defaults(
    https: &mut [HttpPolicy],
    mocks: &mut [MockPolicy],
    functions: &mut [FunctionPolicy],
    req_params: &[ReqParam],
) {
    let fill_conditions = |conditions: &mut Option<Vec<Condition>>| {
        for c in conditions.get_or_insert_with(Vec::new).iter_mut() {
            c.id = Some(ids::new_id());
            if c.condition_origin.as_deref() == Some("param") {
                let rp = req_params
                    .iter()
                    .find(|rp| rp.name.is_some() && rp.name == c.req_param_name);
                c.req_param_id = rp.and_then(|rp| rp.id.clone());
                c.req_param_location = rp.and_then(|rp| rp.location.clone());
            }
        }
    };
    for h in https {
        h.id = Some(ids::new_id());
        h.retry_count.get_or_insert_with(|| "-1".into());
        h.vpc_channel_status.get_or_insert(2);
        h.backend_params.get_or_insert_with(Vec::new);
        fill_conditions(&mut h.conditions);
    }
    for f in functions {
        f.id = Some(ids::new_id());
        f.network_type.get_or_insert_with(|| "V2".into());
        f.req_protocol.get_or_insert_with(|| "HTTPS".into());
        f.backend_params.get_or_insert_with(Vec::new);
        fill_conditions(&mut f.conditions);
    }
    for m in mocks {
        m.id = Some(ids::new_id());
        m.result_content.get_or_insert_with(String::new);
        m.backend_params.get_or_insert_with(Vec::new);
        fill_conditions(&mut m.conditions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Vec<ReqParam> {
        vec![serde_json::from_value(
            json!({"name": "tier", "type": "STRING", "location": "QUERY", "id": "rp1"}),
        )
        .unwrap()]
    }

    fn http(v: Value) -> HttpPolicy {
        serde_json::from_value(v).unwrap()
    }

    fn problems(https: &[HttpPolicy], mocks: &[MockPolicy], kind: &str) -> Result<(), ApiError> {
        let mut p = Problems::new();
        check(&mut p, Some(kind), https, mocks, &[], &params());
        p.into_result()
    }

    #[test]
    fn a_valid_policy_of_each_origin() {
        let ok = http(json!({"name": "gold_tier", "effect_mode": "ANY",
        "url_domain": "gold.internal:8080", "req_protocol": "HTTP", "req_method": "GET",
        "req_uri": "/gold", "timeout": 1000,
        "conditions": [
            {"condition_origin": "param", "req_param_name": "tier", "condition_type": "enum", "condition_value": "gold,platinum"},
            {"condition_origin": "source", "condition_value": "10.0.0.0/8,::1"},
            {"condition_origin": "system", "sys_param_name": "req_method", "condition_type": "exact", "condition_value": "GET"},
            {"condition_origin": "system", "sys_param_name": "req_path", "condition_type": "pattern", "condition_value": "^/v[0-9]+/"},
            {"condition_origin": "cookie", "cookie_param_name": "beta", "condition_type": "exact", "condition_value": "1"}
        ]}));
        problems(std::slice::from_ref(&ok), &[], "HTTP").unwrap();
        // A second policy with the same name, or of the wrong kind, is refused.
        assert!(problems(&[ok.clone(), ok.clone()], &[], "HTTP").is_err());
        assert!(problems(&[ok], &[], "MOCK").is_err());
    }

    #[test]
    fn bad_conditions_are_reported() {
        for cond in [
            json!({"condition_origin": "param", "req_param_name": "nope", "condition_type": "exact", "condition_value": "x"}),
            json!({"condition_origin": "param", "req_param_name": "tier", "condition_type": "regex", "condition_value": "x"}),
            json!({"condition_origin": "system", "sys_param_name": "req_method", "condition_type": "pattern", "condition_value": "G.*"}),
            json!({"condition_origin": "source", "condition_value": "10.0.0.300"}),
            json!({"condition_origin": "cookie", "cookie_param_name": "a;b", "condition_type": "exact", "condition_value": "1"}),
            json!({"condition_origin": "param", "req_param_name": "tier", "condition_type": "pattern", "condition_value": "(unclosed"}),
            json!({"condition_origin": "weather", "condition_value": "rain"}),
            json!({"condition_origin": "frontend_authorizer", "condition_type": "exact", "condition_value": "x"}),
            json!({"condition_origin": "frontend_authorizer", "frontend_authorizer_param_name": "$context.authorizer.frontend.1x", "condition_type": "exact", "condition_value": "x"}),
            json!({"condition_origin": "frontend_authorizer", "frontend_authorizer_param_name": "tier", "condition_value": "x"}),
        ] {
            let h = http(
                json!({"name": "policy_a", "effect_mode": "ALL", "url_domain": "b:80",
                "req_protocol": "HTTP", "req_method": "GET", "req_uri": "/", "timeout": 10,
                "conditions": [cond.clone()]}),
            );
            assert!(problems(&[h], &[], "HTTP").is_err(), "{cond}");
        }
        let no_conditions = http(
            json!({"name": "policy_a", "effect_mode": "ALL", "url_domain": "b:80",
            "req_protocol": "HTTP", "req_method": "GET", "req_uri": "/", "timeout": 10}),
        );
        assert!(problems(&[no_conditions], &[], "HTTP").is_err());
    }

    #[test]
    fn ids_are_filled() {
        let mut h = vec![http(json!({"name": "p1", "conditions": [
            {"condition_origin": "param", "req_param_name": "tier", "condition_type": "exact", "condition_value": "x"}]}))];
        fill_defaults(&mut h, &mut [], &mut [], &params());
        let c = &h[0].conditions.as_ref().unwrap()[0];
        assert!(h[0].id.is_some() && c.id.is_some());
        assert_eq!(c.req_param_id.as_deref(), Some("rp1"));
        assert_eq!(c.req_param_location.as_deref(), Some("QUERY"));
    }
}
