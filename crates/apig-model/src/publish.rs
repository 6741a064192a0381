//! Publishing: an API's definition frozen for one environment (a version), and the publication
//! record that says which version an environment runs.

use serde::{Deserialize, Serialize};

use crate::api::ApiSpec;
use crate::validate::{self, Problems};
use crate::ApiError;

/// How many versions are kept per API per environment (APIG keeps 10).
pub const MAX_VERSIONS_PER_ENV: usize = 10;

#[derive(Deserialize, Default, Debug)]
pub struct ApiAction {
    pub action: Option<String>,
    pub env_id: Option<String>,
    pub api_id: Option<String>,
    pub remark: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
pub struct BatchPublish {
    pub apis: Option<Vec<String>>,
    pub env_id: Option<String>,
    pub group_id: Option<String>,
    pub remark: Option<String>,
}

pub fn check_action(action: Option<&str>) -> Result<&str, ApiError> {
    match action {
        Some(a @ ("online" | "offline")) => Ok(a),
        Some(_) => Err(ApiError::invalid("action", "online or offline")),
        None => Err(ApiError::required("action")),
    }
}

impl ApiAction {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        p.check(check_action(self.action.as_deref()).map(|_| ()));
        p.check(validate::required("env_id", &self.env_id).map(|_| ()));
        p.check(validate::required("api_id", &self.api_id).map(|_| ()));
        if let Some(r) = &self.remark {
            p.check(validate::max_chars("remark", r, 255));
        }
        p.into_result()
    }
}

impl BatchPublish {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        p.check(validate::required("env_id", &self.env_id).map(|_| ()));
        let apis = self.apis.as_ref().map_or(0, Vec::len);
        let has_group = self.group_id.as_deref().is_some_and(|g| !g.is_empty());
        if apis == 0 && !has_group {
            p.push(ApiError::required("apis or group_id"));
        }
        if apis > 1000 {
            p.push(ApiError::invalid("apis", "at most 1000 APIs per call"));
        }
        if let Some(r) = &self.remark {
            p.check(validate::max_chars("remark", r, 255));
        }
        p.into_result()
    }
}

/// A published version of an API in an environment. Kept after the API goes offline (history).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ApiVersion {
    pub version_id: String,
    /// A human version number: the publish time `YYYYMMDDHHMMSS` as APIG shows.
    pub version_no: String,
    pub api_id: String,
    pub env_id: String,
    pub remark: String,
    pub publish_time: String,
    /// Group and name at publish time, for runtime views.
    pub spec: ApiSpec,
}

/// Which version an environment runs: at most one per API per environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Publication {
    pub publish_id: String,
    pub api_id: String,
    pub env_id: String,
    pub version_id: String,
    pub publish_time: String,
    pub remark: String,
}
