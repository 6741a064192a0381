//! Hostile input must produce errors, never panics.

use apig_sign::{
    canonical_query, canonical_request, canonical_uri, parse_sdk_date, payload_hashes, verify,
    Authorization, RequestView, SignError, Signer,
};

const PIECES: &[&str] = &[
    "%",
    "%2",
    "%zz",
    "%C3",
    "%A9",
    "%FF",
    "%2F",
    "%00",
    "a",
    "/",
    "//",
    "=",
    "&",
    "+",
    " ",
    "é",
    "中",
    ",",
    ";",
    "\t",
    "0",
    "9",
    "T",
    "Z",
    "~",
    "?",
    "#",
    "SDK-HMAC-SHA256 ",
    "SDK-HMAC-SHA256",
    "Access=",
    "AK",
    "SignedHeaders=",
    "Signature=",
    "host",
    "x-sdk-date",
    "x-sdk-content-sha256",
    "UNSIGNED-PAYLOAD",
    "20240101T000000Z",
    "e3b0c44298fc1c149afbf4c8996fb924",
    "27ae41e4649b934ca495991b7852b855",
    "\u{1f}",
    "\u{a0}",
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn junk(&mut self) -> String {
        let len = self.below(12);
        (0..len).map(|_| PIECES[self.below(PIECES.len())]).collect()
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let names = [
        "Host",
        "X-Sdk-Date",
        "Authorization",
        "x-sdk-content-sha256",
        "X-Other",
    ];
    for _ in 0..5000 {
        let path = rng.junk();
        let query = rng.junk();
        let _ = canonical_uri(&path);
        let _ = canonical_query(Some(&query));
        let _ = parse_sdk_date(&rng.junk());
        let auth_value = rng.junk();
        let _ = Authorization::parse(&auth_value);

        let values: Vec<String> = (0..6).map(|_| rng.junk()).collect();
        let mut headers: Vec<(&str, &str)> = Vec::new();
        for v in &values {
            headers.push((names[rng.below(names.len())], v.as_str()));
        }
        let view = RequestView {
            method: "GET",
            path: &path,
            query: Some(&query),
            headers: &headers,
        };
        let body = rng.junk().into_bytes();
        let now = rng.next() as i64;
        let _ = canonical_request(&view, &["host", "x-other"], "h");
        let _ = payload_hashes(&view, &["x-sdk-content-sha256"], &body);
        let result = verify(&view, &body, now, |_| Some(b"secret"));
        assert_ne!(result.map(|_| ()), Ok(()));
        let _ = Signer {
            key: "k",
            secret: b"s",
        }
        .sign(&view, &body, now);
    }
}

#[test]
fn well_formed_but_wrong_signatures_are_rejected_in_bulk() {
    // A structurally valid request with random signatures: only BadSignature comes back.
    let mut rng = XorShift(42);
    for _ in 0..500 {
        let sig: String = (0..64)
            .map(|_| char::from(b"0123456789abcdef"[rng.below(16)]))
            .collect();
        let auth =
            format!("SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature={sig}");
        let headers = [
            ("Host", "gw"),
            ("X-Sdk-Date", "20240101T000000Z"),
            ("Authorization", auth.as_str()),
        ];
        let view = RequestView {
            method: "GET",
            path: "/",
            query: None,
            headers: &headers,
        };
        let known = verify(&view, b"", 1_704_067_200, |_| Some(b"SK"));
        let unknown = verify(&view, b"", 1_704_067_200, |_| None::<&[u8]>);
        assert_eq!(known, Err(SignError::BadSignature));
        assert_eq!(unknown, Err(SignError::BadSignature));
    }
}
