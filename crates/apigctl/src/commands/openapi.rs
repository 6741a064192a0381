//! `import` and `export`: OpenAPI documents in and out (`ImportApiDefinitionsV2`,
//! `ExportApiDefinitionsV2`).

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::mgmt::{error_line, exchange, print_answer};
use super::{read_data, write_stdout, Ctx};
use crate::cli::{ExportArgs, ImportArgs};

/// A `multipart/form-data` body of text fields and the document as the `file_name` part.
fn form(boundary: &str, fields: &[(&str, String)], file: &str, document: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(document.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    // The file name is only a label; quotes and line breaks cannot end the header early.
    let file: String = file
        .chars()
        .filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\'))
        .collect();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file_name\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(document);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

pub async fn import(ctx: &Ctx, args: &ImportArgs) -> Result<ExitCode> {
    let document = read_data(&format!("@{}", args.file))?;
    let mut fields: Vec<(&str, String)> = vec![
        ("is_create_group", args.group.is_none().to_string()),
        ("extend_mode", args.extend_mode.clone()),
        ("api_mode", args.api_mode.clone()),
        ("mock_mode", args.mock_mode.to_string()),
    ];
    if let Some(g) = &args.group {
        fields.push(("group_id", g.clone()));
    }
    // A boundary that cannot occur in the document.
    let mut boundary = String::from("apigctl-form-boundary");
    while document
        .windows(boundary.len())
        .any(|w| w == boundary.as_bytes())
    {
        boundary.push('x');
    }
    let name = std::path::Path::new(&args.file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let body = form(&boundary, &fields, &name, &document);
    let answer = exchange(
        ctx,
        "POST",
        "/instances/{instance}/openapi/import",
        &[],
        &format!("multipart/form-data; boundary={boundary}"),
        Some(body),
    )
    .await?;
    let code = print_answer(&answer)?;
    // Some APIs may have failed while the call itself succeeded: say so in the exit status.
    let failed = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v["failure"].as_array().map(|f| !f.is_empty()))
        .unwrap_or(false);
    Ok(if failed { ExitCode::FAILURE } else { code })
}

pub async fn export(ctx: &Ctx, args: &ExportArgs) -> Result<ExitCode> {
    let body = json!({
        "group_id": args.group, "env_id": args.env, "define": args.define, "type": args.format,
    });
    let answer = exchange(
        ctx,
        "POST",
        "/instances/{instance}/openapi/export",
        &[format!("oas_version={}", args.oas)],
        "application/json",
        Some(serde_json::to_vec(&body).context("cannot encode the body")?),
    )
    .await?;
    if !answer.is_success() {
        eprintln!("{}", error_line(&answer));
        return Ok(ExitCode::FAILURE);
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, &answer.body).with_context(|| format!("cannot write {path}"))?
        }
        None => write_stdout(&answer.body)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_has_the_fields_and_the_file() {
        let body = form(
            "b",
            &[("api_mode", "merge".into())],
            "a\"b.yaml",
            b"swagger: '2.0'",
        );
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(
            "--b\r\nContent-Disposition: form-data; name=\"api_mode\"\r\n\r\nmerge\r\n"
        ));
        assert!(text.contains("name=\"file_name\"; filename=\"ab.yaml\""));
        assert!(text.ends_with("\r\n\r\nswagger: '2.0'\r\n--b--\r\n"));
    }
}
