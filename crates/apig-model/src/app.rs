//! Apps (credentials), AppCodes, app authorizations and app ACLs.
//!
//! An app's secret is shown only in the answers of create and reset, never in show or list.

use serde::{Deserialize, Serialize};

use crate::validate::{self, Problems};
use crate::{ApiError, ErrorCode};

pub const MAX_APP_CODES: usize = 5;
pub const MAX_ACL_VALUES: usize = 300;

#[derive(Deserialize, Default, Debug)]
pub struct AppSpec {
    pub name: Option<String>,
    pub remark: Option<String>,
    pub app_key: Option<String>,
    pub app_secret: Option<String>,
    pub related_domain_id: Option<String>,
    pub related_project_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct App {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub remark: String,
    pub app_key: String,
    pub app_secret: String,
    pub register_time: String,
    pub update_time: String,
}

impl std::fmt::Debug for App {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

fn app_key_ok(k: &str) -> bool {
    (8..=200).contains(&k.len())
        && k.starts_with(|c: char| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub fn check_app_secret(s: &str) -> Result<(), ApiError> {
    let ok = (8..=128).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-!@#$%".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "app_secret",
            "8 to 128 characters: letters, digits and _-!@#$%, starting with a letter or digit",
        ))
    }
}

impl AppSpec {
    /// Validates a create body (`create`) or an update body (key and secret may not change
    /// through update; APIG changes the secret through reset).
    pub fn validate(&self, create: bool) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("name", &self.name) {
            Ok(n) => p.check(validate::app_name(n)),
            Err(e) => p.push(e),
        }
        if let Some(r) = &self.remark {
            p.check(validate::max_chars("remark", r, 255));
        }
        if let Some(k) = &self.app_key {
            if !create {
                // Accepted only when unchanged; the handler compares.
            } else if !app_key_ok(k) {
                p.push(ApiError::invalid(
                    "app_key",
                    "8 to 200 characters: letters, digits, _ and -, starting with a letter or digit",
                ));
            }
        }
        if let Some(s) = &self.app_secret {
            p.check(check_app_secret(s));
        }
        for (field, v) in [
            ("related_domain_id", &self.related_domain_id),
            ("related_project_id", &self.related_project_id),
        ] {
            if v.as_deref().is_some_and(|s| !s.is_empty()) {
                p.push(ApiError::not_supported(format!(
                    "{field} (cross-tenant apps)"
                )));
            }
        }
        p.into_result()
    }
}

impl App {
    /// The app as show/list answer it: without the secret.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "remark": self.remark,
            "creator": "USER",
            "update_time": self.update_time,
            "app_key": self.app_key,
            "register_time": self.register_time,
            "status": 1,
            "app_type": "apig",
        })
    }

    /// The create and reset answers: the only ones that carry the secret.
    pub fn to_json_with_secret(&self) -> serde_json::Value {
        let mut v = self.to_json();
        v["app_secret"] = self.app_secret.clone().into();
        v
    }
}

#[derive(Deserialize, Default, Debug)]
pub struct AppCodeCreate {
    pub app_code: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct AppCode {
    pub id: String,
    pub app_id: String,
    pub app_code: String,
    pub create_time: String,
}

impl std::fmt::Debug for AppCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCode")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl AppCode {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"id": self.id, "app_id": self.app_id, "app_code": self.app_code, "create_time": self.create_time})
    }
}

/// APIG's AppCode rule: 64 to 180 characters of `A-Za-z0-9+_!@#$%-/=`, starting with a letter,
/// digit, `+` or `/`.
pub fn check_app_code(code: &str) -> Result<(), ApiError> {
    let ok = (64..=180).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_!@#$%-/=".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "app_code",
            "64 to 180 characters: letters, digits and +_!@#$%-/=, starting with a letter, digit, + or /",
        ))
    }
}

#[derive(Deserialize, Default, Debug)]
pub struct AppAuthCreate {
    pub env_id: Option<String>,
    pub app_ids: Option<Vec<String>>,
    pub api_ids: Option<Vec<String>>,
}

impl AppAuthCreate {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        p.check(validate::required("env_id", &self.env_id).map(|_| ()));
        for (field, v) in [("app_ids", &self.app_ids), ("api_ids", &self.api_ids)] {
            match v {
                Some(ids) if !ids.is_empty() && ids.len() <= 1000 => {}
                Some(ids) if ids.len() > 1000 => {
                    p.push(ApiError::invalid(field, "at most 1000 ids"))
                }
                _ => p.push(ApiError::required(field)),
            }
        }
        p.into_result()
    }
}

/// An app authorized to call an API in an environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AppAuth {
    pub id: String,
    pub app_id: String,
    pub api_id: String,
    pub env_id: String,
    pub auth_time: String,
}

#[derive(Deserialize, Default, Debug)]
pub struct AppAclSpec {
    pub app_acl_type: Option<String>,
    pub app_acl_values: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AppAcl {
    pub app_id: String,
    pub app_acl_type: String,
    pub app_acl_values: Vec<String>,
}

impl AppAclSpec {
    /// Shape checks; the addresses themselves are parsed by the policy code the gateway uses.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match self.app_acl_type.as_deref() {
            Some("PERMIT" | "DENY") => {}
            Some(_) => p.push(ApiError::invalid("app_acl_type", "PERMIT or DENY")),
            None => p.push(ApiError::required("app_acl_type")),
        }
        match &self.app_acl_values {
            Some(v) if !v.is_empty() && v.len() <= MAX_ACL_VALUES => {}
            Some(v) if v.len() > MAX_ACL_VALUES => p.push(ApiError::invalid(
                "app_acl_values",
                format!("at most {MAX_ACL_VALUES} entries"),
            )),
            _ => p.push(ApiError::required("app_acl_values")),
        }
        p.into_result()
    }
}

pub fn auth_exists() -> ApiError {
    ApiError::new(
        ErrorCode::AppAuthExists,
        "The API authorization record already exists.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_rules() {
        let ok = AppSpec {
            name: Some("shop_app".into()),
            ..Default::default()
        };
        assert!(ok.validate(true).is_ok());
        let bad = AppSpec {
            name: Some("1x".into()),
            app_key: Some("short".into()),
            app_secret: Some("has space inside".into()),
            ..Default::default()
        };
        let e = bad.validate(true).unwrap_err();
        for f in ["name", "app_key", "app_secret"] {
            assert!(e.message.contains(f), "{f}: {}", e.message);
        }
        assert!(check_app_code(&"a".repeat(64)).is_ok());
        assert!(check_app_code(&"a".repeat(63)).is_err());
        assert!(check_app_code(&format!("-{}", "a".repeat(70))).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_show() {
        let app = App {
            id: "i".into(),
            instance_id: "n".into(),
            name: "a".into(),
            remark: String::new(),
            app_key: "k".into(),
            app_secret: "s3cr3t-value".into(),
            register_time: String::new(),
            update_time: String::new(),
        };
        assert!(!format!("{app:?}").contains("s3cr3t"));
        assert!(app.to_json().get("app_secret").is_none());
        assert_eq!(app.to_json_with_secret()["app_secret"], "s3cr3t-value");
    }
}
