//! A request as it will go on the wire, and its `SDK-HMAC-SHA256` signature.
//!
//! Everything that is signed is taken from the exact values that are sent: the path and query
//! as the URL parser serializes them (that is what reqwest writes), and a `Host` header that is
//! always set explicitly (the URL's authority with its port, or `--host`).

use anyhow::{bail, Context, Result};
use reqwest::Url;

use crate::config::Secret;

pub const HEADER_STAGE: &str = "X-Stage";
pub const HEADER_APP_CODE: &str = "X-Apig-AppCode";

/// How a request is authenticated.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// Sent as is.
    None,
    /// `SDK-HMAC-SHA256` with an app key/secret or an IAM AK/SK.
    Sign { key: &'a str, secret: &'a Secret },
    /// `X-Apig-AppCode: CODE`, no signature.
    AppCode(&'a str),
}

/// What to send, before authentication.
#[derive(Debug, Clone)]
pub struct Draft {
    pub method: String,
    pub url: Url,
    /// Replaces the URL's authority in the `Host` header (and therefore in the signature).
    pub host: Option<String>,
    /// `X-Stage`: the environment to call (signed like any other header).
    pub stage: Option<String>,
    /// Caller headers, in order; `Host` is not among them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A request ready to send: `headers` is the complete list, `Host` first.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub method: String,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    /// The headers this tool added on top of the caller's `-H` ones (`Host` only when
    /// overridden): what a curl user has to add.
    pub added: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parses a URL as given on the command line; without `scheme://` it is taken as `http://`.
pub fn parse_url(raw: &str) -> Result<Url> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let mut url = Url::parse(&with_scheme).with_context(|| format!("invalid URL {raw:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("URL {raw:?}: only http and https are supported");
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("URL {raw:?} has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("URL {raw:?}: user info in URLs is not supported");
    }
    url.set_fragment(None);
    Ok(url)
}

/// The `Host` header a client sends for `url`: host, plus the port when the URL has a
/// non-default one (the URL parser already drops `:80` for http and `:443` for https).
pub fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Parses `-H 'Name: value'`. The name must be an HTTP token; the value is trimmed and may be
/// empty; CR, LF and NUL are refused.
pub fn parse_header(raw: &str) -> Result<(String, String)> {
    let Some((name, value)) = raw.split_once(':') else {
        bail!("header {raw:?}: expected 'Name: value'");
    };
    let name = name.trim();
    if !is_token(name) {
        bail!("header {raw:?}: invalid name {name:?}");
    }
    let value = value.trim_matches([' ', '\t']);
    if value.contains(['\r', '\n', '\0']) {
        bail!("header {name}: value contains a line break or NUL");
    }
    Ok((name.to_owned(), value.to_owned()))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks the draft, adds `Host` and the authentication headers. `now_unix` is the signing
/// time (the signature is valid 15 minutes either side of it).
pub fn prepare(draft: Draft, auth: Auth<'_>, now_unix: i64) -> Result<Prepared> {
    let method = draft.method.trim().to_ascii_uppercase();
    if !is_token(&method) {
        bail!("invalid method {:?}", draft.method);
    }
    let mut added = Vec::new();
    let host = match draft.host {
        Some(h) => {
            let h = h.trim().to_owned();
            if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c.is_control()) {
                bail!("invalid --host {h:?}");
            }
            added.push(("Host".to_owned(), h.clone()));
            h
        }
        None => authority(&draft.url),
    };
    let mut headers = vec![("Host".to_owned(), host)];
    for (name, value) in draft.headers {
        if name.eq_ignore_ascii_case("host") {
            bail!("set the Host header with --host, not -H");
        }
        if matches!(auth, Auth::Sign { .. })
            && (name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case(apig_sign::HEADER_DATE))
        {
            bail!("header {name} is set by the signature; do not pass it with -H");
        }
        headers.push((name, value));
    }
    let mut push = |headers: &mut Vec<(String, String)>, name: &str, value: String| {
        added.push((name.to_owned(), value.clone()));
        headers.push((name.to_owned(), value));
    };
    // The signature below covers every header given so far, X-Stage included (the SDKs sign
    // every header set on the request).
    if let Some(stage) = draft.stage {
        push(&mut headers, HEADER_STAGE, stage);
    }
    if let Auth::AppCode(code) = auth {
        push(&mut headers, HEADER_APP_CODE, code.to_owned());
    }
    for (i, (name, _)) in headers.iter().enumerate() {
        if headers[..i]
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            bail!("header {name} is given more than once");
        }
    }
    if let Auth::Sign { key, secret } = auth {
        let view_headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let view = apig_sign::RequestView {
            method: &method,
            path: draft.url.path(),
            query: draft.url.query(),
            headers: &view_headers,
        };
        let signer = apig_sign::Signer {
            key,
            secret: secret.expose().as_bytes(),
        };
        let signed = signer
            .sign(&view, &draft.body, now_unix)
            .context("cannot sign the request")?;
        for (name, value) in signed {
            push(&mut headers, &name, value);
        }
    }
    Ok(Prepared {
        method,
        url: draft.url,
        headers,
        added,
        body: draft.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_704_067_200;

    fn draft(url: &str, host: Option<&str>, headers: &[&str], body: &[u8]) -> Draft {
        Draft {
            method: "post".into(),
            url: parse_url(url).unwrap(),
            host: host.map(str::to_owned),
            stage: None,
            headers: headers.iter().map(|h| parse_header(h).unwrap()).collect(),
            body: body.to_vec(),
        }
    }

    fn verify(p: &Prepared, secret: &'static [u8]) -> Result<(), apig_sign::SignError> {
        let headers: Vec<(&str, &str)> = p
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let view = apig_sign::RequestView {
            method: &p.method,
            path: p.url.path(),
            query: p.url.query(),
            headers: &headers,
        };
        apig_sign::verify(&view, &p.body, NOW, |k| (k == "key").then_some(secret)).map(|_| ())
    }

    #[test]
    fn header_parsing() {
        assert_eq!(
            parse_header("Content-Type: application/json").unwrap(),
            ("Content-Type".into(), "application/json".into())
        );
        assert_eq!(
            parse_header("X-A:b:c ").unwrap(),
            ("X-A".into(), "b:c".into())
        );
        assert_eq!(
            parse_header("X-Empty:").unwrap(),
            ("X-Empty".into(), "".into())
        );
        assert_eq!(
            parse_header(" x_u : v").unwrap(),
            ("x_u".into(), "v".into())
        );
        assert!(parse_header("NoColon").is_err());
        assert!(parse_header(": v").is_err());
        assert!(parse_header("Bad Name: v").is_err());
        assert!(parse_header("X: a\r\nInjected: b").is_err());
    }

    #[test]
    fn urls_and_authority() {
        let u = parse_url("127.0.0.1:8080/a b?q=x y#frag").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/a%20b?q=x%20y");
        assert_eq!(authority(&u), "127.0.0.1:8080");
        assert_eq!(authority(&parse_url("http://h:80/").unwrap()), "h");
        assert_eq!(authority(&parse_url("http://[::1]:9/").unwrap()), "[::1]:9");
        assert!(parse_url("ftp://h/").is_err());
        assert!(parse_url("http://u:p@h/").is_err());
    }

    #[test]
    fn signs_what_is_sent() {
        let secret = Secret::new("app-secret");
        let auth = Auth::Sign {
            key: "key",
            secret: &secret,
        };
        let mut d = draft(
            "http://127.0.0.1:8080/files/a%20b?x=1&y=a+b",
            None,
            &["Content-Type: application/json"],
            b"{}",
        );
        d.stage = Some("TEST".into());
        let p = prepare(d, auth, NOW).unwrap();
        assert_eq!(p.method, "POST");
        assert_eq!(p.headers[0], ("Host".into(), "127.0.0.1:8080".into()));
        let names: Vec<&str> = p.added.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["X-Stage", "X-Sdk-Date", "Authorization"]);
        let auth_value = &p.added[2].1;
        assert!(
            auth_value.contains("SignedHeaders=content-type;host;x-sdk-date;x-stage"),
            "{auth_value}"
        );
        assert_eq!(verify(&p, b"app-secret"), Ok(()));
        assert_eq!(
            verify(&p, b"wrong-secret"),
            Err(apig_sign::SignError::BadSignature)
        );
    }

    #[test]
    fn host_override_is_signed_and_sent() {
        let secret = Secret::new("s");
        let auth = Auth::Sign {
            key: "key",
            secret: &secret,
        };
        let d = draft(
            "http://127.0.0.1:8080/x",
            Some("g1.apig.localhost"),
            &[],
            b"",
        );
        let mut p = prepare(d, auth, NOW).unwrap();
        assert_eq!(p.headers[0], ("Host".into(), "g1.apig.localhost".into()));
        assert_eq!(p.added[0], ("Host".into(), "g1.apig.localhost".into()));
        assert_eq!(verify(&p, b"s"), Ok(()));
        p.headers[0].1 = "127.0.0.1:8080".into();
        assert_eq!(verify(&p, b"s"), Err(apig_sign::SignError::BadSignature));
    }

    #[test]
    fn app_code_and_unsigned() {
        let p = prepare(
            draft("http://h/x", None, &["X-A: 1"], b""),
            Auth::AppCode("code"),
            NOW,
        )
        .unwrap();
        assert_eq!(
            p.headers,
            [
                ("Host".to_owned(), "h".to_owned()),
                ("X-A".into(), "1".into()),
                (HEADER_APP_CODE.into(), "code".into())
            ]
        );
        assert_eq!(p.added, [(HEADER_APP_CODE.to_owned(), "code".to_owned())]);
        let p = prepare(draft("http://h/x", None, &[], b""), Auth::None, NOW).unwrap();
        assert_eq!(p.headers.len(), 1);
        assert!(p.added.is_empty());
    }

    #[test]
    fn refusals() {
        let secret = Secret::new("s");
        let sign = Auth::Sign {
            key: "key",
            secret: &secret,
        };
        let err = |headers: &[&str], auth| {
            prepare(draft("http://h/x", None, headers, b""), auth, NOW)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&["Host: other"], Auth::None).contains("--host"));
        assert!(err(&["X-A: 1", "x-a: 2"], Auth::None).contains("more than once"));
        let mut staged = draft("http://h/x", None, &["x-stage: A"], b"");
        staged.stage = Some("B".into());
        assert!(prepare(staged, Auth::None, NOW).is_err());
        assert!(err(&["Authorization: x"], sign).contains("set by the signature"));
        assert!(err(&["X-Apig-AppCode: x"], Auth::AppCode("c")).contains("more than once"));
        let bad_path = prepare(draft("http://h/%zz", None, &[], b""), sign, NOW);
        assert!(bad_path.is_err());
        let mut d = draft("http://h/x", None, &[], b"");
        d.method = "GE T".into();
        assert!(prepare(d, Auth::None, NOW).is_err());
    }
}
