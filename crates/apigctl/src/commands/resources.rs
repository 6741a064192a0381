//! Thin wrappers for the common flow: they build the JSON and call [`super::mgmt`].

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::mgmt::{send, send_json};
use super::Ctx;
use crate::cli::{ApiCommand, ApiCreateArgs, GroupCommand, PublishArgs};

const GROUPS: &str = "/instances/{instance}/api-groups";
const APIS: &str = "/instances/{instance}/apis";

pub async fn group(ctx: &Ctx, cmd: GroupCommand) -> Result<ExitCode> {
    match cmd {
        GroupCommand::Create { name, remark } => {
            let mut body = json!({ "name": name });
            if let Some(remark) = remark {
                body["remark"] = remark.into();
            }
            send_json(ctx, "POST", GROUPS, &body).await
        }
        GroupCommand::List => send(ctx, "GET", GROUPS, &[], None).await,
    }
}

pub async fn api(ctx: &Ctx, cmd: ApiCommand) -> Result<ExitCode> {
    match cmd {
        ApiCommand::Create(args) => send_json(ctx, "POST", APIS, &api_body(&args)?).await,
        ApiCommand::List { group } => {
            let query: Vec<String> = group.map(|g| format!("group_id={g}")).into_iter().collect();
            send(ctx, "GET", APIS, &query, None).await
        }
    }
}

pub async fn publish(ctx: &Ctx, args: &PublishArgs) -> Result<ExitCode> {
    send_json(
        ctx,
        "POST",
        "/instances/{instance}/apis/action",
        &publish_body(args),
    )
    .await
}

pub async fn replicas(ctx: &Ctx) -> Result<ExitCode> {
    send(ctx, "GET", "/instances/{instance}/replicas", &[], None).await
}

/// An `ApiCreate` body: a public API with an HTTP backend called with the same method.
fn api_body(a: &ApiCreateArgs) -> Result<Value> {
    let (protocol, domain) = match a.backend.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => ("HTTP", rest),
            "https" => ("HTTPS", rest),
            _ => bail!("--backend {}: scheme must be http or https", a.backend),
        },
        None => ("HTTP", a.backend.as_str()),
    };
    let domain = domain.trim_end_matches('/');
    if domain.is_empty() || domain.contains('/') {
        bail!(
            "--backend {}: expected host:port (the path goes in --backend-path)",
            a.backend
        );
    }
    let method = a.method.to_ascii_uppercase();
    Ok(json!({
        "name": a.name,
        "type": 1,
        "req_protocol": "HTTP",
        "req_method": method,
        "req_uri": a.path,
        "match_mode": a.match_mode.to_ascii_uppercase(),
        "auth_type": a.auth.to_ascii_uppercase(),
        "backend_type": "HTTP",
        "group_id": a.group,
        "backend_api": {
            "url_domain": domain,
            "req_protocol": protocol,
            "req_method": method,
            "req_uri": a.backend_path.as_deref().unwrap_or(&a.path),
            "timeout": a.backend_timeout,
        },
    }))
}

fn publish_body(a: &PublishArgs) -> Value {
    json!({
        "action": if a.offline { "offline" } else { "online" },
        "api_id": a.api_id,
        "env_id": a.env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(backend: &str, backend_path: Option<&str>) -> ApiCreateArgs {
        ApiCreateArgs {
            group: "g1".into(),
            name: "files".into(),
            method: "get".into(),
            path: "/files".into(),
            backend: backend.into(),
            backend_path: backend_path.map(str::to_owned),
            match_mode: "swa".into(),
            auth: "none".into(),
            backend_timeout: 5000,
        }
    }

    #[test]
    fn api_create_body() {
        let body = api_body(&args("127.0.0.1:9000", Some("/"))).unwrap();
        assert_eq!(
            body,
            json!({
                "name": "files", "type": 1, "req_protocol": "HTTP", "req_method": "GET",
                "req_uri": "/files", "match_mode": "SWA", "auth_type": "NONE",
                "backend_type": "HTTP", "group_id": "g1",
                "backend_api": {"url_domain": "127.0.0.1:9000", "req_protocol": "HTTP",
                                "req_method": "GET", "req_uri": "/", "timeout": 5000}
            })
        );
        let body = api_body(&args("https://b.example:8443/", None)).unwrap();
        assert_eq!(body["backend_api"]["req_protocol"], "HTTPS");
        assert_eq!(body["backend_api"]["url_domain"], "b.example:8443");
        assert_eq!(body["backend_api"]["req_uri"], "/files");
        assert!(api_body(&args("127.0.0.1:9000/x", None)).is_err());
        assert!(api_body(&args("ftp://h:1", None)).is_err());
    }

    #[test]
    fn publish_bodies() {
        let mut a = PublishArgs {
            api_id: "a1".into(),
            env: "DEFAULT_ENVIRONMENT_RELEASE_ID".into(),
            offline: false,
        };
        assert_eq!(
            publish_body(&a),
            json!({"action": "online", "api_id": "a1", "env_id": "DEFAULT_ENVIRONMENT_RELEASE_ID"})
        );
        a.offline = true;
        assert_eq!(publish_body(&a)["action"], "offline");
    }
}
