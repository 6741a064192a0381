//! Hostile input against the real gateway, as raw bytes over sockets (nothing normalises on the
//! client side). The rows follow ../shared/reference/reliability-and-security.md §3: each sends
//! one request and asserts the status, whether the backend was reached, and for framing rows
//! that the next request on the same connection gets its own answer.
//!
//! Setup: `/api` (prefix match, to the recording echo backend), `/admin` (prefix match, an IP ACL
//! that denies everyone) and `/signed` (APP authentication), all in one group.

use std::time::{Duration, Instant};

use apig_testkit::EchoBackend;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{sample, scrape, Stack, RELEASE};

/// One HTTP/1.1 response read off a connection.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// A raw client connection that reads responses one at a time.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Conn {
    async fn open(s: &Stack) -> Conn {
        Conn {
            stream: TcpStream::connect(s.gw.addr).await.expect("connect"),
            buf: Vec::new(),
            closed: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        if self.stream.write_all(bytes).await.is_err() {
            self.closed = true;
        }
    }

    /// Reads more bytes; false when the peer closed (or reset) or nothing came in time.
    async fn fill(&mut self) -> bool {
        if self.closed {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => {
                self.closed = true;
                false
            }
        }
    }

    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                return Some(String::from_utf8_lossy(&line[..at]).into_owned());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next whole response, or `None` if the connection ended first.
    async fn response(&mut self, head_request: bool) -> Option<Response> {
        let status_line = self.line().await?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':')?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Some(r);
        }
        if let Some(len) = r.header("content-length") {
            let len: usize = len.parse().ok()?;
            r.body = self.take(len).await?;
        } else if r
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = usize::from_str_radix(self.line().await?.split(';').next()?, 16).ok()?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                let data = self.take(size + 2).await?;
                r.body.extend_from_slice(&data[..size]);
            }
        } else {
            while self.fill().await {}
            r.body = std::mem::take(&mut self.buf);
        }
        Some(r)
    }
}

struct Setup {
    s: Stack,
    host: String,
}

impl Setup {
    async fn start() -> Setup {
        let s = Stack::start().await;
        let (group, host) = s.group("hostile").await;
        let api = s
            .create_api(&s.http_api(&group, "api", "ANY", "/api", json!({"match_mode": "SWA"})))
            .await;
        s.publish(&api, RELEASE).await;
        let admin = s
            .create_api(&s.http_api(
                &group,
                "admin",
                "ANY",
                "/admin",
                json!({"match_mode": "SWA"}),
            ))
            .await;
        let published = s.publish(&admin, RELEASE).await;
        let signed = s.http_api(
            &group,
            "signed",
            "ANY",
            "/signed",
            json!({"match_mode": "SWA", "auth_type": "APP"}),
        );
        let signed = s.create_api(&signed).await;
        s.publish(&signed, RELEASE).await;
        let acl = s
            .api
            .post(
                &s.inst("/acls"),
                &json!({"acl_name": "nobody", "acl_type": "DENY", "entity_type": "IP",
                        "acl_value": "0.0.0.0/0,::/0"}),
            )
            .await;
        assert_eq!(acl.status, 201, "{:?}", acl.body);
        let bound = s
            .api
            .post(
                &s.inst("/acl-bindings"),
                &json!({"acl_id": acl.body["id"], "publish_ids": [published["publish_id"]]}),
            )
            .await;
        assert_eq!(bound.status, 201, "{:?}", bound.body);
        s.settled().await;
        let setup = Setup { s, host };
        // The baseline: the routes answer as the rows assume.
        let ok = setup.once(&setup.get("/api/x")).await;
        assert_eq!(ok.map(|r| r.status), Some(200));
        let denied = setup.once(&setup.get("/admin/x")).await;
        assert_eq!(denied.map(|r| r.status), Some(403));
        setup
    }

    fn backend(&self) -> &EchoBackend {
        &self.s.backend
    }

    fn get(&self, target: &str) -> Vec<u8> {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        )
        .into_bytes()
    }

    /// `GET /api/x` with extra raw header lines (each ending in CRLF).
    fn with_headers(&self, lines: &str) -> Vec<u8> {
        format!(
            "GET /api/x HTTP/1.1\r\nHost: {}\r\n{lines}Connection: close\r\n\r\n",
            self.host
        )
        .into_bytes()
    }

    async fn once(&self, request: &[u8]) -> Option<Response> {
        let mut c = Conn::open(&self.s).await;
        c.send(request).await;
        c.response(false).await
    }

    /// Sends `request`; the answer's status must be one of `expect` (0: the connection closed
    /// without an answer) and, when every expected status is an error, the backend must not
    /// have been reached.
    async fn row(&self, id: &str, request: &[u8], expect: &[u16]) -> Option<Response> {
        let hits = self.backend().hits();
        let answer = self.once(request).await;
        let status = answer.as_ref().map_or(0, |r| r.status);
        assert!(
            expect.contains(&status),
            "{id}: status {status}, expected one of {expect:?}: {:?}",
            answer
                .as_ref()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        );
        if expect.iter().all(|s| *s == 0 || *s >= 400) {
            assert_eq!(self.backend().hits(), hits, "{id}: the backend was reached");
        }
        answer
    }

    /// Framing rows: `request`, then a plain request on the same connection. The first answer
    /// must be one of `expect`; the connection must then be closed, or the follow-up must get
    /// its own answer from the backend (never a response to something smuggled).
    async fn framing(&self, id: &str, request: &[u8], expect: &[u16]) {
        self.framing_then(id, request, expect, false).await;
    }

    /// [`Setup::framing`]; with `must_close`, the gateway must also close the connection after
    /// its answer (RFC 9112 §6.3 for a request with both Transfer-Encoding and Content-Length).
    async fn framing_then(&self, id: &str, request: &[u8], expect: &[u16], must_close: bool) {
        let mut c = Conn::open(&self.s).await;
        c.send(request).await;
        let first = c.response(false).await;
        let status = first.as_ref().map_or(0, |r| r.status);
        assert!(
            expect.contains(&status),
            "{id}: status {status}, expected one of {expect:?}: {first:?}"
        );
        let follow = format!(
            "GET /api/follow-{id} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.host
        );
        c.send(follow.as_bytes()).await;
        let next = c.response(false).await;
        assert!(
            !(must_close && next.is_some()),
            "{id}: the connection stayed open: {next:?}"
        );
        if let Some(next) = next {
            assert_eq!(next.status, 200, "{id}: follow-up {next:?}");
            assert_eq!(
                next.json()["path"],
                format!("/api/follow-{id}"),
                "{id}: the follow-up got another request's answer"
            );
            // Nothing else is queued behind it.
            assert!(c.buf.is_empty(), "{id}: extra bytes {:?}", c.buf);
        }
    }

    /// No request to `/admin` (denied to everyone) ever reached the backend.
    fn assert_admin_never_reached(&self) {
        let leaked: Vec<_> = self
            .backend()
            .seen()
            .into_iter()
            .filter(|r| {
                let path = r.target.split('?').next().unwrap_or_default();
                path.to_ascii_lowercase().contains("admin")
            })
            .collect();
        assert!(leaked.is_empty(), "the backend saw {leaked:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_paths() {
    let t = Setup::start().await;
    // P1, P2, P4: dot segments and merged slashes that lead to /admin are denied like /admin.
    for (id, target) in [
        ("P1", "/api/../admin/x"),
        ("P2a", "/api/%2e%2e/admin/x"),
        ("P2b", "/api/%2E%2e/admin/x"),
        ("P2c", "/api/.%2e/admin/x"),
        ("P4a", "//admin/x"),
        ("P4b", "/api//..//admin/x"),
        ("P4c", "///admin"),
    ] {
        t.row(id, &t.get(target), &[400, 403]).await;
    }
    // P3, P7, P8: encoded separators, NUL, bad escapes, overlong UTF-8.
    for (id, target) in [
        ("P3a", "/api/..%2fadmin/x"),
        ("P3b", "/api%2fadmin"),
        ("P3c", "/api/..%5cadmin"),
        ("P7a", "/api/%00x"),
        ("P7b", "/api/x%00.json"),
        ("P7c", "/api/%zz"),
        ("P8", "/api/%c0%ae%c0%ae/admin"),
    ] {
        let r = t.row(id, &t.get(target), &[400]).await.unwrap();
        assert_eq!(r.json()["error_code"], "APIG.0201", "{id}");
    }
    // Escapes above the root.
    t.row("P1b", &t.get("/api/../../etc/passwd"), &[400, 404])
        .await;
    // P6: a raw '#' is not part of a request target; an encoded one is data.
    t.row("P6a", &t.get("/admin/x#frag"), &[400, 403]).await;
    t.row("P6b", &t.get("/admin/x%23.png"), &[403]).await;
    let r = t.row("P6c", &t.get("/api/x%23.png"), &[200]).await.unwrap();
    assert_eq!(r.json()["path"], "/api/x%23.png");
    // P9: an absolute-form target routes by its own authority, consistently with the ACL.
    let absolute = format!(
        "GET http://{}/admin/x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        t.host, t.host
    );
    t.row("P9a", absolute.as_bytes(), &[400, 403]).await;
    let mismatch = format!(
        "GET http://other.example/api/x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        t.host
    );
    t.row("P9b", mismatch.as_bytes(), &[400, 404]).await;
    // P10: paths are case-sensitive for the router and the ACL alike.
    t.row("P10", &t.get("/ADMIN/x"), &[404]).await;
    // P11: an overlong target is refused quickly.
    let long = format!("/api/{}", "a".repeat(64 * 1024));
    t.row("P11", &t.get(&long), &[414, 400]).await;
    // P12: a query never changes the path.
    let r = t
        .row("P12", &t.get("/api/x?next=/../admin"), &[200])
        .await
        .unwrap();
    assert_eq!(r.json()["path"], "/api/x");
    t.assert_admin_never_reached();
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_headers_and_hosts() {
    let t = Setup::start().await;
    // H1, H2: too many headers, one huge header.
    let many: String = (0..10_000).map(|i| format!("a{i}: b\r\n")).collect();
    t.row("H1", &t.with_headers(&many), &[431, 400, 0]).await;
    let huge = format!("x-big: {}\r\n", "v".repeat(1024 * 1024));
    t.row("H2", &t.with_headers(&huge), &[431, 400, 494, 0])
        .await;
    // H3, H4, H5: NUL, bare CR or LF, obs-fold, malformed names.
    for (id, lines) in [
        ("H3a", "x-a: a\0b\r\n"),
        ("H3b", "x-a: a\rb\r\n"),
        ("H4", "x-a: 1\r\n  2\r\n"),
        ("H5a", "x-a : x\r\n"),
        ("H5b", ": x\r\n"),
        ("H5c", "x(a): x\r\n"),
    ] {
        t.row(id, &t.with_headers(lines), &[400]).await;
    }
    // H6: an invalid UTF-8 value is carried as bytes (or refused), never a crash.
    let mut h6 = t.with_headers("");
    let at = h6.len() - 2;
    h6.splice(at..at, b"x-bin: \xff\xfe\r\n".iter().copied());
    let r = t.row("H6", &h6, &[200, 400]).await.unwrap();
    if r.status == 200 {
        let seen = t.backend().seen();
        let last = seen.last().unwrap();
        let value = last
            .headers
            .iter()
            .find(|(k, _)| k == "x-bin")
            .map(|(_, v)| v.clone());
        assert_eq!(value, Some(b"\xff\xfe".to_vec()), "H6: bytes unchanged");
    }
    // H7, H8, H9: underscores, hop-by-hop abuse and copies of gateway-set headers.
    let r = t
        .row(
            "H7-9",
            &t.with_headers(
                "X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\
                 X-Request-Id: forged\r\nX-Forwarded-Host: evil.example\r\n\
                 Forwarded: for=6.6.6.6\r\nConnection: X-Forwarded-For, X-Request-Id\r\n",
            ),
            &[200],
        )
        .await
        .unwrap();
    let echo = r.json();
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert_eq!(headers["x-forwarded-host"], t.host.as_str(), "{headers}");
    assert_ne!(headers["x-request-id"], "forged", "{headers}");
    assert_eq!(
        headers["x-request-id"].as_str(),
        r.header("x-request-id"),
        "the gateway's own request id"
    );
    assert!(headers.get("x_forwarded_for").is_none(), "{headers}");
    assert!(!headers.to_string().contains("6.6.6.6"), "{headers}");
    // H10: duplicated credentials are refused, never a 5xx.
    for (id, lines) in [
        ("H10a", "Authorization: a\r\nAuthorization: b\r\n"),
        (
            "H10b",
            "X-Sdk-Date: 20260101T000000Z\r\nX-Sdk-Date: 20260101T000000Z\r\n",
        ),
        ("H10c", "X-Apig-AppCode: a\r\nX-Apig-AppCode: b\r\n"),
    ] {
        let request =
            String::from_utf8(t.with_headers(lines))
                .unwrap()
                .replacen("/api/x", "/signed/x", 1);
        t.row(id, request.as_bytes(), &[400, 401]).await;
    }
    // O1: no Host, two Hosts, userinfo or a space in Host.
    t.row(
        "O1a",
        b"GET /api/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        &[400],
    )
    .await;
    for (id, hosts) in [
        ("O1b", format!("Host: {h}\r\nHost: {h}\r\n", h = t.host)),
        ("O1c", format!("Host: a@{}\r\n", t.host)),
        ("O1d", format!("Host: {} x\r\n", t.host)),
    ] {
        let request = format!("GET /api/x HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        t.row(id, request.as_bytes(), &[400]).await;
    }
    // O2: case and a trailing dot name the same host, for routing and the ACL.
    let upper = format!("{}.", t.host.to_ascii_uppercase());
    for (target, want) in [("/api/x", 200), ("/admin/x", 403)] {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: {upper}\r\nConnection: close\r\n\r\n");
        t.row("O2", request.as_bytes(), &[want]).await;
    }
    t.assert_admin_never_reached();
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_framing() {
    let t = Setup::start().await;
    let h = &t.host;
    let smuggled = format!("GET /admin/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n");
    let post = |headers: &str, body: &str| {
        format!("POST /api/x HTTP/1.1\r\nHost: {h}\r\n{headers}\r\n{body}").into_bytes()
    };
    // S1, S2: conflicting or malformed Content-Length.
    for (id, cl) in [
        ("S1", "Content-Length: 5\r\nContent-Length: 6\r\n"),
        ("S2a", "Content-Length: 5, 5\r\n"),
        ("S2b", "Content-Length: +5\r\n"),
        ("S2c", "Content-Length: 0x5\r\n"),
        ("S2d", "Content-Length: \r\n"),
        ("S2e", "Content-Length: 100000000000000000000\r\n"),
    ] {
        t.framing(id, &post(cl, "hello"), &[400, 0]).await;
    }
    // S3, S4: Transfer-Encoding with Content-Length, or one the gateway does not speak.
    let chunked_smuggle = format!("0\r\n\r\n{smuggled}");
    // hyper follows RFC 9112 §6.3: Transfer-Encoding wins, the request is forwarded re-framed
    // (chunked, no Content-Length) and the connection is closed after the answer, so what
    // follows the chunked body is never read as a request.
    t.framing_then(
        "S3",
        &post(
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            &chunked_smuggle,
        ),
        &[200, 400, 0],
        true,
    )
    .await;
    for (id, te) in [
        ("S4a", "Transfer-Encoding: xchunked\r\n"),
        ("S4b", "Transfer-Encoding: chunked, identity\r\n"),
        ("S4c", "Transfer-Encoding: identity\r\n"),
        ("S4d", "Transfer-Encoding : chunked\r\n"),
    ] {
        t.framing(id, &post(te, &chunked_smuggle), &[400, 501, 0])
            .await;
    }
    // S5: hostile chunk sizes.
    for (id, body) in [
        ("S5a", "ffffffffffffffffffff\r\nx\r\n0\r\n\r\n"),
        ("S5b", "-1\r\nx\r\n0\r\n\r\n"),
        ("S5c", "0x10\r\nx\r\n0\r\n\r\n"),
        ("S5d", "1;ext\nx\r\n0\r\n\r\n"),
        ("S5e", "1\r\nxx0\r\n\r\n"),
    ] {
        t.framing(id, &post("Transfer-Encoding: chunked\r\n", body), &[400, 0])
            .await;
    }
    // S6: a huge declared body is refused before it is read.
    t.framing(
        "S6",
        &post("Content-Length: 10000000000\r\n", "tiny"),
        &[413],
    )
    .await;
    // S7: an early answer (401 on a signed API) with a body that looks like a request.
    let early = format!(
        "POST /signed/x HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    t.framing("S7", early.as_bytes(), &[401]).await;
    // S8: an Upgrade the backend does not accept: no tunnel; the connection stays HTTP.
    let upgrade = format!(
        "GET /api/x HTTP/1.1\r\nHost: {h}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    t.framing("S8", upgrade.as_bytes(), &[200]).await;
    // S9: HTTP/1.0 POST without Content-Length: the body is whatever precedes the close.
    let old = format!("POST /api/x HTTP/1.0\r\nHost: {h}\r\n\r\n{smuggled}");
    t.row("S9", old.as_bytes(), &[200, 400, 411]).await;
    // S10: Expect: 100-continue on an unauthenticated request: refused without the body.
    let expect = format!(
        "POST /signed/x HTTP/1.1\r\nHost: {h}\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    );
    let mut c = Conn::open(&t.s).await;
    c.send(expect.as_bytes()).await;
    let r = c
        .response(false)
        .await
        .expect("S10: an answer without sending the body");
    assert_eq!(r.status, 401, "S10: {r:?}");

    t.assert_admin_never_reached();
}

/// B3: request values that try to change the backend's authority or path are percent-encoded.
#[tokio::test(flavor = "multi_thread")]
async fn request_values_cannot_redirect_the_backend() {
    let s = Stack::start().await;
    let (group, host) = s.group("ssrf").await;
    let body = s.http_api(
        &group,
        "ssrf",
        "GET",
        "/ssrf/{name}",
        json!({
            "req_params": [{"name": "name", "type": "STRING", "location": "PATH", "required": 1}],
            "backend_params": [{"name": "name", "value": "name", "location": "PATH",
                                "origin": "REQUEST"}],
            "backend_api": {"req_uri": "/b/{name}"}
        }),
    );
    let api = s.create_api(&body).await;
    s.publish(&api, RELEASE).await;
    s.settled().await;
    for (value, must_not) in [
        ("@evil.example", "evil.example/"),
        ("%2F..%2Fadmin", "/admin"),
        (":8080", ":8080/"),
    ] {
        let before = s.backend.hits();
        let r = s.call("GET", &host, &format!("/ssrf/{value}"), &[]).await;
        if r.status == 200 {
            let path = r.body["path"].as_str().unwrap_or_default().to_owned();
            assert!(path.starts_with("/b/"), "{value}: {path}");
            assert!(!path.contains(must_not), "{value}: {path}");
            let seen = s.backend.seen();
            let last = seen.last().unwrap();
            assert_eq!(
                last.headers
                    .iter()
                    .find(|(k, _)| k == "host")
                    .map(|(_, v)| v.clone()),
                Some(s.backend.authority().into_bytes()),
                "{value}: the backend authority is the API's"
            );
        } else {
            assert_eq!(r.status, 400, "{value}: {:?}", r.body);
            assert_eq!(s.backend.hits(), before, "{value}");
        }
    }
}

/// B1/B2: a backend in an operator-denied network (`--deny-backend-network 127.0.0.2/32`) is
/// refused at connect time, on the resolved address, with 502 and without the backend seeing
/// anything; loopback outside it still works. DNS rebinding is the same check (the address is
/// judged when dialled, not when published).
#[tokio::test(flavor = "multi_thread")]
async fn backends_in_denied_networks_are_never_reached() {
    let s = Stack::start_with_args(&[], &["--deny-backend-network", "127.0.0.2/32"]).await;
    let denied = EchoBackend::start_at("127.0.0.2:0".parse().unwrap()).await;
    let (group, host) = s.group("egress").await;
    let mut ids = Vec::new();
    for (name, uri, url_domain) in [
        ("denied", "/denied", denied.authority()),
        // IPv4-mapped IPv6 form of the same address.
        (
            "mapped",
            "/mapped",
            format!("[::ffff:127.0.0.2]:{}", denied.addr.port()),
        ),
        ("allowed", "/allowed", s.backend.authority()),
    ] {
        let body = s.http_api(
            &group,
            name,
            "GET",
            uri,
            json!({"backend_api": {"url_domain": url_domain, "retry_count": "3"}}),
        );
        ids.push(s.create_api(&body).await);
    }
    for id in &ids {
        s.publish(id, RELEASE).await;
    }
    s.settled().await;
    for path in ["/denied", "/mapped"] {
        let r = s.call("GET", &host, path, &[]).await;
        assert_eq!(
            (r.status, r.body["error_code"].as_str()),
            (502, Some("APIG.0201")),
            "B1 {path}: {:?}",
            r.body
        );
    }
    assert_eq!(denied.hits(), 0, "B1: the denied backend was reached");
    let ok = s.call("GET", &host, "/allowed", &[]).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
}

/// B1 at definition time: a literal backend address in the always-refused set is refused with
/// 400 APIG.2022 and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_backend_addresses_are_refused_by_the_management_api() {
    let s = Stack::start().await;
    let (group, _) = s.group("metadata").await;
    for (i, url_domain) in [
        "169.254.169.254",
        "169.254.169.254:80",
        "[fd00:ec2::254]:80",
        "0.0.0.0:8080",
    ]
    .into_iter()
    .enumerate()
    {
        let body = s.http_api(
            &group,
            &format!("md_{i}"),
            "GET",
            &format!("/md{i}"),
            json!({"backend_api": {"url_domain": url_domain}}),
        );
        let r = s.api.post(&s.inst("/apis"), &body).await;
        assert_eq!(
            (r.status, r.body["error_code"].as_str()),
            (400, Some("APIG.2022")),
            "B1 {url_domain}: {:?}",
            r.body
        );
    }
    let listed = s.api.get(&s.inst("/apis")).await;
    assert_eq!(listed.body["total"], 0, "{:?}", listed.body);
    // A channel member at the metadata address: refused, no channel stored.
    let r = s
        .api
        .post(
            &s.inst("/vpc-channels"),
            &json!({"name": "md-lb", "port": 80, "balance_strategy": 1, "member_type": "ip",
                    "members": [{"host": "169.254.169.254", "weight": 1}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.2022")),
        "{:?}",
        r.body
    );
    let channels = s.api.get(&s.inst("/vpc-channels")).await;
    assert_eq!(channels.body["total"], 0, "{:?}", channels.body);
}

/// Every management route of `crates/apig-control/src/routes/mod.rs`, as (method, path with
/// `{param}` placeholders). Read from the source, so a route added later is covered without
/// anyone remembering to list it here.
fn management_routes() -> Vec<(String, String)> {
    let source = include_str!("../../crates/apig-control/src/routes/mod.rs");
    let (instance, project) = (
        "/v2/{project_id}/apigw/instances/{instance_id}",
        "/v2/{project_id}/apigw",
    );
    let mut routes = Vec::new();
    for chunk in source.split(".route(").skip(1) {
        // The arguments of this `.route(...)` call: up to its closing parenthesis.
        let mut depth = 1usize;
        let end = chunk
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(chunk.len(), |(at, _)| at);
        let args = &chunk[..end];
        let Some(start) = args.find('"') else {
            continue;
        };
        let Some(len) = args[start + 1..].find('"') else {
            continue;
        };
        let path = args[start + 1..start + 1 + len]
            .replace("{i}", instance)
            .replace("{p}", project)
            .replace("{{", "{")
            .replace("}}", "}");
        if !path.starts_with("/v2/") {
            continue;
        }
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = args
                .match_indices(&format!("{method}("))
                .any(|(at, _)| at == 0 || !args.as_bytes()[at - 1].is_ascii_alphanumeric());
            if called {
                routes.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// C1: every management route refuses a request without credentials and one signed with a wrong
/// secret, with APIG's 401 JSON, and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn management_routes_without_valid_credentials_are_401() {
    let s = Stack::start().await;
    let routes = management_routes();
    assert!(routes.len() > 100, "only {} routes found", routes.len());
    let id = "0123456789abcdef0123456789abcdef";
    let http = apig_testkit::http_client();
    let forged = apig_testkit::MgmtClient::new(
        s.cp.mgmt,
        &s.cp.seed.ak,
        "a-wrong-secret-key-0123456789",
        &s.cp.seed.project_id,
    );
    let before = s.api.get("/audit-logs").await.body["total"].clone();
    for (method, template) in &routes {
        let mut path = String::new();
        for part in template.split('{') {
            match part.split_once('}') {
                Some(("project_id", rest)) => path += &format!("{}{rest}", s.cp.seed.project_id),
                Some(("instance_id", rest)) => path += &format!("{}{rest}", s.instance),
                Some((_, rest)) => path += &format!("{id}{rest}"),
                None => path += part,
            }
        }
        let url = format!("http://{}{path}", s.cp.mgmt);
        let r = http
            .request(method.parse().unwrap(), &url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(
            status, 401,
            "{method} {template} without credentials: {body}"
        );
        assert!(
            body["error_code"]
                .as_str()
                .is_some_and(|c| c.starts_with("APIG.")),
            "{method} {template}: {body}"
        );
        // The same route, signed with a wrong secret.
        let r = forged.send_raw(method, &path, None, Some(b"{}")).await;
        assert_eq!(
            r.status, 401,
            "{method} {template} with a wrong secret: {:?}",
            r.body
        );
    }
    // Nothing was written: the audit log (which records every authenticated write) is as it was.
    assert_eq!(s.api.get("/audit-logs").await.body["total"], before);
}

/// Raw HTTP/2 (h2c with prior knowledge) frames, for the resource-exhaustion rows.
mod h2 {
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The connection preface and an empty SETTINGS frame.
    pub fn preface() -> Vec<u8> {
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        out
    }

    /// An HPACK block for `GET http://{authority}{path}` (static-table indices, no Huffman).
    pub fn get(authority: &str, path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
        block.push(0x04); // :path, literal without indexing
        block.push(path.len() as u8);
        block.extend_from_slice(path.as_bytes());
        block.push(0x01); // :authority, literal without indexing
        block.push(authority.len() as u8);
        block.extend_from_slice(authority.as_bytes());
        block
    }

    /// Frames read until the peer closes or goes quiet: (type, flags, stream, payload).
    pub async fn read_frames(
        stream: &mut tokio::net::TcpStream,
        quiet: std::time::Duration,
    ) -> Vec<(u8, u8, u32, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(quiet, stream.read(&mut chunk)).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let mut frames = Vec::new();
        let mut at = 0;
        while buf.len() >= at + 9 {
            let len = (usize::from(buf[at]) << 16)
                | (usize::from(buf[at + 1]) << 8)
                | usize::from(buf[at + 2]);
            if buf.len() < at + 9 + len {
                break;
            }
            let id = u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]])
                & 0x7fff_ffff;
            frames.push((
                buf[at + 3],
                buf[at + 4],
                id,
                buf[at + 9..at + 9 + len].to_vec(),
            ));
            at += 9 + len;
        }
        frames
    }

    pub fn error_code(payload: &[u8], offset: usize) -> u32 {
        payload
            .get(offset..offset + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// R6, R7, R8: HTTP/2 rapid reset, a CONTINUATION flood and too many concurrent streams. Each is
/// cut off by the gateway (GOAWAY, REFUSED_STREAM or a closed connection), and a well-behaved
/// client is served right after.
#[tokio::test(flavor = "multi_thread")]
async fn http2_floods_are_cut_off() {
    let t = Setup::start().await;
    let host = t.host.clone();

    // R6: streams opened and cancelled at once, as fast as the socket takes them.
    let mut c = TcpStream::connect(t.s.gw.addr).await.unwrap();
    let mut burst = h2::preface();
    for n in 0..5_000u32 {
        let id = 2 * n + 1;
        burst.extend(h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            id,
            &h2::get(&host, "/api/reset"),
        ));
        burst.extend(h2::frame(h2::RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = c.write_all(&burst).await;
    let frames = h2::read_frames(&mut c, Duration::from_secs(3)).await;
    let goaway = frames.iter().find(|f| f.0 == h2::GOAWAY);
    println!(
        "R6: {} frames back, GOAWAY {:?}, backend saw {} reset streams",
        frames.len(),
        goaway.map(|g| h2::error_code(&g.3, 4)),
        t.backend()
            .seen()
            .iter()
            .filter(|r| r.target == "/api/reset")
            .count()
    );
    assert!(goaway.is_some(), "rapid reset: no GOAWAY");
    assert!(
        t.backend()
            .seen()
            .iter()
            .filter(|r| r.target == "/api/reset")
            .count()
            < 5_000,
        "every cancelled stream reached the backend"
    );

    // R7: one header block that never ends.
    let mut c = TcpStream::connect(t.s.gw.addr).await.unwrap();
    let _ = c.write_all(&h2::preface()).await;
    let _ = c
        .write_all(&h2::frame(
            h2::HEADERS,
            0,
            1,
            &h2::get(&host, "/api/continuation"),
        ))
        .await;
    let junk = {
        // Literal header field with a new name, repeated: grows the header list without end.
        let mut field = vec![0x00, 0x05];
        field.extend_from_slice(b"x-pad");
        field.push(0x7f);
        field.push(0x81);
        field.push(0x7f); // value length 127 + 129 + 127 = 383 (prefix-int continuation)
        field.extend(std::iter::repeat_n(b'v', 383));
        field.repeat(40)
    };
    let mut sent = 0usize;
    let started = Instant::now();
    while sent < 64 * 1024 * 1024 && started.elapsed() < Duration::from_secs(10) {
        if c.write_all(&h2::frame(h2::CONTINUATION, 0, 1, &junk))
            .await
            .is_err()
        {
            break;
        }
        sent += junk.len();
    }
    println!("R7: the gateway stopped reading after {sent} bytes of CONTINUATION");
    assert!(
        sent < 64 * 1024 * 1024,
        "R7: 64 MiB of header block accepted"
    );
    assert_eq!(
        t.backend()
            .seen()
            .iter()
            .filter(|r| r.target == "/api/continuation")
            .count(),
        0
    );

    // R8: more concurrent streams than allowed (100): the excess is refused.
    let mut c = TcpStream::connect(t.s.gw.addr).await.unwrap();
    let mut open = h2::preface();
    for n in 0..150u32 {
        // No END_STREAM: each stream stays open waiting for a body.
        open.extend(h2::frame(
            h2::HEADERS,
            h2::END_HEADERS,
            2 * n + 1,
            &h2::get(&host, "/api/open"),
        ));
    }
    let _ = c.write_all(&open).await;
    let frames = h2::read_frames(&mut c, Duration::from_secs(2)).await;
    let refused = frames
        .iter()
        .filter(|f| f.0 == h2::RST_STREAM && h2::error_code(&f.3, 0) == 0x7)
        .count();
    let goaway = frames.iter().any(|f| f.0 == h2::GOAWAY);
    println!("R8: {refused} streams refused (REFUSED_STREAM), GOAWAY {goaway}");
    assert!(
        refused >= 50 || goaway,
        "R8: streams beyond the limit were not refused"
    );

    // Everyone else is still served.
    let ok = t.once(&t.get("/api/after")).await;
    assert_eq!(ok.map(|r| r.status), Some(200));
}

/// R9: PING and SETTINGS floods. h2 keeps what they cost in memory bounded (one pending answer
/// each), and the gateway closes a connection once its control frames go over budget
/// (`h2_flood`: a burst of 1000, then 100 per second), so answering them cannot keep a core
/// busy. Either way a well-behaved client is served right after.
#[tokio::test(flavor = "multi_thread")]
async fn http2_control_frame_floods_close_the_connection() {
    const FLOOD: usize = 20_000;
    let t = Setup::start().await;
    let closed_before = sample(
        &scrape(t.s.gw.admin).await,
        "apig_gateway_h2_flood_closed_total",
    )
    .unwrap_or(0.0);
    for (name, kind, payload) in [
        ("PING", h2::PING, vec![0u8; 8]),
        // SETTINGS_MAX_CONCURRENT_STREAMS = 100, again and again.
        ("SETTINGS", h2::SETTINGS, vec![0, 3, 0, 0, 0, 100]),
    ] {
        let mut c = TcpStream::connect(t.s.gw.addr).await.unwrap();
        let mut flood = h2::preface();
        for _ in 0..FLOOD {
            flood.extend(h2::frame(kind, 0, 0, &payload));
        }
        // The write fails once the gateway closes; bounded in case it never reads again.
        let _ = tokio::time::timeout(Duration::from_secs(10), c.write_all(&flood)).await;
        let frames = h2::read_frames(&mut c, Duration::from_secs(3)).await;
        let acks = frames
            .iter()
            .filter(|f| f.0 == kind && f.1 & h2::ACK == h2::ACK)
            .count();
        let mut probe = [0u8; 1];
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(2), c.read(&mut probe)).await,
            Ok(Ok(0) | Err(_))
        );
        println!("R9 {name}: {acks} of {FLOOD} acknowledged, connection closed: {closed}");
        assert!(closed, "R9 {name}: the flooding connection is still open");
        assert!(acks < 2_000, "R9 {name}: {acks} frames answered");
    }
    let closed_after = sample(
        &scrape(t.s.gw.admin).await,
        "apig_gateway_h2_flood_closed_total",
    )
    .unwrap_or(0.0);
    assert_eq!(closed_after - closed_before, 2.0);

    // A client that sends a few of them (keep-alive pings, a settings change) is served.
    let mut c = TcpStream::connect(t.s.gw.addr).await.unwrap();
    let mut polite = h2::preface();
    for _ in 0..10 {
        polite.extend(h2::frame(h2::PING, 0, 0, &[1u8; 8]));
    }
    polite.extend(h2::frame(
        h2::HEADERS,
        h2::END_HEADERS | h2::END_STREAM,
        1,
        &h2::get(&t.host, "/api/polite"),
    ));
    c.write_all(&polite).await.unwrap();
    let frames = h2::read_frames(&mut c, Duration::from_secs(2)).await;
    assert!(
        frames.iter().any(|f| f.0 == h2::HEADERS && f.2 == 1),
        "the polite client got no answer: {:?}",
        frames.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>()
    );
    let ok = t.once(&t.get("/api/after-flood")).await;
    assert_eq!(ok.map(|r| r.status), Some(200));
}
