//! The subcommands. Each returns the process exit code; errors bubble up as `anyhow`.

mod call;
mod mgmt;
mod openapi;
mod resources;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command};
use crate::client::Client;
use crate::config::{self, Config};

/// What every command gets: the resolved settings and an HTTP client.
pub struct Ctx {
    pub config: Config,
    pub client: Client,
    /// `--ak` was given on the command line (for `call`/`sign`: sign as IAM).
    pub ak_on_command_line: bool,
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let env_file = cli
        .conn
        .env_file
        .clone()
        .or_else(|| std::env::var_os(config::ENV_FILE).map(Into::into))
        .filter(|p| !p.as_os_str().is_empty());
    let file = match env_file {
        Some(path) => config::load_env_file(&path)?,
        None => Default::default(),
    };
    let config = Config::resolve(&cli.conn.flags(), &file, |k| std::env::var(k).ok());
    let ctx = Ctx {
        config,
        client: Client::new(Duration::from_secs(cli.conn.timeout.max(1)))?,
        ak_on_command_line: cli.conn.ak.is_some(),
    };
    match cli.command {
        Command::Get(a) => mgmt::read(&ctx, "GET", &a).await,
        Command::Delete(a) => mgmt::read(&ctx, "DELETE", &a).await,
        Command::Post(a) => mgmt::write(&ctx, "POST", &a).await,
        Command::Put(a) => mgmt::write(&ctx, "PUT", &a).await,
        Command::Group(c) => resources::group(&ctx, c).await,
        Command::Api(c) => resources::api(&ctx, c).await,
        Command::Publish(a) => resources::publish(&ctx, &a).await,
        Command::Replicas => resources::replicas(&ctx).await,
        Command::Import(a) => openapi::import(&ctx, &a).await,
        Command::Export(a) => openapi::export(&ctx, &a).await,
        Command::Audit(a) => mgmt::send(&ctx, "GET", "/audit-logs", &a.query(), None).await,
        Command::Call(a) => call::call(&ctx, &a).await,
        Command::Sign(a) => call::sign(&ctx, &a),
    }
}

/// `--data` value: the bytes themselves, `@FILE`, or `@-` for stdin.
pub fn read_data(arg: &str) -> Result<Vec<u8>> {
    match arg.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the body from stdin")?;
            Ok(buf)
        }
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read --data @{path}")),
        None => Ok(arg.as_bytes().to_vec()),
    }
}

pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_argument() {
        assert_eq!(read_data("{\"a\":1}").unwrap(), b"{\"a\":1}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body.json");
        std::fs::write(&path, b"[1]").unwrap();
        assert_eq!(read_data(&format!("@{}", path.display())).unwrap(), b"[1]");
        let missing = read_data("@/nonexistent/body.json").unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/body.json"));
    }
}
