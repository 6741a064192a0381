//! The client's query string as the backend will get it: pairs the client sent are forwarded
//! byte for byte unless a backend parameter removes or overrides them; pairs the gateway adds are
//! percent-encoded as APIG documents for query values.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// Bytes APIG percent-encodes in query values it sends to a backend: controls, non-ASCII, space
/// and `>=<+&%#"[\]^`{|}` (semantics digest §3.5).
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'>')
    .add(b'=')
    .add(b'<')
    .add(b'+')
    .add(b'&')
    .add(b'%')
    .add(b'#')
    .add(b'"')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A parsed query string with edits.
#[derive(Debug, Default)]
pub(crate) struct Query<'a> {
    pairs: Vec<Pair<'a>>,
}

#[derive(Debug)]
struct Pair<'a> {
    /// The pair as the client sent it (`k=v`), or as the gateway encoded it.
    raw: Cow<'a, str>,
    /// The key, percent-decoded.
    key: Cow<'a, str>,
    /// The value, percent-decoded (empty when the pair has no `=`).
    value: Cow<'a, str>,
    removed: bool,
}

// === impl Query ===

impl<'a> Query<'a> {
    /// Splits a raw query string (without `?`) into pairs; empty pieces are dropped.
    pub(crate) fn parse(raw: Option<&'a str>) -> Self {
        let Some(raw) = raw else {
            return Self::default();
        };
        let pairs = raw
            .split('&')
            .filter(|piece| !piece.is_empty())
            .map(|piece| {
                let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
                Pair {
                    raw: Cow::Borrowed(piece),
                    key: decode(k),
                    value: decode(v),
                    removed: false,
                }
            })
            .collect();
        Self { pairs }
    }

    /// The decoded value of the first pair with this key.
    pub(crate) fn get(&self, key: &str) -> Option<Cow<'a, str>> {
        self.pairs
            .iter()
            .find(|p| !p.removed && p.key == key)
            .map(|p| p.value.clone())
    }

    /// How many pairs have this key, and the decoded value of the first.
    pub(crate) fn count_and_first<'s>(&'s self, key: &str) -> (usize, Option<&'s str>) {
        let mut matching = self.pairs.iter().filter(|p| !p.removed && p.key == key);
        let first = matching.next().map(|p| p.value.as_ref());
        (first.map_or(0, |_| 1 + matching.count()), first)
    }

    /// Whether a pair with this key is present.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.pairs.iter().any(|p| !p.removed && p.key == key)
    }

    /// Drops every pair with this key.
    pub(crate) fn remove(&mut self, key: &str) {
        for pair in self.pairs.iter_mut().filter(|p| p.key == key) {
            pair.removed = true;
        }
    }

    /// Replaces every pair with this key by one pair `key=value`, encoded.
    pub(crate) fn set(&mut self, key: &str, value: &str) {
        self.remove(key);
        let raw = format!(
            "{}={}",
            utf8_percent_encode(key, QUERY_VALUE),
            utf8_percent_encode(value, QUERY_VALUE)
        );
        self.pairs.push(Pair {
            raw: Cow::Owned(raw),
            key: Cow::Owned(key.to_owned()),
            value: Cow::Owned(value.to_owned()),
            removed: false,
        });
    }

    /// Appends `?` and the remaining pairs to `out`; nothing when none remain.
    pub(crate) fn write_to(&self, out: &mut String) {
        let mut first = true;
        for pair in self.pairs.iter().filter(|p| !p.removed) {
            out.push(if first { '?' } else { '&' });
            out.push_str(&pair.raw);
            first = false;
        }
    }
}

fn decode(s: &str) -> Cow<'_, str> {
    percent_decode_str(s).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(q: &Query<'_>) -> String {
        let mut s = String::new();
        q.write_to(&mut s);
        s
    }

    #[test]
    fn forwards_client_pairs_byte_for_byte() {
        let q = Query::parse(Some("a=1&b=x%2By&&c&d=%E2%82%AC"));
        assert_eq!(render(&q), "?a=1&b=x%2By&c&d=%E2%82%AC");
        assert_eq!(q.get("b").as_deref(), Some("x+y"));
        assert_eq!(q.get("c").as_deref(), Some(""));
        assert_eq!(q.get("d").as_deref(), Some("€"));
        assert_eq!(q.get("zz"), None);
    }

    #[test]
    fn set_overrides_and_encodes() {
        let mut q = Query::parse(Some("a=1&b=2&a=3"));
        q.set("a", "x y&z=<€>");
        assert_eq!(render(&q), "?b=2&a=x%20y%26z%3D%3C%E2%82%AC%3E");
        assert_eq!(q.get("a").as_deref(), Some("x y&z=<€>"));
        q.remove("b");
        q.remove("a");
        assert_eq!(render(&q), "");
        assert!(!q.contains("a"));
    }

    #[test]
    fn empty_and_missing() {
        assert_eq!(render(&Query::parse(None)), "");
        assert_eq!(render(&Query::parse(Some(""))), "");
        let mut q = Query::parse(None);
        q.set("k", "v");
        assert_eq!(render(&q), "?k=v");
    }
}
