//! The backend address policy (SSRF protection): which resolved addresses the gateway may open a
//! connection to, for every backend connection (HTTP, HTTPS, gRPC, WebSocket, channel members and
//! their health checks, function URLs).
//!
//! Rules, in order:
//! 1. An address in an operator's **allow** list is allowed, whatever else says (the escape hatch
//!    for a service that really lives on a link-local address).
//! 2. An address in the **always refused** set is refused: unspecified (`0.0.0.0/8`, `::`),
//!    link-local (`169.254.0.0/16`, which holds the cloud metadata service `169.254.169.254`,
//!    and `fe80::/10`), the AWS IPv6 metadata address `fd00:ec2::254`, multicast (`224.0.0.0/4`,
//!    `ff00::/8`) and the broadcast address `255.255.255.255`. IPv4-mapped IPv6
//!    (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) forms are judged by the IPv4 address
//!    they carry.
//! 3. An address in the operator's **deny** list is refused.
//! 4. Anything else (loopback and private ranges included) is allowed.
//!
//! Lists are parsed once (the [`IpAcl`] syntax: addresses, CIDR blocks, `a-b` ranges; mapped
//! IPv6 entries cover the IPv4 addresses); a check is a few comparisons and two binary searches,
//! without allocating.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ip_acl::{AclError, IpAcl};

/// The AWS Nitro IPv6 instance metadata address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// In the built-in set (the reason names the range).
    AlwaysRefused(&'static str),
    /// In the operator's deny list.
    Denied,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlwaysRefused(reason) => write!(f, "{reason} addresses are never backends"),
            Self::Denied => f.write_str("the address is in a denied backend network"),
        }
    }
}

/// A deny or allow list entry that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{list} backend network: {source}")]
pub struct BackendNetworkError {
    /// `deny` or `allow`.
    pub list: &'static str,
    #[source]
    pub source: AclError,
}

/// The operator's deny and allow lists on top of the built-in refusals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendAddressPolicy {
    deny: Option<IpAcl>,
    allow: Option<IpAcl>,
}

// === impl BackendAddressPolicy ===

impl BackendAddressPolicy {
    /// Parses the deny and allow lists (each entry an address, CIDR block or `a-b` range).
    pub fn parse(deny: &[String], allow: &[String]) -> Result<Self, BackendNetworkError> {
        let list = |name: &'static str, values: &[String]| {
            if values.is_empty() {
                return Ok(None);
            }
            IpAcl::parse(true, values)
                .map(Some)
                .map_err(|source| BackendNetworkError { list: name, source })
        };
        Ok(Self {
            deny: list("deny", deny)?,
            allow: list("allow", allow)?,
        })
    }

    /// Whether the gateway may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allow.as_ref().is_some_and(|a| a.allows(ip)) {
            return Ok(());
        }
        if let Some(reason) = always_refused(ip) {
            return Err(Refusal::AlwaysRefused(reason));
        }
        if self.deny.as_ref().is_some_and(|d| d.allows(ip)) {
            return Err(Refusal::Denied);
        }
        Ok(())
    }

    /// Whether any operator list is set (with none, only the built-in set applies).
    pub fn is_default(&self) -> bool {
        self.deny.is_none() && self.allow.is_none()
    }
}

/// The built-in refusal `ip` falls under, if any (see the module docs); what the control plane
/// checks literal backend addresses against at definition time.
pub fn always_refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_refused(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_refused(v4);
            }
            let segments = v6.segments();
            if let [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] = segments {
                let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
                return v4_refused(v4);
            }
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.segments().first().is_some_and(|s| s & 0xffc0 == 0xfe80) {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if v6 == AWS_METADATA_V6 {
                Some("cloud metadata")
            } else {
                None
            }
        }
    }
}

fn v4_refused(v4: Ipv4Addr) -> Option<&'static str> {
    if v4.octets().first() == Some(&0) {
        Some("unspecified")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if v4.is_broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_built_in_set() {
        let p = BackendAddressPolicy::default();
        for refused in [
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "169.254.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "fe80::1",
            "febf:ffff::1",
            "ff02::1",
            "fd00:ec2::254",
            // IPv4-mapped and NAT64 forms.
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            "::ffff:255.255.255.255",
            "64:ff9b::169.254.169.254",
        ] {
            assert!(p.check(ip(refused)).is_err(), "{refused}");
            assert!(always_refused(ip(refused)).is_some(), "{refused}");
        }
        for allowed in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "8.8.8.8",
            "169.253.255.255",
            "169.255.0.0",
            "::1",
            "fd00::1",
            "fd00:ec2::253",
            "fec0::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "64:ff9b::8.8.8.8",
        ] {
            assert_eq!(p.check(ip(allowed)), Ok(()), "{allowed}");
        }
        assert_eq!(
            p.check(ip("169.254.169.254")),
            Err(Refusal::AlwaysRefused("link-local"))
        );
        assert_eq!(
            p.check(ip("fd00:ec2::254")),
            Err(Refusal::AlwaysRefused("cloud metadata"))
        );
    }

    #[test]
    fn operator_deny_list() {
        let p =
            BackendAddressPolicy::parse(&strings(&["127.0.0.0/8", "::1/128", "10.0.0.0/8"]), &[])
                .unwrap();
        assert!(!p.is_default());
        for denied in [
            "127.0.0.1",
            "127.255.0.9",
            "::1",
            "10.1.2.3",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(p.check(ip(denied)), Err(Refusal::Denied), "{denied}");
        }
        for allowed in ["128.0.0.1", "::2", "192.168.0.1"] {
            assert_eq!(p.check(ip(allowed)), Ok(()), "{allowed}");
        }
        // The built-in set still says why.
        assert_eq!(
            p.check(ip("169.254.169.254")),
            Err(Refusal::AlwaysRefused("link-local"))
        );
    }

    #[test]
    fn an_allow_wins_over_every_deny() {
        let p = BackendAddressPolicy::parse(
            &strings(&["10.0.0.0/8"]),
            &strings(&["10.1.0.0/16", "169.254.10.0/24", "fe80::1234/128"]),
        )
        .unwrap();
        assert_eq!(p.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(p.check(ip("10.2.0.1")), Err(Refusal::Denied));
        assert_eq!(p.check(ip("169.254.10.7")), Ok(()));
        assert_eq!(p.check(ip("::ffff:169.254.10.7")), Ok(()));
        assert!(p.check(ip("169.254.169.254")).is_err());
        assert_eq!(p.check(ip("fe80::1234")), Ok(()));
        assert!(p.check(ip("fe80::1235")).is_err());
    }

    #[test]
    fn list_parsing() {
        assert_eq!(
            BackendAddressPolicy::parse(&[], &[]).unwrap(),
            BackendAddressPolicy::default()
        );
        assert!(BackendAddressPolicy::default().is_default());
        // Host bits are cleared; single addresses and ranges work too.
        let p = BackendAddressPolicy::parse(
            &strings(&[
                "127.0.0.2/32",
                "10.9.9.9/8",
                "192.0.2.1-192.0.2.5",
                "2001:db8::/32",
            ]),
            &[],
        )
        .unwrap();
        for denied in ["127.0.0.2", "10.0.0.0", "192.0.2.3", "2001:db8:1::1"] {
            assert_eq!(p.check(ip(denied)), Err(Refusal::Denied), "{denied}");
        }
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "not-an-ip",
            "",
            "10.0.0.0/",
            "[::1]",
        ] {
            let e = BackendAddressPolicy::parse(&strings(&[bad]), &[]).unwrap_err();
            assert_eq!(e.list, "deny", "{bad}");
            let e = BackendAddressPolicy::parse(&[], &strings(&[bad])).unwrap_err();
            assert_eq!(e.list, "allow", "{bad}");
            assert!(e.to_string().starts_with("allow backend network: "), "{e}");
        }
    }
}
