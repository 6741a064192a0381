//! Sending a [`Prepared`] request over HTTP/1.1 and collecting the whole answer.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::header::{HeaderName, HeaderValue};

use crate::request::Prepared;

pub struct Client {
    http: reqwest::Client,
}

/// A complete HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// `HTTP/1.1 200 OK`
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Client {
    /// Redirects are not followed (a signature is only valid for its host and path); proxies
    /// come from the usual `HTTP_PROXY`/`NO_PROXY` variables, as with curl.
    pub fn new(timeout: Duration) -> Result<Client> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("apigctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http })
    }

    pub async fn send(&self, req: &Prepared) -> Result<Answer> {
        if req.url.scheme() != "http" {
            bail!(
                "{}: this build speaks plain HTTP only; use `apigctl sign --curl` for HTTPS",
                req.url
            );
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .with_context(|| format!("invalid method {:?}", req.method))?;
        let mut builder = self.http.request(method, req.url.clone());
        for (name, value) in &req.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("invalid header name {name:?}"))?;
            let value = HeaderValue::from_str(value)
                .with_context(|| format!("invalid value for header {name}"))?;
            builder = builder.header(name, value);
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body.clone());
        }
        let resp = builder
            .send()
            .await
            .with_context(|| format!("{} {} failed", req.method, req.url))?;
        let status = resp.status();
        let status_line = format!(
            "{:?} {} {}",
            resp.version(),
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        )
        .trim_end()
        .to_owned();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .bytes()
            .await
            .context("reading the response body failed")?
            .to_vec();
        Ok(Answer {
            status_line,
            status: status.as_u16(),
            headers,
            body,
        })
    }
}
