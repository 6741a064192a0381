//! Host → API group: exact domains and wildcard domains (`*.example.com`).
//!
//! Compare case-insensitively (DNS names are), ignoring one trailing dot (`example.com.` is the
//! same name). An exact domain beats any wildcard; among wildcards the longest suffix wins, so
//! `*.api.example.com` beats `*.example.com` for `a.api.example.com`. A wildcard needs at least
//! one label in front of its suffix: `*.example.com` does not match `example.com`.

use crate::hash::FxHashMap;

/// Longest host name looked up (RFC 1035 allows 253 characters, plus slack for a trailing dot).
const MAX_HOST_LEN: usize = 255;

/// Why a group domain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Empty, over 255 bytes, containing whitespace, a control character, `/`, or a `*` that is
    /// not the whole first label.
    #[error("invalid domain {0:?}")]
    Invalid(String),
    /// Bound to two groups (APIG forbids it: a host must name one group).
    #[error("domain {domain:?} is bound to more than one group")]
    Duplicate { domain: String },
}

/// Which group each domain names.
#[derive(Debug, Default)]
pub(crate) struct HostIndex {
    exact: FxHashMap<Box<str>, u32>,
    /// Key: the wildcard's suffix including its leading dot, `.example.com`.
    wildcard: FxHashMap<Box<str>, u32>,
}

impl HostIndex {
    /// Binds `domain` to `group`. Binding the same domain to the same group twice is harmless.
    pub(crate) fn insert(&mut self, domain: &str, group: u32) -> Result<(), DomainError> {
        let invalid = || DomainError::Invalid(domain.to_owned());
        let d = domain
            .strip_suffix('.')
            .unwrap_or(domain)
            .to_ascii_lowercase();
        if d.is_empty()
            || d.len() > MAX_HOST_LEN
            || d.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
        {
            return Err(invalid());
        }
        let (map, key) = match d.strip_prefix('*') {
            Some(suffix) => {
                if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                    return Err(invalid());
                }
                (&mut self.wildcard, suffix)
            }
            None if d.contains('*') => return Err(invalid()),
            None => (&mut self.exact, d.as_str()),
        };
        match map.get(key) {
            Some(&g) if g == group => Ok(()),
            Some(_) => Err(DomainError::Duplicate {
                domain: domain.to_owned(),
            }),
            None => {
                map.insert(key.into(), group);
                Ok(())
            }
        }
    }

    /// The group `host` (a Host header value without its port, any case) names.
    pub(crate) fn lookup(&self, host: &str) -> Option<u32> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.len() > MAX_HOST_LEN {
            return None;
        }
        let mut buf = [0u8; MAX_HOST_LEN];
        let lowered: &str = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            let dst = buf.get_mut(..host.len())?;
            dst.copy_from_slice(host.as_bytes());
            dst.make_ascii_lowercase();
            std::str::from_utf8(dst).ok()?
        } else {
            host
        };
        if let Some(&g) = self.exact.get(lowered) {
            return Some(g);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Leftmost dot first: the longest suffix wins. A dot at 0 would leave no label in front.
        lowered
            .bytes()
            .enumerate()
            .skip(1)
            .filter(|&(_, b)| b == b'.')
            .find_map(|(i, _)| self.wildcard.get(lowered.get(i..)?).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(domains: &[(&str, u32)]) -> HostIndex {
        let mut h = HostIndex::default();
        for (d, g) in domains {
            h.insert(d, *g).unwrap();
        }
        h
    }

    #[test]
    fn exact_beats_wildcard_and_longest_wildcard_wins() {
        let h = index(&[
            ("Api.Example.com", 0),
            ("*.example.com", 1),
            ("*.deep.example.com", 2),
            ("x.deep.example.com.", 3),
        ]);
        let cases = [
            ("api.example.com", Some(0)),
            ("API.EXAMPLE.COM", Some(0)),
            ("api.example.com.", Some(0)),
            ("other.example.com", Some(1)),
            ("a.b.example.com", Some(1)),
            ("a.deep.example.com", Some(2)),
            ("a.b.deep.example.com", Some(2)),
            ("x.deep.example.com", Some(3)),
            ("deep.example.com", Some(1)),
            ("example.com", None),
            (".example.com", None),
            ("example.org", None),
            ("", None),
        ];
        for (host, want) in cases {
            assert_eq!(h.lookup(host), want, "{host}");
        }
        assert_eq!(h.lookup(&"a".repeat(300)), None);
    }

    #[test]
    fn rejects_bad_and_conflicting_domains() {
        let mut h = HostIndex::default();
        for bad in [
            "", ".", "a b", "a/b", "*", "*.", "a.*.com", "*a.com", "**.a.com",
        ] {
            assert!(
                matches!(h.insert(bad, 0), Err(DomainError::Invalid(_))),
                "{bad}"
            );
        }
        h.insert("a.com", 0).unwrap();
        h.insert("A.com", 0).unwrap();
        assert!(matches!(
            h.insert("a.COM.", 1),
            Err(DomainError::Duplicate { .. })
        ));
        h.insert("*.a.com", 0).unwrap();
        assert!(matches!(
            h.insert("*.A.com", 1),
            Err(DomainError::Duplicate { .. })
        ));
    }
}
