//! What one applied snapshot becomes: the snapshot itself, its compiled route table, the indexed
//! credentials (apps, IAM credentials, token keys) and, per API, everything the request path
//! needs pre-parsed (ACLs, throttling policy, authorized apps, backend address, path template,
//! parameter specs). Built completely before it is swapped in, never modified after.
//!
//! The throttle and quota *counters* are not here: they outlive snapshots (`state::Serving`); a
//! runtime only carries each API's checked policy ([`ThrottleSpec`]) and each app's checked
//! credential quota ([`QuotaSpec`]).

use std::collections::HashMap;

use apig_policy::{ApiAcl, QuotaSpec, ThrottleSpec};

use apig_proto::{api, AuthType, Snapshot};
use apig_router::RouteTable;

use crate::auth::{ApiAuth, Credentials};
use crate::authorizer::PreparedAuthorizer;
use crate::backend_policy::PreparedPolicy;
use crate::backend_sign::BackendSigner;
use crate::channel::PreparedChannel;
use crate::function::FunctionTarget;
use crate::mapping::{ApiMapping, BackendParamSpec, HttpTarget};
use crate::mock::MockResponse;
use crate::params::{Location, ReqParamSpec};
use crate::tls::TlsCertificates;

/// One applied snapshot, ready to serve.
pub(crate) struct Runtime {
    /// The snapshot's epoch and version. The decoded snapshot itself is not kept: everything
    /// requests need is prepared below, and at 100k APIs the snapshot alone held about as much
    /// memory again.
    epoch: String,
    version: u64,
    /// The snapshot's app ids, index-aligned with `quotas`.
    app_ids: Vec<String>,
    pub table: RouteTable,
    /// Apps, IAM credentials and token keys, indexed for authentication.
    pub credentials: Credentials,
    /// Index-aligned with `snapshot.apis`.
    pub apis: Vec<PreparedApi>,
    /// Each app's credential quota; index-aligned with `snapshot.apps` (the app index
    /// authentication returns).
    pub quotas: Vec<Option<QuotaSpec>>,
    /// The load-balance channels APIs use (`Destination::Channel` indexes).
    pub channels: Vec<PreparedChannel>,
    /// Certificates of bound domains, for the HTTPS listener.
    pub tls: TlsCertificates,
    /// The custom authorizers APIs use (`PreparedApi::frontend_authorizer`, ... indexes).
    pub authorizers: Vec<PreparedAuthorizer>,
    /// SHA-256 of the snapshot's protobuf encoding.
    pub digest: [u8; 32],
}

/// Why a snapshot cannot be served; sent back to the control plane as the NACK reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PrepareError {
    #[error("route table: {0}")]
    Compile(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Throttle(String),
    #[error("app {id} ({name}): {reason}")]
    Quota {
        id: String,
        name: String,
        reason: String,
    },
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Authorizer(String),
    #[error("channel {id}: {reason}")]
    Channel { id: String, reason: String },
    #[error("api {id} ({name}): {reason}")]
    Api {
        id: String,
        name: String,
        reason: String,
    },
}

/// How an API authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    App,
    Iam,
    Authorizer,
}

/// What answers an API's requests.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Http(HttpTarget),
    Mock(MockResponse),
    Function(Box<FunctionTarget>),
}

/// One API (as published in one environment), pre-parsed.
#[derive(Debug, Clone)]
pub(crate) struct PreparedApi {
    pub id: String,
    pub name: String,
    /// The environment's name (`$context.stage`).
    pub stage: String,
    pub auth: Auth,
    /// AppCode allowed, authorized apps.
    pub auth_rules: ApiAuth,
    /// The API's access control policies (IP, DOMAIN_ID, DOMAIN).
    pub acl: ApiAcl,
    /// The API's throttling policy; `None`: the gateway-wide default limit. Boxed, like the
    /// other parts few APIs have (signature key, function target): inline they cost every API
    /// their full size.
    pub throttle: Option<Box<ThrottleSpec>>,
    /// Names of the frontend's greedy `{name+}` parameters.
    pub greedy: Vec<String>,
    pub req_params: Vec<ReqParamSpec>,
    pub backend_params: Vec<BackendParamSpec>,
    pub backend: Backend,
    /// Backend policies, in order (`backend_policy`).
    pub policies: Vec<PreparedPolicy>,
    /// The signature key bound to the API in this environment, if any.
    pub backend_sign: Option<Box<BackendSigner>>,
    /// The frontend custom authorizer (`Runtime::authorizers` index): all of the
    /// authentication with `Auth::Authorizer`, a second factor after APP or IAM.
    pub frontend_authorizer: Option<usize>,
    /// The default backend's backend authorizer.
    pub backend_authorizer: Option<usize>,
}

// === impl Runtime ===

impl Runtime {
    /// Compiles and prepares a snapshot. Any error rejects the whole snapshot: serving part of a
    /// published state would be a state nobody published.
    ///
    /// The snapshot is borrowed: freeing a large one takes a while, and the caller does it after
    /// the swap, off the path a publish waits for.
    pub(crate) fn prepare(snapshot: &Snapshot, digest: [u8; 32]) -> Result<Self, PrepareError> {
        let table =
            RouteTable::compile(snapshot).map_err(|e| PrepareError::Compile(e.to_string()))?;
        let credentials = Credentials::prepare(snapshot).map_err(PrepareError::Credentials)?;
        let channels = snapshot
            .channels
            .iter()
            .map(|c| {
                PreparedChannel::prepare(c).map_err(|reason| PrepareError::Channel {
                    id: c.id.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channel_index = |id: &str| channels.iter().position(|c| c.id == id);
        let authorizers = snapshot
            .authorizers
            .iter()
            .map(PreparedAuthorizer::prepare)
            .collect::<Result<Vec<_>, _>>()
            .map_err(PrepareError::Authorizer)?;
        let tls =
            TlsCertificates::prepare(&snapshot.certificates, &snapshot.https_redirect_domains)
                .map_err(PrepareError::Tls)?;
        let apis = snapshot
            .apis
            .iter()
            .map(|a| {
                PreparedApi::prepare(a, snapshot, &credentials, &channel_index, &authorizers)
                    .map_err(|reason| PrepareError::Api {
                        id: a.id.clone(),
                        name: a.name.clone(),
                        reason,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_shared_policies(&apis)?;
        let quotas = snapshot
            .apps
            .iter()
            .map(|app| {
                app.quota
                    .as_ref()
                    .map(QuotaSpec::prepare)
                    .transpose()
                    .map_err(|e| PrepareError::Quota {
                        id: app.id.clone(),
                        name: app.name.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            app_ids: snapshot.apps.iter().map(|app| app.id.clone()).collect(),
            epoch: snapshot.epoch.clone(),
            version: snapshot.version,
            table,
            credentials,
            apis,
            quotas,
            channels,
            tls,
            authorizers,
            digest,
        })
    }

    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Each API's id and throttling policy, in API order (for building the throttle counters).
    pub(crate) fn throttle_specs(&self) -> impl Iterator<Item = (&str, Option<&ThrottleSpec>)> {
        self.apis
            .iter()
            .map(|a| (a.id.as_str(), a.throttle.as_deref()))
    }

    /// Each app's id and credential quota, in the snapshot's app order (for building the quota
    /// counters).
    pub(crate) fn app_quotas(&self) -> impl Iterator<Item = (&str, Option<&QuotaSpec>)> {
        self.app_ids
            .iter()
            .zip(&self.quotas)
            .map(|(id, quota)| (id.as_str(), quota.as_ref()))
    }
}

/// A type-2 (shared) policy has one set of counters for all its APIs, so it must carry the same
/// numbers on each; a snapshot where it does not was compiled from inconsistent state.
fn check_shared_policies(apis: &[PreparedApi]) -> Result<(), PrepareError> {
    let mut seen: HashMap<&str, &ThrottleSpec> = HashMap::new();
    for spec in apis.iter().filter_map(|a| a.throttle.as_deref()) {
        if let Some(first) = seen.insert(&spec.policy_id, spec) {
            if first.shared != spec.shared || (spec.shared && first != spec) {
                return Err(PrepareError::Throttle(format!(
                    "throttle policy {:?} is bound with different settings on different APIs",
                    &*spec.policy_id
                )));
            }
        }
    }
    Ok(())
}

// === impl PreparedApi ===

impl PreparedApi {
    fn prepare(
        api: &apig_proto::Api,
        snapshot: &Snapshot,
        credentials: &Credentials,
        channel_index: &dyn Fn(&str) -> Option<usize>,
        authorizers: &[PreparedAuthorizer],
    ) -> Result<Self, String> {
        // An authorizer the snapshot does not carry, or of the wrong kind, refuses the snapshot:
        // running the API without it would skip a check someone configured.
        let authorizer = |id: &str, backend: bool| -> Result<Option<usize>, String> {
            if id.is_empty() {
                return Ok(None);
            }
            let i = authorizers
                .iter()
                .position(|a| a.id == id)
                .ok_or_else(|| format!("custom authorizer {id} is not in the snapshot"))?;
            match authorizers.get(i) {
                Some(a) if a.backend == backend => Ok(Some(i)),
                _ => Err(format!(
                    "custom authorizer {id} is not a {} authorizer",
                    if backend { "backend" } else { "frontend" }
                )),
            }
        };
        let frontend_authorizer = authorizer(&api.authorizer_id, false)?;
        let backend_authorizer = authorizer(&api.backend_authorizer_id, true)?;
        let auth = match AuthType::try_from(api.auth_type) {
            Ok(AuthType::None) => Auth::None,
            Ok(AuthType::App) => Auth::App,
            Ok(AuthType::Iam) => Auth::Iam,
            Ok(AuthType::Authorizer) => Auth::Authorizer,
            Err(_) => return Err(format!("unknown auth type {}", api.auth_type)),
        };
        if auth == Auth::Authorizer && frontend_authorizer.is_none() {
            return Err("AUTHORIZER authentication without an authorizer".into());
        }
        let auth_rules = match auth {
            Auth::App => credentials.api_auth(api),
            _ => ApiAuth::default(),
        };
        let stage = snapshot
            .environments
            .iter()
            .find(|e| e.id == api.env_id)
            .map_or_else(|| api.env_id.clone(), |e| e.name.clone());
        let acl = ApiAcl::prepare(&api.acls).map_err(|e| e.to_string())?;
        let throttle = api
            .throttle
            .as_ref()
            .map(|t| ThrottleSpec::prepare(t).map(Box::new))
            .transpose()
            .map_err(|e| e.to_string())?;
        let (frontend_params, greedy) = frontend_params(&api.req_uri);
        let req_params = api
            .req_params
            .iter()
            .map(ReqParamSpec::prepare)
            .collect::<Result<Vec<_>, _>>()?;
        let backend_params = api
            .backend_params
            .iter()
            .map(BackendParamSpec::prepare)
            .collect::<Result<Vec<_>, _>>()?;
        let backend = match &api.backend {
            Some(api::Backend::Http(http)) => {
                let target = HttpTarget::prepare_with(http, channel_index)?;
                check_path_sources(&target, &backend_params, &frontend_params)?;
                Backend::Http(target)
            }
            Some(api::Backend::Mock(mock)) => Backend::Mock(MockResponse::prepare(mock)?),
            Some(api::Backend::Function(f)) => {
                Backend::Function(Box::new(FunctionTarget::prepare(f)?))
            }
            None => return Err("no backend".into()),
        };
        let policies = api
            .policies
            .iter()
            .map(|p| {
                let mut policy = PreparedPolicy::prepare(p, &req_params, channel_index)?;
                policy.authorizer = authorizer(&p.authorizer_id, true)?;
                if let Backend::Http(target) = &policy.backend {
                    check_path_sources(target, &policy.backend_params, &frontend_params)
                        .map_err(|e| format!("backend policy {:?}: {e}", policy.name))?;
                }
                Ok(policy)
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            id: api.id.clone(),
            name: api.name.clone(),
            stage,
            auth,
            auth_rules,
            acl,
            throttle,
            greedy: exact(greedy),
            req_params: exact(req_params),
            backend_params: exact(backend_params),
            backend,
            policies: exact(policies),
            backend_sign: api
                .backend_sign
                .as_ref()
                .map(|s| BackendSigner::prepare(s).map(Box::new))
                .transpose()
                .map_err(|e| format!("signature key: {e}"))?,
            frontend_authorizer,
            backend_authorizer,
        })
    }

    /// Mapping with the backend parameters of the chosen backend (default or policy).
    pub(crate) fn mapping_with<'a>(
        &'a self,
        backend_params: &'a [BackendParamSpec],
    ) -> ApiMapping<'a> {
        ApiMapping {
            id: &self.id,
            name: &self.name,
            stage: &self.stage,
            greedy: &self.greedy,
            req_params: &self.req_params,
            backend_params,
        }
    }
}

/// `v` without spare capacity. Collected through `Result`, these vectors grow by doubling (four
/// slots for one parameter); at 100k APIs that slack was a large part of a replica's memory.
fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
}

/// Every `{name}` of a backend path must have a source: a PATH backend parameter or a frontend
/// path parameter of that name.
fn check_path_sources(
    target: &HttpTarget,
    backend_params: &[BackendParamSpec],
    frontend_params: &[String],
) -> Result<(), String> {
    for var in target.path.vars() {
        let has_source = backend_params
            .iter()
            .any(|bp| bp.location == Location::Path && bp.name.eq_ignore_ascii_case(var))
            || frontend_params.iter().any(|p| p.eq_ignore_ascii_case(var));
        if !has_source {
            return Err(format!(
                "backend path parameter {{{var}}} has no PATH backend parameter or frontend \
                 path parameter of that name"
            ));
        }
    }
    Ok(())
}

/// Names of the frontend template's parameters, and of the greedy ones among them. The router
/// validates the template; this only reads names.
fn frontend_params(template: &str) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut greedy = Vec::new();
    for seg in template.split('/') {
        let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            continue;
        };
        match inner.strip_suffix('+') {
            Some(name) => {
                all.push(name.to_owned());
                greedy.push(name.to_owned());
            }
            None => all.push(inner.to_owned()),
        }
    }
    (all, greedy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collected vectors keep no spare slots: with 100k APIs they would be most of the memory.
    #[test]
    fn prepared_parameter_lists_have_no_spare_capacity() {
        use apig_proto::{Api, Environment, Group, MockBackend, RequestParam};
        let snapshot = Snapshot {
            groups: vec![Group {
                id: "g".into(),
                name: "g".into(),
                domains: vec!["g.example.com".into()],
            }],
            environments: vec![Environment {
                id: "env".into(),
                name: "RELEASE".into(),
            }],
            apis: vec![Api {
                id: "a".into(),
                group_id: "g".into(),
                env_id: "env".into(),
                req_method: "GET".into(),
                req_uri: "/items/{id}".into(),
                req_params: vec![RequestParam {
                    name: "id".into(),
                    r#type: "STRING".into(),
                    required: true,
                    ..Default::default()
                }],
                backend: Some(api::Backend::Mock(MockBackend {
                    status_code: 200,
                    result_content: String::new(),
                })),
                ..Default::default()
            }],
            ..Default::default()
        };
        let rt = Runtime::prepare(&snapshot, [0; 32]).unwrap();
        let api = &rt.apis[0];
        assert_eq!(api.req_params.len(), 1);
        assert_eq!(api.req_params.capacity(), 1);
    }

    #[test]
    fn frontend_params_finds_greedy() {
        let (all, greedy) = frontend_params("/a/{id}/b/{rest+}");
        assert_eq!(all, vec!["id", "rest"]);
        assert_eq!(greedy, vec!["rest"]);
        assert_eq!(frontend_params("/plain"), (vec![], vec![]));
    }
}
