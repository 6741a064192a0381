//! FUNCTION backends (`func_info`, ApiFuncCreate). There is no FunctionGraph here: a function is
//! an HTTP(S) endpoint (an OpenFaaS or Knative function, a Lambda-style handler behind a URL),
//! named by its URL in `function_urn`. The gateway sends it a FunctionGraph-style event and maps
//! the `{statusCode, headers, body, isBase64Encoded}` answer back.

use crate::validate::{self, Problems};
use crate::ApiError;

/// The longest function URL.
pub const MAX_URL_LEN: usize = 1024;
/// The longest function timeout (ms), like other backends.
pub const MAX_TIMEOUT_MS: i64 = crate::api::MAX_BACKEND_TIMEOUT_MS;

opt_struct! {
    /// ApiFuncCreate (+ server fields in answers).
    pub struct FuncInfo {
        pub id: String,
        pub function_urn: String,
        pub remark: String,
        pub invocation_type: String,
        pub network_type: String,
        pub version: String,
        pub alias_urn: String,
        pub timeout: i64,
        pub authorizer_id: String,
        pub req_protocol: String,
        pub status: i64,
        pub register_time: String,
        pub update_time: String,
    }
}

/// Checks a function backend; fields are named `<prefix>.<field>` in errors.
pub fn check(p: &mut Problems, f: &FuncInfo, prefix: &str) {
    let field = |name: &str| format!("{prefix}.{name}");
    match validate::required(&field("function_urn"), &f.function_urn) {
        Ok(url) => {
            if url.starts_with("urn:") {
                p.push(ApiError::not_supported(format!(
                    "{}: FunctionGraph URNs (there is no FunctionGraph here; give the function's http(s) URL)",
                    field("function_urn")
                )));
            } else if let Err(why) = function_url(url) {
                p.push(ApiError::invalid(&field("function_urn"), why));
            }
        }
        Err(e) => p.push(e),
    }
    match f.invocation_type.as_deref() {
        Some("sync" | "async") => {}
        Some(_) => p.push(ApiError::invalid(
            &field("invocation_type"),
            "sync or async",
        )),
        None => p.push(ApiError::required(&field("invocation_type"))),
    }
    if let Some(n) = &f.network_type {
        p.check(validate::one_of(&field("network_type"), n, &["V1", "V2"]));
    }
    match f.timeout {
        Some(t) if (1..=MAX_TIMEOUT_MS).contains(&t) => {}
        Some(_) => p.push(ApiError::invalid(
            &field("timeout"),
            format!("1 to {MAX_TIMEOUT_MS} ms"),
        )),
        None => p.push(ApiError::required(&field("timeout"))),
    }
    match f.req_protocol.as_deref() {
        None | Some("HTTPS") => {}
        Some("GRPCS") => p.push(ApiError::not_supported(format!(
            "{} GRPCS for functions",
            field("req_protocol")
        ))),
        Some(_) => p.push(ApiError::invalid(&field("req_protocol"), "HTTPS")),
    }
    // The URL names the function, version included: a version or alias elsewhere would be
    // silently ignored.
    if f.version
        .as_deref()
        .is_some_and(|v| !v.is_empty() && v != "latest")
    {
        p.push(ApiError::not_supported(format!(
            "{}: put the version in the function URL",
            field("version")
        )));
    }
    if f.alias_urn.as_deref().is_some_and(|v| !v.is_empty()) {
        p.push(ApiError::not_supported(format!(
            "{}: put the alias in the function URL",
            field("alias_urn")
        )));
    }
    if let Some(r) = &f.remark {
        p.check(validate::max_chars(&field("remark"), r, 255));
    }
}

/// An `http://` or `https://` URL with a host, no credentials, no fragment.
pub fn function_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("at most {MAX_URL_LEN} characters"));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("an http:// or https:// URL")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("a URL with a host and no user information".into());
    }
    if url.contains('#') || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("printable ASCII without a fragment".into());
    }
    crate::api::check_url_domain(authority).map_err(|_| "a valid host[:port]".to_owned())
}

/// Fills the server-side fields.
pub fn fill_defaults(f: &mut FuncInfo) {
    f.id.get_or_insert_with(crate::ids::new_id);
    f.status.get_or_insert(1);
    f.network_type.get_or_insert_with(|| "V2".into());
    f.req_protocol.get_or_insert_with(|| "HTTPS".into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(v: serde_json::Value) -> Result<(), ApiError> {
        let f: FuncInfo = serde_json::from_value(v).unwrap();
        let mut p = Problems::new();
        check(&mut p, &f, "func_info");
        p.into_result()
    }

    #[test]
    fn urls_and_fields() {
        problems(
            json!({"function_urn": "http://faas.internal:8080/function/orders",
            "invocation_type": "sync", "timeout": 5000}),
        )
        .unwrap();
        problems(
            json!({"function_urn": "https://fn.example.com/x?y=1", "invocation_type": "async",
            "network_type": "V2", "timeout": 1, "version": "latest"}),
        )
        .unwrap();
        for bad in [
            json!({"function_urn": "ftp://x", "invocation_type": "sync", "timeout": 5}),
            json!({"function_urn": "http://user@x/", "invocation_type": "sync", "timeout": 5}),
            json!({"function_urn": "http:///nohost", "invocation_type": "sync", "timeout": 5}),
            json!({"function_urn": "http://x/", "invocation_type": "later", "timeout": 5}),
            json!({"function_urn": "http://x/", "invocation_type": "sync", "timeout": 0}),
            json!({"function_urn": "http://x/", "invocation_type": "sync"}),
        ] {
            assert_eq!(problems(bad.clone()).unwrap_err().status(), 400, "{bad}");
        }
        for unsupported in [
            json!({"function_urn": "urn:fss:eu-de:123:function:default:f:latest", "invocation_type": "sync", "timeout": 5}),
            json!({"function_urn": "http://x/", "invocation_type": "sync", "timeout": 5, "alias_urn": "a"}),
            json!({"function_urn": "http://x/", "invocation_type": "sync", "timeout": 5, "version": "v2"}),
        ] {
            assert_eq!(
                problems(unsupported.clone()).unwrap_err().status(),
                412,
                "{unsupported}"
            );
        }
    }
}
