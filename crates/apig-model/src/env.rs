//! Environments and environment variables.
//!
//! RELEASE (`DEFAULT_ENVIRONMENT_RELEASE_ID`) is built in and can be neither changed nor deleted.
//! Variables are scoped to a group and an environment and substitute `#name#` in an API's backend
//! address and path when the published snapshot is compiled.

use serde::{Deserialize, Serialize};

use crate::ids::{RELEASE_ENV_ID, RELEASE_ENV_NAME};
use crate::validate::{self, Problems};
use crate::ApiError;

pub const MAX_ENVS: usize = 10;
pub const MAX_VARIABLES_PER_GROUP_ENV: usize = 50;

#[derive(Deserialize, Default, Debug)]
pub struct EnvSpec {
    pub name: Option<String>,
    pub remark: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Env {
    pub id: String,
    pub name: String,
    pub remark: String,
    pub create_time: String,
}

impl Env {
    pub fn release(create_time: String) -> Env {
        Env {
            id: RELEASE_ENV_ID.to_owned(),
            name: RELEASE_ENV_NAME.to_owned(),
            remark: "Production environment".to_owned(),
            create_time,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "remark": self.remark,
            "create_time": self.create_time,
        })
    }
}

impl EnvSpec {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("name", &self.name) {
            Ok(n) => {
                p.check(validate::env_name(n));
                if n.eq_ignore_ascii_case(RELEASE_ENV_NAME) {
                    p.push(ApiError::invalid(
                        "name",
                        "RELEASE is the built-in environment",
                    ));
                }
            }
            Err(e) => p.push(e),
        }
        if let Some(r) = &self.remark {
            p.check(validate::max_chars("remark", r, 255));
        }
        p.into_result()
    }
}

#[derive(Deserialize, Default, Debug)]
pub struct VariableCreate {
    pub variable_name: Option<String>,
    pub variable_value: Option<String>,
    pub env_id: Option<String>,
    pub group_id: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
pub struct VariableUpdate {
    pub variable_value: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Variable {
    pub id: String,
    pub group_id: String,
    pub env_id: String,
    pub variable_name: String,
    pub variable_value: String,
}

impl Variable {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl VariableCreate {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("variable_name", &self.variable_name) {
            Ok(n) => p.check(validate::variable_name(n)),
            Err(e) => p.push(e),
        }
        match validate::required("variable_value", &self.variable_value) {
            Ok(v) => p.check(validate::variable_value(v)),
            Err(e) => p.push(e),
        }
        p.check(validate::required("env_id", &self.env_id).map(|_| ()));
        p.check(validate::required("group_id", &self.group_id).map(|_| ()));
        p.into_result()
    }
}

impl VariableUpdate {
    pub fn validate(&self) -> Result<(), ApiError> {
        let v = validate::required("variable_value", &self.variable_value)?;
        validate::variable_value(v)
    }
}

/// The `#name#` references in `s`, in order. Names follow the variable-name rule; anything else
/// between two `#` is not a reference.
pub fn variable_refs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('#') {
        let after = &rest[start + 1..];
        match after.find('#') {
            Some(end) if validate::variable_name(&after[..end]).is_ok() => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            Some(_) => rest = after,
            None => break,
        }
    }
    out
}

/// Replaces every `#name#` reference using `lookup`; returns the first unknown name on failure.
pub fn substitute<'v>(s: &str, lookup: impl Fn(&str) -> Option<&'v str>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('#') {
        let after = &rest[start + 1..];
        match after.find('#') {
            Some(end) if validate::variable_name(&after[..end]).is_ok() => {
                let name = &after[..end];
                let value = lookup(name).ok_or_else(|| name.to_owned())?;
                out.push_str(&rest[..start]);
                out.push_str(value);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..=start]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_and_substitution() {
        assert_eq!(variable_refs("#host#:#port#"), vec!["host", "port"]);
        assert_eq!(
            variable_refs("#ipaddress##test#/x"),
            vec!["ipaddress", "test"]
        );
        assert!(variable_refs("a#b").is_empty());
        let vars = [("host", "10.0.0.1"), ("port", "8080")];
        let look = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        assert_eq!(substitute("#host#:#port#", look).unwrap(), "10.0.0.1:8080");
        assert_eq!(substitute("/a/#zzz#", look).unwrap_err(), "zzz");
        assert_eq!(substitute("/plain/#/x", look).unwrap(), "/plain/#/x");
    }

    #[test]
    fn env_rules() {
        assert!(EnvSpec {
            name: Some("DEV".into()),
            remark: None
        }
        .validate()
        .is_ok());
        assert!(EnvSpec {
            name: Some("RELEASE".into()),
            remark: None
        }
        .validate()
        .is_err());
        assert!(VariableCreate::default().validate().is_err());
    }
}
