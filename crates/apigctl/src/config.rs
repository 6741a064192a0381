//! Where the management endpoint and credential come from: flags, then `--env-file`, then the
//! process environment, then defaults.
//!
//! The env file wins over the environment because it is named on the command line: pointing
//! at `DATA_DIR/admin-credentials.env` must not silently keep a stale `APIG_ADMIN_SK` exported
//! in the shell. Empty values count as unset.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9080";
pub const ENV_ENDPOINT: &str = "APIG_ENDPOINT";
pub const ENV_AK: &str = "APIG_ADMIN_AK";
pub const ENV_SK: &str = "APIG_ADMIN_SK";
pub const ENV_PROJECT: &str = "APIG_PROJECT_ID";
pub const ENV_INSTANCE: &str = "APIG_INSTANCE_ID";
pub const ENV_FILE: &str = "APIG_ENV_FILE";
pub const ENV_APP_SECRET: &str = "APIG_APP_SECRET";

/// A secret string: `Debug` never shows it, reading it takes an explicit [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// What the command line said (each `None` when the flag was not given).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub endpoint: Option<String>,
    pub ak: Option<String>,
    pub sk: Option<Secret>,
    pub project: Option<String>,
    pub instance: Option<String>,
}

/// The resolved settings. Only the endpoint always has a value; the others are checked by the
/// accessors when a command needs them, so `call` works without any management credential.
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoint: String,
    pub ak: Option<String>,
    pub sk: Option<Secret>,
    pub project: Option<String>,
    pub instance: Option<String>,
}

impl Config {
    /// Layers `flags` over `file` (the parsed `--env-file`) over `env` over the defaults.
    pub fn resolve(
        flags: &Flags,
        file: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Config {
        let pick = |flag: Option<&str>, key: &str| -> Option<String> {
            let non_empty = |v: &str| !v.trim().is_empty();
            flag.filter(|v| non_empty(v))
                .map(str::to_owned)
                .or_else(|| file.get(key).filter(|v| non_empty(v)).cloned())
                .or_else(|| env(key).filter(|v| non_empty(v)))
        };
        Config {
            endpoint: pick(flags.endpoint.as_deref(), ENV_ENDPOINT)
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            ak: pick(flags.ak.as_deref(), ENV_AK),
            sk: pick(flags.sk.as_ref().map(Secret::expose), ENV_SK).map(Secret),
            project: pick(flags.project.as_deref(), ENV_PROJECT),
            instance: pick(flags.instance.as_deref(), ENV_INSTANCE),
        }
    }

    /// The management AK/SK, or an error saying where to put them.
    pub fn credential(&self) -> Result<(&str, &Secret)> {
        let Some(ak) = self.ak.as_deref() else {
            bail!("no access key: pass --ak, set {ENV_AK}, or use --env-file DATA_DIR/admin-credentials.env");
        };
        let Some(sk) = self.sk.as_ref() else {
            bail!("no secret key: set {ENV_SK}, use --env-file DATA_DIR/admin-credentials.env, or pass --sk");
        };
        Ok((ak, sk))
    }

    pub fn project(&self) -> Result<&str> {
        self.project.as_deref().with_context(|| {
            format!("no project id: pass --project, set {ENV_PROJECT}, or use --env-file")
        })
    }
}

/// Parses `KEY=VALUE` lines: blank lines and `#` comments are skipped, an `export ` prefix and
/// one pair of matching quotes around the value are removed, whitespace around both is trimmed.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE", i + 1);
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("line {}: invalid key {key:?}", i + 1);
        }
        out.insert(key.to_owned(), unquote(value.trim()).to_owned());
    }
    Ok(out)
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Reads and parses an env file; errors name the file (never its contents).
pub fn load_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read env file {}", path.display()))?;
    parse_env_file(&text).with_context(|| format!("env file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn env_file_format() {
        let text = "# Written on first start; readable by its owner only.\n\
                    APIG_ADMIN_AK=AK1\n\
                    \n\
                    export APIG_ADMIN_SK = \"s=cret\" \n\
                    APIG_PROJECT_ID='p1'\n\
                    APIG_INSTANCE_ID=\n\
                    OTHER=x=y\n";
        let m = parse_env_file(text).unwrap();
        assert_eq!(m["APIG_ADMIN_AK"], "AK1");
        assert_eq!(m["APIG_ADMIN_SK"], "s=cret");
        assert_eq!(m["APIG_PROJECT_ID"], "p1");
        assert_eq!(m["APIG_INSTANCE_ID"], "");
        assert_eq!(m["OTHER"], "x=y");
    }

    #[test]
    fn env_file_errors_name_the_line_not_the_value() {
        let e = parse_env_file("A=1\nsecretvalue\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "line 2: expected KEY=VALUE");
        assert!(parse_env_file("BAD KEY=1").is_err());
        assert!(parse_env_file("=1").is_err());
    }

    #[test]
    fn precedence_flag_file_env_default() {
        let env = |k: &str| match k {
            ENV_ENDPOINT => Some("http://env:1".to_owned()),
            ENV_AK => Some("env-ak".to_owned()),
            ENV_SK => Some("env-sk".to_owned()),
            ENV_PROJECT => Some("env-project".to_owned()),
            ENV_INSTANCE => Some(String::new()),
            _ => None,
        };
        let file = parse_env_file("APIG_ADMIN_AK=file-ak\nAPIG_ADMIN_SK=file-sk\n").unwrap();
        let flags = Flags {
            sk: Some(Secret::new("flag-sk")),
            ..Flags::default()
        };
        let c = Config::resolve(&flags, &file, env);
        assert_eq!(c.endpoint, "http://env:1");
        assert_eq!(c.ak.as_deref(), Some("file-ak"));
        assert_eq!(c.sk.as_ref().map(Secret::expose), Some("flag-sk"));
        assert_eq!(c.project.as_deref(), Some("env-project"));
        // Empty counts as unset.
        assert_eq!(c.instance, None);

        let c = Config::resolve(&Flags::default(), &BTreeMap::new(), no_env);
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert!(c.credential().unwrap_err().to_string().contains(ENV_AK));
        assert!(c.project().is_err());
    }

    #[test]
    fn secret_never_in_debug() {
        let flags = Flags {
            ak: Some("AK".into()),
            sk: Some(Secret::new("very-secret-value")),
            ..Flags::default()
        };
        let c = Config::resolve(&flags, &BTreeMap::new(), no_env);
        let shown = format!("{flags:?} {c:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("<redacted>"));
        let (ak, sk) = c.credential().unwrap();
        assert_eq!((ak, sk.expose()), ("AK", "very-secret-value"));
    }
}
