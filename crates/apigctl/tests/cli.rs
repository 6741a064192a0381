//! Runs the built `apigctl` against an in-test HTTP server that verifies every signature with
//! the real `apig_sign::verify`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const APP_KEY: &str = "app-key-1";
const APP_SECRET: &str = "app-secret-1";
const ADMIN_AK: &str = "ADMINAK0123456789";
const ADMIN_SK: &str = "admin-secret-key-0123456789";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const INSTANCE: &str = "fedcba9876543210fedcba9876543210";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn secret_of(key: &str) -> Option<&'static [u8]> {
    match key {
        APP_KEY => Some(APP_SECRET.as_bytes()),
        ADMIN_AK => Some(ADMIN_SK.as_bytes()),
        _ => None,
    }
}

/// One request as the server received it, and what `apig_sign::verify` said about it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `None` when unsigned, else the verified access key or the error.
    verdict: Option<Result<String, apig_sign::SignError>>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Verifies the recorded request again, with other secrets or altered headers.
    fn verify_with(
        &self,
        headers: &[(String, String)],
        secret: &'static [u8],
    ) -> Result<(), apig_sign::SignError> {
        let view_headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let view = apig_sign::RequestView {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &view_headers,
        };
        apig_sign::verify(&view, &self.body, now(), |_| Some(secret)).map(|_| ())
    }
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server {
            addr,
            seen,
            _rt: rt,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Verifies the signature (if any); answers 401 with an APIG error when it does not verify,
/// 404 with an APIG error for paths ending in `/missing`, else 200 with a small JSON echo.
async fn handle(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let signed = parts.headers.contains_key("authorization");
    let verdict = signed.then(|| {
        let view_headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let view = apig_sign::RequestView {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &view_headers,
        };
        apig_sign::verify(&view, &body, now(), secret_of).map(|v| v.access_key.to_owned())
    });
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body,
        verdict: verdict.clone(),
    };
    log.lock().unwrap().push(seen);
    let (status, json) = match verdict {
        Some(Err(e)) => (
            401,
            serde_json::json!({"error_code": "APIG.0301", "error_msg": e.to_string()}),
        ),
        _ if parts.uri.path().ends_with("/missing") => (
            404,
            serde_json::json!({"error_code": "APIG.3001", "error_msg": "not found"}),
        ),
        Some(Ok(key)) => (
            200,
            serde_json::json!({"path": parts.uri.path(), "access_key": key}),
        ),
        None => (200, serde_json::json!({"path": parts.uri.path()})),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-test", "yes")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}

/// Runs the binary with a clean environment (no APIG_* or proxy variables from outside).
fn apigctl(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_apigctl"))
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    for text in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(!text.contains(ADMIN_SK), "secret printed: {text}");
    }
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn signed_headers(seen: &Seen) -> String {
    let auth = seen.header("authorization").expect("signed");
    let start = auth.find("SignedHeaders=").unwrap() + "SignedHeaders=".len();
    auth[start..].split(',').next().unwrap().to_owned()
}

fn env_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("admin-credentials.env");
    std::fs::write(
        &path,
        format!(
            "# Written on first start; readable by its owner only.\nAPIG_ADMIN_AK={ADMIN_AK}\n\
             APIG_ADMIN_SK={ADMIN_SK}\nAPIG_PROJECT_ID={PROJECT}\nAPIG_INSTANCE_ID={INSTANCE}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn call_with_app_signature_and_host_override() {
    let server = Server::start();
    let url = server.url("/orders/a%20b?y=two%20words&x=1");
    let out = apigctl(
        &[
            "call",
            "post",
            &url,
            "--host",
            "g1.apig.localhost",
            "--app-key",
            APP_KEY,
            "--app-secret",
            APP_SECRET,
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-Custom: v1",
            "--stage",
            "TEST",
            "--data",
            r#"{"n":1}"#,
            "-i",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("x-test: yes\r\n"), "{text}");
    assert!(
        text.ends_with(r#"{"access_key":"app-key-1","path":"/orders/a%20b"}"#),
        "{text}"
    );

    let seen = server.last();
    // Accepted by the real verifier, with the overridden host sent and signed.
    assert_eq!(seen.verdict, Some(Ok(APP_KEY.to_owned())));
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.query.as_deref(), Some("y=two%20words&x=1"));
    assert_eq!(seen.body, br#"{"n":1}"#);
    assert_eq!(seen.header("host"), Some("g1.apig.localhost"));
    assert_eq!(seen.header("x-stage"), Some("TEST"));
    assert_eq!(
        signed_headers(&seen),
        "content-type;host;x-custom;x-sdk-date;x-stage"
    );
    // A wrong secret does not verify.
    assert_eq!(
        seen.verify_with(&seen.headers, b"not-the-app-secret"),
        Err(apig_sign::SignError::BadSignature)
    );
    // The signature covers the overridden host, not the URL's authority.
    let mut real_host = seen.headers.clone();
    for (n, v) in &mut real_host {
        if n == "host" {
            *v = server.addr.to_string();
        }
    }
    assert_eq!(
        seen.verify_with(&real_host, APP_SECRET.as_bytes()),
        Err(apig_sign::SignError::BadSignature)
    );
    assert_eq!(
        seen.verify_with(&seen.headers, APP_SECRET.as_bytes()),
        Ok(())
    );
}

#[test]
fn call_with_wrong_secret_fails_verification() {
    let server = Server::start();
    let out = apigctl(
        &[
            "call",
            "GET",
            &server.url("/x"),
            "--app-key",
            APP_KEY,
            "--app-secret",
            "wrong-secret",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "HTTP/1.1 401 Unauthorized\n");
    assert!(stdout(&out).contains("APIG.0301"));
    let seen = server.last();
    assert_eq!(seen.verdict, Some(Err(apig_sign::SignError::BadSignature)));
    // The URL's authority (with port) is what was sent and signed without --host.
    assert_eq!(seen.header("host"), Some(server.addr.to_string().as_str()));
}

#[test]
fn call_variants_iam_app_code_and_env_secret() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = env_file(&dir);
    let url = server.url("/iam");

    let out = apigctl(&["--env-file", &file, "call", "GET", &url, "--iam"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.last().verdict, Some(Ok(ADMIN_AK.to_owned())));

    // --ak on the command line implies IAM signing.
    let out = apigctl(
        &["call", "DELETE", &url, "--ak", ADMIN_AK, "--sk", ADMIN_SK],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.last().verdict, Some(Ok(ADMIN_AK.to_owned())));

    let out = apigctl(
        &["call", "GET", &url, "--app-key", APP_KEY],
        &[("APIG_APP_SECRET", APP_SECRET)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.last().verdict, Some(Ok(APP_KEY.to_owned())));

    let out = apigctl(&["call", "GET", &url, "--app-code", "code-1"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = server.last();
    assert_eq!(seen.verdict, None);
    assert_eq!(seen.header("x-apig-appcode"), Some("code-1"));
    assert_eq!(seen.header("x-sdk-date"), None);

    // Unsigned: nothing added.
    let out = apigctl(&["call", "GET", &url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.last().header("authorization"), None);
}

#[test]
fn get_is_signed_and_pretty_printed() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = env_file(&dir);
    let endpoint = server.url("");
    let out = apigctl(
        &[
            "get",
            "/instances/{instance}/api-groups",
            "--query",
            "name=a b",
            "--endpoint",
            &endpoint,
        ],
        &[("APIG_ENV_FILE", &file)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let path = format!("/v2/{PROJECT}/apigw/instances/{INSTANCE}/api-groups");
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"path": path, "access_key": ADMIN_AK})
    );
    assert!(stdout(&out).contains("\n  \"path\""), "not pretty");

    let seen = server.last();
    assert_eq!(seen.verdict, Some(Ok(ADMIN_AK.to_owned())));
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, path);
    assert_eq!(seen.query.as_deref(), Some("name=a%20b"));
    assert_eq!(seen.header("host"), Some(server.addr.to_string().as_str()));
    assert_eq!(
        seen.verify_with(&seen.headers, b"wrong-admin-secret"),
        Err(apig_sign::SignError::BadSignature)
    );

    // The same with a wrong secret from the environment: the server rejects, exit code 1,
    // APIG's error on stderr.
    let out = apigctl(
        &[
            "--endpoint",
            &endpoint,
            "--project",
            PROJECT,
            "get",
            "/instances",
        ],
        &[
            ("APIG_ADMIN_AK", ADMIN_AK),
            ("APIG_ADMIN_SK", "wrong-admin-secret"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "APIG.0301: signature does not match\n");
    assert_eq!(stdout(&out), "");
    assert_eq!(
        server.last().verdict,
        Some(Err(apig_sign::SignError::BadSignature))
    );
}

#[test]
fn management_errors_and_writes() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = env_file(&dir);
    let endpoint = server.url("");
    let base = ["--env-file", file.as_str(), "--endpoint", endpoint.as_str()];

    let out = apigctl(
        &[&base[..], &["delete", "/instances/{instance}/missing"]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "APIG.3001: not found\n");
    assert_eq!(server.last().method, "DELETE");

    let body_path = dir.path().join("env.json");
    std::fs::write(&body_path, br#"{"name": "TEST"}"#).unwrap();
    let data = format!("@{}", body_path.display());
    let out = apigctl(
        &[
            &base[..],
            &["post", "/instances/{instance}/envs", "--data", &data],
        ]
        .concat(),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = server.last();
    assert_eq!(seen.verdict, Some(Ok(ADMIN_AK.to_owned())));
    assert_eq!(seen.body, br#"{"name": "TEST"}"#);
    assert_eq!(seen.header("content-type"), Some("application/json"));

    // Wrappers go through the same code.
    let out = apigctl(
        &[&base[..], &["publish", "api-1", "--offline"]].concat(),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = server.last();
    assert_eq!(
        seen.path,
        format!("/v2/{PROJECT}/apigw/instances/{INSTANCE}/apis/action")
    );
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"action": "offline", "api_id": "api-1",
                           "env_id": "DEFAULT_ENVIRONMENT_RELEASE_ID"})
    );

    // Refused locally, nothing sent.
    let before = server.count();
    let out = apigctl(
        &[
            &base[..],
            &["put", "/instances/{instance}", "--data", "{not json"],
        ]
        .concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not valid JSON"));
    let out = apigctl(&[&base[..], &["get", "/apis/{api_id}"]].concat(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("{api_id}"));
    let out = apigctl(&["--endpoint", &endpoint, "get", "/instances"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("APIG_ADMIN_AK"));
    assert_eq!(server.count(), before);
}

#[test]
fn sign_prints_verifiable_headers() {
    let url = "http://127.0.0.1:8080/files/x?b=2&a=1";
    let out = apigctl(
        &[
            "sign",
            "GET",
            url,
            "--host",
            "g1.apig.localhost",
            "--app-key",
            APP_KEY,
            "--app-secret",
            APP_SECRET,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let added: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Host", "X-Sdk-Date", "Authorization"]);
    let seen = Seen {
        method: "GET".into(),
        path: "/files/x".into(),
        query: Some("b=2&a=1".into()),
        headers: added.clone(),
        body: Vec::new(),
        verdict: None,
    };
    assert_eq!(seen.verify_with(&added, APP_SECRET.as_bytes()), Ok(()));
    assert_eq!(
        seen.verify_with(&added, b"wrong"),
        Err(apig_sign::SignError::BadSignature)
    );

    let out = apigctl(&["sign", "GET", url], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing to sign"));
}

#[test]
fn help_never_shows_secret_values() {
    let out = apigctl(
        &["--help"],
        &[("APIG_ADMIN_SK", ADMIN_SK), ("APIG_APP_SECRET", ADMIN_SK)],
    );
    assert!(out.status.success());
    assert!(stdout(&out).contains("APIG_ADMIN_SK"));
    let out = apigctl(&["call", "--help"], &[("APIG_APP_SECRET", ADMIN_SK)]);
    assert!(out.status.success());
}
