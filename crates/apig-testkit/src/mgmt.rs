//! A management API client that signs every request with `SDK-HMAC-SHA256`, as the official SDK
//! does (host with port, X-Sdk-Date, body hash).

use std::net::SocketAddr;

use serde_json::Value;

#[derive(Clone)]
pub struct MgmtClient {
    base: SocketAddr,
    ak: String,
    sk: String,
    pub project_id: String,
    http: reqwest::Client,
}

/// A management answer: status and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// The `X-Request-Id` the answer carried.
    pub request_id: Option<String>,
    /// The body as received.
    pub raw: Vec<u8>,
}

impl MgmtClient {
    pub fn new(base: SocketAddr, ak: &str, sk: &str, project_id: &str) -> Self {
        Self {
            base,
            ak: ak.into(),
            sk: sk.into(),
            project_id: project_id.into(),
            http: crate::http_client(),
        }
    }

    /// `/v2/{project}/apigw` + `path`.
    pub fn path(&self, path: &str) -> String {
        format!("/v2/{}/apigw{path}", self.project_id)
    }

    /// Sends a signed request to `path` (already including `/v2/...`) with an optional query.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        self.try_send_raw(method, path, query, body)
            .await
            .expect("management request")
    }

    /// Like [`MgmtClient::send_raw`]; `None` when no answer came (the server is down or went
    /// away mid-request).
    pub async fn try_send_raw(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<&[u8]>,
    ) -> Option<Answer> {
        self.try_send_typed(method, path, query, "application/json", body)
            .await
    }

    /// `POST path` with a `multipart/form-data` body of text `fields` and one file part
    /// `(field, file name, bytes)`, as the official SDK uploads files.
    pub async fn post_multipart(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &[u8]),
    ) -> Answer {
        let boundary = "apig-testkit-boundary-7d1f0c";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        let (field, filename, bytes) = file;
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let (p, q) = split(path);
        self.try_send_typed(
            "POST",
            &self.path(p),
            q,
            &format!("multipart/form-data; boundary={boundary}"),
            Some(&body),
        )
        .await
        .expect("management request")
    }

    async fn try_send_typed(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> Option<Answer> {
        let host = self.base.to_string();
        let body = body.unwrap_or_default();
        let date = apig_sign::format_sdk_date(chrono::Utc::now().timestamp());
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host.clone()),
            ("content-type".into(), content_type.into()),
            ("x-sdk-date".into(), date),
        ];
        let view_headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let view = apig_sign::RequestView {
            method,
            path,
            query,
            headers: &view_headers,
        };
        let signer = apig_sign::Signer {
            key: &self.ak,
            secret: self.sk.as_bytes(),
        };
        let added = signer
            .sign(&view, body, chrono::Utc::now().timestamp())
            .expect("signing works");
        headers.retain(|(k, _)| !added.iter().any(|(a, _)| a.eq_ignore_ascii_case(k)));
        headers.extend(added);
        let url = match query {
            Some(q) => format!("http://{host}{path}?{q}"),
            None => format!("http://{host}{path}"),
        };
        let mut req = self.http.request(method.parse().expect("method"), url);
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let resp = req.body(body.to_vec()).send().await.ok()?;
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.ok()?;
        Some(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            request_id,
            raw: bytes.to_vec(),
        })
    }

    /// `POST` that tolerates the server going away: `None` when no (whole) answer came.
    pub async fn post_checked(&self, path: &str, body: &Value) -> Option<Answer> {
        let (p, q) = split(path);
        let body = serde_json::to_vec(body).ok()?;
        self.try_send_raw("POST", &self.path(p), q, Some(&body))
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let (p, q) = split(path);
        self.send_raw("GET", &self.path(p), q, None).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        let (p, q) = split(path);
        self.send_raw("DELETE", &self.path(p), q, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        let (p, q) = split(path);
        self.send_raw(
            "POST",
            &self.path(p),
            q,
            Some(&serde_json::to_vec(body).expect("json")),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        let (p, q) = split(path);
        self.send_raw(
            "PUT",
            &self.path(p),
            q,
            Some(&serde_json::to_vec(body).expect("json")),
        )
        .await
    }
}

fn split(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}
