//! The client address: the TCP peer, unless the peer is a configured trusted proxy
//! (`Limits::trusted_proxies`).
//!
//! From a trusted peer, `X-Forwarded-For` is walked from right to left (all its headers, in
//! order, comma-separated), skipping trusted entries; the first untrusted entry is the client. If
//! every entry is trusted, the leftmost is. Without `X-Forwarded-For`, a single `X-Real-IP` from a
//! trusted peer names the client. An entry that is not an address (`unknown`, garbage, an empty
//! item), more than [`MAX_HOPS`] trusted hops, a non-UTF-8 header or a repeated `X-Real-IP` makes
//! the whole header untrustworthy: the client is the peer. Entries may carry a port
//! (`1.2.3.4:80`, `[2001:db8::1]:443`) or brackets; it is dropped. IPv4-mapped IPv6
//! (`::ffff:a.b.c.d`) is the IPv4 address, for the peer too.
//!
//! That one address feeds the IP ACLs, the IP throttle counter, `$context.sourceIp` and the logs.
//! The backend gets `X-Forwarded-For` rebuilt by the gateway: the client and the trusted hops
//! after it as resolved (normalised), then the peer; from an untrusted peer, just the peer.

use std::net::{IpAddr, SocketAddr};

use apig_policy::IpAcl;
use http::HeaderMap;

use crate::header_names::{X_FORWARDED_FOR, X_FORWARDED_PROTO, X_REAL_IP};

/// Most trusted hops walked in `X-Forwarded-For` before giving up on it.
pub(crate) const MAX_HOPS: usize = 32;

/// The resolved client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientAddr {
    pub ip: IpAddr,
    /// From a trusted peer: the forwarded chain from the client on (`client, hop, ...`), to
    /// which the gateway appends the peer. `None` when the client is the peer.
    pub chain: Option<Box<str>>,
}

/// `peer` is a trusted proxy and its `X-Forwarded-Proto` says the client used HTTPS: exactly
/// one such header, `https` (any case).
pub(crate) fn forwarded_https(peer: IpAddr, headers: &HeaderMap, trusted: Option<&IpAcl>) -> bool {
    if !trusted.is_some_and(|t| t.allows(peer.to_canonical())) {
        return false;
    }
    let mut values = headers.get_all(X_FORWARDED_PROTO).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.as_bytes().eq_ignore_ascii_case(b"https"),
        _ => false,
    }
}

/// Resolves the client of a request that arrived from `peer`.
pub(crate) fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: Option<&IpAcl>) -> ClientAddr {
    let peer = peer.to_canonical();
    let direct = ClientAddr {
        ip: peer,
        chain: None,
    };
    let Some(trusted) = trusted else {
        return direct;
    };
    if !trusted.allows(peer) {
        return direct;
    }
    let mut xff = headers.get_all(X_FORWARDED_FOR).iter().peekable();
    if xff.peek().is_none() {
        let mut real = headers.get_all(X_REAL_IP).iter();
        return match (real.next(), real.next()) {
            (Some(value), None) => match value.to_str().ok().and_then(parse_entry) {
                Some(ip) => ClientAddr {
                    ip,
                    chain: Some(ip.to_string().into_boxed_str()),
                },
                None => direct,
            },
            _ => direct,
        };
    }
    // Right to left: the trusted hops seen so far, then the client.
    let mut hops: Vec<IpAddr> = Vec::new();
    let mut client = None;
    'walk: for value in xff.rev() {
        let Ok(text) = value.to_str() else {
            return direct;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry) else {
                return direct;
            };
            if !trusted.allows(ip) {
                client = Some(ip);
                break 'walk;
            }
            if hops.len() >= MAX_HOPS {
                return direct;
            }
            hops.push(ip);
        }
    }
    // Every entry trusted: the leftmost is the client.
    let ip = match client {
        Some(ip) => ip,
        None => match hops.pop() {
            Some(ip) => ip,
            None => return direct,
        },
    };
    let mut chain = ip.to_string();
    for hop in hops.iter().rev() {
        chain.push_str(", ");
        chain.push_str(&hop.to_string());
    }
    ClientAddr {
        ip,
        chain: Some(chain.into_boxed_str()),
    }
}

/// One `X-Forwarded-For` item: an address, optionally bracketed or with a port.
fn parse_entry(raw: &str) -> Option<IpAddr> {
    let entry = raw.trim_matches([' ', '\t']);
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = entry.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|v6| IpAddr::V6(v6).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn acl(values: &[&str]) -> IpAcl {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        IpAcl::parse(true, &values).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(peer: &str, h: &[(&'static str, &str)], trusted: &[&str]) -> ClientAddr {
        let acl = acl(trusted);
        resolve(ip(peer), &headers(h), (!trusted.is_empty()).then_some(&acl))
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_send() {
        let c = client(
            "203.0.113.9",
            &[("x-forwarded-for", "10.0.0.1"), ("x-real-ip", "10.0.0.2")],
            &[],
        );
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("203.0.113.9"),
                chain: None
            }
        );
        let c = client(
            "203.0.113.9",
            &[("x-forwarded-for", "10.0.0.1")],
            &["127.0.0.1"],
        );
        assert_eq!(c.ip, ip("203.0.113.9"));
        assert_eq!(c.chain, None);
    }

    #[test]
    fn a_trusted_peer_names_the_rightmost_untrusted_entry() {
        let c = client(
            "127.0.0.1",
            &[("x-forwarded-for", "1.1.1.1, 203.0.113.5, 10.0.0.7")],
            &["127.0.0.1", "10.0.0.0/8"],
        );
        assert_eq!(c.ip, ip("203.0.113.5"));
        assert_eq!(c.chain.as_deref(), Some("203.0.113.5, 10.0.0.7"));
        // Several headers are one list, in order.
        let c = client(
            "127.0.0.1",
            &[
                ("x-forwarded-for", "spoof, 198.51.100.1"),
                ("x-forwarded-for", "10.1.1.1"),
            ],
            &["127.0.0.1", "10.0.0.0/8"],
        );
        assert_eq!(c.ip, ip("198.51.100.1"));
        assert_eq!(c.chain.as_deref(), Some("198.51.100.1, 10.1.1.1"));
    }

    #[test]
    fn all_trusted_means_the_leftmost() {
        let c = client(
            "127.0.0.1",
            &[("x-forwarded-for", "10.0.0.1, 10.0.0.2")],
            &["127.0.0.1", "10.0.0.0/8"],
        );
        assert_eq!(c.ip, ip("10.0.0.1"));
        assert_eq!(c.chain.as_deref(), Some("10.0.0.1, 10.0.0.2"));
    }

    #[test]
    fn garbage_falls_back_to_the_peer() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        for bad in [
            "unknown",
            "",
            "5.6.7.8,,10.0.0.5",
            "1.2.3.4, 10.0.0.1 x",
            "999.1.1.1",
            "[::1",
        ] {
            let c = client("127.0.0.1", &[("x-forwarded-for", bad)], &trusted);
            assert_eq!(c.ip, ip("127.0.0.1"), "{bad:?}");
            assert_eq!(c.chain, None, "{bad:?}");
        }
        // An invalid entry left of the client does not matter: the walk stops at the client.
        let c = client(
            "127.0.0.1",
            &[("x-forwarded-for", "garbage, 203.0.113.1")],
            &trusted,
        );
        assert_eq!(c.ip, ip("203.0.113.1"));
        // Too many trusted hops.
        let many = vec!["10.0.0.1"; MAX_HOPS + 1].join(",");
        let c = client("127.0.0.1", &[("x-forwarded-for", &many)], &trusted);
        assert_eq!(c.ip, ip("127.0.0.1"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let trusted = ["127.0.0.1", "::1"];
        let cases = [
            ("203.0.113.1:8080", "203.0.113.1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::2]", "2001:db8::2"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
            ("\t2001:db8::3 ", "2001:db8::3"),
        ];
        for (entry, want) in cases {
            let c = client("127.0.0.1", &[("x-forwarded-for", entry)], &trusted);
            assert_eq!(c.ip, ip(want), "{entry:?}");
            assert_eq!(c.chain.as_deref(), Some(want));
        }
        // An IPv4-mapped peer is its IPv4 address, trusted as such.
        let c = client(
            "::ffff:127.0.0.1",
            &[("x-forwarded-for", "203.0.113.1")],
            &trusted,
        );
        assert_eq!(c.ip, ip("203.0.113.1"));
        let c = client("::ffff:192.0.2.1", &[], &[]);
        assert_eq!(c.ip, ip("192.0.2.1"));
        // IPv6 peer trusted.
        let c = client("::1", &[("x-forwarded-for", "2001:db8::9")], &trusted);
        assert_eq!(c.ip, ip("2001:db8::9"));
    }

    #[test]
    fn x_real_ip_only_without_forwarded_for() {
        let trusted = ["127.0.0.1"];
        let c = client("127.0.0.1", &[("x-real-ip", "203.0.113.8")], &trusted);
        assert_eq!(c.ip, ip("203.0.113.8"));
        assert_eq!(c.chain.as_deref(), Some("203.0.113.8"));
        let c = client(
            "127.0.0.1",
            &[
                ("x-real-ip", "203.0.113.8"),
                ("x-forwarded-for", "198.51.100.2"),
            ],
            &trusted,
        );
        assert_eq!(c.ip, ip("198.51.100.2"));
        let c = client(
            "127.0.0.1",
            &[("x-real-ip", "203.0.113.8"), ("x-real-ip", "203.0.113.9")],
            &trusted,
        );
        assert_eq!(c.ip, ip("127.0.0.1"));
        let c = client("127.0.0.1", &[("x-real-ip", "nope")], &trusted);
        assert_eq!(c.ip, ip("127.0.0.1"));
        // No header at all from a trusted peer: the peer.
        let c = client("127.0.0.1", &[], &trusted);
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("127.0.0.1"),
                chain: None
            }
        );
    }
}
