//! Vectors produced by the official Python signers (`tests/gen_vectors.py`): SIG-APP
//! (`apigateway_sdk_python.signer`) and SIG-CORE (`huaweicloudsdkcore.signer.signer` driven
//! through a real `ApigClient`).

use apig_sign::{
    canonical_request, format_sdk_date, payload_hashes, signature, string_to_sign, verify,
    Authorization, RequestView, SignError, Signer, Verified, HEADER_CONTENT_SHA256, HEADER_DATE,
    UNSIGNED_PAYLOAD,
};
use serde_json::Value;

struct Vector {
    name: String,
    signer: String,
    key: String,
    secret: String,
    method: String,
    path: String,
    query: Option<String>,
    query_original: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    sdk_date: String,
    now: i64,
    canonical_request: String,
    string_to_sign: String,
    signature: String,
    authorization: String,
    payload_hash: String,
}

fn str_field(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("field {name} in {v}"))
        .to_owned()
}

fn vectors() -> Vec<Vector> {
    let all: Value = serde_json::from_str(include_str!("vectors.json")).expect("vectors.json");
    all.as_array()
        .expect("array")
        .iter()
        .map(|v| Vector {
            name: str_field(v, "name"),
            signer: str_field(v, "signer"),
            key: str_field(v, "key"),
            secret: str_field(v, "secret"),
            method: str_field(v, "method"),
            path: str_field(v, "path"),
            query: v["query"].as_str().map(str::to_owned),
            query_original: v["query_original"].as_str().map(str::to_owned),
            headers: v["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| (pair_item(h, 0), pair_item(h, 1)))
                .collect(),
            body: str_field(v, "body").into_bytes(),
            sdk_date: str_field(v, "sdk_date"),
            now: v["now"].as_i64().expect("now"),
            canonical_request: str_field(v, "canonical_request"),
            string_to_sign: str_field(v, "string_to_sign"),
            signature: str_field(v, "signature"),
            authorization: str_field(v, "authorization"),
            payload_hash: str_field(v, "payload_hash"),
        })
        .collect()
}

fn pair_item(pair: &Value, i: usize) -> String {
    pair[i]
        .as_str()
        .unwrap_or_else(|| panic!("header pair {pair}"))
        .to_owned()
}

/// A request to verify, owned so each test can tamper with one part.
#[derive(Clone)]
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn of(v: &Vector) -> Req {
        Req {
            method: v.method.clone(),
            path: v.path.clone(),
            query: v.query.clone(),
            headers: v.headers.clone(),
            body: v.body.clone(),
        }
    }

    fn with_view<T>(&self, f: impl FnOnce(&RequestView<'_>) -> T) -> T {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let view = RequestView {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &pairs,
        };
        f(&view)
    }

    /// Verifies against the vector's key; `Ok` carries the verified access key.
    fn verify(&self, v: &Vector, now: i64) -> Result<String, SignError> {
        self.with_view(|view| {
            verify(view, &self.body, now, |k| {
                (k == v.key).then(|| v.secret.as_bytes().to_vec())
            })
            .map(|Verified { access_key, .. }| access_key.to_owned())
        })
    }

    fn set_header(&mut self, name: &str, value: &str) {
        for (n, val) in &mut self.headers {
            if n.eq_ignore_ascii_case(name) {
                *val = value.to_owned();
            }
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn signed_headers(v: &Vector) -> Vec<String> {
    Authorization::parse(&v.authorization)
        .expect("authorization parses")
        .signed_headers
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn header_pairs_loaded() {
    // Guards the JSON plumbing: every vector has host, date and Authorization headers.
    for v in vectors() {
        let r = Req::of(&v);
        assert!(r.header("host").is_some(), "{}", v.name);
        assert_eq!(
            r.header("x-sdk-date"),
            Some(v.sdk_date.as_str()),
            "{}",
            v.name
        );
        assert_eq!(r.header("authorization"), Some(v.authorization.as_str()));
        assert_eq!(v.now, apig_sign::parse_sdk_date(&v.sdk_date).unwrap());
    }
}

#[test]
fn canonical_request_string_to_sign_and_signature_match_python() {
    let all = vectors();
    assert!(all.len() >= 25);
    for v in &all {
        let signed = signed_headers(v);
        let signed: Vec<&str> = signed.iter().map(String::as_str).collect();
        let r = Req::of(v);
        r.with_view(|view| {
            let hashes = payload_hashes(view, &signed, &v.body).expect("payload hashes");
            assert!(
                hashes.iter().any(|h| h == v.payload_hash),
                "{}: {:?} lacks {}",
                v.name,
                hashes,
                v.payload_hash
            );
            let cr = canonical_request(view, &signed, &v.payload_hash).expect("canonical");
            assert_eq!(cr, v.canonical_request, "{}", v.name);
        });
        let sts = string_to_sign(&v.sdk_date, &v.canonical_request);
        assert_eq!(sts, v.string_to_sign, "{}", v.name);
        assert_eq!(
            signature(v.secret.as_bytes(), &sts),
            v.signature,
            "{}",
            v.name
        );
    }
}

#[test]
fn spec_vector_is_included() {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "spec_1_1")
        .unwrap();
    assert_eq!(
        v.signature,
        "2cdaa154ff349e3e1a592900e739155712dec2a246496e002136d28720e48616"
    );
}

#[test]
fn verify_accepts_every_vector_with_sent_and_original_query() {
    for v in vectors() {
        let mut r = Req::of(&v);
        assert_eq!(r.verify(&v, v.now), Ok(v.key.clone()), "{}", v.name);
        r.query = v.query_original.clone();
        assert_eq!(
            r.verify(&v, v.now),
            Ok(v.key.clone()),
            "{} (original query)",
            v.name
        );
        // Methods are case-insensitive on the way in (SIG-APP uppercases).
        r.method = v.method.to_ascii_lowercase();
        assert_eq!(
            r.verify(&v, v.now),
            Ok(v.key.clone()),
            "{} (lowercase method)",
            v.name
        );
    }
}

#[test]
fn our_signer_matches_python_where_the_rules_agree() {
    for v in vectors() {
        let names_with_underscore = v.headers.iter().any(|(n, _)| n.contains('_'));
        let core_empty_unsigned = v.signer == "SIG-CORE"
            && v.body.is_empty()
            && v.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(HEADER_CONTENT_SHA256));
        let mut r = Req::of(&v);
        r.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
        r.query = v.query_original.clone();
        let signer = Signer {
            key: &v.key,
            secret: v.secret.as_bytes(),
        };
        let out = r
            .with_view(|view| signer.sign(view, &v.body, v.now))
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(out[0], ("X-Sdk-Date".to_owned(), v.sdk_date.clone()));
        assert_eq!(out[1].0, "Authorization");
        let ours = &out[1].1;
        if v.signer == "SIG-APP" || !(names_with_underscore || core_empty_unsigned) {
            assert_eq!(ours, &v.authorization, "{}", v.name);
        } else {
            assert_ne!(ours, &v.authorization, "{}", v.name);
        }
        // Whatever it signed, the verifier accepts it on the same request.
        r.headers.push(out[1].clone());
        assert_eq!(r.verify(&v, v.now), Ok(v.key.clone()), "{} (ours)", v.name);
    }
}

#[test]
fn flipping_the_body_fails_unless_unsigned() {
    for v in vectors() {
        let mut r = Req::of(&v);
        match r.body.first_mut() {
            Some(b) => *b ^= 0x01,
            None => r.body.push(b'x'),
        }
        let literal = signed_headers(&v)
            .contains(&HEADER_CONTENT_SHA256.to_owned())
            .then(|| r.header(HEADER_CONTENT_SHA256).unwrap().trim().to_owned());
        let expected = match literal.as_deref() {
            None => Err(SignError::BadSignature),
            Some(UNSIGNED_PAYLOAD) if v.payload_hash == UNSIGNED_PAYLOAD => Ok(v.key.clone()),
            // SIG-CORE signed the empty-body hash; a non-empty body no longer has it.
            Some(UNSIGNED_PAYLOAD) => Err(SignError::BadSignature),
            Some(_) => Err(SignError::BodyHashMismatch),
        };
        assert_eq!(r.verify(&v, v.now), expected, "{}", v.name);
    }
}

#[test]
fn flipping_a_query_value_fails() {
    for v in vectors() {
        let mut r = Req::of(&v);
        r.query = Some(match &v.query {
            Some(q) if q.contains('=') => q.replacen('=', "=Z", 1),
            Some(q) => format!("{q}&x=1"),
            None => "x=1".to_owned(),
        });
        assert_eq!(
            r.verify(&v, v.now),
            Err(SignError::BadSignature),
            "{}",
            v.name
        );
    }
}

#[test]
fn flipping_a_signed_header_fails_with_the_right_variant() {
    for v in vectors() {
        for name in signed_headers(&v) {
            let mut r = Req::of(&v);
            let changed = format!("{}x", r.header(&name).unwrap());
            r.set_header(&name, &changed);
            let expected = match name.as_str() {
                HEADER_DATE => SignError::MalformedDate,
                HEADER_CONTENT_SHA256 => SignError::BodyHashMismatch,
                _ => SignError::BadSignature,
            };
            assert_eq!(r.verify(&v, v.now), Err(expected), "{} {name}", v.name);
        }
    }
}

#[test]
fn unsigned_headers_may_change() {
    for v in vectors() {
        let signed = signed_headers(&v);
        let mut r = Req::of(&v);
        for (n, val) in &mut r.headers {
            let lower = n.to_ascii_lowercase();
            if lower != "authorization" && !signed.contains(&lower) {
                val.push_str("-changed");
            }
        }
        r.headers.push(("X-Added-Later".into(), "1".into()));
        assert_eq!(r.verify(&v, v.now), Ok(v.key.clone()), "{}", v.name);
    }
}

#[test]
fn flipping_the_date_fails() {
    for v in vectors() {
        let mut r = Req::of(&v);
        r.set_header(HEADER_DATE, &format_sdk_date(v.now + 1));
        assert_eq!(
            r.verify(&v, v.now),
            Err(SignError::BadSignature),
            "{}",
            v.name
        );

        let r = Req::of(&v);
        assert_eq!(
            r.verify(&v, v.now + 901),
            Err(SignError::Expired {
                signed: v.now,
                now: v.now + 901
            })
        );
        assert_eq!(
            r.verify(&v, v.now - 901),
            Err(SignError::Expired {
                signed: v.now,
                now: v.now - 901
            })
        );
        assert!(r.verify(&v, v.now + 899).is_ok());
        assert!(r.verify(&v, v.now - 899).is_ok());
    }
}

#[test]
fn other_parts_of_the_request_are_covered() {
    for v in vectors() {
        let mut r = Req::of(&v);
        r.path.push('x');
        assert_eq!(
            r.verify(&v, v.now),
            Err(SignError::BadSignature),
            "{} path",
            v.name
        );

        let mut r = Req::of(&v);
        r.method = if v.method.eq_ignore_ascii_case("GET") {
            "HEAD"
        } else {
            "GET"
        }
        .into();
        assert_eq!(
            r.verify(&v, v.now),
            Err(SignError::BadSignature),
            "{} method",
            v.name
        );

        let r = Req::of(&v);
        let wrong_secret =
            r.with_view(|view| verify(view, &r.body, v.now, |_| Some(b"wrong")).map(|_| ()));
        let unknown_key =
            r.with_view(|view| verify(view, &r.body, v.now, |_| None::<Vec<u8>>).map(|_| ()));
        assert_eq!(wrong_secret, Err(SignError::BadSignature));
        assert_eq!(unknown_key, Err(SignError::BadSignature));
    }
}

#[test]
fn trailing_slash_is_not_signed() {
    for name in ["trailing_slash_present", "trailing_slash_absent"] {
        let v = vectors().into_iter().find(|v| v.name == name).unwrap();
        let mut r = Req::of(&v);
        r.path = match r.path.strip_suffix('/') {
            Some(p) => p.to_owned(),
            None => format!("{}/", r.path),
        };
        assert_eq!(r.verify(&v, v.now), Ok(v.key.clone()), "{name}");
    }
}

#[test]
fn host_port_is_signed() {
    for name in ["host_with_port", "core_get_query"] {
        let v = vectors().into_iter().find(|v| v.name == name).unwrap();
        let mut r = Req::of(&v);
        assert_eq!(r.header("host"), Some("127.0.0.1:9080"));
        r.set_header("host", "127.0.0.1");
        assert_eq!(r.verify(&v, v.now), Err(SignError::BadSignature), "{name}");
    }
}

#[test]
fn plus_in_query_is_a_literal_plus() {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "spaces_tilde_plus_reserved")
        .unwrap();
    assert!(v.canonical_request.contains("q=a%2Bb"));
    let mut r = Req::of(&v);
    r.query = v.query_original.clone();
    assert!(r.query.as_deref().unwrap().contains("q=a+b"));
    assert!(r.verify(&v, v.now).is_ok());
    r.query = Some(r.query.unwrap().replace("q=a+b", "q=a%20b"));
    assert_eq!(r.verify(&v, v.now), Err(SignError::BadSignature));
}
