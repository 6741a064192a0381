//! Signed management calls: `get`, `delete`, `post`, `put`, and the code the wrappers share.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::Value;

use super::{now_unix, read_data, write_stdout, Ctx};
use crate::cli::{ReadArgs, WriteArgs};
use crate::client::Answer;
use crate::paths::management_target;
use crate::request::{parse_url, prepare, Auth, Draft};

pub async fn read(ctx: &Ctx, method: &str, args: &ReadArgs) -> Result<ExitCode> {
    send(ctx, method, &args.path, &args.query, None).await
}

pub async fn write(ctx: &Ctx, method: &str, args: &WriteArgs) -> Result<ExitCode> {
    let body = match &args.data {
        Some(data) => {
            let bytes = read_data(data)?;
            serde_json::from_slice::<Value>(&bytes).context("--data is not valid JSON")?;
            Some(bytes)
        }
        None => None,
    };
    send(ctx, method, &args.target.path, &args.target.query, body).await
}

pub async fn send_json(ctx: &Ctx, method: &str, path: &str, body: &Value) -> Result<ExitCode> {
    let bytes = serde_json::to_vec(body).context("cannot encode the body")?;
    send(ctx, method, path, &[], Some(bytes)).await
}

/// Signs and sends one management request, prints the answer; exit code 1 for 4xx/5xx.
pub async fn send(
    ctx: &Ctx,
    method: &str,
    user_path: &str,
    query: &[String],
    body: Option<Vec<u8>>,
) -> Result<ExitCode> {
    let answer = exchange(ctx, method, user_path, query, "application/json", body).await?;
    print_answer(&answer)
}

/// Signs and sends one management request with a body of `content_type`.
pub async fn exchange(
    ctx: &Ctx,
    method: &str,
    user_path: &str,
    query: &[String],
    content_type: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer> {
    let config = &ctx.config;
    let (ak, sk) = config.credential()?;
    let target = management_target(
        user_path,
        config.project()?,
        config.instance.as_deref(),
        query,
    )?;
    let mut url = parse_url(&config.endpoint).context("invalid endpoint")?;
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}{}", target.path));
    url.set_query(target.query.as_deref());
    let draft = Draft {
        method: method.to_owned(),
        url,
        host: None,
        stage: None,
        headers: vec![("Content-Type".into(), content_type.into())],
        body: body.unwrap_or_default(),
    };
    let auth = Auth::Sign {
        key: ak,
        secret: sk,
    };
    let prepared = prepare(draft, auth, now_unix())?;
    ctx.client.send(&prepared).await
}

pub fn print_answer(answer: &Answer) -> Result<ExitCode> {
    if !answer.is_success() {
        eprintln!("{}", error_line(answer));
        return Ok(ExitCode::FAILURE);
    }
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(json) => {
            let mut text = serde_json::to_string_pretty(&json).context("cannot format JSON")?;
            text.push('\n');
            write_stdout(text.as_bytes())?;
        }
        Err(_) => write_stdout(&answer.body)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `error_code: error_msg` from an APIG error body, else the status line and the body.
pub fn error_line(answer: &Answer) -> String {
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    match (json["error_code"].as_str(), json["error_msg"].as_str()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        _ => {
            let text = String::from_utf8_lossy(&answer.body);
            let text = text.trim();
            if text.is_empty() {
                answer.status_line.clone()
            } else {
                format!("{}: {text}", answer.status_line)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status_line: format!("HTTP/1.1 {status}"),
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn error_lines() {
        assert_eq!(
            error_line(&answer(
                404,
                r#"{"error_code":"APIG.3002","error_msg":"API group 1 does not exist"}"#
            )),
            "APIG.3002: API group 1 does not exist"
        );
        assert_eq!(
            error_line(&answer(502, "bad gateway\n")),
            "HTTP/1.1 502: bad gateway"
        );
        assert_eq!(error_line(&answer(500, "")), "HTTP/1.1 500");
    }
}
