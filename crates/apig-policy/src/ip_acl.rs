//! IP access-control lists: PERMIT (whitelist) or DENY (blacklist) over single addresses,
//! `a-b` ranges and CIDR blocks, IPv4 and IPv6.
//!
//! Parsed once into sorted, merged, inclusive ranges per family, so evaluating is one binary
//! search, however many entries the list has.
//!
//! Rules:
//! - Entries: `1.2.3.4`, `2001:db8::1`, `1.2.3.4-1.2.3.9` (both ends of one family, start <=
//!   end, blanks around either end allowed), `10.0.0.0/8`, `2001:db8::/32` (host bits may be
//!   set and are cleared: `10.1.2.3/8` is `10.0.0.0/8`). Blanks around an entry are ignored;
//!   an empty entry, a zone id, brackets, octal-looking IPv4 (`010.0.0.1`) or a prefix length
//!   out of range is an error.
//! - IPv4-mapped IPv6 (`::ffff:a.b.c.d`) means the IPv4 address, both for the peer being
//!   checked and for entries: an entry lying wholly inside `::ffff:0:0/96` (an address, a
//!   range, a block of prefix length 96 or more) also matches the corresponding IPv4 peers. A
//!   wider IPv6 entry such as `::/0` stays an IPv6 entry: "all of IPv6" does not silently
//!   include all of IPv4.
//! - PERMIT: allowed iff some entry matches (an empty PERMIT list allows nobody). DENY: allowed
//!   iff no entry matches (an empty DENY list allows everybody).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// First address of the IPv4-mapped block `::ffff:0:0/96`.
const MAPPED_START: u128 = 0xffff_u128 << 32;
/// Last address of `::ffff:0:0/96`.
const MAPPED_END: u128 = MAPPED_START | 0xffff_ffff;
/// Entries are quoted in errors up to this many characters.
const MAX_QUOTED: usize = 64;

/// A parsed IP ACL, ready to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAcl {
    permit: bool,
    /// Sorted, disjoint, non-adjacent inclusive ranges.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// An entry of an ACL that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP ACL entry {entry:?}: {reason}")]
pub struct AclError {
    /// The entry as given (cut to 64 characters).
    pub entry: String,
    pub reason: &'static str,
}

/// An address as a number, for ranges of either family.
trait Numeric: Copy + Ord {
    fn successor(self) -> Option<Self>;
}

impl Numeric for u32 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Numeric for u128 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// One parsed entry, before sorting.
enum Range {
    V4(u32, u32),
    V6(u128, u128),
}

// === impl IpAcl ===

impl IpAcl {
    /// Parses `values`; `permit` true for a whitelist, false for a blacklist. The first bad
    /// entry is the error.
    pub fn parse(permit: bool, values: &[String]) -> Result<Self, AclError> {
        let mut v4 = Vec::with_capacity(values.len());
        let mut v6 = Vec::new();
        for value in values {
            match parse_entry(value).map_err(|reason| AclError {
                entry: value.chars().take(MAX_QUOTED).collect(),
                reason,
            })? {
                Range::V4(lo, hi) => v4.push((lo, hi)),
                Range::V6(lo, hi) => {
                    v6.push((lo, hi));
                    // Inside ::ffff:0:0/96 it names IPv4 addresses.
                    if MAPPED_START <= lo && hi <= MAPPED_END {
                        v4.push((low32(lo), low32(hi)));
                    }
                }
            }
        }
        Ok(Self {
            permit,
            v4: merge(v4),
            v6: merge(v6),
        })
    }

    /// Whether `ip` may pass. An IPv4-mapped IPv6 address is checked as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let matched = match ip.to_canonical() {
            IpAddr::V4(v4) => contains(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => contains(&self.v6, u128::from(v6)),
        };
        matched == self.permit
    }

    /// True for a whitelist (PERMIT), false for a blacklist (DENY).
    pub fn is_permit(&self) -> bool {
        self.permit
    }

    /// Number of merged ranges (both families); for diagnostics.
    pub fn range_count(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// The low 32 bits (the IPv4 address of a mapped IPv6 address).
fn low32(x: u128) -> u32 {
    (x & 0xffff_ffff) as u32
}

fn parse_entry(raw: &str) -> Result<Range, &'static str> {
    let entry = raw.trim();
    if entry.is_empty() {
        return Err("empty entry");
    }
    if let Some((addr, len)) = entry.split_once('/') {
        let addr = parse_addr(addr)?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the prefix length is not a number");
        }
        let len: u32 = len
            .parse()
            .map_err(|_| "the prefix length is not a number")?;
        return match addr {
            IpAddr::V4(a) => {
                if len > 32 {
                    return Err("an IPv4 prefix length is at most 32");
                }
                let host = u32::MAX.checked_shr(len).unwrap_or(0);
                let lo = u32::from(a) & !host;
                Ok(Range::V4(lo, lo | host))
            }
            IpAddr::V6(a) => {
                if len > 128 {
                    return Err("an IPv6 prefix length is at most 128");
                }
                let host = u128::MAX.checked_shr(len).unwrap_or(0);
                let lo = u128::from(a) & !host;
                Ok(Range::V6(lo, lo | host))
            }
        };
    }
    if let Some((a, b)) = entry.split_once('-') {
        let (a, b) = (parse_addr(a.trim())?, parse_addr(b.trim())?);
        return match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let (a, b) = (u32::from(a), u32::from(b));
                if a > b {
                    return Err("the range starts after it ends");
                }
                Ok(Range::V4(a, b))
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let (a, b) = (u128::from(a), u128::from(b));
                if a > b {
                    return Err("the range starts after it ends");
                }
                Ok(Range::V6(a, b))
            }
            _ => Err("the range mixes IPv4 and IPv6"),
        };
    }
    Ok(match parse_addr(entry)? {
        IpAddr::V4(a) => Range::V4(u32::from(a), u32::from(a)),
        IpAddr::V6(a) => Range::V6(u128::from(a), u128::from(a)),
    })
}

/// A bare IPv4 or IPv6 address (std's strict parsers: no leading zeros in IPv4 octets, no
/// brackets, no zone id).
fn parse_addr(s: &str) -> Result<IpAddr, &'static str> {
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        return Ok(IpAddr::V4(v4));
    }
    if let Ok(v6) = s.parse::<Ipv6Addr>() {
        return Ok(IpAddr::V6(v6));
    }
    Err("not an IPv4 or IPv6 address")
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge<T: Numeric>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        if let Some(last) = out.last_mut() {
            // Adjacent: `lo` is right after the last range's end.
            let touches = match last.1.successor() {
                Some(next) => lo <= next,
                None => true,
            };
            if touches {
                if hi > last.1 {
                    last.1 = hi;
                }
                continue;
            }
        }
        out.push((lo, hi));
    }
    out.shrink_to_fit();
    out
}

/// Whether `x` is in one of the sorted, disjoint ranges.
fn contains<T: Numeric>(ranges: &[(T, T)], x: T) -> bool {
    let after = ranges.partition_point(|(lo, _)| *lo <= x);
    after
        .checked_sub(1)
        .and_then(|i| ranges.get(i))
        .is_some_and(|(_, hi)| x <= *hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(permit: bool, values: &[&str]) -> IpAcl {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        IpAcl::parse(permit, &values).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// (entries, addresses that match, addresses that do not).
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );

    const CASES: &[Case] = &[
        (
            &["192.168.0.1"],
            &["192.168.0.1"],
            &["192.168.0.2", "192.168.0.0", "::1"],
        ),
        (
            &["192.168.0.5-192.168.0.10"],
            &["192.168.0.5", "192.168.0.7", "192.168.0.10"],
            &["192.168.0.4", "192.168.0.11"],
        ),
        (
            &[" 10.0.0.1 - 10.0.0.3 "],
            &["10.0.0.1", "10.0.0.3"],
            &["10.0.0.4"],
        ),
        (
            &["192.168.0.100/28"],
            &["192.168.0.96", "192.168.0.100", "192.168.0.111"],
            &["192.168.0.95", "192.168.0.112"],
        ),
        (
            &["10.0.0.0/8"],
            &["10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3"],
            &["11.0.0.0", "9.255.255.255", "::10.1.2.3"],
        ),
        // Host bits set: normalised.
        (&["10.1.2.3/8"], &["10.200.0.1"], &["11.0.0.1"]),
        (
            &["0.0.0.0/0"],
            &["0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4"],
            &["::1", "2001:db8::1"],
        ),
        (&["1.2.3.4/32"], &["1.2.3.4"], &["1.2.3.5", "1.2.3.3"]),
        (
            &["2001:db8::/32"],
            &[
                "2001:db8::",
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                "2001:DB8::1",
            ],
            &["2001:db9::", "2001:db7:ffff::", "10.0.0.1"],
        ),
        (
            &["2001:db8::1:2/32"],
            &["2001:db8:abcd::1"],
            &["2001:db9::1"],
        ),
        (&["::1"], &["::1"], &["::2", "127.0.0.1"]),
        (
            &["2001:db8::10-2001:db8::20"],
            &["2001:db8::10", "2001:db8::1a", "2001:db8::20"],
            &["2001:db8::f", "2001:db8::21"],
        ),
        (&["::/0"], &["::", "2001:db8::1", "ffff::"], &["1.2.3.4"]),
        // IPv4-mapped entries cover IPv4 peers, and the reverse.
        (
            &["::ffff:1.2.3.4"],
            &["1.2.3.4", "::ffff:1.2.3.4"],
            &["1.2.3.5"],
        ),
        (
            &["::ffff:10.0.0.0/104"],
            &["10.9.9.9", "::ffff:10.0.0.1"],
            &["11.0.0.0"],
        ),
        (
            &["1.2.3.4"],
            &["::ffff:1.2.3.4", "::FFFF:0102:0304"],
            &["::1.2.3.4", "64:ff9b::1.2.3.4"],
        ),
        // A v6 range that only partly covers the mapped block stays IPv6.
        (
            &["::fffe:0:0-::ffff:0.0.0.255"],
            &["::fffe:1:1", "::fffe:ffff:ffff"],
            &["0.0.0.0", "0.0.0.255", "0.0.1.0"],
        ),
        (
            &["::ffff:0:0/96"],
            &["0.0.0.0", "255.255.255.255"],
            &["::1", "::fffe:0:0"],
        ),
        // Overlapping, adjacent, duplicate and unsorted entries.
        (
            &[
                "10.0.0.5-10.0.0.9",
                "10.0.0.1-10.0.0.6",
                "10.0.0.10",
                "10.0.0.10",
                "9.0.0.0/8",
            ],
            &["10.0.0.1", "10.0.0.9", "10.0.0.10", "9.9.9.9"],
            &["10.0.0.0", "10.0.0.11"],
        ),
        (
            &["255.255.255.255", "255.255.255.254", "0.0.0.0"],
            &["255.255.255.255", "255.255.255.254", "0.0.0.0"],
            &["255.255.255.253", "0.0.0.1"],
        ),
        (
            &["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::"],
            &["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::"],
            &["::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"],
        ),
        (&[], &[], &["1.2.3.4", "::1"]),
    ];

    #[test]
    fn permit_and_deny_are_mirror_images() {
        for (entries, hits, misses) in CASES {
            let permit = acl(true, entries);
            let deny = acl(false, entries);
            assert!(permit.is_permit() && !deny.is_permit());
            for h in *hits {
                assert!(permit.allows(ip(h)), "PERMIT {entries:?} should allow {h}");
                assert!(!deny.allows(ip(h)), "DENY {entries:?} should refuse {h}");
            }
            for m in *misses {
                assert!(
                    !permit.allows(ip(m)),
                    "PERMIT {entries:?} should refuse {m}"
                );
                assert!(deny.allows(ip(m)), "DENY {entries:?} should allow {m}");
            }
        }
    }

    #[test]
    fn bad_entries_are_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("1.2.3", "address"),
            ("1.2.3.256", "address"),
            ("010.0.0.1", "address"),
            ("1.2.3.4.5", "address"),
            ("example.com", "address"),
            ("[::1]", "address"),
            ("fe80::1%eth0", "address"),
            ("1.2.3.4/33", "at most 32"),
            ("::/129", "at most 128"),
            ("1.2.3.4/", "prefix length"),
            ("1.2.3.4/-1", "prefix length"),
            ("1.2.3.4/+8", "prefix length"),
            ("1.2.3.4/0008", "prefix length"),
            ("1.2.3.4/8/8", "prefix length"),
            ("/8", "address"),
            ("1.2.3.9-1.2.3.4", "starts after"),
            ("::2-::1", "starts after"),
            ("1.2.3.4-::1", "mixes"),
            ("::ffff:1.2.3.4-1.2.3.5", "mixes"),
            ("1.2.3.4-", "address"),
            ("-1.2.3.4", "address"),
            ("1.2.3.4-1.2.3.5-1.2.3.6", "address"),
            ("1.2.3.4-1.2.3.5/24", "address"),
        ];
        for (entry, reason) in cases {
            let values = vec!["10.0.0.1".to_owned(), (*entry).to_owned()];
            let err = IpAcl::parse(true, &values).expect_err(entry);
            assert_eq!(err.entry, *entry);
            assert!(
                err.to_string().contains(reason),
                "{entry:?}: {err} should mention {reason:?}"
            );
        }
        let long = "x".repeat(1000);
        let err = IpAcl::parse(false, &[long]).unwrap_err();
        assert_eq!(err.entry.len(), MAX_QUOTED);
    }

    #[test]
    fn ranges_are_merged() {
        let a = acl(
            true,
            &[
                "10.0.0.0/24",
                "10.0.1.0/24",
                "10.0.0.5",
                "10.0.3.0-10.0.3.9",
            ],
        );
        assert_eq!(
            a.v4,
            vec![(0x0a00_0000, 0x0a00_01ff), (0x0a00_0300, 0x0a00_0309)]
        );
        assert_eq!(a.range_count(), 2);
        let all = acl(true, &["0.0.0.0-255.255.255.255", "1.2.3.4"]);
        assert_eq!(all.v4, vec![(0, u32::MAX)]);
    }

    #[test]
    fn hundreds_of_entries_agree_with_a_linear_scan() {
        // A pseudo-random list of singles, ranges and blocks, checked against the naive rule.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut entries = Vec::new();
        let mut raw: Vec<(u32, u32)> = Vec::new();
        for i in 0..600 {
            // Stay within 10.0.0.0/16 so hits are common.
            let base = 0x0a00_0000 | (next() as u32 & 0xffff);
            match i % 3 {
                0 => {
                    entries.push(Ipv4Addr::from(base).to_string());
                    raw.push((base, base));
                }
                1 => {
                    let end = base.saturating_add(next() as u32 & 0x3f);
                    entries.push(format!("{}-{}", Ipv4Addr::from(base), Ipv4Addr::from(end)));
                    raw.push((base, end));
                }
                _ => {
                    let len = 24 + (next() % 9) as u32;
                    let host = u32::MAX.checked_shr(len).unwrap_or(0);
                    entries.push(format!("{}/{len}", Ipv4Addr::from(base)));
                    raw.push((base & !host, (base & !host) | host));
                }
            }
        }
        let a = IpAcl::parse(true, &entries).unwrap();
        assert!(a.range_count() < 600);
        for _ in 0..20_000 {
            let x = 0x0a00_0000 | (next() as u32 & 0x1_ffff);
            let naive = raw.iter().any(|(lo, hi)| *lo <= x && x <= *hi);
            assert_eq!(a.allows(IpAddr::V4(Ipv4Addr::from(x))), naive, "{x:#x}");
        }
    }
}
