//! API access-control policies (semantics digest §6.1): at most one ACL per entity type per API.
//!
//! - `IP`: the client IP against an [`IpAcl`] (addresses, `a-b` ranges, CIDR; IPv4 and IPv6).
//!   PERMIT: the IP must match; DENY: it must not. A refusal is `APIG.0402`.
//! - `DOMAIN_ID` and `DOMAIN`: the caller's project (account) id or name, for IAM callers only;
//!   other callers are not subject to them. PERMIT: the id (name) must be listed; DENY: it must
//!   not. A refusal is `APIG.0302`.
//!
//! All are ANDed. A rule of another entity type, two rules of one type, or an unparsable entry
//! make the whole API unusable: the snapshot is refused rather than served with a rule silently
//! ignored.

use std::net::IpAddr;

use crate::ip_acl::IpAcl;

/// The ACLs bound to one API, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiAcl {
    ip: Option<IpAcl>,
    /// DOMAIN_ID: project ids.
    project_ids: Option<ListAcl>,
    /// DOMAIN: project (account) names.
    project_names: Option<ListAcl>,
}

/// A PERMIT or DENY list of exact values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListAcl {
    permit: bool,
    /// Sorted, deduplicated.
    values: Vec<String>,
}

impl ListAcl {
    fn parse(permit: bool, values: &[String]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(values.len());
        for value in values {
            let v = value.trim();
            if v.is_empty() {
                return Err("an empty entry".into());
            }
            out.push(v.to_owned());
        }
        out.sort_unstable();
        out.dedup();
        Ok(Self {
            permit,
            values: out,
        })
    }

    fn allows(&self, value: &str) -> bool {
        let listed = self
            .values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok();
        listed == self.permit
    }
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
            } else {
                let (slot, kind) = if rule.entity_type.eq_ignore_ascii_case("DOMAIN_ID") {
                    (&mut out.project_ids, "DOMAIN_ID")
                } else if rule.entity_type.eq_ignore_ascii_case("DOMAIN") {
                    (&mut out.project_names, "DOMAIN")
                } else {
                    return Err(fail(format!(
                        "entity type {:?} is not supported (IP, DOMAIN or DOMAIN_ID)",
                        rule.entity_type.chars().take(32).collect::<String>()
                    )));
                };
                if slot.is_some() {
                    return Err(fail(format!(
                        "a second {kind} access control policy on one API"
                    )));
                }
                *slot = Some(
                    ListAcl::parse(rule.permit, &rule.values)
                        .map_err(|e| fail(format!("{e} in a {kind} policy")))?,
                );
            }
        }
        Ok(out)
    }

    /// No rule at all.
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && !self.has_project_rule()
    }

    /// Whether the IP rule (if any) lets `ip` through.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.ip.as_ref().is_none_or(|acl| acl.allows(ip))
    }

    /// Whether the DOMAIN_ID and DOMAIN rules (if any) let an IAM caller of the project with
    /// this id and name through.
    pub fn allows_project(&self, project_id: &str, project_name: &str) -> bool {
        self.project_ids
            .as_ref()
            .is_none_or(|acl| acl.allows(project_id))
            && self
                .project_names
                .as_ref()
                .is_none_or(|acl| acl.allows(project_name))
    }

    /// Whether a DOMAIN_ID or DOMAIN rule exists.
    pub fn has_project_rule(&self) -> bool {
        self.project_ids.is_some() || self.project_names.is_some()
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
        assert!(acl.allows_project("anyone", "any-name"));
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
        assert!(acl.allows_project("p", "n"));
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
        assert!(permit.allows_project("p1", "n"));
        assert!(permit.allows_project("p2", "n"));
        assert!(!permit.allows_project("p3", "n"));
        let deny = ApiAcl::prepare(&[rule("DOMAIN_ID", false, &["p1"])]).unwrap();
        assert!(!deny.allows_project("p1", "n"));
        assert!(deny.allows_project("p2", "n"));
        // Both types together are ANDed by the caller: each answers for its own.
        let both = ApiAcl::prepare(&[
            rule("IP", false, &["1.1.1.1"]),
            rule("DOMAIN_ID", true, &["p1"]),
        ])
        .unwrap();
        assert!(!both.allows_ip(ip("1.1.1.1")));
        assert!(both.allows_project("p1", "n"));
    }

    #[test]
    fn domain_names_and_ids_are_anded() {
        let names = ApiAcl::prepare(&[rule("DOMAIN", true, &["acme", "partner"])]).unwrap();
        assert!(names.has_project_rule());
        assert!(!names.is_empty());
        assert!(names.allows_project("any-id", "acme"));
        assert!(!names.allows_project("any-id", "other"));
        // Names are exact (case-sensitive): APIG account names are.
        assert!(!names.allows_project("any-id", "ACME"));
        let both = ApiAcl::prepare(&[
            rule("DOMAIN", false, &["blocked"]),
            rule("DOMAIN_ID", true, &["p1"]),
        ])
        .unwrap();
        assert!(both.allows_project("p1", "acme"));
        assert!(!both.allows_project("p1", "blocked"));
        assert!(!both.allows_project("p2", "acme"));
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
        assert!(ApiAcl::prepare(&[rule("USER", true, &["name"])]).is_err());
        assert!(ApiAcl::prepare(&[rule("DOMAIN_ID", true, &[""])]).is_err());
        assert!(ApiAcl::prepare(&[rule("DOMAIN", true, &[" "])]).is_err());
        let two_names = [rule("DOMAIN", true, &["a"]), rule("domain", false, &["b"])];
        assert!(ApiAcl::prepare(&two_names).is_err());
    }
}
