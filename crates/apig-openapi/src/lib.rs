//! OpenAPI import and export of API definitions, as APIG does it (`ImportApiDefinitionsV2`,
//! `ExportApiDefinitionsV2`): Swagger 2.0 and OpenAPI 3.0, JSON or YAML, with APIG's
//! `x-apigateway-*` extensions for what OpenAPI cannot say (authentication, backends, backend
//! policies, throttling and access control policies).
//!
//! Pure: bytes in, [`ApiSpec`]s out and back. The control plane resolves names against its
//! store (channels, policies), validates every API with the same code as `CreateApiV2`, and
//! writes. Nothing here trusts the document: [`parse_document`] bounds size, nesting and
//! alias expansion, and every field is checked by shape before it reaches the model.

mod export;
mod import;
mod parse;
mod value;

use std::collections::BTreeMap;

use apig_model::api::ApiSpec;
use apig_model::{ApiError, ErrorCode};

pub use export::{export, render, ExportOptions};
pub use import::{import, ImportOptions};
pub use parse::{parse_document, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES};

/// Most APIs one import may define (APIG's limit per import).
pub const MAX_APIS: usize = 300;

/// Why a whole document is refused (nothing of it is imported).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImportError {
    #[error("the document is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the {format} document cannot be parsed: {why}")]
    Syntax { format: &'static str, why: String },
    #[error("the document is refused: {0}")]
    Hostile(&'static str),
    #[error("not a Swagger 2.0 or OpenAPI 3.0 document: {0}")]
    NotOpenApi(String),
    #[error("the document defines {count} APIs; at most {MAX_APIS} may be imported at once")]
    TooManyApis { count: usize },
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        let code = match e {
            ImportError::TooLarge { .. } => ErrorCode::BodyTooLarge,
            _ => ErrorCode::InvalidParameter,
        };
        ApiError::new(
            code,
            format!("Invalid parameter value,parameterName:file_name. {e}"),
        )
    }
}

/// The OpenAPI version of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OasVersion {
    Swagger2,
    OpenApi3,
}

/// `x-apigateway-ratelimits.<name>`: a request throttling policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub api_limit: i64,
    pub user_limit: Option<i64>,
    pub app_limit: Option<i64>,
    pub ip_limit: Option<i64>,
    pub interval: i64,
    /// SECOND, MINUTE, HOUR or DAY.
    pub unit: String,
    /// Shared among the APIs it is bound to (policy type 2).
    pub shared: bool,
    pub special: Vec<SpecialLimit>,
}

/// An excluded limit of a rate limit: an app or a user (project) with its own limit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpecialLimit {
    /// APP or USER.
    pub kind: String,
    pub limit: i64,
    /// The app id or the project id.
    pub instance: String,
}

/// `x-apigateway-access-controls.<name>`: an access control policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessControl {
    /// PERMIT or DENY.
    pub acl_type: String,
    /// IP, DOMAIN or DOMAIN_ID.
    pub entity_type: String,
    /// Comma-separated values.
    pub value: String,
}

/// One API of a document: its definition (without `group_id`; HTTP-VPC backends name their
/// channel by *name* in `vpc_channel_info.vpc_channel_id`, see [`map_channels`]) and the
/// policies it refers to by name.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiDefinition {
    pub spec: ApiSpec,
    pub ratelimit: Option<String>,
    pub access_control: Option<String>,
}

/// An operation of the document, as APIG's answers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub method: String,
    pub path: String,
}

/// An operation that could not be converted, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub operation: Operation,
    pub error: ApiError,
}

/// What a document defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Definitions {
    /// `info.title`: the name of a group created for the import.
    pub title: String,
    pub description: String,
    pub apis: Vec<(Operation, ApiDefinition)>,
    pub ratelimits: BTreeMap<String, RateLimit>,
    pub access_controls: BTreeMap<String, AccessControl>,
}

impl Definitions {
    /// Drops the policy definitions no API refers to (after APIs were removed).
    pub fn prune_policies(&mut self) {
        let used = |f: fn(&ApiDefinition) -> &Option<String>, name: &String| {
            self.apis.iter().any(|(_, d)| f(d).as_ref() == Some(name))
        };
        let ratelimits = std::mem::take(&mut self.ratelimits);
        let access_controls = std::mem::take(&mut self.access_controls);
        let ratelimits = ratelimits
            .into_iter()
            .filter(|(n, _)| used(|d| &d.ratelimit, n))
            .collect();
        let access_controls = access_controls
            .into_iter()
            .filter(|(n, _)| used(|d| &d.access_control, n))
            .collect();
        self.ratelimits = ratelimits;
        self.access_controls = access_controls;
    }
}

/// The result of converting a document: what converted, what did not and why, and what was
/// skipped (operations APIG does not import).
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub definitions: Definitions,
    pub failures: Vec<Failure>,
    pub ignored: Vec<Operation>,
}

/// Rewrites every channel reference of an API (its backend's and its backend policies'):
/// import maps channel names to ids, export ids to names.
pub fn map_channels(
    spec: &mut ApiSpec,
    mut f: impl FnMut(&str) -> Result<String, ApiError>,
) -> Result<(), ApiError> {
    let mut rewrite = |status: Option<i64>,
                       info: &mut Option<apig_model::api::VpcChannelInfo>|
     -> Result<(), ApiError> {
        if status != Some(1) {
            return Ok(());
        }
        if let Some(id) = info.as_mut().and_then(|i| i.vpc_channel_id.as_mut()) {
            *id = f(id)?;
        }
        Ok(())
    };
    if let Some(b) = &mut spec.backend_api {
        rewrite(b.vpc_channel_status, &mut b.vpc_channel_info)?;
    }
    for p in spec.policy_https.iter_mut().flatten() {
        rewrite(p.vpc_channel_status, &mut p.vpc_channel_info)?;
    }
    Ok(())
}

/// The part of a stored definition that OpenAPI carries, without the ids and times the
/// server assigns: two APIs with equal `comparable` forms export to the same document.
pub fn comparable(spec: &ApiSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    strip_server_fields(&mut v);
    if let Some(m) = v.as_object_mut() {
        m.remove("group_id");
    }
    v
}

fn strip_server_fields(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for k in [
                "id",
                "req_param_id",
                "register_time",
                "update_time",
                "status",
            ] {
                m.remove(k);
            }
            for child in m.values_mut() {
                strip_server_fields(child);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_server_fields),
        _ => {}
    }
}

impl RateLimit {
    /// The throttling policy body (ThrottleBaseInfo) this rate limit creates.
    pub fn to_spec(&self, name: &str) -> apig_model::policy::ThrottleSpec {
        apig_model::policy::ThrottleSpec {
            name: Some(name.to_owned()),
            api_call_limits: Some(self.api_limit),
            user_call_limits: self.user_limit,
            app_call_limits: self.app_limit,
            ip_call_limits: self.ip_limit,
            time_interval: Some(self.interval),
            time_unit: Some(self.unit.clone()),
            throttle_type: Some(if self.shared { 2 } else { 1 }),
            ..Default::default()
        }
    }

    /// The excluded limits as ThrottleSpecialCreate bodies.
    pub fn special_specs(&self) -> Vec<apig_model::policy::SpecialSpec> {
        self.special
            .iter()
            .map(|s| apig_model::policy::SpecialSpec {
                object_type: Some(s.kind.clone()),
                object_id: Some(s.instance.clone()),
                call_limits: Some(s.limit),
            })
            .collect()
    }

    pub fn from_throttle(
        t: &apig_model::policy::Throttle,
        specials: &[apig_model::policy::ThrottleSpecial],
    ) -> Self {
        let mut special: Vec<SpecialLimit> = specials
            .iter()
            .map(|s| SpecialLimit {
                kind: s.object_type.clone(),
                limit: s.call_limits,
                instance: s.object_id.clone(),
            })
            .collect();
        special.sort();
        RateLimit {
            api_limit: t.api_call_limits,
            user_limit: t.user_call_limits,
            app_limit: t.app_call_limits,
            ip_limit: t.ip_call_limits,
            interval: t.time_interval,
            unit: t.time_unit.clone(),
            shared: t.throttle_type == 2,
            special,
        }
    }
}

impl AccessControl {
    /// The access control policy body (ApiAclCreate) this creates.
    pub fn to_spec(&self, name: &str) -> apig_model::policy::AclSpec {
        apig_model::policy::AclSpec {
            acl_name: Some(name.to_owned()),
            acl_type: Some(self.acl_type.clone()),
            acl_value: Some(self.value.clone()),
            entity_type: Some(self.entity_type.clone()),
        }
    }

    pub fn from_acl(a: &apig_model::policy::Acl) -> Self {
        AccessControl {
            acl_type: a.acl_type.clone(),
            entity_type: a.entity_type.clone(),
            value: a.acl_value.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
