//! The canonical path: a table of hostile and ordinary inputs, the bounds, and a property test
//! (never panics; `canonicalize(to_encoded(p)) == p`; invariants hold).

use apig_router::{canonicalize, PathError, MAX_PATH_LEN, MAX_SEGMENTS};
use PathError::*;

#[test]
fn canonicalization_table() {
    let ok: &[(&str, &str)] = &[
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        // Repeated slashes merge, a trailing slash stays.
        ("//a///b", "/a/b"),
        ("//a///b//", "/a/b/"),
        ("///", "/"),
        // Dot segments, RFC 3986 style: ending in one leaves a trailing slash.
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/..", "/"),
        ("/./", "/"),
        ("/a/b/../../c/", "/c/"),
        // Encoded dots are dots.
        ("/a/%2e%2E/b", "/b"),
        ("/a/%2E./b", "/b"),
        ("/a/.%2e", "/"),
        ("/%2e/a", "/a"),
        ("/a/%2E", "/a/"),
        // Not dot segments.
        ("/a..b/.../.a", "/a..b/.../.a"),
        // Decoding.
        ("/a%20b", "/a b"),
        ("/%41%7e%7E", "/A~~"),
        ("/%25", "/%"),
        ("/%2525", "/%25"),
        ("/%23/%3F", "/#/?"),
        ("/a+b;c=d:e@f", "/a+b;c=d:e@f"),
        // Unicode, encoded or raw.
        ("/caf%C3%A9", "/café"),
        ("/café", "/café"),
        ("/%E4%BD%A0%E5%A5%BD/x", "/你好/x"),
        ("/%F0%9F%98%80", "/😀"),
    ];
    for (raw, want) in ok {
        let got = canonicalize(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(got.as_str(), *want, "{raw:?}");
    }

    let bad: &[(&str, PathError)] = &[
        ("", NotAbsolute),
        ("a/b", NotAbsolute),
        ("*", NotAbsolute),
        ("%2Fa", NotAbsolute),
        // Climbing above the root.
        ("/..", AboveRoot),
        ("/../a", AboveRoot),
        ("/a/../..", AboveRoot),
        ("/a/../../b", AboveRoot),
        ("/%2e%2e", AboveRoot),
        ("/%2E%2E/etc/passwd", AboveRoot),
        // Encoded separators.
        ("/a%2Fb", EncodedSlash),
        ("/a%2fb", EncodedSlash),
        ("/..%2F..%2Fetc", EncodedSlash),
        ("/a%5Cb", EncodedBackslash),
        ("/a%5cb", EncodedBackslash),
        ("/a\\b", Backslash),
        ("/..\\..\\windows", Backslash),
        // NUL and control bytes, raw and encoded.
        ("/a%00", ControlCharacter),
        ("/a\0b", ControlCharacter),
        ("/a%01", ControlCharacter),
        ("/a%1F", ControlCharacter),
        ("/a%1f", ControlCharacter),
        // C1 controls (NEL is a line break to some systems), encoded or raw (found by fuzzing).
        ("/a%C2%85", ControlCharacter),
        ("/a%c2%9f/b", ControlCharacter),
        ("/a\u{9d}\u{9c}/d", ControlCharacter),
        ("/a%7F", ControlCharacter),
        ("/a\x7f", ControlCharacter),
        ("/a\tb", ControlCharacter),
        ("/a%0D%0AHost:%20evil", ControlCharacter),
        ("/a\r\nb", ControlCharacter),
        // Invalid percent-encoding.
        ("/a%zz", InvalidPercentEncoding),
        ("/a%4", InvalidPercentEncoding),
        ("/a%", InvalidPercentEncoding),
        ("/%4/b", InvalidPercentEncoding),
        ("/%g0", InvalidPercentEncoding),
        ("/%%30", InvalidPercentEncoding),
        ("/%+1", InvalidPercentEncoding),
        // Not UTF-8: overlong '/' and '.', a lone continuation byte, truncated, surrogate.
        ("/%C0%AF", InvalidUtf8),
        ("/%C0%AE%C0%AE/x", InvalidUtf8),
        ("/%E0%80%AF", InvalidUtf8),
        ("/%FF", InvalidUtf8),
        ("/%80", InvalidUtf8),
        ("/%E4%BD", InvalidUtf8),
        ("/%ED%A0%80", InvalidUtf8),
        // Even inside a segment that '..' removes afterwards.
        ("/%FF/..", InvalidUtf8),
        // Fragment and query markers.
        ("/a#b", Fragment),
        ("/index.html#.png", Fragment),
        ("/a?b=c", Query),
    ];
    for (raw, want) in bad {
        assert_eq!(canonicalize(raw), Err(*want), "{raw:?}");
    }
}

#[test]
fn length_bound_after_decoding() {
    let at = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    assert_eq!(
        canonicalize(&at).map(|p| p.as_str().len()),
        Ok(MAX_PATH_LEN)
    );
    let over = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert_eq!(canonicalize(&over), Err(TooLong));
    // Encoded: what counts is the decoded length.
    let enc_at = format!("/{}", "%41".repeat(MAX_PATH_LEN - 1));
    assert_eq!(
        canonicalize(&enc_at).map(|p| p.as_str().len()),
        Ok(MAX_PATH_LEN)
    );
    let enc_over = format!("/{}", "%41".repeat(MAX_PATH_LEN));
    assert_eq!(canonicalize(&enc_over), Err(TooLong));
    // A trailing slash counts.
    let slash_over = format!("/{}/", "a".repeat(MAX_PATH_LEN - 1));
    assert_eq!(canonicalize(&slash_over), Err(TooLong));
    // Long raw input that normalises to something short is fine up to the raw bound...
    let dots = "/a/..".repeat(4000);
    assert_eq!(canonicalize(&dots).unwrap().as_str(), "/");
    // ...and refused beyond it, without looking further.
    let huge = "/.".repeat(3 * MAX_PATH_LEN);
    assert_eq!(canonicalize(&huge), Err(TooLong));
}

#[test]
fn segment_bound() {
    let at = "/a".repeat(MAX_SEGMENTS);
    assert_eq!(canonicalize(&at).unwrap().segments().count(), MAX_SEGMENTS);
    // A trailing slash is not a segment.
    assert!(canonicalize(&format!("{at}/")).is_ok());
    let over = "/a".repeat(MAX_SEGMENTS + 1);
    assert_eq!(canonicalize(&over), Err(TooManySegments));
    // Counted after normalisation.
    assert!(canonicalize(&format!("{over}/..")).is_ok());
    assert!(canonicalize(&format!("{}//", "/a//".repeat(MAX_SEGMENTS))).is_ok());
}

#[test]
fn views_of_a_canonical_path() {
    let p = canonicalize("/a%20b/caf%C3%A9/%23%3F%25/").unwrap();
    assert_eq!(p.as_str(), "/a b/café/#?%/");
    assert_eq!(p.segments().collect::<Vec<_>>(), ["a b", "café", "#?%"]);
    assert!(p.has_trailing_slash());
    assert_eq!(p.to_encoded(), "/a%20b/caf%C3%A9/%23%3F%25/");
    let root = canonicalize("/").unwrap();
    assert_eq!(root.segments().count(), 0);
    assert!(root.has_trailing_slash());
    assert_eq!(root.to_encoded(), "/");
    let q = canonicalize("/x/y").unwrap();
    assert!(!q.has_trailing_slash());
    assert_eq!(q.to_string(), "/x/y");
}

/// xorshift64*: deterministic, dependency-free randomness for property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    "/",
    "/",
    "/",
    "a",
    "b",
    "Z",
    "0",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    "%",
    "%4",
    "%zz",
    "%41",
    "%20",
    "%25",
    "%2F",
    "%5C",
    "%5c",
    "\\",
    "#",
    "?",
    "%23",
    "%3F",
    "%00",
    "\0",
    "%1f",
    "%7F",
    "%C0%AF",
    "%C3%A9",
    "é",
    "%E4%BD%A0",
    "%E4%BD",
    "%FF",
    "%80",
    "~",
    "+",
    ";",
    "=",
    ":",
    "@",
    "!",
    "$",
    "&",
    "'",
    "(",
    ")",
    "*",
    ",",
    "-",
    "_",
    " ",
    "{",
    "}",
    "%7B",
    "😀",
];

fn check(raw: &str) {
    let Ok(p) = canonicalize(raw) else {
        return;
    };
    let s = p.as_str();
    assert!(s.starts_with('/'), "{raw:?} -> {s:?}");
    assert!(!s.contains("//"), "{raw:?} -> {s:?}");
    assert!(s.len() <= MAX_PATH_LEN);
    assert!(p.segments().count() <= MAX_SEGMENTS);
    for seg in p.segments() {
        assert!(seg != "." && seg != "..", "{raw:?} -> {s:?}");
        assert!(!seg.contains('\\') && !seg.bytes().any(|b| b < 0x20 || b == 0x7f));
    }
    let enc = p.to_encoded();
    assert!(enc.is_ascii(), "{enc:?}");
    assert_eq!(canonicalize(&enc).as_ref(), Ok(&p), "{raw:?} -> {enc:?}");
}

#[test]
fn property_never_panics_and_round_trips_through_the_wire_form() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut raw = String::from("/");
        for _ in 0..rng.below(24) {
            raw.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
        }
        check(&raw);
        // And without the guaranteed leading slash.
        check(raw.get(1..).unwrap_or_default());
    }
    // Arbitrary bytes (as valid UTF-8 strings: the input type) and every single escape.
    for _ in 0..5_000 {
        let bytes: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
        let s = String::from_utf8_lossy(&bytes);
        check(&format!("/{s}"));
    }
    for b in 0..=255u8 {
        check(&format!("/x%{b:02X}y"));
        check(&format!("/x%{b:02x}/%2e%2e/y"));
    }
}
