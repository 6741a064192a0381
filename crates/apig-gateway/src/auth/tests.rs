use std::time::Duration;

use apig_proto::{App, AppAcl, IamCredential};
use apig_sign::{Signer, TokenSigner};
use bytes::Bytes;
use http::Request;
use http_body_util::{Full, StreamBody};

use super::*;

const NOW: i64 = 1_704_067_200;
const PROJECT: &str = "proj-1";
const CODE: &str = "Q29kZS1vbmUtd2l0aC1lbm91Z2gtZW50cm9weS0xMjM0NTY3ODkwYWJjZGVmZ2hpamts";
const SEED: [u8; 32] = [42u8; 32];

const BOUNDS: BodyBounds = BodyBounds {
    max_bytes: 1024,
    timeout: Duration::from_secs(5),
};

fn app(id: &str, key: &str, secret: &str) -> App {
    App {
        id: id.into(),
        name: format!("name_{id}"),
        app_key: key.into(),
        app_secret: secret.into(),
        ..Default::default()
    }
}

fn snapshot() -> Snapshot {
    let mut with_code = app("app-1", "key-1", "secret-1");
    with_code.app_codes = vec![CODE.into()];
    let mut fenced = app("app-3", "key-3", "secret-3");
    fenced.acl = Some(AppAcl {
        permit: true,
        values: vec!["10.0.0.0/8".into()],
    });
    Snapshot {
        project_id: PROJECT.into(),
        apps: vec![with_code, app("app-2", "key-2", "secret-2"), fenced],
        iam_credentials: vec![IamCredential {
            access_key: "AK1".into(),
            secret_key: "SK1".into(),
        }],
        token_keys: vec![TokenSigner::from_seed(&SEED).public_key().to_vec()],
        ..Default::default()
    }
}

fn creds() -> Credentials {
    Credentials::prepare(&snapshot()).unwrap()
}

fn api_rules(app_code: &str, authorized: &[&str]) -> ApiAuth {
    creds().api_auth(&apig_proto::Api {
        id: "api".into(),
        app_code_auth_type: app_code.into(),
        authorized_app_ids: authorized.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    })
}

/// A request with these headers, signed by `key`/`secret` unless `signer` is `None`.
fn request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    signer: Option<(&str, &str)>,
    signed_at: i64,
) -> Parts {
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    if let Some((key, secret)) = signer {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let view = RequestView {
            method,
            path,
            query,
            headers,
        };
        let s = Signer {
            key,
            secret: secret.as_bytes(),
        };
        all.extend(s.sign(&view, body, signed_at).unwrap());
    }
    let mut b = Request::builder().method(method).uri(target);
    for (n, v) in &all {
        b = b.header(n.as_str(), v.as_str());
    }
    b.body(()).unwrap().into_parts().0
}

fn body(bytes: &'static [u8]) -> Full<Bytes> {
    Full::new(Bytes::from_static(bytes))
}

async fn app_auth(
    rules: &ApiAuth,
    parts: &Parts,
    b: &'static [u8],
) -> Result<(usize, Caller, ClientBody<Full<Bytes>>), GatewayErrorKind> {
    creds()
        .authenticate_app(rules, parts, body(b), BOUNDS, NOW, Transport::Secure)
        .await
}

fn message(e: GatewayErrorKind) -> String {
    e.message().into_owned()
}

#[test]
fn prepare_indexes_and_refuses_ambiguity() {
    let c = creds();
    assert_eq!(c.apps.len(), 3);
    assert_eq!(c.by_key["key-2"], 1);
    assert_eq!(c.by_id["app-3"], 2);
    assert_eq!(c.by_code.len(), 1);
    assert!(c.apps[2].acl.is_some());
    let debug = format!("{c:?}");
    assert!(!debug.contains("secret-1") && !debug.contains("SK1") && !debug.contains(CODE));

    type Edit = Box<dyn Fn(&mut Snapshot)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "duplicated app id",
            Box::new(|s| s.apps.push(app("app-1", "other", "x"))),
        ),
        (
            "app key is used",
            Box::new(|s| s.apps.push(app("app-9", "key-1", "x"))),
        ),
        (
            "AppCode is used twice",
            Box::new(|s| {
                let mut a = app("app-9", "key-9", "x");
                a.app_codes = vec![CODE.into()];
                s.apps.push(a);
            }),
        ),
        (
            "empty app key or secret",
            Box::new(|s| s.apps.push(app("app-9", "key-9", ""))),
        ),
        (
            "empty app key or secret",
            Box::new(|s| s.apps.push(app("app-9", "", "x"))),
        ),
        ("empty id", Box::new(|s| s.apps.push(app("", "key-9", "x")))),
        (
            "empty AppCode",
            Box::new(|s| s.apps[1].app_codes = vec![String::new()]),
        ),
        (
            "10.0.0.300",
            Box::new(|s| {
                s.apps[1].acl = Some(AppAcl {
                    permit: false,
                    values: vec!["10.0.0.1".into(), "10.0.0.300".into()],
                })
            }),
        ),
        (
            "appears more than once",
            Box::new(|s| {
                s.iam_credentials.push(IamCredential {
                    access_key: "AK1".into(),
                    secret_key: "other".into(),
                })
            }),
        ),
        (
            "empty access key or secret",
            Box::new(|s| {
                s.iam_credentials.push(IamCredential {
                    access_key: "AK2".into(),
                    secret_key: String::new(),
                })
            }),
        ),
        (
            "token key 1 (31 bytes)",
            Box::new(|s| s.token_keys.push(vec![1u8; 31])),
        ),
    ];
    for (want, edit) in cases {
        let mut s = snapshot();
        edit(&mut s);
        let err = Credentials::prepare(&s).err().unwrap_or_default();
        assert!(err.contains(want), "{err:?} should mention {want:?}");
    }
}

#[test]
fn api_rules_resolve_authorized_apps() {
    let rules = api_rules("HEADER", &["app-3", "app-1", "ghost", "app-1"]);
    assert!(rules.app_code);
    assert_eq!(rules.authorized_apps, vec![0, 2]);
    assert!(api_rules("header", &[]).app_code);
    assert!(!api_rules("DISABLE", &[]).app_code);
    assert!(!api_rules("", &[]).app_code);
}

#[tokio::test]
async fn app_signature_verifies_and_buffers_the_body() {
    let rules = api_rules("DISABLE", &["app-2"]);
    let parts = request(
        "POST",
        "/v1/orders?b=%20~&a=1&a=0",
        &[
            ("host", "api.example.com:8080"),
            ("content-type", "application/json"),
        ],
        b"{\"n\":1}",
        Some(("key-2", "secret-2")),
        NOW - 60,
    );
    let (index, caller, body) = app_auth(&rules, &parts, b"{\"n\":1}").await.unwrap();
    assert_eq!(index, 1);
    assert_eq!(caller.app_id(), Some("app-2"));
    assert_eq!(caller.app_name(), Some("name_app-2"));
    assert!(matches!(
        caller,
        Caller::App {
            method: AppMethod::Signature,
            ..
        }
    ));
    match body {
        ClientBody::Buffered(b) => assert_eq!(&b[..], b"{\"n\":1}"),
        ClientBody::Streaming(_) => panic!("a signed body hash needs the body"),
    }
    // The body is part of the signature.
    let err = app_auth(&rules, &parts, b"{\"n\":2}").await.unwrap_err();
    assert_eq!(
        message(err),
        "Incorrect app authentication information: verify signature fail"
    );
}

#[tokio::test]
async fn unsigned_payload_streams() {
    let rules = api_rules("DISABLE", &[]);
    let parts = request(
        "POST",
        "/upload",
        &[
            ("host", "api.example.com"),
            ("x-sdk-content-sha256", "UNSIGNED-PAYLOAD"),
            ("content-type", "application/octet-stream"),
        ],
        b"ignored",
        Some(("key-1", "secret-1")),
        NOW,
    );
    let (_, _, body) = app_auth(&rules, &parts, b"anything at all").await.unwrap();
    assert!(matches!(body, ClientBody::Streaming(_)));
    assert_eq!(payload_mode(&parts.headers), PayloadMode::Unsigned);
}

#[tokio::test]
async fn unknown_key_and_wrong_secret_are_indistinguishable() {
    let rules = api_rules("DISABLE", &[]);
    let wrong = request(
        "GET",
        "/x",
        &[("host", "h")],
        b"",
        Some(("key-1", "not-the-secret")),
        NOW,
    );
    let unknown = request(
        "GET",
        "/x",
        &[("host", "h")],
        b"",
        Some(("nobody", "secret-1")),
        NOW,
    );
    let a = app_auth(&rules, &wrong, b"").await.unwrap_err();
    let b = app_auth(&rules, &unknown, b"").await.unwrap_err();
    assert_eq!(a, b);
    assert_eq!(a.code(), "APIG.0303");
    assert_eq!(
        message(a),
        "Incorrect app authentication information: verify signature fail"
    );
    // An IAM key is not an app key, and the reverse.
    let iam_signed = request(
        "GET",
        "/x",
        &[("host", "h")],
        b"",
        Some(("AK1", "SK1")),
        NOW,
    );
    assert_eq!(
        app_auth(&rules, &iam_signed, b"").await.unwrap_err(),
        GatewayErrorKind::AppAuthFailed("verify signature fail".into())
    );
    let app_signed = request(
        "GET",
        "/x",
        &[("host", "h")],
        b"",
        Some(("key-1", "secret-1")),
        NOW,
    );
    let err = creds()
        .authenticate_iam(&app_signed, body(b""), BOUNDS, NOW)
        .await
        .unwrap_err();
    assert_eq!(
        message(err),
        "Incorrect IAM authentication information: verify signature fail"
    );
}

#[tokio::test]
async fn signature_failure_messages() {
    let rules = api_rules("DISABLE", &[]);
    let old = request(
        "GET",
        "/x",
        &[("host", "h")],
        b"",
        Some(("key-1", "secret-1")),
        NOW - 16 * 60,
    );
    assert_eq!(
        message(app_auth(&rules, &old, b"").await.unwrap_err()),
        "Incorrect app authentication information: signature expired, signature \
         time:20231231T234400Z,server time:20240101T000000Z"
    );
    let no_access = request(
        "GET",
        "/x",
        &[
            ("host", "h"),
            (
                "authorization",
                "SDK-HMAC-SHA256 SignedHeaders=host;x-sdk-date, Signature=00",
            ),
        ],
        b"",
        None,
        NOW,
    );
    assert_eq!(
        message(app_auth(&rules, &no_access, b"").await.unwrap_err()),
        "Incorrect app authentication information: Access or Credential is empty in Authorization"
    );
    let bare = request(
        "GET",
        "/x",
        &[("host", "h"), ("authorization", "SDK-HMAC-SHA256")],
        b"",
        None,
        NOW,
    );
    assert_eq!(
        message(app_auth(&rules, &bare, b"").await.unwrap_err()),
        "Incorrect app authentication information: Access or Credential is empty in Authorization"
    );
    let missing = request("GET", "/x", &[("host", "h")], b"", None, NOW);
    assert_eq!(
        app_auth(&rules, &missing, b"").await.unwrap_err(),
        GatewayErrorKind::AppAuthMissing
    );
    // Another scheme is not an app credential.
    let bearer = request(
        "GET",
        "/x",
        &[("host", "h"), ("authorization", "Bearer abc")],
        b"",
        None,
        NOW,
    );
    assert_eq!(
        app_auth(&rules, &bearer, b"").await.unwrap_err(),
        GatewayErrorKind::AppAuthMissing
    );
}

#[tokio::test]
async fn http2_authority_stands_in_for_host() {
    let rules = api_rules("DISABLE", &[]);
    // Signed with host api.example.com; sent with only the authority (as HTTP/2 does).
    let headers = [("host", "api.example.com")];
    let view = RequestView {
        method: "GET",
        path: "/x",
        query: None,
        headers: &headers,
    };
    let signed = Signer {
        key: "key-1",
        secret: b"secret-1",
    }
    .sign(&view, b"", NOW)
    .unwrap();
    let mut b = Request::builder()
        .method("GET")
        .uri("http://api.example.com/x")
        .version(http::Version::HTTP_2);
    for (n, v) in &signed {
        b = b.header(n.as_str(), v.as_str());
    }
    let parts = b.body(()).unwrap().into_parts().0;
    assert!(app_auth(&rules, &parts, b"").await.is_ok());
}

#[tokio::test]
async fn app_code() {
    let on = api_rules("HEADER", &["app-1"]);
    let off = api_rules("DISABLE", &["app-1"]);
    let valid = request(
        "GET",
        "/x",
        &[("host", "h"), ("x-apig-appcode", CODE)],
        b"",
        None,
        NOW,
    );
    let (index, caller, body) = app_auth(&on, &valid, b"").await.unwrap();
    assert_eq!(index, 0);
    assert_eq!(caller.to_string(), "app:app-1 (appcode)");
    assert_eq!(Caller::Anonymous.to_string(), "-");
    assert!(matches!(
        caller,
        Caller::App {
            method: AppMethod::AppCode,
            ..
        }
    ));
    assert!(matches!(body, ClientBody::Streaming(_)));
    assert_eq!(
        app_auth(&off, &valid, b"").await.unwrap_err(),
        GatewayErrorKind::AppAuthMissing
    );

    let almost = &CODE[..CODE.len() - 1];
    for bad in [almost, "x", ""] {
        let parts = request(
            "GET",
            "/x",
            &[("host", "h"), ("x-apig-appcode", bad)],
            b"",
            None,
            NOW,
        );
        assert_eq!(
            message(app_auth(&on, &parts, b"").await.unwrap_err()),
            "Incorrect app authentication information: invalid AppCode"
        );
    }
    let twice = request(
        "GET",
        "/x",
        &[
            ("host", "h"),
            ("x-apig-appcode", CODE),
            ("x-apig-appcode", CODE),
        ],
        b"",
        None,
        NOW,
    );
    assert!(app_auth(&on, &twice, b"").await.is_err());

    // A signature takes precedence over an AppCode.
    let both = request(
        "GET",
        "/x",
        &[("host", "h"), ("x-apig-appcode", CODE)],
        b"",
        Some(("key-2", "secret-2")),
        NOW,
    );
    let (index, _, _) = app_auth(&on, &both, b"").await.unwrap();
    assert_eq!(index, 1);
}

#[test]
fn authorization_and_acl() {
    let c = creds();
    let rules = api_rules("DISABLE", &["app-1", "app-3"]);
    let inside: IpAddr = "10.1.2.3".parse().unwrap();
    let outside: IpAddr = "192.168.1.1".parse().unwrap();
    assert_eq!(c.authorize_app(&rules, 0, outside), Ok(()));
    assert_eq!(
        c.authorize_app(&rules, 1, inside),
        Err(GatewayErrorKind::AppNotAuthorized)
    );
    assert_eq!(c.authorize_app(&rules, 2, inside), Ok(()));
    assert_eq!(
        c.authorize_app(&rules, 2, "::ffff:10.9.9.9".parse().unwrap()),
        Ok(())
    );
    assert_eq!(
        c.authorize_app(&rules, 2, outside),
        Err(GatewayErrorKind::AppIpDenied)
    );
    // Not authorized is checked before the ACL.
    let none = api_rules("DISABLE", &[]);
    assert_eq!(
        c.authorize_app(&none, 2, outside),
        Err(GatewayErrorKind::AppNotAuthorized)
    );
}

#[tokio::test]
async fn iam_tokens() {
    let c = creds();
    let signer = TokenSigner::from_seed(&SEED);
    let with_token = |token: &str| {
        request(
            "GET",
            "/x",
            &[("host", "h"), ("x-auth-token", token)],
            b"",
            None,
            NOW,
        )
    };
    let iam = |parts: Parts| {
        let c = &c;
        async move { c.authenticate_iam(&parts, body(b""), BOUNDS, NOW).await }
    };

    let good = signer.issue(PROJECT, "AK1", NOW - 10, 3600, "t1");
    let (caller, forwarded) = iam(with_token(&good)).await.unwrap();
    assert!(matches!(
        &caller,
        Caller::Iam { access_key, method: IamMethod::Token } if &**access_key == "AK1"
    ));
    assert!(matches!(forwarded, ClientBody::Streaming(_)));
    assert_eq!(caller.app_id(), None);

    let cases = [
        (
            signer.issue(PROJECT, "AK1", NOW - 7200, 3600, "t"),
            "token expired",
        ),
        (
            signer.issue(PROJECT, "AK1", NOW + 3600, 3600, "t"),
            "token is not valid yet",
        ),
        (
            signer.issue("other-project", "AK1", NOW, 3600, "t"),
            "the token is not valid in this project",
        ),
        (
            signer.issue(PROJECT, "deleted-ak", NOW, 3600, "t"),
            "the token's credential no longer exists",
        ),
        (
            TokenSigner::from_seed(&[1u8; 32]).issue(PROJECT, "AK1", NOW, 3600, "t"),
            "token signed by an unknown key",
        ),
        (format!("{good}x"), "decrypt token fail"),
        ("garbage".to_owned(), "decrypt token fail"),
    ];
    for (token, reason) in cases {
        let err = iam(with_token(&token)).await.unwrap_err();
        assert_eq!(err.code(), "APIG.0301");
        assert_eq!(
            message(err),
            format!("Incorrect IAM authentication information: {reason}")
        );
    }

    let twice = request(
        "GET",
        "/x",
        &[
            ("host", "h"),
            ("x-auth-token", &good),
            ("x-auth-token", &good),
        ],
        b"",
        None,
        NOW,
    );
    assert!(iam(twice).await.is_err());

    let nothing = request("GET", "/x", &[("host", "h")], b"", None, NOW);
    assert_eq!(
        iam(nothing).await.unwrap_err(),
        GatewayErrorKind::IamAuthMissing
    );

    // A snapshot without a project accepts no token.
    let mut s = snapshot();
    s.project_id.clear();
    let no_project = Credentials::prepare(&s).unwrap();
    let parts = with_token(&signer.issue("", "AK1", NOW, 60, "t"));
    assert!(no_project
        .authenticate_iam(&parts, body(b""), BOUNDS, NOW)
        .await
        .is_err());
}

#[tokio::test]
async fn iam_signature() {
    let c = creds();
    let parts = request(
        "PUT",
        "/x",
        &[("host", "h"), ("content-type", "application/json")],
        b"{}",
        Some(("AK1", "SK1")),
        NOW,
    );
    let (caller, forwarded) = c
        .authenticate_iam(&parts, body(b"{}"), BOUNDS, NOW)
        .await
        .unwrap();
    assert!(matches!(
        &caller,
        Caller::Iam { access_key, method: IamMethod::Signature } if &**access_key == "AK1"
    ));
    assert!(matches!(forwarded, ClientBody::Buffered(_)));
    assert_eq!(caller.to_string(), "iam:AK1 (signature)");
}

#[tokio::test]
async fn signed_bodies_are_bounded() {
    let rules = api_rules("DISABLE", &[]);
    let big: &'static [u8] = &[b'x'; 2048];
    let parts = request(
        "POST",
        "/x",
        &[("host", "h")],
        big,
        Some(("key-1", "secret-1")),
        NOW,
    );
    // No Content-Length: the limit trips while reading.
    assert_eq!(
        app_auth(&rules, &parts, big).await.unwrap_err(),
        GatewayErrorKind::BodyTooLarge
    );
    // A declared length over the bound is refused before reading.
    let declared = request(
        "POST",
        "/x",
        &[("host", "h"), ("content-length", "2048")],
        big,
        Some(("key-1", "secret-1")),
        NOW,
    );
    assert_eq!(
        app_auth(&rules, &declared, b"").await.unwrap_err(),
        GatewayErrorKind::BodyTooLarge
    );
}

#[tokio::test]
async fn a_body_that_never_ends_times_out() {
    let rules = api_rules("DISABLE", &[]);
    let parts = request(
        "POST",
        "/x",
        &[("host", "h")],
        b"",
        Some(("key-1", "secret-1")),
        NOW,
    );
    let stream = futures_util::stream::pending::<Result<http_body::Frame<Bytes>, std::io::Error>>();
    let endless = StreamBody::new(stream);
    let quick = BodyBounds {
        timeout: Duration::from_millis(50),
        ..BOUNDS
    };
    let err = creds()
        .authenticate_app(&rules, &parts, endless, quick, NOW, Transport::Secure)
        .await
        .unwrap_err();
    assert_eq!(err, GatewayErrorKind::RequestTimeout);
}

#[test]
fn payload_modes() {
    let signed = |extra: &[(&str, &str)]| {
        let mut h = vec![("host", "h")];
        h.extend_from_slice(extra);
        request("POST", "/x", &h, b"", Some(("key-1", "secret-1")), NOW).headers
    };
    assert_eq!(payload_mode(&signed(&[])), PayloadMode::Hashed);
    let hash = apig_sign::sha256_hex(b"");
    assert_eq!(
        payload_mode(&signed(&[("x-sdk-content-sha256", &hash)])),
        PayloadMode::Hashed
    );
    assert_eq!(
        payload_mode(&signed(&[("x-sdk-content-sha256", "UNSIGNED-PAYLOAD")])),
        PayloadMode::Unsigned
    );
    // Present but not signed: the body hash is what was signed.
    let mut h = signed(&[]);
    h.insert("x-sdk-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
    assert_eq!(payload_mode(&h), PayloadMode::Hashed);
    // Unparseable or repeated Authorization: the body does not matter.
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, "SDK-HMAC-SHA256 nonsense".parse().unwrap());
    assert_eq!(payload_mode(&h), PayloadMode::NotNeeded);
    let mut h = signed(&[]);
    h.append(AUTHORIZATION, "SDK-HMAC-SHA256 x".parse().unwrap());
    assert_eq!(payload_mode(&h), PayloadMode::NotNeeded);
}
