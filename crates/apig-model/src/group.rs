//! API groups (CreateApiGroupV2 and friends). Each group gets a generated sub-domain
//! (`sl_domain`, `<group id>.<domain suffix>`) that routes to it at the gateway.

use serde::{Deserialize, Serialize};

use crate::validate::{self, Problems};
use crate::ApiError;

#[derive(Deserialize, Default, Debug)]
pub struct GroupSpec {
    pub name: Option<String>,
    pub remark: Option<String>,
    pub roma_app_id: Option<String>,
    pub version: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Group {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub remark: String,
    pub sl_domain: String,
    pub register_time: String,
    pub update_time: String,
}

impl GroupSpec {
    /// Validates a create (`full`) or an update body.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("name", &self.name) {
            Ok(n) => p.check(validate::group_name(n)),
            Err(e) => p.push(e),
        }
        if let Some(r) = &self.remark {
            p.check(validate::max_chars("remark", r, 1000));
        }
        if self.roma_app_id.as_deref().is_some_and(|s| !s.is_empty()) {
            p.push(ApiError::not_supported(
                "roma_app_id (ROMA integration apps)",
            ));
        }
        p.into_result()
    }
}

impl Group {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "remark": self.remark,
            "status": 1,
            "sl_domain": self.sl_domain,
            "sl_domains": [self.sl_domain],
            "sl_domain_access_enabled": true,
            "register_time": self.register_time,
            "update_time": self.update_time,
            "on_sell_status": 2,
            "url_domains": [],
            "is_default": 2,
            "version": "V1",
            "roma_app_id": "",
            "roma_app_name": "",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_rules() {
        let g = GroupSpec {
            name: Some("shop".into()),
            ..Default::default()
        };
        assert!(g.validate().is_ok());
        let bad = GroupSpec {
            name: Some("x".into()),
            remark: Some("r".repeat(1001)),
            ..Default::default()
        };
        let e = bad.validate().unwrap_err();
        assert!(e.message.contains("name") && e.message.contains("remark"));
    }
}
