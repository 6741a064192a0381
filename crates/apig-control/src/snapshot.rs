//! Compiles an instance's published state into the snapshot its gateway replicas run.
//!
//! The snapshot is fully resolved: environment variables are substituted and backend addresses
//! parsed here, so a replica only builds its route table. The result is checked with the same
//! router code the gateway uses before it is ever published.

use std::collections::HashMap;

use apig_model::api::{ApiSpec, BackendApi, BackendParam, ReqParam};
use apig_model::app::{App, AppAcl, AppAuth, AppCode};
use apig_model::authorizer::Authorizer;
use apig_model::backend_policy::Condition;
use apig_model::certificate::Certificate;
use apig_model::channel::{parse_http_codes, Channel};
use apig_model::domain::BoundDomain;
use apig_model::env::{substitute, Env, Variable};
use apig_model::function::FuncInfo;
use apig_model::group::Group;
use apig_model::instance::Instance;
use apig_model::orchestration::{range_bound, Rule};
use apig_model::policy::{Acl, Binding, Throttle, ThrottleSpecial};
use apig_model::project::{default_name, Project};
use apig_model::publish::{ApiVersion, Publication};
use apig_model::quota::{Quota, QuotaBinding};
use apig_model::sign::Sign;
use apig_model::{ApiError, ErrorCode};
use apig_proto as pb;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::auth::Credential;
use crate::keys;
use crate::tx::Reader;

/// A compiled snapshot without its version, and the digest that decides whether it changed.
pub struct Compiled {
    pub snapshot: pb::Snapshot,
    pub digest: String,
}

/// Builds the snapshot of `instance_id` from what `r` sees, and validates it. `token_keys` are
/// the public keys whose IAM tokens the instance's APIs accept.
pub fn compile(
    r: &(impl Reader + ?Sized),
    instance_id: &str,
    epoch: &str,
    token_keys: &[Vec<u8>],
) -> Result<Compiled, ApiError> {
    let instance: Instance = r
        .get_json(&keys::instance(instance_id))?
        .ok_or_else(|| ApiError::instance_not_found(instance_id))?;
    let mut groups: Vec<Group> = r.scan_json(&keys::groups(instance_id))?;
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    let mut envs: Vec<Env> = r.scan_json(&keys::envs(instance_id))?;
    envs.sort_by(|a, b| a.id.cmp(&b.id));
    let vars: Vec<Variable> = r.scan_json(&keys::vars(instance_id))?;
    let mut pubs: Vec<Publication> = r.scan_json(&keys::pubs(instance_id))?;
    pubs.sort_by(|a, b| (&a.api_id, &a.env_id).cmp(&(&b.api_id, &b.env_id)));

    let mut auths: Vec<AppAuth> = r.scan_json(&keys::app_auths(instance_id))?;
    auths.sort_by(|a, b| a.app_id.cmp(&b.app_id));
    let mut authorized: HashMap<(&str, &str), Vec<String>> = HashMap::new();
    for a in &auths {
        authorized
            .entry((&a.api_id, &a.env_id))
            .or_default()
            .push(a.app_id.clone());
    }
    let throttle_bindings: Vec<Binding> = r.scan_json(&keys::bindings("tbind", instance_id))?;
    let acl_bindings: Vec<Binding> = r.scan_json(&keys::bindings("abind", instance_id))?;
    let sign_bindings: Vec<Binding> = r.scan_json(&keys::bindings("sbind", instance_id))?;
    let signs: HashMap<String, Sign> = r
        .scan_json::<Sign>(&keys::signs(instance_id))?
        .into_iter()
        .map(|x| (x.id.clone(), x))
        .collect();
    let mut backend_signs: HashMap<(&str, &str), pb::BackendSign> = HashMap::new();
    for b in &sign_bindings {
        if let Some(x) = signs.get(&b.policy_id) {
            backend_signs.insert((&b.api_id, &b.env_id), compile_sign(x));
        }
    }
    let policies = compile_throttles(r, instance_id)?;
    let mut throttles: HashMap<(&str, &str), pb::Throttle> = HashMap::new();
    for b in &throttle_bindings {
        if let Some(t) = policies.get(&b.policy_id) {
            throttles.insert((&b.api_id, &b.env_id), t.clone());
        }
    }
    let acls: HashMap<String, Acl> = r
        .scan_json::<Acl>(&keys::acls(instance_id))?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let mut acl_rules: HashMap<(&str, &str), Vec<pb::AclRule>> = HashMap::new();
    for b in &acl_bindings {
        if let Some(a) = acls.get(&b.policy_id) {
            acl_rules
                .entry((&b.api_id, &b.env_id))
                .or_default()
                .push(pb::AclRule {
                    policy_id: a.id.clone(),
                    permit: a.acl_type == "PERMIT",
                    entity_type: a.entity_type.clone(),
                    values: a.values(),
                });
        }
    }
    for rules in acl_rules.values_mut() {
        rules.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
    }
    let mut var_map: HashMap<(&str, &str, &str), &str> = HashMap::new();
    for v in &vars {
        var_map.insert(
            (&v.group_id, &v.env_id, &v.variable_name),
            &v.variable_value,
        );
    }
    let rules: HashMap<String, Rule> = r
        .scan_json::<Rule>(&keys::orchestrations(instance_id))?
        .into_iter()
        .map(|x| (x.id.clone(), x))
        .collect();
    let mut apis = Vec::with_capacity(pubs.len());
    for p in &pubs {
        let version: ApiVersion = r
            .get_json(&keys::version(instance_id, &p.api_id, &p.version_id))?
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "publication {} names a missing version",
                    p.publish_id
                ))
            })?;
        let lookup = |name: &str| {
            var_map
                .get(&(version.spec.group_id(), p.env_id.as_str(), name))
                .copied()
        };
        let mut api = compile_api(&version.spec, p, &lookup)?;
        attach_orchestrations(&mut api, &version.spec, &rules)?;
        api.throttle = throttles
            .get(&(p.api_id.as_str(), p.env_id.as_str()))
            .cloned();
        api.backend_sign = backend_signs
            .get(&(p.api_id.as_str(), p.env_id.as_str()))
            .cloned();
        api.acls = acl_rules
            .get(&(p.api_id.as_str(), p.env_id.as_str()))
            .cloned()
            .unwrap_or_default();
        api.authorized_app_ids = authorized
            .get(&(p.api_id.as_str(), p.env_id.as_str()))
            .cloned()
            .unwrap_or_default();
        apis.push(api);
    }
    let channels = compile_channels(r, instance_id, &apis)?;
    let authorizers = compile_authorizers(r, instance_id, &apis)?;
    let mut bound_domains: Vec<BoundDomain> = r.scan_json(&keys::domains(instance_id))?;
    bound_domains.sort_by(|a, b| a.url_domain.cmp(&b.url_domain));
    let certificates = compile_certificates(r, &instance.project_id, &bound_domains)?;
    let apps = compile_apps(r, instance_id)?;
    let mut credentials: Vec<Credential> = r.scan_json(keys::CREDENTIALS)?;
    credentials.retain(|c| c.project_id == instance.project_id);
    let project_name = r
        .get_json::<Project>(&keys::project(&instance.project_id))?
        .map_or_else(|| default_name(&instance.project_id), |p| p.name());
    let snapshot = pb::Snapshot {
        instance_id: instance_id.to_owned(),
        epoch: epoch.to_owned(),
        version: 0,
        created_at_unix_ms: 0,
        groups: groups
            .iter()
            .map(|g| pb::Group {
                id: g.id.clone(),
                name: g.name.clone(),
                domains: std::iter::once(g.sl_domain.clone())
                    .chain(
                        bound_domains
                            .iter()
                            .filter(|d| d.group_id == g.id)
                            .map(|d| d.url_domain.clone()),
                    )
                    .collect(),
            })
            .collect(),
        environments: envs
            .iter()
            .map(|e| pb::Environment {
                id: e.id.clone(),
                name: e.name.clone(),
            })
            .collect(),
        apis,
        project_id: instance.project_id.clone(),
        apps,
        iam_credentials: credentials
            .into_iter()
            .map(|c| pb::IamCredential {
                access_key: c.access_key,
                secret_key: c.secret_key,
            })
            .collect(),
        token_keys: token_keys.to_vec(),
        project_name,
        channels,
        https_redirect_domains: bound_domains
            .iter()
            .filter(|d| d.is_http_redirect_to_https)
            .map(|d| d.url_domain.clone())
            .collect(),
        certificates,
        authorizers,
    };
    // The same compile the gateway runs: a snapshot the gateway would reject is never published.
    apig_router::RouteTable::compile(&snapshot).map_err(|e| {
        ApiError::invalid(
            "apis",
            format!("the published configuration does not compile: {e}"),
        )
    })?;
    let digest = hex::encode(Sha256::digest(snapshot.encode_to_vec()));
    Ok(Compiled { snapshot, digest })
}

/// The certificate each bound domain presents, with the CA bundle its client certificates must
/// chain to when the domain verifies them.
fn compile_certificates(
    r: &(impl Reader + ?Sized),
    project: &str,
    domains: &[BoundDomain],
) -> Result<Vec<pb::DomainCertificate>, ApiError> {
    let mut out = Vec::new();
    for d in domains {
        if let Some(id) = &d.ssl_id {
            let c: Certificate = r
                .get_json(&keys::certificate(project, id))?
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "domain {} names a missing certificate {id}",
                        d.url_domain
                    ))
                })?;
            out.push(pb::DomainCertificate {
                domain: d.url_domain.clone(),
                certificate_id: c.id,
                cert_pem: c.cert_pem,
                key_pem: c.key_pem,
                client_ca_pem: if d.verified_client_certificate_enabled {
                    c.trusted_root_ca
                } else {
                    String::new()
                },
            });
        } else if let Some(c) = &d.certificate {
            // Not yet moved to a resource (`certificates::migrate_embedded` runs on start).
            out.push(pb::DomainCertificate {
                domain: d.url_domain.clone(),
                certificate_id: c.id.clone(),
                cert_pem: c.cert_pem.clone(),
                key_pem: c.key_pem.clone(),
                client_ca_pem: String::new(),
            });
        }
    }
    Ok(out)
}

/// Throttling policies with their excluded limits, by policy id.
fn compile_throttles(
    r: &(impl Reader + ?Sized),
    instance_id: &str,
) -> Result<HashMap<String, pb::Throttle>, ApiError> {
    let throttles: Vec<Throttle> = r.scan_json(&keys::throttles(instance_id))?;
    let specials: Vec<ThrottleSpecial> = r.scan_json(&keys::specials(instance_id))?;
    let limit = |v: Option<i64>| v.map_or(0, |v| v.max(0) as u64);
    Ok(throttles
        .into_iter()
        .map(|t| {
            let mine = specials.iter().filter(|s| s.throttle_id == t.id);
            let (mut app_specials, mut user_specials) = (HashMap::new(), HashMap::new());
            for s in mine {
                let target = if s.object_type == "APP" {
                    &mut app_specials
                } else {
                    &mut user_specials
                };
                target.insert(s.object_id.clone(), s.call_limits.max(0) as u64);
            }
            let compiled = pb::Throttle {
                policy_id: t.id.clone(),
                r#type: t.throttle_type as i32,
                window_ms: t.window_ms(),
                api_limit: t.api_call_limits.max(0) as u64,
                user_limit: limit(t.user_call_limits),
                app_limit: limit(t.app_call_limits),
                ip_limit: limit(t.ip_call_limits),
                app_specials,
                user_specials,
            };
            (t.id, compiled)
        })
        .collect())
}

fn compile_apps(r: &(impl Reader + ?Sized), instance_id: &str) -> Result<Vec<pb::App>, ApiError> {
    let mut apps: Vec<App> = r.scan_json(&keys::apps(instance_id))?;
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    let codes: Vec<AppCode> = r.scan_json(&keys::app_codes(instance_id))?;
    let acls: Vec<AppAcl> = r.scan_json(&keys::app_acls(instance_id))?;
    let quotas: HashMap<String, Quota> = r
        .scan_json::<Quota>(&keys::quotas(instance_id))?
        .into_iter()
        .map(|q| (q.id.clone(), q))
        .collect();
    let quota_of: HashMap<String, String> = r
        .scan_json::<QuotaBinding>(&keys::quota_bindings(instance_id))?
        .into_iter()
        .map(|b| (b.app_id, b.app_quota_id))
        .collect();
    Ok(apps
        .into_iter()
        .map(|a| pb::App {
            app_codes: codes
                .iter()
                .filter(|c| c.app_id == a.id)
                .map(|c| c.app_code.clone())
                .collect(),
            acl: acls
                .iter()
                .find(|acl| acl.app_id == a.id)
                .map(|acl| pb::AppAcl {
                    permit: acl.app_acl_type == "PERMIT",
                    values: acl.app_acl_values.clone(),
                }),
            quota: quota_of
                .get(&a.id)
                .and_then(|q| quotas.get(q))
                .map(|q| pb::AppQuota {
                    quota_id: q.id.clone(),
                    limit: q.call_limits.max(0) as u64,
                    window_ms: q.window_ms(),
                    anchor_unix_ms: q.anchor_unix_ms(),
                }),
            id: a.id,
            name: a.name,
            app_key: a.app_key,
            app_secret: a.app_secret,
        })
        .collect())
}

fn location(s: Option<&str>) -> pb::ParamLocation {
    match s {
        Some("QUERY") => pb::ParamLocation::Query,
        Some("HEADER") => pb::ParamLocation::Header,
        _ => pb::ParamLocation::Path,
    }
}

fn req_param(rp: &ReqParam) -> pb::RequestParam {
    pb::RequestParam {
        name: rp.name.clone().unwrap_or_default(),
        location: location(rp.location.as_deref()) as i32,
        r#type: rp.param_type.clone().unwrap_or_else(|| "STRING".into()),
        required: rp.required == Some(1),
        default_value: rp.default_value.clone().unwrap_or_default(),
        validate: rp.valid_enable == Some(1),
        enumerations: rp
            .enumerations
            .as_deref()
            .map(|e| {
                e.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        min_num: rp.min_num,
        max_num: rp.max_num,
        min_size: rp.min_size,
        max_size: rp.max_size,
        pass_through: rp.pass_through != Some(2),
        orchestrations: Vec::new(),
    }
}

fn backend_param(bp: &BackendParam, req_params: &[ReqParam]) -> pb::BackendParam {
    let origin = match bp.origin.as_deref() {
        Some("CONSTANT") => pb::BackendParamOrigin::Constant,
        Some("SYSTEM") => pb::BackendParamOrigin::System,
        _ => pb::BackendParamOrigin::Request,
    };
    let req_loc = req_params
        .iter()
        .find(|rp| rp.name == bp.value)
        .map(|rp| location(rp.location.as_deref()))
        .unwrap_or(pb::ParamLocation::Query);
    pb::BackendParam {
        name: bp.name.clone().unwrap_or_default(),
        location: location(bp.location.as_deref()) as i32,
        origin: origin as i32,
        value: bp.value.clone().unwrap_or_default(),
        req_param_location: req_loc as i32,
    }
}

fn compile_sign(x: &Sign) -> pb::BackendSign {
    pb::BackendSign {
        sign_id: x.id.clone(),
        r#type: match x.sign_type.as_str() {
            "basic" => pb::SignType::Basic,
            "aes" => pb::SignType::Aes,
            _ => pb::SignType::Hmac,
        } as i32,
        key: x.sign_key.clone(),
        secret: x.sign_secret.clone(),
        algorithm: x.sign_algorithm.clone(),
    }
}

/// The channels the APIs use, with their enabled members. A published API naming a channel that
/// no longer exists fails the compile (and so the change that would cause it).
fn compile_channels(
    r: &(impl Reader + ?Sized),
    instance_id: &str,
    apis: &[pb::Api],
) -> Result<Vec<pb::Channel>, ApiError> {
    let used: Vec<&str> = apis
        .iter()
        .flat_map(|a| {
            let default = match &a.backend {
                Some(pb::api::Backend::Http(h)) => Some(h.channel_id.as_str()),
                _ => None,
            };
            let policies = a.policies.iter().filter_map(|p| match &p.backend {
                Some(pb::backend_policy::Backend::Http(h)) => Some(h.channel_id.as_str()),
                _ => None,
            });
            default.into_iter().chain(policies)
        })
        .collect();
    let channels: Vec<Channel> = load_used(used, |id| {
        let found = r.get_json(&keys::channel(instance_id, id))?;
        found.ok_or_else(|| {
            ApiError::new(
                ErrorCode::ChannelNotFound,
                format!("The VPC channel {id} does not exist (a published API uses it)"),
            )
        })
    })?;
    Ok(channels.iter().map(compile_channel).collect())
}

/// Each distinct non-empty id of `used`, loaded once, in id order: the resources published APIs
/// reference, where a missing one fails the compile.
fn load_used<'a, T>(
    mut used: Vec<&'a str>,
    mut load: impl FnMut(&'a str) -> Result<T, ApiError>,
) -> Result<Vec<T>, ApiError> {
    used.retain(|id| !id.is_empty());
    used.sort_unstable();
    used.dedup();
    used.into_iter().map(&mut load).collect()
}

fn compile_channel(c: &Channel) -> pb::Channel {
    let strategy = match c.balance_strategy {
        2 => pb::BalanceStrategy::Wlc,
        3 => pb::BalanceStrategy::SourceIp,
        4 => pb::BalanceStrategy::Uri,
        _ => pb::BalanceStrategy::Wrr,
    };
    let members = c
        .members
        .iter()
        .filter(|m| m.status == 1)
        .map(|m| pb::Member {
            id: m.id.clone(),
            host: m.host.clone(),
            port: u32::try_from(if m.port == 0 { c.port } else { m.port }).unwrap_or(0),
            weight: u32::try_from(c.effective_weight(m)).unwrap_or(0),
            backup: m.is_backup,
            group_id: m.member_group_id.clone().unwrap_or_default(),
            group_name: m
                .member_group_id
                .as_deref()
                .and_then(|g| c.group_name(g))
                .unwrap_or_default()
                .to_owned(),
        })
        .collect();
    let health = c.health.as_ref().map(|h| pb::HealthCheck {
        protocol: match h.protocol.as_str() {
            "HTTP" => pb::HealthProtocol::Http,
            "HTTPS" => pb::HealthProtocol::Https,
            _ => pb::HealthProtocol::Tcp,
        } as i32,
        path: h.path.clone(),
        method: h.method.clone(),
        port: u32::try_from(h.port).unwrap_or(0),
        healthy_threshold: u32::try_from(h.threshold_normal).unwrap_or(1),
        unhealthy_threshold: u32::try_from(h.threshold_abnormal).unwrap_or(1),
        interval_ms: u32::try_from(h.time_interval.saturating_mul(1000)).unwrap_or(u32::MAX),
        timeout_ms: u32::try_from(h.timeout.saturating_mul(1000)).unwrap_or(u32::MAX),
        accepted: parse_http_codes(&h.http_code)
            .unwrap_or_default()
            .into_iter()
            .map(|(from, to)| pb::StatusRange {
                from: from.into(),
                to: to.into(),
            })
            .collect(),
    });
    pb::Channel {
        id: c.id.clone(),
        name: c.name.clone(),
        strategy: strategy as i32,
        members,
        health,
    }
}

/// The custom authorizers the APIs use. A published API naming one that no longer exists fails
/// the compile (deleting an authorizer in use is refused before that).
fn compile_authorizers(
    r: &(impl Reader + ?Sized),
    instance_id: &str,
    apis: &[pb::Api],
) -> Result<Vec<pb::Authorizer>, ApiError> {
    let used: Vec<&str> = apis
        .iter()
        .flat_map(|a| {
            [a.authorizer_id.as_str(), a.backend_authorizer_id.as_str()]
                .into_iter()
                .chain(a.policies.iter().map(|p| p.authorizer_id.as_str()))
        })
        .collect();
    let authorizers: Vec<Authorizer> = load_used(used, |id| {
        let found = r.get_json(&keys::authorizer(instance_id, id))?;
        found.ok_or_else(|| {
            ApiError::new(
                ErrorCode::AuthorizerNotFound,
                format!("The authorizer {id} does not exist (a published API uses it)"),
            )
        })
    })?;
    let mut out = Vec::with_capacity(authorizers.len());
    for a in &authorizers {
        out.push(pb::Authorizer {
            id: a.id.clone(),
            name: a.name.clone(),
            backend: !a.is_frontend(),
            url: a.authorizer_uri.clone(),
            identities: a
                .identities
                .iter()
                .map(|i| pb::AuthorizerIdentity {
                    name: i.name.clone(),
                    location: location(Some(i.location.as_str())) as i32,
                    validation: i.validation.clone(),
                })
                .collect(),
            ttl_seconds: u32::try_from(a.ttl).unwrap_or(0),
            user_data: a.user_data.clone(),
            need_body: a.need_body,
        });
    }
    Ok(out)
}

/// Splits `host[:port]` (IPv6 in brackets) and applies the scheme's default port.
pub fn split_authority(authority: &str, https: bool) -> Result<(String, u32), String> {
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or("unbalanced [ in IPv6 address")?;
        let host = &rest[..end];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("expected :port after ]")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => n,
            _ => return Err(format!("invalid port {p}")),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// An HTTP backend (the default one or a policy's), variables substituted.
fn compile_http<'a>(
    b: &BackendApi,
    channel: Option<&str>,
    grpc: bool,
    lookup: &impl Fn(&str) -> Option<&'a str>,
    undefined: &impl Fn(String) -> ApiError,
) -> Result<pb::HttpBackend, ApiError> {
    let https = matches!(b.req_protocol.as_deref(), Some("HTTPS" | "GRPCS"));
    let (host, port) = if channel.is_some() {
        (String::new(), 0)
    } else {
        let domain =
            substitute(b.url_domain.as_deref().unwrap_or_default(), lookup).map_err(undefined)?;
        let (host, port) = split_authority(&domain, https).map_err(|why| {
            ApiError::invalid("backend_api.url_domain", format!("{domain}: {why}"))
        })?;
        // Variables are substituted only now: `#host#` may be a refused literal.
        crate::backend_address::check_address("backend_api.url_domain", &host)?;
        (host, port)
    };
    let proxy_host = b
        .vpc_channel_info
        .as_ref()
        .and_then(|v| v.vpc_channel_proxy_host.clone())
        .unwrap_or_default();
    // A gRPC backend gets the request's own path (`/package.Service/Method`); its stored path
    // is `/`.
    let path = if grpc {
        "/".to_owned()
    } else {
        substitute(b.req_uri.as_deref().unwrap_or("/"), lookup).map_err(undefined)?
    };
    let (protocol, method) = if grpc {
        (pb::BackendProtocol::Grpc, "POST".to_owned())
    } else {
        (
            pb::BackendProtocol::Http1,
            b.req_method.clone().unwrap_or_else(|| "ANY".into()),
        )
    };
    Ok(pb::HttpBackend {
        scheme: if https { "https" } else { "http" }.into(),
        host,
        port,
        channel_id: channel.unwrap_or_default().to_owned(),
        proxy_host,
        method,
        path,
        protocol: protocol as i32,
        timeout_ms: b.timeout.unwrap_or(5000).clamp(1, u32::MAX as i64) as u32,
        retry_count: b
            .retry_count
            .as_deref()
            .and_then(|r| r.parse().ok())
            .unwrap_or(-1),
    })
}

fn compile_function(f: &FuncInfo) -> pb::FunctionBackend {
    pb::FunctionBackend {
        url: f.function_urn.clone().unwrap_or_default(),
        r#async: f.invocation_type.as_deref() == Some("async"),
        timeout_ms: f.timeout.unwrap_or(5000).clamp(1, u32::MAX as i64) as u32,
    }
}

/// Fills each request parameter's orchestration rules with their current content.
fn attach_orchestrations(
    api: &mut pb::Api,
    spec: &ApiSpec,
    rules: &HashMap<String, Rule>,
) -> Result<(), ApiError> {
    for rp in spec.req_params.iter().flatten() {
        let ids = rp.orchestrations.as_deref().unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        let name = rp.name.as_deref().unwrap_or_default();
        let Some(target) = api.req_params.iter_mut().find(|p| p.name == name) else {
            continue;
        };
        for id in ids {
            let rule = rules.get(id).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::OrchestrationNotFound,
                    format!(
                        "The orchestration rule {id} used by API {} does not exist",
                        api.id
                    ),
                )
            })?;
            target.orchestrations.push(compile_rule(rule));
        }
    }
    Ok(())
}

fn compile_rule(rule: &Rule) -> pb::OrchestrationRule {
    use pb::OrchestrationStrategy as S;
    let strategy = match rule.strategy.as_str() {
        "hash" => S::Hash,
        "range" => S::Range,
        "hash_range" => S::HashRange,
        "none_value" => S::NoneValue,
        "default" => S::Default,
        "head_n" => S::HeadN,
        "tail_n" => S::TailN,
        _ => S::List,
    };
    let mapped = rule.mapped_param.clone().unwrap_or_default();
    pb::OrchestrationRule {
        id: rule.id.clone(),
        name: rule.name.clone(),
        strategy: strategy as i32,
        preprocessing: rule.is_preprocessing,
        mapped_name: mapped.mapped_param_name.unwrap_or_default(),
        mapped_location: if mapped.mapped_param_location.as_deref() == Some("query") {
            pb::ParamLocation::Query
        } else {
            pb::ParamLocation::Header
        } as i32,
        entries: rule
            .map
            .iter()
            .map(|e| {
                let range = e.map_param_range.clone().unwrap_or_default();
                pb::OrchestrationEntry {
                    values: e.map_param_list.clone().unwrap_or_default(),
                    range_start: range
                        .range_start
                        .as_deref()
                        .and_then(range_bound)
                        .unwrap_or(0),
                    range_end: range
                        .range_end
                        .as_deref()
                        .and_then(range_bound)
                        .unwrap_or(0),
                    mapped_value: e.mapped_param_value.clone().unwrap_or_default(),
                    intercept_length: u32::try_from(e.intercept_length.unwrap_or(0)).unwrap_or(0),
                }
            })
            .collect(),
    }
}

/// The API's backend policies, in order.
fn compile_policies<'a>(
    spec: &ApiSpec,
    lookup: &impl Fn(&str) -> Option<&'a str>,
    undefined: &impl Fn(String) -> ApiError,
) -> Result<Vec<pb::BackendPolicy>, ApiError> {
    let req_params = spec.req_params.as_deref().unwrap_or_default();
    let conditions = |cs: &Option<Vec<Condition>>| -> Vec<pb::PolicyCondition> {
        cs.iter()
            .flatten()
            .map(|c| {
                let origin = match c.condition_origin.as_deref() {
                    Some("source") => pb::ConditionOrigin::Source,
                    Some("system") => pb::ConditionOrigin::System,
                    Some("cookie") => pb::ConditionOrigin::Cookie,
                    Some("orchestration") => pb::ConditionOrigin::Orchestration,
                    Some("frontend_authorizer") => pb::ConditionOrigin::FrontendAuthorizer,
                    _ => pb::ConditionOrigin::Param,
                };
                let name = match origin {
                    pb::ConditionOrigin::Param => c.req_param_name.clone(),
                    pb::ConditionOrigin::System => c.sys_param_name.as_deref().map(|n| {
                        match n {
                            "reqPath" => "req_path",
                            "reqMethod" => "req_method",
                            other => other,
                        }
                        .to_owned()
                    }),
                    pb::ConditionOrigin::Cookie => c.cookie_param_name.clone(),
                    pb::ConditionOrigin::Orchestration => c.mapped_param_name.clone(),
                    pb::ConditionOrigin::FrontendAuthorizer => {
                        c.frontend_authorizer_param_name.as_deref().map(|n| {
                            n.strip_prefix(apig_model::authorizer::FRONTEND_CONTEXT)
                                .unwrap_or(n)
                                .to_owned()
                        })
                    }
                    pb::ConditionOrigin::Source => None,
                };
                let param_location = req_params
                    .iter()
                    .find(|rp| rp.name.is_some() && rp.name == c.req_param_name)
                    .map_or(pb::ParamLocation::Query, |rp| {
                        location(rp.location.as_deref())
                    });
                pb::PolicyCondition {
                    origin: origin as i32,
                    name: name.unwrap_or_default(),
                    param_location: param_location as i32,
                    r#type: match c.condition_type.as_deref() {
                        Some("enum") => pb::ConditionType::Enum,
                        Some("pattern") => pb::ConditionType::Pattern,
                        _ => pb::ConditionType::Exact,
                    } as i32,
                    value: c.condition_value.clone().unwrap_or_default(),
                }
            })
            .collect()
    };
    let params = |bps: &Option<Vec<BackendParam>>| -> Vec<pb::BackendParam> {
        bps.iter()
            .flatten()
            .map(|bp| backend_param(bp, req_params))
            .collect()
    };
    let mut out = Vec::new();
    for h in spec.policy_https.iter().flatten() {
        out.push(pb::BackendPolicy {
            id: h.id.clone().unwrap_or_default(),
            name: h.name.clone().unwrap_or_default(),
            match_all: h.effect_mode.as_deref() == Some("ALL"),
            conditions: conditions(&h.conditions),
            backend_params: params(&h.backend_params),
            authorizer_id: h.authorizer_id.clone().unwrap_or_default(),
            backend: Some(pb::backend_policy::Backend::Http(compile_http(
                &h.backend(),
                h.channel_id(),
                false,
                lookup,
                undefined,
            )?)),
        });
    }
    for f in spec.policy_functions.iter().flatten() {
        out.push(pb::BackendPolicy {
            id: f.id.clone().unwrap_or_default(),
            name: f.name.clone().unwrap_or_default(),
            match_all: f.effect_mode.as_deref() == Some("ALL"),
            conditions: conditions(&f.conditions),
            backend_params: params(&f.backend_params),
            authorizer_id: f.authorizer_id.clone().unwrap_or_default(),
            backend: Some(pb::backend_policy::Backend::Function(compile_function(
                &f.function(),
            ))),
        });
    }
    for m in spec.policy_mocks.iter().flatten() {
        out.push(pb::BackendPolicy {
            id: m.id.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            match_all: m.effect_mode.as_deref() == Some("ALL"),
            conditions: conditions(&m.conditions),
            backend_params: params(&m.backend_params),
            authorizer_id: m.authorizer_id.clone().unwrap_or_default(),
            backend: Some(pb::backend_policy::Backend::Mock(pb::MockBackend {
                status_code: 200,
                result_content: m.result_content.clone().unwrap_or_default(),
            })),
        });
    }
    Ok(out)
}

fn compile_api<'a>(
    spec: &ApiSpec,
    p: &Publication,
    lookup: &impl Fn(&str) -> Option<&'a str>,
) -> Result<pb::Api, ApiError> {
    let undefined = |name: String| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!(
                "API {} uses the environment variable #{name}# that is not defined for its group in environment {}",
                p.api_id, p.env_id
            ),
        )
    };
    let req_params = spec.req_params.as_deref().unwrap_or_default();
    let backend = match spec.backend_type.as_deref() {
        Some("MOCK") => pb::api::Backend::Mock(pb::MockBackend {
            status_code: 200,
            result_content: spec
                .mock_info
                .as_ref()
                .and_then(|m| m.result_content.clone())
                .unwrap_or_default(),
        }),
        Some("FUNCTION") => pb::api::Backend::Function(compile_function(
            &spec.func_info.clone().unwrap_or_default(),
        )),
        // HTTP and GRPC: both call an address over HTTP, in clear or TLS.
        backend_type => pb::api::Backend::Http(compile_http(
            &spec.backend_api.clone().unwrap_or_default(),
            spec.channel_id(),
            backend_type == Some("GRPC"),
            lookup,
            &undefined,
        )?),
    };
    let auth = match spec.auth_type.as_deref() {
        Some("APP") => pb::AuthType::App,
        Some("IAM") => pb::AuthType::Iam,
        Some("AUTHORIZER") => pb::AuthType::Authorizer,
        _ => pb::AuthType::None,
    };
    Ok(pb::Api {
        id: p.api_id.clone(),
        name: spec.name.clone().unwrap_or_default(),
        group_id: spec.group_id().to_owned(),
        env_id: p.env_id.clone(),
        publish_id: p.publish_id.clone(),
        version_id: p.version_id.clone(),
        req_method: spec.req_method.clone().unwrap_or_default(),
        req_uri: spec.req_uri.clone().unwrap_or_default(),
        match_mode: if spec.match_mode.as_deref() == Some("SWA") {
            pb::MatchMode::Swa
        } else {
            pb::MatchMode::Normal
        } as i32,
        auth_type: auth as i32,
        app_code_auth_type: spec
            .auth_opt
            .as_ref()
            .and_then(|o| o.app_code_auth_type.clone())
            .unwrap_or_else(|| "DISABLE".into()),
        cors: spec.cors.unwrap_or(false),
        req_protocol: spec.req_protocol.clone().unwrap_or_default(),
        req_params: req_params.iter().map(req_param).collect(),
        backend_params: spec
            .backend_params
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|bp| backend_param(bp, req_params))
            .collect(),
        authorized_app_ids: Vec::new(),
        throttle: None,
        acls: Vec::new(),
        backend_sign: None,
        policies: compile_policies(spec, lookup, &undefined)?,
        authorizer_id: spec.frontend_authorizer_id().unwrap_or_default().to_owned(),
        backend_authorizer_id: spec
            .default_backend_authorizer_id()
            .unwrap_or_default()
            .to_owned(),
        backend: Some(backend),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("Backend.local", false).unwrap(),
            ("backend.local".into(), 80)
        );
        assert_eq!(split_authority("b:8443", true).unwrap(), ("b".into(), 8443));
        assert_eq!(
            split_authority("[::1]:9000", false).unwrap(),
            ("::1".into(), 9000)
        );
        assert_eq!(split_authority("[::1]", true).unwrap(), ("::1".into(), 443));
        assert!(split_authority("b:0", false).is_err());
        assert!(split_authority("b:99999", false).is_err());
        assert!(split_authority(":80", false).is_err());
        assert!(split_authority("[::1", false).is_err());
    }
}
