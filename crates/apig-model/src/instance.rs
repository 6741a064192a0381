//! Gateway instances: the logical gateways that replicas join (CreateInstanceV2 and friends).
//!
//! Cloud fields (VPC, subnet, security group, AZs, spec) describe infrastructure a self-hosted
//! gateway does not provision; they are accepted and ignored so existing scripts run. Fields that
//! would buy something we cannot give (EIPs, bandwidth, IPv6, VPC endpoint services) are refused.

use serde::{Deserialize, Serialize};

use crate::validate::{self, Problems};
use crate::{ids, ApiError};

#[derive(Deserialize, Default, Debug)]
pub struct InstanceCreate {
    pub instance_name: Option<String>,
    pub instance_id: Option<String>,
    pub description: Option<String>,
    pub maintain_begin: Option<String>,
    pub maintain_end: Option<String>,
    pub spec_id: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_id: Option<String>,
    pub eip_id: Option<String>,
    pub enterprise_project_id: Option<String>,
    pub available_zone_ids: Option<Vec<String>>,
    pub bandwidth_size: Option<i64>,
    pub bandwidth_charging_mode: Option<String>,
    pub ipv6_enable: Option<bool>,
    pub loadbalancer_provider: Option<String>,
    pub vpcep_service_name: Option<String>,
    pub ingress_bandwidth_size: Option<i64>,
    pub ingress_bandwidth_charging_mode: Option<String>,
}

/// A stored instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Instance {
    pub id: String,
    pub project_id: String,
    pub instance_name: String,
    #[serde(default)]
    pub description: String,
    /// Unix milliseconds.
    pub create_time: i64,
}

impl InstanceCreate {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("instance_name", &self.instance_name) {
            Ok(n) => p.check(validate::instance_name(n)),
            Err(e) => p.push(e),
        }
        if let Some(id) = &self.instance_id {
            if !(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())) {
                p.push(ApiError::invalid(
                    "instance_id",
                    "32 hexadecimal characters",
                ));
            }
        }
        if let Some(d) = &self.description {
            p.check(validate::max_chars("description", d, 255));
        }
        if self.eip_id.as_deref().is_some_and(|s| !s.is_empty()) {
            p.push(ApiError::not_supported("eip_id (public IPs)"));
        }
        if self.bandwidth_size.is_some_and(|b| b > 0)
            || self.ingress_bandwidth_size.is_some_and(|b| b > 0)
        {
            p.push(ApiError::not_supported("bandwidth purchase"));
        }
        if self.ipv6_enable == Some(true) {
            p.push(ApiError::not_supported(
                "ipv6_enable (bind the gateway listener to an IPv6 address instead)",
            ));
        }
        if self
            .vpcep_service_name
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            p.push(ApiError::not_supported(
                "vpcep_service_name (VPC endpoint services)",
            ));
        }
        p.into_result()
    }

    pub fn into_instance(self, project_id: &str, now_ms: i64) -> Instance {
        Instance {
            id: self
                .instance_id
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_else(ids::new_id),
            project_id: project_id.to_owned(),
            instance_name: self.instance_name.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            create_time: now_ms,
        }
    }
}

impl Instance {
    /// The `RespInstanceBase` / `ShowDetailsOfInstanceV2Response` view.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "project_id": self.project_id,
            "instance_name": self.instance_name,
            "description": self.description,
            "status": "Running",
            "instance_status": 6,
            "type": "apig",
            "spec": "SELF_HOSTED",
            "create_time": self.create_time,
            "charging_mode": 0,
            "enterprise_project_id": "0",
            "loadbalancer_provider": "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_refuses_cloud_purchases() {
        let ok = InstanceCreate {
            instance_name: Some("gw_1".into()),
            vpc_id: Some("ignored".into()),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let eip = InstanceCreate {
            instance_name: Some("gw_1".into()),
            eip_id: Some("e".into()),
            ..Default::default()
        };
        assert_eq!(eip.validate().unwrap_err().status(), 412);
        let missing = InstanceCreate::default();
        assert_eq!(missing.validate().unwrap_err().status(), 400);
        let inst = ok.into_instance("p", 5);
        assert_eq!(inst.id.len(), 32);
        assert_eq!(inst.to_json()["project_id"], "p");
    }
}
