//! Custom authorizers (`/authorizers`, AuthorizerCreate): a function that decides whether a
//! request may pass (FRONTEND) or that vouches for it towards the backend (BACKEND). There is no
//! FunctionGraph here: like FUNCTION backends, the function is an HTTP(S) endpoint named by its
//! URL in `authorizer_uri` (semantics digest §8).

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::validate::{self, Problems};
use crate::ApiError;

/// Custom authorizers per instance (APIG's quota).
pub const MAX_AUTHORIZERS: usize = 50;
/// Identity sources per authorizer (APIG's `AUTHORIZER_IDENTITY_NUM_LIMIT` is configurable;
/// this gateway's fixed bound).
pub const MAX_IDENTITIES: usize = 10;
/// Longest cache age, seconds.
pub const MAX_TTL: i64 = 3600;
/// Longest `user_data`, characters.
pub const MAX_USER_DATA: usize = 2048;
/// Longest identity validation expression.
pub const MAX_VALIDATION_LEN: usize = 255;
/// Compiled size limit of a validation expression (the gateway uses the same).
pub const VALIDATION_SIZE_LIMIT: usize = 1 << 20;

/// `$context.authorizer.frontend.` and `.backend.` backend parameter prefixes.
pub const FRONTEND_CONTEXT: &str = "$context.authorizer.frontend.";
pub const BACKEND_CONTEXT: &str = "$context.authorizer.backend.";

/// Context keys the function may answer (and parameters may name): a letter, then letters,
/// digits, `_` and `-`.
static CONTEXT_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$").expect("static regex"));
static IDENTITY_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$").expect("static regex"));

opt_struct! {
    /// Identity: where an identity source is read from the request.
    pub struct IdentitySpec {
        pub name: String,
        pub location: String,
        pub validation: String,
    }
}

opt_struct! {
    /// AuthorizerCreate: the body of create and update.
    pub struct AuthorizerSpec {
        pub name: String,
        #[serde(rename = "type")]
        pub authorizer_kind: String,
        pub authorizer_type: String,
        pub authorizer_uri: String,
        pub network_type: String,
        pub authorizer_version: String,
        pub authorizer_alias_uri: String,
        pub identities: Vec<IdentitySpec>,
        pub ttl: i64,
        pub user_data: String,
        pub ld_api_id: String,
        pub need_body: bool,
        pub roma_app_id: String,
    }
}

/// A stored identity source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    /// HEADER or QUERY.
    pub location: String,
    /// A regular expression the value must match; empty: none.
    pub validation: String,
}

/// A stored custom authorizer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Authorizer {
    pub id: String,
    pub name: String,
    /// FRONTEND or BACKEND (`type` on the wire).
    pub kind: String,
    pub authorizer_uri: String,
    pub network_type: String,
    pub authorizer_version: String,
    pub identities: Vec<Identity>,
    pub ttl: i64,
    pub user_data: String,
    pub need_body: bool,
    pub create_time: String,
}

/// `key` when `value` is `$context.authorizer.frontend.<key>` (`frontend`) or
/// `$context.authorizer.backend.<key>`; `None` for other values.
pub fn context_param(value: &str) -> Option<(bool, &str)> {
    if let Some(key) = value.strip_prefix(FRONTEND_CONTEXT) {
        Some((true, key))
    } else {
        value.strip_prefix(BACKEND_CONTEXT).map(|key| (false, key))
    }
}

/// Whether `key` is a valid context key.
pub fn is_context_key(key: &str) -> bool {
    CONTEXT_KEY.is_match(key)
}

impl AuthorizerSpec {
    /// Checks the body, every problem at once.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("name", &self.name) {
            Ok(n) => p.check(validate::app_name(n)),
            Err(e) => p.push(e),
        }
        let kind = match validate::required("type", &self.authorizer_kind) {
            Ok(k) => {
                p.check(validate::one_of("type", k, &["FRONTEND", "BACKEND"]));
                Some(k)
            }
            Err(e) => {
                p.push(e);
                None
            }
        };
        match validate::required("authorizer_type", &self.authorizer_type) {
            Ok(t) => p.check(validate::one_of("authorizer_type", t, &["FUNC"])),
            Err(e) => p.push(e),
        }
        match validate::required("authorizer_uri", &self.authorizer_uri) {
            Ok(url) if url.starts_with("urn:") => p.push(ApiError::not_supported(
                "authorizer_uri: FunctionGraph URNs (there is no FunctionGraph here; give the \
                 function's http(s) URL)",
            )),
            Ok(url) => {
                if let Err(why) = crate::function::function_url(url) {
                    p.push(ApiError::invalid("authorizer_uri", why));
                }
            }
            Err(e) => p.push(e),
        }
        if let Some(n) = self.network_type.as_deref().filter(|n| !n.is_empty()) {
            p.check(validate::one_of("network_type", n, &["V1", "V2"]));
        }
        // As for FUNCTION backends, the URL names the function, version and alias included.
        if let Some(v) = self.authorizer_version.as_deref() {
            p.check(validate::max_chars("authorizer_version", v, 64));
            if !v.is_empty() && v != "latest" {
                p.push(ApiError::not_supported(
                    "authorizer_version other than latest: put the version in the function URL",
                ));
            }
        }
        if self
            .authorizer_alias_uri
            .as_deref()
            .is_some_and(|a| !a.is_empty())
        {
            p.push(ApiError::not_supported(
                "authorizer_alias_uri: put the alias in the function URL",
            ));
        }
        for (field, v) in [
            ("ld_api_id", &self.ld_api_id),
            ("roma_app_id", &self.roma_app_id),
        ] {
            if v.as_deref().is_some_and(|s| !s.is_empty()) {
                p.push(ApiError::not_supported(field));
            }
        }
        match self.ttl {
            None => {}
            Some(t) if (0..=MAX_TTL).contains(&t) => {}
            Some(_) => p.push(ApiError::invalid("ttl", format!("0 to {MAX_TTL} seconds"))),
        }
        if let Some(u) = &self.user_data {
            p.check(validate::max_chars("user_data", u, MAX_USER_DATA));
        }
        let identities = self.identities.as_deref().unwrap_or_default();
        self.check_identities(&mut p, identities);
        if kind == Some("BACKEND") && !identities.is_empty() {
            p.push(ApiError::invalid(
                "identities",
                "a BACKEND authorizer gets only user_data; identity sources are for FRONTEND ones",
            ));
        }
        // The identities are the cache key: caching without them would hand one caller's
        // decision to every other caller.
        if kind == Some("FRONTEND") && self.ttl.unwrap_or(0) > 0 && identities.is_empty() {
            p.push(ApiError::invalid(
                "identities",
                "a FRONTEND authorizer with a ttl above 0 needs identity sources (the cache key)",
            ));
        }
        p.into_result()
    }

    fn check_identities(&self, p: &mut Problems, identities: &[IdentitySpec]) {
        if identities.len() > MAX_IDENTITIES {
            p.push(ApiError::invalid(
                "identities",
                format!("at most {MAX_IDENTITIES} identity sources"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for id in identities {
            let location = match validate::required("identities.location", &id.location) {
                Ok(l) => {
                    p.check(validate::one_of(
                        "identities.location",
                        l,
                        &["HEADER", "QUERY"],
                    ));
                    l
                }
                Err(e) => {
                    p.push(e);
                    ""
                }
            };
            match validate::required("identities.name", &id.name) {
                Ok(n) => {
                    if !IDENTITY_NAME.is_match(n) || (location == "HEADER" && n.contains('_')) {
                        p.push(ApiError::invalid(
                            "identities.name",
                            "1 to 64 letters, digits and _.-, starting with a letter (no _ in \
                             header names)",
                        ));
                    }
                    // Header names are case-insensitive; query names are not.
                    let key = if location == "HEADER" {
                        n.to_ascii_lowercase()
                    } else {
                        n.to_owned()
                    };
                    if !seen.insert((location.to_owned(), key)) {
                        p.push(ApiError::invalid(
                            "identities.name",
                            format!("{n} is listed twice"),
                        ));
                    }
                }
                Err(e) => p.push(e),
            }
            if let Some(v) = id.validation.as_deref().filter(|v| !v.is_empty()) {
                if v.len() > MAX_VALIDATION_LEN {
                    p.push(ApiError::invalid(
                        "identities.validation",
                        format!("at most {MAX_VALIDATION_LEN} characters"),
                    ));
                } else if regex::RegexBuilder::new(v)
                    .size_limit(VALIDATION_SIZE_LIMIT)
                    .build()
                    .is_err()
                {
                    p.push(ApiError::invalid(
                        "identities.validation",
                        "not a valid regular expression",
                    ));
                }
            }
        }
    }

    /// The stored authorizer (after [`AuthorizerSpec::validate`]).
    pub fn into_authorizer(self, id: String, create_time: String) -> Authorizer {
        Authorizer {
            id,
            name: self.name.unwrap_or_default(),
            kind: self.authorizer_kind.unwrap_or_default(),
            authorizer_uri: self.authorizer_uri.unwrap_or_default(),
            network_type: self
                .network_type
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "V1".into()),
            authorizer_version: self.authorizer_version.unwrap_or_default(),
            identities: self
                .identities
                .unwrap_or_default()
                .into_iter()
                .map(|i| Identity {
                    name: i.name.unwrap_or_default(),
                    location: i.location.unwrap_or_default(),
                    validation: i.validation.unwrap_or_default(),
                })
                .collect(),
            ttl: self.ttl.unwrap_or(0),
            user_data: self.user_data.unwrap_or_default(),
            need_body: self.need_body.unwrap_or(false),
            create_time,
        }
    }
}

impl Authorizer {
    pub fn is_frontend(&self) -> bool {
        self.kind == "FRONTEND"
    }

    /// AuthorizerResp.
    pub fn to_json(&self) -> Value {
        let identities: Vec<Value> = self
            .identities
            .iter()
            .map(|i| {
                let mut v = json!({"name": i.name, "location": i.location});
                if !i.validation.is_empty() {
                    v["validation"] = i.validation.clone().into();
                }
                v
            })
            .collect();
        json!({
            "id": self.id, "name": self.name, "type": self.kind, "authorizer_type": "FUNC",
            "authorizer_uri": self.authorizer_uri, "network_type": self.network_type,
            "authorizer_version": self.authorizer_version, "authorizer_alias_uri": "",
            "identities": identities, "ttl": self.ttl, "user_data": self.user_data,
            "ld_api_id": "", "need_body": self.need_body, "create_time": self.create_time,
            "roma_app_id": "", "roma_app_name": "",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<(), ApiError> {
        serde_json::from_value::<AuthorizerSpec>(v)
            .unwrap()
            .validate()
    }

    fn base() -> Value {
        json!({"name": "auth_demo", "type": "FRONTEND", "authorizer_type": "FUNC",
               "authorizer_uri": "http://127.0.0.1:9000/authorize"})
    }

    fn with(patch: Value) -> Value {
        let mut v = base();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn valid_bodies() {
        check(base()).unwrap();
        check(with(json!({"ttl": 60, "identities": [
            {"name": "X-Token", "location": "HEADER", "validation": "^[a-z0-9]{8,}$"},
            {"name": "user", "location": "QUERY"}],
            "user_data": "tenant-a", "need_body": true, "network_type": "V2",
            "authorizer_version": "latest"})))
        .unwrap();
        check(with(json!({"type": "BACKEND", "ttl": 30}))).unwrap();
        check(with(json!({"name": "认证_1"}))).unwrap();
    }

    #[test]
    fn refusals_name_the_problem() {
        for (bad, field) in [
            (with(json!({"name": "ab"})), "name"),
            (with(json!({"name": "1abc"})), "name"),
            (with(json!({"type": "SIDEWAYS"})), "type"),
            (with(json!({"authorizer_type": "LD"})), "authorizer_type"),
            (
                with(json!({"authorizer_uri": "ftp://x/"})),
                "authorizer_uri",
            ),
            (
                with(json!({"authorizer_uri": "http://u@x/"})),
                "authorizer_uri",
            ),
            (with(json!({"ttl": 3601})), "ttl"),
            (with(json!({"ttl": -1})), "ttl"),
            (with(json!({"network_type": "V3"})), "network_type"),
            (
                with(json!({"user_data": "x".repeat(MAX_USER_DATA + 1)})),
                "user_data",
            ),
            (
                with(json!({"identities": [{"name": "X-T", "location": "BODY"}]})),
                "location",
            ),
            (
                with(json!({"identities": [{"name": "x_t", "location": "HEADER"}]})),
                "identities.name",
            ),
            (
                with(json!({"identities": [{"name": "X-T", "location": "HEADER"},
                {"name": "x-t", "location": "HEADER"}]})),
                "listed twice",
            ),
            (
                with(
                    json!({"identities": [{"name": "t", "location": "QUERY", "validation": "("}]}),
                ),
                "validation",
            ),
            (with(json!({"ttl": 10})), "identities"),
            (
                with(
                    json!({"type": "BACKEND", "identities": [{"name": "t", "location": "QUERY"}]}),
                ),
                "identities",
            ),
        ] {
            let e = check(bad.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.message.contains(field), "{bad}: {}", e.message);
        }
        let many: Vec<Value> = (0..=MAX_IDENTITIES)
            .map(|i| json!({"name": format!("q{i}"), "location": "QUERY"}))
            .collect();
        assert!(check(with(json!({ "identities": many }))).is_err());
        for missing in ["name", "type", "authorizer_type", "authorizer_uri"] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(missing);
            assert_eq!(check(v).unwrap_err().code.code(), "APIG.2001", "{missing}");
        }
    }

    #[test]
    fn functiongraph_only_fields_are_412() {
        for v in [
            with(json!({"authorizer_uri": "urn:fss:eu-de:123:function:default:auth:latest"})),
            with(json!({"authorizer_alias_uri": "urn:fss:eu-de:123:function:default:auth:!v1"})),
            with(json!({"authorizer_version": "v1"})),
            with(json!({"ld_api_id": "abc"})),
        ] {
            assert_eq!(check(v.clone()).unwrap_err().status(), 412, "{v}");
        }
    }

    #[test]
    fn stored_form_and_answer() {
        let spec: AuthorizerSpec = serde_json::from_value(with(json!({
            "ttl": 5, "identities": [{"name": "X-Token", "location": "HEADER"}]})))
        .unwrap();
        let a = spec.into_authorizer("id1".into(), "t".into());
        assert!(a.is_frontend());
        assert_eq!(a.network_type, "V1");
        let v = a.to_json();
        assert_eq!(v["type"], "FRONTEND");
        assert_eq!(v["authorizer_type"], "FUNC");
        assert_eq!(v["identities"][0]["name"], "X-Token");
        assert_eq!(v["ttl"], 5);
        assert_eq!(v["need_body"], false);
    }

    #[test]
    fn context_parameters() {
        assert_eq!(
            context_param("$context.authorizer.frontend.user"),
            Some((true, "user"))
        );
        assert_eq!(
            context_param("$context.authorizer.backend.sig"),
            Some((false, "sig"))
        );
        assert_eq!(context_param("$context.appId"), None);
        assert!(is_context_key("user_id-2"));
        assert!(!is_context_key("2user"));
        assert!(!is_context_key("a b"));
        assert!(!is_context_key(""));
    }
}
