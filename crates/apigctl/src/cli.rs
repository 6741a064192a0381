//! Command-line syntax (clap). Values are resolved in `config.rs`, acted on in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Flags, Secret};

const AFTER_HELP: &str = "\
Configuration (a flag wins over --env-file, which wins over the environment):
  --endpoint  APIG_ENDPOINT     management API [default: http://127.0.0.1:9080]
  --ak        APIG_ADMIN_AK     management access key
  --sk        APIG_ADMIN_SK     management secret key (prefer the variable or --env-file:
                                the command line is visible to other local users)
  --project   APIG_PROJECT_ID   project id of the management paths
  --instance  APIG_INSTANCE_ID  replaces {instance} in management paths
  --env-file  APIG_ENV_FILE     KEY=VALUE file, e.g. DATA_DIR/admin-credentials.env

Examples:
  export APIG_ENV_FILE=./apig-data/admin-credentials.env
  apigctl group create demo
  apigctl api create --group GROUP_ID --name files --method GET --path /files \\
      --backend 127.0.0.1:9000 --backend-path / --match-mode SWA
  apigctl publish API_ID
  apigctl call GET http://127.0.0.1:8080/files/README.md --host GROUP_ID.apig.localhost
  apigctl get /instances/{instance}/apis --query name=files
  apigctl sign GET http://127.0.0.1:8080/x --app-key KEY --app-secret SECRET --curl

Exit status: 0 for a 2xx answer, 1 for any other answer or failure, 2 for usage errors.";

#[derive(Parser)]
#[command(
    name = "apigctl",
    version,
    about = "Manage an APIG-compatible gateway over the APIG V2 management API, and sign and \
             call the APIs it publishes",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Connection settings, accepted before or after the subcommand.
#[derive(Args)]
#[command(next_help_heading = "Connection options")]
pub struct ConnArgs {
    /// Management API base URL [env: APIG_ENDPOINT] [default: http://127.0.0.1:9080]
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Management access key; for `call`/`sign` it means IAM signing [env: APIG_ADMIN_AK]
    #[arg(long, global = true, value_name = "AK")]
    pub ak: Option<String>,
    /// Management secret key; prefer APIG_ADMIN_SK or --env-file [env: APIG_ADMIN_SK]
    #[arg(long, global = true, value_name = "SK")]
    pub sk: Option<Secret>,
    /// Project id: management paths are under /v2/{project}/apigw [env: APIG_PROJECT_ID]
    #[arg(long, global = true, value_name = "ID")]
    pub project: Option<String>,
    /// Gateway instance id, replaces {instance} in PATH [env: APIG_INSTANCE_ID]
    #[arg(long, global = true, value_name = "ID")]
    pub instance: Option<String>,
    /// Read APIG_* KEY=VALUE lines from this file, e.g. DATA_DIR/admin-credentials.env
    /// [env: APIG_ENV_FILE]
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Request timeout in seconds
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

impl ConnArgs {
    pub fn flags(&self) -> Flags {
        Flags {
            endpoint: self.endpoint.clone(),
            ak: self.ak.clone(),
            sk: self.sk.clone(),
            project: self.project.clone(),
            instance: self.instance.clone(),
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Signed GET of a management PATH; prints the JSON answer
    #[command(
        after_help = "PATH is relative to /v2/{project}/apigw; {instance} is replaced by \
                            the configured instance.\n\nExamples:\n  \
                            apigctl get /instances/{instance}/api-groups\n  \
                            apigctl get /instances/{instance}/apis --query group_id=ID --query limit=50"
    )]
    Get(ReadArgs),
    /// Signed DELETE of a management PATH
    #[command(after_help = "Example:\n  apigctl delete /instances/{instance}/api-groups/GROUP_ID")]
    Delete(ReadArgs),
    /// Signed POST of a JSON body to a management PATH
    #[command(after_help = "Examples:\n  \
                            apigctl post /instances/{instance}/envs --data '{\"name\":\"TEST\"}'\n  \
                            apigctl post /instances/{instance}/apis --data @api.json")]
    Post(WriteArgs),
    /// Signed PUT of a JSON body to a management PATH
    #[command(after_help = "Example:\n  \
                            apigctl put /instances/{instance}/api-groups/GROUP_ID --data '{\"name\":\"demo2\"}'")]
    Put(WriteArgs),
    /// API groups of the instance
    #[command(subcommand)]
    Group(GroupCommand),
    /// APIs of the instance
    #[command(subcommand)]
    Api(ApiCommand),
    /// Publish an API into an environment (or take it offline)
    #[command(after_help = "Examples:\n  apigctl publish API_ID\n  \
                            apigctl publish API_ID --env ENV_ID --offline")]
    Publish(PublishArgs),
    /// Gateway replicas of the instance and the snapshot versions they run
    Replicas,
    /// Import an OpenAPI (Swagger 2.0 / OpenAPI 3.0, JSON or YAML) document
    #[command(
        after_help = "Without --group a group named after info.title is created.\n\n\
                            Examples:\n  apigctl import orders.yaml\n  \
                            apigctl import orders.json --group GROUP_ID --api-mode override"
    )]
    Import(ImportArgs),
    /// Export a group's APIs as an OpenAPI document
    #[command(
        after_help = "Examples:\n  apigctl export --group GROUP_ID --define all -o orders.json\n  \
                            apigctl export --group GROUP_ID --format yaml --oas 3.0"
    )]
    Export(ExportArgs),
    /// The project's audit log of management writes, newest first
    #[command(after_help = "Examples:\n  apigctl audit --limit 50\n  \
                            apigctl audit --resource apps --method DELETE --since 2024-01-31T00:00:00Z\n  \
                            apigctl audit --all-projects   (administrator credential only)")]
    Audit(AuditArgs),
    /// Send a request to a published API, signed like the APIG SDKs
    #[command(
        after_help = "Prints the body to stdout; the status line goes to stderr, or with \
                            -i to stdout followed by the response headers.\n\nExamples:\n  \
                            apigctl call GET http://127.0.0.1:8080/files/README.md --host GROUP_ID.apig.localhost\n  \
                            apigctl call POST http://127.0.0.1:8080/orders --host GROUP_ID.apig.localhost \\\n      \
                            --app-key KEY --app-secret SECRET -H 'Content-Type: application/json' --data @order.json\n  \
                            apigctl call GET http://127.0.0.1:8080/x --stage TEST --app-code CODE -i"
    )]
    Call(CallArgs),
    /// Print the headers `call` would add (X-Sdk-Date, Authorization, ...) without sending
    #[command(
        after_help = "The signature is valid for 15 minutes. Send exactly the same method, \
                            URL, body and -H headers.\n\nExamples:\n  \
                            apigctl sign GET http://127.0.0.1:8080/x --app-key KEY --app-secret SECRET\n  \
                            apigctl sign POST http://127.0.0.1:8080/x --iam --data @body.json --curl | sh"
    )]
    Sign(SignArgs),
}

#[derive(Args)]
pub struct AuditArgs {
    /// Entries at or after this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Entries at or before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this HTTP method (POST, PUT, DELETE, PATCH)
    #[arg(long)]
    pub method: Option<String>,
    /// Only this resource type (e.g. apps, api-groups) or resource id
    #[arg(long)]
    pub resource: Option<String>,
    /// Only writes made with this access key
    #[arg(long, value_name = "AK")]
    pub access_key: Option<String>,
    /// Every project's entries (administrator credential only)
    #[arg(long)]
    pub all_projects: bool,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Entries per page, 1..=500
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
}

impl AuditArgs {
    /// The query of `GET /v2/{project}/apigw/audit-logs`, as `KEY=VALUE` items.
    pub fn query(&self) -> Vec<String> {
        let mut q = vec![
            format!("offset={}", self.offset),
            format!("limit={}", self.limit),
        ];
        let opts = [
            ("since", &self.since),
            ("until", &self.until),
            ("method", &self.method),
            ("resource", &self.resource),
            ("access_key", &self.access_key),
        ];
        for (k, v) in opts {
            if let Some(v) = v {
                q.push(format!("{k}={v}"));
            }
        }
        if self.all_projects {
            q.push("all_projects=true".into());
        }
        q
    }
}

#[derive(Args)]
pub struct ReadArgs {
    /// Path relative to /v2/{project}/apigw, e.g. /instances/{instance}/apis
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Query parameter, repeatable (percent-encoded for you)
    #[arg(short, long = "query", value_name = "KEY=VALUE")]
    pub query: Vec<String>,
}

#[derive(Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub target: ReadArgs,
    /// JSON body, or @FILE to read it from a file (@- for stdin)
    #[arg(short, long, value_name = "JSON|@FILE")]
    pub data: Option<String>,
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create an API group; prints it, with its generated sl_domain
    Create {
        name: String,
        /// Description
        #[arg(long)]
        remark: Option<String>,
    },
    /// List the API groups
    List,
}

#[derive(Subcommand)]
pub enum ApiCommand {
    /// Create an API with an HTTP backend
    #[command(after_help = "Example:\n  \
                            apigctl api create --group GROUP_ID --name files --method GET --path /files \\\n      \
                            --backend 127.0.0.1:9000 --backend-path / --match-mode SWA")]
    Create(ApiCreateArgs),
    /// List the APIs
    List {
        /// Only the APIs of this group
        #[arg(long, value_name = "ID")]
        group: Option<String>,
    },
}

#[derive(Args)]
pub struct ApiCreateArgs {
    /// Group id
    #[arg(long, value_name = "ID")]
    pub group: String,
    /// API name
    #[arg(long)]
    pub name: String,
    /// Request method (GET, POST, ..., ANY)
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request path, e.g. /files or /users/{id}
    #[arg(long)]
    pub path: String,
    /// Backend address host:port (http:// or https:// selects the protocol)
    #[arg(long, value_name = "HOST:PORT")]
    pub backend: String,
    /// Backend path [default: the request path]
    #[arg(long, value_name = "PATH")]
    pub backend_path: Option<String>,
    /// NORMAL (exact path) or SWA (prefix)
    #[arg(long, default_value = "NORMAL", value_parser = ["NORMAL", "SWA"], ignore_case = true)]
    pub match_mode: String,
    /// Authentication of callers
    #[arg(long, default_value = "NONE", value_parser = ["NONE", "APP", "IAM"], ignore_case = true)]
    pub auth: String,
    /// Backend timeout in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub backend_timeout: u64,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The document (JSON or YAML)
    pub file: String,
    /// Import into this group instead of creating one from info.title
    #[arg(long, value_name = "ID")]
    pub group: Option<String>,
    /// An API that exists already (same method, path and match mode): keep it or replace it
    #[arg(long, default_value = "merge", value_parser = ["merge", "override"])]
    pub api_mode: String,
    /// A throttling or access control policy that exists already: keep it or replace it
    #[arg(long, default_value = "merge", value_parser = ["merge", "override"])]
    pub extend_mode: String,
    /// Operations without x-apigateway-backend get a MOCK backend
    #[arg(long)]
    pub mock_mode: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, value_name = "ID")]
    pub group: String,
    /// The environment whose published APIs are exported
    #[arg(
        long,
        value_name = "ENV_ID",
        default_value = "DEFAULT_ENVIRONMENT_RELEASE_ID"
    )]
    pub env: String,
    /// spec (frontend), proxy (+ backends), all (+ policies), dev (unpublished definitions too)
    #[arg(long, default_value = "all", value_parser = ["spec", "proxy", "all", "dev"])]
    pub define: String,
    #[arg(long, default_value = "json", value_parser = ["json", "yaml", "yml"])]
    pub format: String,
    #[arg(long, default_value = "2.0", value_parser = ["2.0", "3.0"])]
    pub oas: String,
    /// Write the document to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,
}

#[derive(Args)]
pub struct PublishArgs {
    pub api_id: String,
    /// Environment id
    #[arg(
        long,
        value_name = "ENV_ID",
        default_value = "DEFAULT_ENVIRONMENT_RELEASE_ID"
    )]
    pub env: String,
    /// Take the API offline in that environment instead
    #[arg(long)]
    pub offline: bool,
}

/// What `call` and `sign` share.
#[derive(Args)]
pub struct RequestArgs {
    /// HTTP method
    pub method: String,
    /// Full URL; http:// is assumed when no scheme is given
    pub url: String,
    /// App key (APP authentication)
    #[arg(long, value_name = "KEY", conflicts_with_all = ["app_code", "iam"])]
    pub app_key: Option<String>,
    /// App secret [env: APIG_APP_SECRET]
    #[arg(long, value_name = "SECRET", requires = "app_key")]
    pub app_secret: Option<Secret>,
    /// Send X-Apig-AppCode: CODE instead of a signature
    #[arg(long, value_name = "CODE", conflicts_with = "iam")]
    pub app_code: Option<String>,
    /// Sign with the management AK/SK (IAM authentication); implied by --ak on the command
    /// line when no app credential is given
    #[arg(long)]
    pub iam: bool,
    /// Extra header, repeatable; signed
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Body, or @FILE to read it from a file (@- for stdin)
    #[arg(short, long, value_name = "BODY|@FILE")]
    pub data: Option<String>,
    /// Environment to call (X-Stage header)
    #[arg(long, value_name = "ENV")]
    pub stage: Option<String>,
    /// Host header to send and sign instead of the URL's, e.g. a group's sl_domain
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

#[derive(Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Print the status line and response headers to stdout before the body
    #[arg(short, long)]
    pub include: bool,
}

#[derive(Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Print a complete curl command instead of the headers
    #[arg(long)]
    pub curl: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "apigctl",
            "get",
            "/instances",
            "--ak",
            "A",
            "--sk",
            "S",
            "-q",
            "a=1",
        ])
        .unwrap();
        assert_eq!(cli.conn.ak.as_deref(), Some("A"));
        assert!(matches!(cli.command, Command::Get(ref r) if r.query == ["a=1"]));
    }

    #[test]
    fn call_auth_conflicts() {
        let parse = |args: &[&str]| {
            let mut all = vec!["apigctl", "call", "GET", "http://h/"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        assert!(parse(&["--app-key", "k", "--app-code", "c"]).is_err());
        assert!(parse(&["--app-key", "k", "--iam"]).is_err());
        assert!(parse(&["--app-secret", "s"]).is_err());
        assert!(parse(&["--app-key", "k", "--app-secret", "s", "-H", "X: 1", "-i"]).is_ok());
    }

    #[test]
    fn audit_query() {
        let cli = Cli::try_parse_from([
            "apigctl",
            "audit",
            "--resource",
            "apps",
            "--since",
            "2024-01-31T00:00:00Z",
            "--all-projects",
            "--limit",
            "5",
        ])
        .unwrap();
        let Command::Audit(a) = cli.command else {
            panic!("audit")
        };
        assert_eq!(
            a.query(),
            [
                "offset=0",
                "limit=5",
                "since=2024-01-31T00:00:00Z",
                "resource=apps",
                "all_projects=true"
            ]
        );
    }
}
