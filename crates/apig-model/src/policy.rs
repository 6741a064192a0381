//! Request throttling policies (with excluded limits), access control policies, and their
//! bindings to publications.

use serde::{Deserialize, Serialize};

use crate::validate::{self, Problems};
use crate::ApiError;

pub const MAX_SPECIALS_PER_KIND: usize = 30;
pub const MAX_ACL_IP_VALUES: usize = 100;

/// ThrottleBaseInfo.
#[derive(Deserialize, Default, Debug)]
pub struct ThrottleSpec {
    pub name: Option<String>,
    pub api_call_limits: Option<i64>,
    pub user_call_limits: Option<i64>,
    pub app_call_limits: Option<i64>,
    pub ip_call_limits: Option<i64>,
    pub time_interval: Option<i64>,
    pub time_unit: Option<String>,
    #[serde(rename = "type")]
    pub throttle_type: Option<i64>,
    pub remark: Option<String>,
    pub enable_adaptive_control: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Throttle {
    pub id: String,
    pub name: String,
    pub api_call_limits: i64,
    pub user_call_limits: Option<i64>,
    pub app_call_limits: Option<i64>,
    pub ip_call_limits: Option<i64>,
    pub time_interval: i64,
    pub time_unit: String,
    #[serde(rename = "type")]
    pub throttle_type: i64,
    pub remark: String,
    pub create_time: String,
}

const LIMIT_MAX: i64 = i32::MAX as i64;

impl ThrottleSpec {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("name", &self.name) {
            Ok(n) => p.check(validate::app_name(n)),
            Err(e) => p.push(e),
        }
        let in_range = |v: i64| (1..=LIMIT_MAX).contains(&v);
        match self.api_call_limits {
            Some(v) if in_range(v) => {}
            Some(_) => p.push(ApiError::invalid("api_call_limits", "1 to 2147483647")),
            None => p.push(ApiError::required("api_call_limits")),
        }
        for (field, v) in [
            ("user_call_limits", self.user_call_limits),
            ("app_call_limits", self.app_call_limits),
            ("ip_call_limits", self.ip_call_limits),
        ] {
            if v.is_some_and(|v| !in_range(v)) {
                p.push(ApiError::invalid(field, "1 to 2147483647"));
            }
        }
        let api = self.api_call_limits.unwrap_or(LIMIT_MAX);
        // APIG's ordering rules: app ≤ user ≤ api, ip ≤ api.
        if self.user_call_limits.is_some_and(|u| u > api) {
            p.push(ApiError::invalid(
                "user_call_limits",
                "may not exceed api_call_limits",
            ));
        }
        if let Some(app) = self.app_call_limits {
            if app > self.user_call_limits.unwrap_or(api) {
                p.push(ApiError::invalid(
                    "app_call_limits",
                    "may not exceed user_call_limits (or api_call_limits)",
                ));
            }
        }
        if self.ip_call_limits.is_some_and(|i| i > api) {
            p.push(ApiError::invalid(
                "ip_call_limits",
                "may not exceed api_call_limits",
            ));
        }
        match self.time_interval {
            Some(v) if in_range(v) => {}
            Some(_) => p.push(ApiError::invalid("time_interval", "1 to 2147483647")),
            None => p.push(ApiError::required("time_interval")),
        }
        match self.time_unit.as_deref() {
            Some(u) => p.check(validate::one_of(
                "time_unit",
                u,
                &["SECOND", "MINUTE", "HOUR", "DAY"],
            )),
            None => p.push(ApiError::required("time_unit")),
        }
        if self.throttle_type.is_some_and(|t| t != 1 && t != 2) {
            p.push(ApiError::invalid(
                "type",
                "1 (per API) or 2 (shared by the bound APIs)",
            ));
        }
        if let Some(r) = &self.remark {
            p.check(validate::max_chars("remark", r, 255));
        }
        if self
            .enable_adaptive_control
            .as_deref()
            .is_some_and(|s| !s.is_empty() && s != "FALSE")
        {
            p.push(ApiError::not_supported("enable_adaptive_control"));
        }
        p.into_result()
    }

    pub fn into_throttle(self, id: String, create_time: String) -> Throttle {
        Throttle {
            id,
            name: self.name.unwrap_or_default(),
            api_call_limits: self.api_call_limits.unwrap_or(1),
            user_call_limits: self.user_call_limits,
            app_call_limits: self.app_call_limits,
            ip_call_limits: self.ip_call_limits,
            time_interval: self.time_interval.unwrap_or(1),
            time_unit: self.time_unit.unwrap_or_else(|| "SECOND".into()),
            throttle_type: self.throttle_type.unwrap_or(1),
            remark: self.remark.unwrap_or_default(),
            create_time,
        }
    }
}

impl Throttle {
    /// The window in milliseconds (saturating: a DAY × 2^31 window is effectively forever).
    pub fn window_ms(&self) -> u64 {
        let unit: u64 = match self.time_unit.as_str() {
            "MINUTE" => 60_000,
            "HOUR" => 3_600_000,
            "DAY" => 86_400_000,
            _ => 1_000,
        };
        unit.saturating_mul(self.time_interval.max(1) as u64)
    }

    pub fn to_json(&self, bind_num: usize, has_specials: bool) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "api_call_limits": self.api_call_limits,
            "user_call_limits": self.user_call_limits, "app_call_limits": self.app_call_limits,
            "ip_call_limits": self.ip_call_limits, "time_interval": self.time_interval,
            "time_unit": self.time_unit, "type": self.throttle_type, "remark": self.remark,
            "enable_adaptive_control": "FALSE", "create_time": self.create_time,
            "bind_num": bind_num, "is_inclu_special_throttle": if has_specials { 1 } else { 2 },
        })
    }
}

#[derive(Deserialize, Default, Debug)]
pub struct SpecialSpec {
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub call_limits: Option<i64>,
}

/// An excluded limit: an app or a tenant (project) with its own threshold.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ThrottleSpecial {
    pub id: String,
    pub throttle_id: String,
    /// APP or USER.
    pub object_type: String,
    pub object_id: String,
    pub call_limits: i64,
    pub apply_time: String,
}

impl SpecialSpec {
    pub fn validate(&self, create: bool) -> Result<(), ApiError> {
        let mut p = Problems::new();
        if create {
            match self.object_type.as_deref() {
                Some(t) => p.check(validate::one_of("object_type", t, &["APP", "USER"])),
                None => p.push(ApiError::required("object_type")),
            }
            p.check(validate::required("object_id", &self.object_id).map(|_| ()));
        }
        match self.call_limits {
            Some(v) if (1..=LIMIT_MAX).contains(&v) => {}
            Some(_) => p.push(ApiError::invalid("call_limits", "1 to 2147483647")),
            None => p.push(ApiError::required("call_limits")),
        }
        p.into_result()
    }
}

/// ApiAclCreate.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct AclSpec {
    pub acl_name: Option<String>,
    pub acl_type: Option<String>,
    pub acl_value: Option<String>,
    pub entity_type: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Acl {
    pub id: String,
    pub acl_name: String,
    pub acl_type: String,
    pub acl_value: String,
    pub entity_type: String,
    pub update_time: String,
}

impl AclSpec {
    /// Shape checks; IP values are parsed by the policy code the gateway uses (the caller).
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("acl_name", &self.acl_name) {
            Ok(n) => p.check(validate::app_name(n).map_err(|e| {
                ApiError::new(
                    e.code,
                    e.message
                        .replace("parameterName:name", "parameterName:acl_name"),
                )
            })),
            Err(e) => p.push(e),
        }
        match self.acl_type.as_deref() {
            Some(t) => p.check(validate::one_of("acl_type", t, &["PERMIT", "DENY"])),
            None => p.push(ApiError::required("acl_type")),
        }
        match self.entity_type.as_deref() {
            Some("IP" | "DOMAIN" | "DOMAIN_ID") => {}
            Some(_) => p.push(ApiError::invalid("entity_type", "IP, DOMAIN or DOMAIN_ID")),
            None => p.push(ApiError::required("entity_type")),
        }
        match validate::required("acl_value", &self.acl_value) {
            Ok(v) => {
                let n = v.split(',').count();
                if self.entity_type.as_deref() == Some("IP") && n > MAX_ACL_IP_VALUES {
                    p.push(ApiError::invalid(
                        "acl_value",
                        format!("at most {MAX_ACL_IP_VALUES} entries"),
                    ));
                }
                if self.entity_type.as_deref() == Some("DOMAIN") {
                    if v.len() > 1024 {
                        p.push(ApiError::invalid("acl_value", "at most 1024 characters"));
                    }
                    for name in v.split(',') {
                        if let Err(e) = crate::project::validate_name("acl_value", name.trim()) {
                            p.push(ApiError::new(
                                e.code,
                                format!("{} (account names, comma-separated)", e.message),
                            ));
                            break;
                        }
                    }
                }
                if self.entity_type.as_deref() == Some("DOMAIN_ID") {
                    if v.len() > 1024 {
                        p.push(ApiError::invalid("acl_value", "at most 1024 characters"));
                    }
                    if v.split(',')
                        .any(|id| id.trim().is_empty() || id.trim().len() > 64)
                    {
                        p.push(ApiError::invalid(
                            "acl_value",
                            "comma-separated project ids",
                        ));
                    }
                }
            }
            Err(e) => p.push(e),
        }
        p.into_result()
    }
}

impl Acl {
    pub fn values(&self) -> Vec<String> {
        self.acl_value
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "acl_name": self.acl_name, "acl_type": self.acl_type,
            "acl_value": self.acl_value, "entity_type": self.entity_type, "update_time": self.update_time,
        })
    }
}

/// A policy bound to an API in an environment. Bindings are made through publication ids (as
/// APIG's API does) but kept per API and environment, so they survive republishing and going
/// offline, as APIG documents.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Binding {
    pub id: String,
    pub policy_id: String,
    pub api_id: String,
    pub env_id: String,
    pub apply_time: String,
}

#[derive(Deserialize, Default, Debug)]
pub struct BindingCreate {
    pub strategy_id: Option<String>,
    pub acl_id: Option<String>,
    pub publish_ids: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(api: i64, user: Option<i64>, app: Option<i64>, ip: Option<i64>) -> ThrottleSpec {
        ThrottleSpec {
            name: Some("limits".into()),
            api_call_limits: Some(api),
            user_call_limits: user,
            app_call_limits: app,
            ip_call_limits: ip,
            time_interval: Some(1),
            time_unit: Some("MINUTE".into()),
            ..Default::default()
        }
    }

    #[test]
    fn ordering_rules() {
        assert!(spec(10, Some(5), Some(3), Some(10)).validate().is_ok());
        assert!(spec(10, Some(11), None, None).validate().is_err());
        assert!(spec(10, Some(5), Some(6), None).validate().is_err());
        assert!(spec(10, None, Some(10), None).validate().is_ok());
        assert!(spec(10, None, None, Some(11)).validate().is_err());
        assert!(spec(0, None, None, None).validate().is_err());
        let t = spec(10, None, None, None).into_throttle("i".into(), "t".into());
        assert_eq!(t.window_ms(), 60_000);
    }

    #[test]
    fn acl_rules() {
        let ok = AclSpec {
            acl_name: Some("office".into()),
            acl_type: Some("PERMIT".into()),
            acl_value: Some("10.0.0.0/8,192.168.1.1".into()),
            entity_type: Some("IP".into()),
        };
        assert!(ok.validate().is_ok());
        let domain = |value: &str| AclSpec {
            entity_type: Some("DOMAIN".into()),
            acl_value: Some(value.into()),
            ..ok.clone()
        };
        assert!(domain("acme,partner-co").validate().is_ok());
        for bad in ["acme,,x", "12345", "two words", &"n".repeat(65)] {
            assert_eq!(domain(bad).validate().unwrap_err().status(), 400, "{bad:?}");
        }
        let other = AclSpec {
            entity_type: Some("USER".into()),
            ..ok
        };
        assert_eq!(other.validate().unwrap_err().status(), 400);
    }
}
