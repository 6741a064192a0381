//! API access-control policies (semantics digest §6.1): at most one ACL per entity type per API.
//!
//! - `IP`: the client IP against an [`IpAcl`] (addresses, `a-b` ranges, CIDR; IPv4 and IPv6).
//!   PERMIT: the IP must match; DENY: it must not. A refusal is `APIG.0402`.
//! - `DOMAIN_ID`: the caller's project (account) id, for IAM callers only; other callers are not
//!   subject to it. PERMIT: the id must be listed; DENY: it must not. A refusal is `APIG.0302`.
//!
//! Both are ANDed. A rule of another entity type (`DOMAIN`, account names, has no source of
//! truth in this gateway), two rules of one type, or an unparsable entry make the whole API
//! unusable: the snapshot is refused rather than served with a rule silently ignored.

use std::net::IpAddr;

use crate::ip_acl::IpAcl;

/// The ACLs bound to one API, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiAcl {
    ip: Option<IpAcl>,
    domain: Option<DomainAcl>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DomainAcl {
    permit: bool,
    /// Sorted, deduplicated.
    ids: Vec<String>,
}

/// An API's ACL rules that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access control policy {policy_id:?}: {reason}")]
pub struct ApiAclError {
    pub policy_id: String,
    pub reason: String,
}

// === impl ApiAcl ===

impl ApiAcl {
    /// Parses the rules bound to one API.
    pub fn prepare(rules: &[apig_proto::AclRule]) -> Result<Self, ApiAclError> {
        let mut out = Self::default();
        for rule in rules {
            let fail = |reason: String| ApiAclError {
                policy_id: rule.policy_id.chars().take(64).collect(),
                reason,
            };
            if rule.entity_type.eq_ignore_ascii_case("IP") {
                if out.ip.is_some() {
                    return Err(fail("a second IP access control policy on one API".into()));
                }
                let acl =
                    IpAcl::parse(rule.permit, &rule.values).map_err(|e| fail(e.to_string()))?;
                out.ip = Some(acl);
            } else if rule.entity_type.eq_ignore_ascii_case("DOMAIN_ID") {
                if out.domain.is_some() {
                    return Err(fail(
                        "a second DOMAIN_ID access control policy on one API".into(),
                    ));
                }
                let mut ids = Vec::with_capacity(rule.values.len());
                for value in &rule.values {
                    let id = value.trim();
                    if id.is_empty() {
                        return Err(fail("an empty DOMAIN_ID entry".into()));
                    }
                    ids.push(id.to_owned());
                }
                ids.sort_unstable();
                ids.dedup();
                out.domain = Some(DomainAcl {
                    permit: rule.permit,
                    ids,
                });
            } else {
                return Err(fail(format!(
                    "entity type {:?} is not supported (IP or DOMAIN_ID)",
                    rule.entity_type.chars().take(32).collect::<String>()
                )));
            }
        }
        Ok(out)
    }

    /// No rule at all.
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.domain.is_none()
    }

    /// Whether the IP rule (if any) lets `ip` through.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.ip.as_ref().is_none_or(|acl| acl.allows(ip))
    }

    /// Whether the DOMAIN_ID rule (if any) lets an IAM caller of `project_id` through.
    pub fn allows_project(&self, project_id: &str) -> bool {
        self.domain.as_ref().is_none_or(|acl| {
            let listed = acl
                .ids
                .binary_search_by(|id| id.as_str().cmp(project_id))
                .is_ok();
            listed == acl.permit
        })
    }

    /// Whether a DOMAIN_ID rule exists.
    pub fn has_project_rule(&self) -> bool {
        self.domain.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_proto::AclRule;

    fn rule(entity: &str, permit: bool, values: &[&str]) -> AclRule {
        AclRule {
            policy_id: "acl-1".into(),
            permit,
            entity_type: entity.into(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn no_rules_allow_everything() {
        let acl = ApiAcl::prepare(&[]).unwrap();
        assert!(acl.is_empty());
        assert!(acl.allows_ip(ip("1.2.3.4")));
        assert!(acl.allows_project("anyone"));
    }

    #[test]
    fn ip_permit_with_cidr_range_and_ipv6() {
        let acl = ApiAcl::prepare(&[rule(
            "IP",
            true,
            &[
                "10.0.0.0/8",
                "192.168.1.5-192.168.1.9",
                "2001:db8::/32",
                "::1",
            ],
        )])
        .unwrap();
        assert!(acl.allows_ip(ip("10.200.3.4")));
        assert!(acl.allows_ip(ip("192.168.1.7")));
        assert!(!acl.allows_ip(ip("192.168.1.10")));
        assert!(acl.allows_ip(ip("2001:db8:1::5")));
        assert!(acl.allows_ip(ip("::1")));
        assert!(!acl.allows_ip(ip("2001:db9::1")));
        assert!(!acl.allows_ip(ip("127.0.0.1")));
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(acl.allows_ip(ip("::ffff:10.1.1.1")));
        // The project rule is absent.
        assert!(acl.allows_project("p"));
    }

    #[test]
    fn ip_deny() {
        let acl = ApiAcl::prepare(&[rule("ip", false, &["127.0.0.0/8", "fe80::/10"])]).unwrap();
        assert!(!acl.allows_ip(ip("127.0.0.1")));
        assert!(!acl.allows_ip(ip("::ffff:127.0.0.1")));
        assert!(!acl.allows_ip(ip("fe80::1")));
        assert!(acl.allows_ip(ip("::1")));
        assert!(acl.allows_ip(ip("8.8.8.8")));
    }

    #[test]
    fn domain_id_permit_and_deny() {
        let permit = ApiAcl::prepare(&[rule("DOMAIN_ID", true, &["p1", " p2 "])]).unwrap();
        assert!(permit.has_project_rule());
        assert!(permit.allows_project("p1"));
        assert!(permit.allows_project("p2"));
        assert!(!permit.allows_project("p3"));
        let deny = ApiAcl::prepare(&[rule("DOMAIN_ID", false, &["p1"])]).unwrap();
        assert!(!deny.allows_project("p1"));
        assert!(deny.allows_project("p2"));
        // Both types together are ANDed by the caller: each answers for its own.
        let both = ApiAcl::prepare(&[
            rule("IP", false, &["1.1.1.1"]),
            rule("DOMAIN_ID", true, &["p1"]),
        ])
        .unwrap();
        assert!(!both.allows_ip(ip("1.1.1.1")));
        assert!(both.allows_project("p1"));
    }

    #[test]
    fn unusable_rules_are_errors() {
        let two_ip = [
            rule("IP", true, &["1.1.1.1"]),
            rule("IP", false, &["2.2.2.2"]),
        ];
        assert!(ApiAcl::prepare(&two_ip)
            .unwrap_err()
            .reason
            .contains("second IP"));
        let two_dom = [
            rule("DOMAIN_ID", true, &["a"]),
            rule("DOMAIN_ID", true, &["b"]),
        ];
        assert!(ApiAcl::prepare(&two_dom).is_err());
        let e = ApiAcl::prepare(&[rule("IP", true, &["10.0.0.0/33"])]).unwrap_err();
        assert_eq!(e.policy_id, "acl-1");
        assert!(e.to_string().contains("10.0.0.0/33"), "{e}");
        assert!(ApiAcl::prepare(&[rule("DOMAIN", true, &["name"])]).is_err());
        assert!(ApiAcl::prepare(&[rule("DOMAIN_ID", true, &[""])]).is_err());
    }
}
