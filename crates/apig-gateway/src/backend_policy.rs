//! Backend policies: per-request choice of the backend. Policies are tried in order; the first
//! whose conditions hold (all of them with `effect_mode` ALL, one with ANY) gives the backend and
//! its backend parameters; when none does, the API's default backend serves.
//!
//! Conditions read the request after parameter resolution (a request parameter's value is its
//! resolved one, defaults included; an orchestrated parameter's is the orchestration's result),
//! the client IP (`client_ip`), the canonical path, the method or a cookie. Patterns are RE2-style regular expressions (the `regex` crate: linear time, no
//! backtracking blow-up), compiled once per snapshot with a size limit.

use std::net::IpAddr;

use apig_policy::IpAcl;
use apig_proto::{backend_policy, BackendPolicy, ConditionOrigin, ConditionType, PolicyCondition};
use http::header::COOKIE;
use http::HeaderMap;
use regex::{Regex, RegexBuilder};

use crate::authorizer::AuthContext;
use crate::function::FunctionTarget;
use crate::mapping::{BackendParamSpec, HttpTarget};
use crate::mock::MockResponse;
use crate::params::{ReqParamSpec, Resolved};
use crate::runtime::Backend;

/// Compiled size limit of one pattern.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// One backend policy, prepared.
#[derive(Debug, Clone)]
pub(crate) struct PreparedPolicy {
    pub name: String,
    match_all: bool,
    conditions: Vec<PreparedCondition>,
    pub backend_params: Vec<BackendParamSpec>,
    pub backend: Backend,
    /// The policy backend's backend authorizer (`Runtime::authorizers` index), set by
    /// `PreparedApi::prepare`.
    pub authorizer: Option<usize>,
}

#[derive(Debug, Clone)]
struct PreparedCondition {
    subject: Subject,
    test: Test,
}

/// What a condition looks at.
#[derive(Debug, Clone)]
enum Subject {
    /// A request parameter, by index in the API's request parameters.
    Param(usize),
    Source(IpAcl),
    Path,
    Method,
    Cookie(String),
    /// The parameter orchestration produced, by its mapped name.
    Orchestrated(String),
    /// A key of the frontend authorizer's context.
    FrontendAuthorizer(String),
}

#[derive(Debug, Clone)]
enum Test {
    Exact(String),
    Enum(Vec<String>),
    Pattern(Regex),
    /// Source conditions carry their test in the subject.
    Source,
}

/// What conditions read of one request.
pub(crate) struct PolicyInput<'a> {
    pub resolved: &'a Resolved<'a>,
    pub client_ip: IpAddr,
    pub path: &'a str,
    pub method: &'a str,
    pub headers: &'a HeaderMap,
    /// The frontend authorizer's context, when one ran.
    pub authorizer: Option<&'a AuthContext>,
}

impl PreparedPolicy {
    pub(crate) fn prepare(
        p: &BackendPolicy,
        req_params: &[ReqParamSpec],
        channel_index: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<Self, String> {
        let fail = |why: String| format!("backend policy {:?}: {why}", p.name);
        let conditions = p
            .conditions
            .iter()
            .map(|c| prepare_condition(c, req_params))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        if conditions.is_empty() {
            return Err(fail("no conditions".into()));
        }
        let backend_params = p
            .backend_params
            .iter()
            .map(BackendParamSpec::prepare)
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let backend = match &p.backend {
            Some(backend_policy::Backend::Http(h)) => {
                Backend::Http(HttpTarget::prepare_with(h, channel_index).map_err(fail)?)
            }
            Some(backend_policy::Backend::Mock(m)) => {
                Backend::Mock(MockResponse::prepare(m).map_err(fail)?)
            }
            Some(backend_policy::Backend::Function(f)) => {
                Backend::Function(Box::new(FunctionTarget::prepare(f).map_err(fail)?))
            }
            None => return Err(fail("no backend".into())),
        };
        Ok(Self {
            name: p.name.clone(),
            match_all: p.match_all,
            conditions,
            backend_params,
            backend,
            authorizer: None,
        })
    }

    /// Whether this policy takes the request.
    pub(crate) fn matches(&self, input: &PolicyInput<'_>) -> bool {
        let mut results = self.conditions.iter().map(|c| c.holds(input));
        if self.match_all {
            results.all(|r| r)
        } else {
            results.any(|r| r)
        }
    }
}

/// The first policy that takes the request, if any.
pub(crate) fn select<'p>(
    policies: &'p [PreparedPolicy],
    input: &PolicyInput<'_>,
) -> Option<&'p PreparedPolicy> {
    policies.iter().find(|p| p.matches(input))
}

fn prepare_condition(
    c: &PolicyCondition,
    req_params: &[ReqParamSpec],
) -> Result<PreparedCondition, String> {
    let origin = ConditionOrigin::try_from(c.origin)
        .map_err(|_| format!("unknown condition origin {}", c.origin))?;
    let subject = match origin {
        ConditionOrigin::Param => Subject::Param(
            req_params
                .iter()
                .position(|rp| rp.name.eq_ignore_ascii_case(&c.name))
                .ok_or_else(|| format!("condition on unknown request parameter {:?}", c.name))?,
        ),
        ConditionOrigin::Source => {
            let values: Vec<String> = c.value.split(',').map(|v| v.trim().to_owned()).collect();
            let acl = IpAcl::parse(true, &values).map_err(|e| e.to_string())?;
            return Ok(PreparedCondition {
                subject: Subject::Source(acl),
                test: Test::Source,
            });
        }
        ConditionOrigin::System => match c.name.as_str() {
            "req_path" => Subject::Path,
            "req_method" => Subject::Method,
            other => return Err(format!("unknown system parameter {other:?}")),
        },
        ConditionOrigin::Orchestration => {
            if c.name.is_empty() {
                return Err("orchestration condition without a mapped parameter name".into());
            }
            Subject::Orchestrated(c.name.clone())
        }
        ConditionOrigin::FrontendAuthorizer => {
            if c.name.is_empty() {
                return Err("frontend_authorizer condition without a context key".into());
            }
            Subject::FrontendAuthorizer(c.name.clone())
        }
        ConditionOrigin::Cookie => {
            if c.name.is_empty() {
                return Err("cookie condition without a cookie name".into());
            }
            Subject::Cookie(c.name.clone())
        }
    };
    let test = match ConditionType::try_from(c.r#type) {
        Ok(ConditionType::Exact) => Test::Exact(c.value.clone()),
        Ok(ConditionType::Enum) => {
            Test::Enum(c.value.split(',').map(|v| v.trim().to_owned()).collect())
        }
        Ok(ConditionType::Pattern) => Test::Pattern(
            RegexBuilder::new(&c.value)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("pattern {:?}: {e}", c.value))?,
        ),
        Err(_) => return Err(format!("unknown condition type {}", c.r#type)),
    };
    Ok(PreparedCondition { subject, test })
}

impl PreparedCondition {
    fn holds(&self, input: &PolicyInput<'_>) -> bool {
        let value: Option<&str> = match &self.subject {
            Subject::Source(acl) => return acl.allows(input.client_ip),
            Subject::Param(i) => input.resolved.values.get(*i).and_then(|v| v.as_deref()),
            Subject::Path => Some(input.path),
            Subject::Method => Some(input.method),
            Subject::Cookie(name) => cookie(input.headers, name),
            // Keys are case-sensitive (APIG: names must match exactly).
            Subject::FrontendAuthorizer(key) => input.authorizer.and_then(|c| c.get(key)),
            Subject::Orchestrated(name) => input
                .resolved
                .orchestrated
                .as_ref()
                .filter(|o| o.name.eq_ignore_ascii_case(name))
                .map(|o| o.value.as_str()),
        };
        let Some(value) = value else {
            return false;
        };
        match &self.test {
            Test::Exact(want) => value == want,
            Test::Enum(list) => list.iter().any(|w| w == value),
            Test::Pattern(re) => re.is_match(value),
            Test::Source => false,
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_proto::{MockBackend, ParamLocation, RequestParam};
    use http::HeaderValue;
    use std::borrow::Cow;

    fn cond(
        origin: ConditionOrigin,
        name: &str,
        ty: ConditionType,
        value: &str,
    ) -> PolicyCondition {
        PolicyCondition {
            origin: origin as i32,
            name: name.into(),
            param_location: ParamLocation::Query as i32,
            r#type: ty as i32,
            value: value.into(),
        }
    }

    fn policy(match_all: bool, conditions: Vec<PolicyCondition>) -> PreparedPolicy {
        let params = vec![ReqParamSpec::prepare(&RequestParam {
            name: "tier".into(),
            location: ParamLocation::Query as i32,
            r#type: "STRING".into(),
            ..Default::default()
        })
        .unwrap()];
        PreparedPolicy::prepare(
            &BackendPolicy {
                name: "p".into(),
                match_all,
                conditions,
                backend: Some(backend_policy::Backend::Mock(MockBackend {
                    status_code: 200,
                    result_content: "policy".into(),
                })),
                ..Default::default()
            },
            &params,
            &|_| None,
        )
        .unwrap()
    }

    fn check(
        p: &PreparedPolicy,
        tier: Option<&str>,
        ip: &str,
        path: &str,
        method: &str,
        cookie: Option<&str>,
    ) -> bool {
        let resolved = Resolved {
            values: vec![tier.map(Cow::Borrowed)],
            defaulted: vec![false],
            orchestrated: None,
        };
        let mut headers = HeaderMap::new();
        if let Some(c) = cookie {
            headers.insert(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        p.matches(&PolicyInput {
            resolved: &resolved,
            client_ip: ip.parse().unwrap(),
            path,
            method,
            headers: &headers,
            authorizer: None,
        })
    }

    #[test]
    fn each_origin_and_type() {
        use ConditionOrigin::*;
        use ConditionType::*;
        let p = policy(true, vec![cond(Param, "tier", Enum, "gold, platinum")]);
        assert!(check(&p, Some("gold"), "1.1.1.1", "/", "GET", None));
        assert!(check(&p, Some("platinum"), "1.1.1.1", "/", "GET", None));
        assert!(!check(&p, Some("silver"), "1.1.1.1", "/", "GET", None));
        assert!(
            !check(&p, None, "1.1.1.1", "/", "GET", None),
            "absent parameter"
        );

        let p = policy(
            true,
            vec![cond(Source, "", Exact, "10.0.0.0/8, 2001:db8::1")],
        );
        assert!(check(&p, None, "10.1.2.3", "/", "GET", None));
        assert!(check(&p, None, "2001:db8::1", "/", "GET", None));
        assert!(!check(&p, None, "11.0.0.1", "/", "GET", None));

        let p = policy(
            true,
            vec![cond(System, "req_path", Pattern, "^/v[0-9]+/orders")],
        );
        assert!(check(&p, None, "1.1.1.1", "/v2/orders/7", "GET", None));
        assert!(!check(&p, None, "1.1.1.1", "/orders", "GET", None));

        let p = policy(true, vec![cond(System, "req_method", Exact, "POST")]);
        assert!(check(&p, None, "1.1.1.1", "/", "POST", None));
        assert!(!check(&p, None, "1.1.1.1", "/", "GET", None));

        let p = policy(true, vec![cond(Cookie, "beta", Exact, "1")]);
        assert!(check(&p, None, "1.1.1.1", "/", "GET", Some("a=b; beta=1")));
        assert!(!check(&p, None, "1.1.1.1", "/", "GET", Some("beta=0")));
        assert!(!check(&p, None, "1.1.1.1", "/", "GET", None));
    }

    #[test]
    fn all_versus_any() {
        use ConditionOrigin::*;
        use ConditionType::*;
        let conditions = vec![
            cond(Param, "tier", Exact, "gold"),
            cond(System, "req_method", Exact, "POST"),
        ];
        let all = policy(true, conditions.clone());
        let any = policy(false, conditions);
        assert!(!check(&all, Some("gold"), "1.1.1.1", "/", "GET", None));
        assert!(check(&any, Some("gold"), "1.1.1.1", "/", "GET", None));
        assert!(check(&all, Some("gold"), "1.1.1.1", "/", "POST", None));
        assert!(!check(&any, Some("silver"), "1.1.1.1", "/", "GET", None));
        // First match wins.
        let first = policy(false, vec![cond(System, "req_method", Exact, "GET")]);
        let second = policy(false, vec![cond(System, "req_method", Enum, "GET,POST")]);
        let list = [first, second];
        let resolved = Resolved {
            values: vec![None],
            defaulted: vec![false],
            orchestrated: None,
        };
        let input = PolicyInput {
            resolved: &resolved,
            client_ip: "1.1.1.1".parse().unwrap(),
            path: "/",
            method: "GET",
            headers: &HeaderMap::new(),
            authorizer: None,
        };
        assert!(std::ptr::eq(select(&list, &input).unwrap(), &list[0]));
    }

    #[test]
    fn unusable_conditions_refuse_the_snapshot() {
        let params: Vec<ReqParamSpec> = Vec::new();
        for c in [
            cond(ConditionOrigin::Param, "missing", ConditionType::Exact, "x"),
            cond(
                ConditionOrigin::System,
                "req_host",
                ConditionType::Exact,
                "x",
            ),
            cond(ConditionOrigin::Param, "x", ConditionType::Pattern, "("),
            cond(
                ConditionOrigin::Source,
                "",
                ConditionType::Exact,
                "not-an-ip",
            ),
        ] {
            let p = BackendPolicy {
                name: "p".into(),
                conditions: vec![c],
                backend: Some(backend_policy::Backend::Mock(MockBackend::default())),
                ..Default::default()
            };
            assert!(PreparedPolicy::prepare(&p, &params, &|_| None).is_err());
        }
    }

    #[test]
    fn frontend_authorizer_conditions_read_the_context() {
        let p = policy(
            true,
            vec![cond(
                ConditionOrigin::FrontendAuthorizer,
                "tier",
                ConditionType::Exact,
                "gold",
            )],
        );
        let resolved = Resolved {
            values: vec![None],
            defaulted: vec![false],
            orchestrated: None,
        };
        let headers = HeaderMap::new();
        let input = |authorizer| PolicyInput {
            resolved: &resolved,
            client_ip: "1.1.1.1".parse().unwrap(),
            path: "/",
            method: "GET",
            headers: &headers,
            authorizer,
        };
        let gold = crate::authorizer::tests::context(&[("tier", "gold")]);
        let silver = crate::authorizer::tests::context(&[("tier", "silver")]);
        let other_case = crate::authorizer::tests::context(&[("Tier", "gold")]);
        assert!(p.matches(&input(Some(&gold))));
        assert!(!p.matches(&input(Some(&silver))));
        assert!(!p.matches(&input(Some(&other_case))));
        assert!(!p.matches(&input(None)));
    }
}
