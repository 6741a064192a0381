//! `call` and `sign`: requests to published APIs, authenticated like the APIG SDKs do it.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::{now_unix, read_data, write_stdout, Ctx};
use crate::cli::{CallArgs, RequestArgs, SignArgs};
use crate::config::{Secret, ENV_APP_SECRET};
use crate::request::{parse_header, parse_url, prepare, Auth, Draft, Prepared};

/// The credential chosen for a request (owned; [`Auth`] borrows from it).
enum Credential {
    None,
    Sign { key: String, secret: Secret },
    AppCode(String),
}

impl Credential {
    fn auth(&self) -> Auth<'_> {
        match self {
            Credential::None => Auth::None,
            Credential::Sign { key, secret } => Auth::Sign { key, secret },
            Credential::AppCode(code) => Auth::AppCode(code),
        }
    }
}

/// `--app-key` (secret from `--app-secret` or `APIG_APP_SECRET`), else `--app-code`, else IAM
/// with the management AK/SK when `--iam` or `--ak` was given, else nothing.
fn credential(ctx: &Ctx, args: &RequestArgs) -> Result<Credential> {
    if let Some(key) = &args.app_key {
        let secret = match &args.app_secret {
            Some(s) => s.clone(),
            None => match std::env::var(ENV_APP_SECRET) {
                Ok(s) if !s.is_empty() => Secret::new(s),
                _ => bail!("--app-key needs --app-secret (or {ENV_APP_SECRET})"),
            },
        };
        return Ok(Credential::Sign {
            key: key.clone(),
            secret,
        });
    }
    if let Some(code) = &args.app_code {
        return Ok(Credential::AppCode(code.clone()));
    }
    if args.iam || ctx.ak_on_command_line {
        let (key, secret) = ctx.config.credential()?;
        return Ok(Credential::Sign {
            key: key.to_owned(),
            secret: secret.clone(),
        });
    }
    Ok(Credential::None)
}

fn build(ctx: &Ctx, args: &RequestArgs) -> Result<(Prepared, bool)> {
    let credential = credential(ctx, args)?;
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>>>()?;
    let draft = Draft {
        method: args.method.clone(),
        url: parse_url(&args.url)?,
        host: args.host.clone(),
        stage: args.stage.clone(),
        headers,
        body: match &args.data {
            Some(d) => read_data(d)?,
            None => Vec::new(),
        },
    };
    let authenticated = !matches!(credential, Credential::None);
    Ok((
        prepare(draft, credential.auth(), now_unix())?,
        authenticated,
    ))
}

pub async fn call(ctx: &Ctx, args: &CallArgs) -> Result<ExitCode> {
    let (prepared, _) = build(ctx, &args.request)?;
    let answer = ctx.client.send(&prepared).await?;
    if args.include {
        let mut head = format!("{}\r\n", answer.status_line);
        for (name, value) in &answer.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        write_stdout(head.as_bytes())?;
    } else {
        eprintln!("{}", answer.status_line);
    }
    write_stdout(&answer.body)?;
    Ok(if answer.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn sign(ctx: &Ctx, args: &SignArgs) -> Result<ExitCode> {
    let (prepared, authenticated) = build(ctx, &args.request)?;
    if !authenticated {
        bail!("nothing to sign: pass --app-key and --app-secret, --app-code, or --iam");
    }
    let out = if args.curl {
        curl_command(&prepared, args.request.data.as_deref())
    } else {
        prepared
            .added
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect()
    };
    write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// A curl command sending exactly the prepared request (Host always explicit, so curl cannot
/// write the authority differently from what was signed).
fn curl_command(p: &Prepared, data: Option<&str>) -> String {
    let mut words = vec!["curl".to_owned()];
    match p.method.as_str() {
        "GET" => {}
        "HEAD" => words.push("--head".into()),
        m => {
            words.push("-X".into());
            words.push(m.to_owned());
        }
    }
    for (name, value) in &p.headers {
        words.push("-H".into());
        words.push(quote(&format!("{name}: {value}")));
    }
    match data {
        Some(d) if d.starts_with('@') => {
            words.push("--data-binary".into());
            words.push(quote(d));
        }
        Some(_) if !p.body.is_empty() => {
            words.push("--data-binary".into());
            words.push(quote(&String::from_utf8_lossy(&p.body)));
        }
        _ => {}
    }
    words.push(quote(p.url.as_str()));
    let mut line = words.join(" ");
    line.push('\n');
    line
}

/// POSIX shell single quoting.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_output() {
        let draft = Draft {
            method: "post".into(),
            url: parse_url("http://127.0.0.1:8080/x?a=1").unwrap(),
            host: Some("g.apig.localhost".into()),
            stage: None,
            headers: vec![("X-Q".into(), "it's".into())],
            body: b"{}".to_vec(),
        };
        let p = prepare(draft, Auth::AppCode("c"), 0).unwrap();
        assert_eq!(
            curl_command(&p, Some("{}")),
            "curl -X POST -H 'Host: g.apig.localhost' -H 'X-Q: it'\\''s' \
             -H 'X-Apig-AppCode: c' --data-binary '{}' 'http://127.0.0.1:8080/x?a=1'\n"
        );
        assert!(curl_command(&p, Some("@body.json")).contains("--data-binary '@body.json'"));
    }
}
