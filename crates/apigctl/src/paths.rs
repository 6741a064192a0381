//! Management paths: `{instance}` templating under `/v2/{project}/apigw`, and query strings.

use anyhow::{bail, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986 unreserved characters is escaped: the result is the same on the
/// wire and in the canonical request, whatever the signer's decoder does.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The path and query of a management call.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    pub query: Option<String>,
}

/// Turns a user PATH (relative to `/v2/{project}/apigw`, possibly with `?query`) into the full
/// path, replacing `{instance}`/`{instance_id}` and `{project}`/`{project_id}`, and appends
/// the `--query` pairs. A PATH that already starts with `/v2/` is taken as absolute.
///
/// `instance` is only needed when the PATH mentions it; any other `{placeholder}` left over
/// is an error (a copied template like `/apis/{api_id}` was not filled in).
pub fn management_target(
    user_path: &str,
    project: &str,
    instance: Option<&str>,
    pairs: &[String],
) -> Result<Target> {
    let (raw_path, raw_query) = match user_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (user_path, None),
    };
    let mut path = raw_path.trim().to_owned();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let project_enc = encode(project);
    for name in ["{project}", "{project_id}"] {
        path = path.replace(name, &project_enc);
    }
    if path.contains("{instance}") || path.contains("{instance_id}") {
        let Some(instance) = instance else {
            bail!("PATH uses {{instance}} but no instance id is configured: pass --instance, set APIG_INSTANCE_ID, or use --env-file");
        };
        let enc = encode(instance);
        for name in ["{instance}", "{instance_id}"] {
            path = path.replace(name, &enc);
        }
    }
    if let Some(start) = path.find('{') {
        let end = path[start..]
            .find('}')
            .map_or(path.len(), |e| start + e + 1);
        bail!(
            "PATH has an unfilled placeholder {}: put the id in its place",
            &path[start..end]
        );
    }
    let path = if path.starts_with("/v2/") {
        path
    } else {
        format!("/v2/{project_enc}/apigw{path}")
    };
    Ok(Target {
        path,
        query: build_query(raw_query, pairs)?,
    })
}

/// Appends `k=v` pairs (percent-encoded) to an existing raw query; `None` when both are empty.
pub fn build_query(existing: Option<&str>, pairs: &[String]) -> Result<Option<String>> {
    let mut parts: Vec<String> = existing
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--query {pair:?}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("--query {pair:?}: empty key");
        }
        parts.push(format!("{}={}", encode(k), encode(v)));
    }
    Ok((!parts.is_empty()).then(|| parts.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(path: &str, instance: Option<&str>, pairs: &[&str]) -> Result<Target> {
        let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
        management_target(path, "p1", instance, &pairs)
    }

    #[test]
    fn templating() {
        assert_eq!(
            t("/instances/{instance}/api-groups", Some("i1"), &[]).unwrap(),
            Target {
                path: "/v2/p1/apigw/instances/i1/api-groups".into(),
                query: None
            }
        );
        // Copy-pasted operation paths use {instance_id}; a missing leading slash is added.
        assert_eq!(
            t("instances/{instance_id}/apis", Some("i1"), &[])
                .unwrap()
                .path,
            "/v2/p1/apigw/instances/i1/apis"
        );
        assert_eq!(
            t("/instances", None, &[]).unwrap().path,
            "/v2/p1/apigw/instances"
        );
        assert_eq!(
            t("/v2/{project}/apigw/instances/{instance}", Some("i/x"), &[])
                .unwrap()
                .path,
            "/v2/p1/apigw/instances/i%2Fx"
        );
    }

    #[test]
    fn templating_errors() {
        let e = t("/instances/{instance}/apis", None, &[]).unwrap_err();
        assert!(e.to_string().contains("--instance"), "{e}");
        let e = t("/instances/{instance}/apis/{api_id}", Some("i1"), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PATH has an unfilled placeholder {api_id}: put the id in its place"
        );
        assert!(t("/apis/{broken", Some("i1"), &[]).is_err());
    }

    #[test]
    fn query_building() {
        let target = t(
            "/instances/{instance}/apis?offset=0&limit=5",
            Some("i1"),
            &["name=a b&c", "group_id=g=1", "é=ü"],
        )
        .unwrap();
        assert_eq!(target.path, "/v2/p1/apigw/instances/i1/apis");
        assert_eq!(
            target.query.as_deref(),
            Some("offset=0&limit=5&name=a%20b%26c&group_id=g%3D1&%C3%A9=%C3%BC")
        );
        assert_eq!(
            build_query(None, &["k=".into()]).unwrap().as_deref(),
            Some("k=")
        );
        assert_eq!(build_query(Some(""), &[]).unwrap(), None);
        assert!(build_query(None, &["novalue".into()]).is_err());
        assert!(build_query(None, &["=v".into()]).is_err());
        assert_eq!(encode("a-b.c_d~e+f/g"), "a-b.c_d~e%2Bf%2Fg");
    }
}
