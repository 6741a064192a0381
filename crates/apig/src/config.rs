//! The configuration file, and where each effective value came from.
//!
//! The file is TOML: the global flags at the top level, and one table per command
//! (`[control]`, `[gateway]`, `[up]`, `[backup]`, `[restore]`) whose keys are that command's
//! long flag names in snake_case (`--admin-listen` is `admin_listen`).
//!
//! The layering is clap's own: a value from the file becomes the flag's default
//! (`Command::mut_arg`), so clap applies flag > environment > file > built-in default, `--help`
//! shows the file's values as the defaults, and `ArgMatches::value_source` tells a flag and an
//! environment variable from a default. Before clap parses anything, every key of the file and
//! every environment variable of the command that runs is checked with the flag's own value
//! parser, so all the problems are reported at once instead of clap's first one.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "APIG_CONFIG";
/// The commands that may have a table in the file.
pub const TABLES: &[&str] = &["control", "gateway", "up", "backup", "restore"];
/// Flags (by key) whose values are secrets: masked when shown, and taken from a file only if
/// that file is readable by its owner alone.
pub const SECRETS: &[&str] = &["cluster_token", "admin_sk"];
/// Flags that never come from the file.
const NOT_IN_FILE: &[&str] = &["help", "version", "config"];
/// `apig config check <command>` resolves a command's flags under this path.
const CHECK_PATH: &[&str] = &["config", "check"];

/// One thing wrong with the file or the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{path}: cannot read the configuration file: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: unknown table [{table}]{}", hint(suggestion))]
    UnknownTable {
        path: PathBuf,
        table: String,
        suggestion: Option<String>,
    },
    #[error("{path}: unknown key `{key}`{}", hint(suggestion))]
    UnknownKey {
        path: PathBuf,
        /// Qualified: `gateway.admin_lisen`, or `data_dir` at the top level.
        key: String,
        suggestion: Option<String>,
    },
    #[error("{path}: `{key}` must be {expected}, not {found}")]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{origin}: `{key}` = {value:?}: {reason}")]
    Invalid {
        /// The file's path, or `environment variable APIG_…`.
        origin: String,
        key: String,
        value: String,
        reason: String,
    },
    #[error(
        "{path}: `{key}` is a secret, but the file is readable by group or others (mode {mode:03o}): \
         `chmod 600` it, or pass the secret in {env} instead"
    )]
    SharedSecret {
        path: PathBuf,
        key: String,
        mode: u32,
        env: String,
    },
}

fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" ({s})"),
        None => String::new(),
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(String),
    File,
    Default,
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File => f.write_str("file"),
            Source::Default => f.write_str("default"),
            Source::Unset => f.write_str("unset"),
        }
    }
}

/// The key of a flag in the file: its long name in snake_case.
fn key_of(arg: &Arg) -> Option<String> {
    let id = arg.get_id().as_str();
    if NOT_IN_FILE.contains(&id) {
        return None;
    }
    arg.get_long().map(|l| l.replace('-', "_"))
}

/// What TOML type a flag's value takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Bool,
}

fn kind(arg: &Arg) -> Kind {
    let t = arg.get_value_parser().type_id();
    let integers = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
    ];
    if integers.iter().any(|i| t == *i) {
        Kind::Integer
    } else if t == TypeId::of::<bool>() {
        Kind::Bool
    } else {
        Kind::Text
    }
}

fn multiple(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// The file's valid values, as strings for clap, by table (`""` is the top level) and flag id.
#[derive(Debug, Default, Clone)]
pub struct FileValues {
    pub path: PathBuf,
    /// Permission bits of the file (unix), for the report.
    pub mode: Option<u32>,
    pub tables: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl FileValues {
    pub fn has_table(&self, table: &str) -> bool {
        self.tables.get(table).is_some_and(|t| !t.is_empty())
    }
}

/// Reads and checks the file against `cmd` (the whole file: a mistake in a table of another
/// command is a mistake too). Returns the valid values and every problem.
pub fn load(cmd: &Command, path: &Path) -> (FileValues, Vec<Problem>) {
    let mut values = FileValues {
        path: path.to_owned(),
        ..FileValues::default()
    };
    let mut problems = Vec::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::Unreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            });
            return (values, problems);
        }
    };
    values.mode = file_mode(path);
    let doc: toml::Table = match text.parse() {
        Ok(d) => d,
        Err(e) => {
            problems.push(Problem::Syntax {
                path: path.to_owned(),
                message: e.to_string().trim().replace('\n', " "),
            });
            return (values, problems);
        }
    };
    let top_args: Vec<&Arg> = cmd.get_arguments().collect();
    for (key, value) in &doc {
        if let toml::Value::Table(table) = value {
            let Some(sub) = TABLES
                .contains(&key.as_str())
                .then(|| cmd.find_subcommand(key))
                .flatten()
            else {
                problems.push(Problem::UnknownTable {
                    path: path.to_owned(),
                    table: key.clone(),
                    suggestion: suggest(key, TABLES.iter().copied())
                        .map(|s| format!("did you mean [{s}]?")),
                });
                continue;
            };
            let args: Vec<&Arg> = sub.get_arguments().collect();
            let parsed = table_values(path, Some(key), table.iter(), &args, cmd, &mut problems);
            values.tables.insert(key.clone(), parsed);
        } else {
            let parsed = table_values(
                path,
                None,
                std::iter::once((key, value)),
                &top_args,
                cmd,
                &mut problems,
            );
            values
                .tables
                .entry(String::new())
                .or_default()
                .extend(parsed);
        }
    }
    if let Some(mode) = values.mode.filter(|m| m & 0o044 != 0) {
        for (table, keys) in &doc_secrets(&doc) {
            for key in keys {
                let qualified = qualify(table.as_deref(), key);
                let env = env_of(cmd, table.as_deref(), key).unwrap_or_else(|| "a flag".into());
                problems.push(Problem::SharedSecret {
                    path: path.to_owned(),
                    key: qualified,
                    mode,
                    env,
                });
                if let Some(t) = values.tables.get_mut(table.as_deref().unwrap_or("")) {
                    if let Some(id) = id_of(cmd, table.as_deref(), key) {
                        t.remove(&id);
                    }
                }
            }
        }
    }
    (values, problems)
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn file_mode(_: &Path) -> Option<u32> {
    None
}

/// The secret keys present in the document, by table.
fn doc_secrets(doc: &toml::Table) -> Vec<(Option<String>, Vec<String>)> {
    let mut out = Vec::new();
    let top: Vec<String> = doc
        .keys()
        .filter(|k| SECRETS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !top.is_empty() {
        out.push((None, top));
    }
    for (name, v) in doc {
        if let toml::Value::Table(t) = v {
            let keys: Vec<String> = t
                .keys()
                .filter(|k| SECRETS.contains(&k.as_str()))
                .cloned()
                .collect();
            if !keys.is_empty() {
                out.push((Some(name.clone()), keys));
            }
        }
    }
    out
}

fn level<'a>(cmd: &'a Command, table: Option<&str>) -> Option<&'a Command> {
    match table {
        None => Some(cmd),
        Some(t) => cmd.find_subcommand(t),
    }
}

fn find_arg<'a>(cmd: &'a Command, table: Option<&str>, key: &str) -> Option<&'a Arg> {
    level(cmd, table)?
        .get_arguments()
        .find(|a| key_of(a).as_deref() == Some(key))
}

fn id_of(cmd: &Command, table: Option<&str>, key: &str) -> Option<String> {
    find_arg(cmd, table, key).map(|a| a.get_id().to_string())
}

fn env_of(cmd: &Command, table: Option<&str>, key: &str) -> Option<String> {
    find_arg(cmd, table, key)
        .and_then(Arg::get_env)
        .map(|e| e.to_string_lossy().into_owned())
}

fn qualify(table: Option<&str>, key: &str) -> String {
    match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

fn table_values<'a>(
    path: &Path,
    table: Option<&str>,
    entries: impl Iterator<Item = (&'a String, &'a toml::Value)>,
    args: &[&Arg],
    root: &Command,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let keys: Vec<String> = args.iter().filter_map(|a| key_of(a)).collect();
    for (key, value) in entries {
        let qualified = qualify(table, key);
        let Some(arg) = args
            .iter()
            .find(|a| key_of(a).as_deref() == Some(key.as_str()))
        else {
            problems.push(Problem::UnknownKey {
                path: path.to_owned(),
                key: qualified,
                suggestion: unknown_key_hint(key, table, &keys, root),
            });
            continue;
        };
        let strings = match to_strings(value, kind(arg), multiple(arg)) {
            Ok(s) => s,
            Err((expected, found)) => {
                problems.push(Problem::WrongType {
                    path: path.to_owned(),
                    key: qualified,
                    expected,
                    found,
                });
                continue;
            }
        };
        let mut ok = true;
        for s in &strings {
            if let Err(reason) = check_value(arg, s) {
                problems.push(Problem::Invalid {
                    origin: path.display().to_string(),
                    key: qualified.clone(),
                    value: s.clone(),
                    reason,
                });
                ok = false;
            }
        }
        if ok {
            out.insert(arg.get_id().to_string(), strings);
        }
    }
    out
}

fn unknown_key_hint(
    key: &str,
    table: Option<&str>,
    keys: &[String],
    root: &Command,
) -> Option<String> {
    let snake = key.replace('-', "_");
    if snake != key && keys.contains(&snake) {
        return Some(format!("keys are snake_case: did you mean `{snake}`?"));
    }
    if let Some(s) = suggest(&snake, keys.iter().map(String::as_str)) {
        return Some(format!("did you mean `{s}`?"));
    }
    // A command's key at the top level, or one command's key in another's table.
    let homes: Vec<String> = TABLES
        .iter()
        .filter(|t| Some(**t) != table)
        .filter(|t| find_arg(root, Some(t), &snake).is_some())
        .map(|t| format!("[{t}]"))
        .collect();
    if !homes.is_empty() {
        return Some(format!("it belongs in {}", homes.join(", ")));
    }
    if table.is_some() && find_arg(root, None, &snake).is_some() {
        return Some("it belongs at the top level, before any table".into());
    }
    None
}

/// A TOML value as the strings clap would get on a command line, or (expected, found).
fn to_strings(
    value: &toml::Value,
    kind: Kind,
    multiple: bool,
) -> Result<Vec<String>, (&'static str, &'static str)> {
    let expected = match (kind, multiple) {
        (Kind::Integer, false) => "an integer",
        (Kind::Bool, false) => "true or false",
        (Kind::Text, false) => "a string",
        (Kind::Integer, true) => "a list of integers",
        (Kind::Bool, true) => "a list of booleans",
        (Kind::Text, true) => "a list of strings",
    };
    let scalar = |v: &toml::Value| match (kind, v) {
        (Kind::Text, toml::Value::String(s)) => Some(s.clone()),
        (Kind::Integer, toml::Value::Integer(i)) => Some(i.to_string()),
        (Kind::Bool, toml::Value::Boolean(b)) => Some(b.to_string()),
        _ => None,
    };
    match value {
        toml::Value::Array(items) if multiple => items
            .iter()
            .map(|v| scalar(v).ok_or((expected, v.type_str())))
            .collect(),
        v => scalar(v).map(|s| vec![s]).ok_or((expected, v.type_str())),
    }
}

/// Runs `value` through the flag's own value parser; the reason when it is refused.
fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    let probe = Arg::new("value")
        .long("value")
        .action(ArgAction::Set)
        .allow_hyphen_values(true)
        .value_parser(arg.get_value_parser().clone());
    let result = Command::new("apig")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from([format!("--value={value}")]);
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(reason(&e)),
    }
}

/// The reason of a value error, without clap's usage text.
fn reason(e: &clap::Error) -> String {
    use std::error::Error;
    if let Some(source) = e.source() {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("expected one of {}", valid.join(", "));
    }
    clap_message(e)
}

/// A clap error on one line, without the `error: ` prefix and the usage text.
pub fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned()
}

/// What the command line says before clap has judged it: the subcommand path and `--config`.
fn scan(cmd: &Command, argv: &[OsString]) -> (Vec<String>, Option<PathBuf>) {
    let mut path = Vec::new();
    let mut config = None;
    let mut level = cmd;
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(s) = arg.to_str() else { continue };
        if s == "--" {
            break;
        }
        if let Some(long) = s.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let def = level
                .get_arguments()
                .chain(cmd.get_arguments())
                .find(|a| a.get_long() == Some(name));
            let takes_value =
                def.is_some_and(|a| matches!(a.get_action(), ArgAction::Set | ArgAction::Append));
            let value = match inline {
                Some(v) => Some(OsString::from(v)),
                None if takes_value => args.next().cloned(),
                None => None,
            };
            if name == "config" {
                config = value.map(PathBuf::from);
            }
            continue;
        }
        if s.starts_with('-') {
            continue;
        }
        if let Some(sub) = level.find_subcommand(s) {
            path.push(sub.get_name().to_owned());
            level = sub;
        }
    }
    (path, config)
}

fn subcommand_at<'a>(cmd: &'a Command, path: &[String]) -> Option<&'a Command> {
    path.iter().try_fold(cmd, |c, name| c.find_subcommand(name))
}

/// The file table that configures the command at `path`: `gateway` for `apig gateway` and for
/// `apig config check gateway`.
fn table_of(path: &[String]) -> Option<&str> {
    let rest = if path.len() > CHECK_PATH.len()
        && path[..CHECK_PATH.len()]
            .iter()
            .zip(CHECK_PATH)
            .all(|(a, b)| a == b)
    {
        &path[CHECK_PATH.len()..]
    } else {
        path
    };
    rest.first()
        .map(String::as_str)
        .filter(|t| TABLES.contains(t))
}

/// The outcome of [`resolve`].
pub struct Resolved {
    /// The command as parsed: the file's values are its defaults.
    pub command: Command,
    pub matches: ArgMatches,
    /// The subcommand path (`["gateway"]`, `["config", "check", "up"]`).
    pub path: Vec<String>,
    pub file: Option<FileValues>,
    /// The command's flags in declaration order, for the report.
    order: Vec<String>,
}

/// Why [`resolve`] did not produce a configuration.
pub enum Failure {
    /// `--help`, `--version`, or a command-line mistake with nothing else wrong: clap's own
    /// message (with usage) is the best answer.
    Clap(clap::Error),
    /// Everything found wrong, in order.
    Problems(Vec<String>),
}

/// Reads the file, checks it and the environment, and parses `argv` with the file's values as
/// defaults. `env` is the process environment (a parameter for tests).
pub fn resolve(
    cmd: Command,
    argv: &[OsString],
    env: &dyn Fn(&OsStr) -> Option<OsString>,
) -> Result<Resolved, Failure> {
    let (path, config_flag) = scan(&cmd, argv);
    let config = config_flag.or_else(|| {
        env(OsStr::new(CONFIG_ENV))
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let mut problems: Vec<String> = Vec::new();
    let file = config.map(|p| {
        let (values, found) = load(&cmd, &p);
        problems.extend(found.iter().map(ToString::to_string));
        values
    });

    // Environment variables of the command that runs (and the global flags'), checked now so
    // that they are listed with the rest; a bad one is hidden from clap, which would stop at it.
    let mut bad_env: Vec<(usize, String)> = Vec::new();
    let mut levels = vec![&cmd];
    for depth in 1..=path.len() {
        if let Some(sub) = subcommand_at(&cmd, &path[..depth]) {
            levels.push(sub);
        }
    }
    for (depth, level) in levels.iter().enumerate() {
        for arg in level.get_arguments() {
            let Some(name) = arg.get_env() else { continue };
            let Some(value) = env(name).filter(|v| !v.is_empty()) else {
                continue;
            };
            let key = key_of(arg).unwrap_or_else(|| arg.get_id().to_string());
            let shown = if SECRETS.contains(&key.as_str()) {
                "******".to_owned()
            } else {
                value.to_string_lossy().into_owned()
            };
            let origin = format!("environment variable {}", name.to_string_lossy());
            let Some(text) = value.to_str() else {
                problems.push(format!("{origin}: not valid UTF-8"));
                bad_env.push((depth, arg.get_id().to_string()));
                continue;
            };
            let parts: Vec<&str> = match arg.get_value_delimiter() {
                Some(d) if multiple(arg) => text.split(d).collect(),
                _ => vec![text],
            };
            for part in parts {
                if let Err(reason) = check_value(arg, part) {
                    problems.push(
                        Problem::Invalid {
                            origin: origin.clone(),
                            key: key.clone(),
                            value: if shown == "******" {
                                shown.clone()
                            } else {
                                part.to_owned()
                            },
                            reason,
                        }
                        .to_string(),
                    );
                    bad_env.push((depth, arg.get_id().to_string()));
                }
            }
        }
    }

    let order = declaration_order(&cmd, &path);
    let mut command = cmd;
    if let Some(file) = &file {
        command = with_file_defaults(command, file);
    }
    for (depth, id) in &bad_env {
        command = mut_at(command, &path[..*depth], |c| {
            c.mut_arg(id, |a| a.env(None).required(false))
        });
    }

    let matches = match command.try_get_matches_from_mut(argv) {
        Ok(m) => m,
        Err(e) => {
            let display = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if display || problems.is_empty() {
                return Err(Failure::Clap(e));
            }
            problems.push(clap_message(&e));
            return Err(Failure::Problems(problems));
        }
    };
    if !problems.is_empty() {
        return Err(Failure::Problems(problems));
    }
    Ok(Resolved {
        command,
        matches,
        path,
        file,
        order,
    })
}

/// The ids of the flags of the command at `path`, as declared (`mut_arg` moves a flag last).
fn declaration_order(cmd: &Command, path: &[String]) -> Vec<String> {
    subcommand_at(cmd, path)
        .map(|c| c.get_arguments().map(|a| a.get_id().to_string()).collect())
        .unwrap_or_default()
}

/// Applies `f` to the subcommand at `path` (the root when empty).
fn mut_at(cmd: Command, path: &[String], f: impl FnOnce(Command) -> Command) -> Command {
    match path.split_first() {
        None => f(cmd),
        Some((first, rest)) => cmd.mut_subcommand(first, |c| mut_at(c, rest, f)),
    }
}

/// The file's values as defaults: the top level on the root (global flags reach every
/// subcommand from there), each table on its command and on `config check <command>`.
fn with_file_defaults(cmd: Command, file: &FileValues) -> Command {
    let set = |c: Command, values: &BTreeMap<String, Vec<String>>| {
        values.iter().fold(c, |c, (id, v)| {
            let v = v.clone();
            c.mut_arg(id, move |a| {
                // `--help` shows defaults: not a secret's.
                let secret = key_of(&a).is_some_and(|k| SECRETS.contains(&k.as_str()));
                a.default_values(v)
                    .required(false)
                    .hide_default_value(secret)
            })
        })
    };
    let mut cmd = match file.tables.get("") {
        Some(top) => set(cmd, top),
        None => cmd,
    };
    for (table, values) in file.tables.iter().filter(|(t, _)| !t.is_empty()) {
        cmd = cmd.mut_subcommand(table, |c| set(c, values));
        let check: Vec<String> = CHECK_PATH.iter().map(|s| s.to_string()).collect();
        if subcommand_at(&cmd, &check).is_some_and(|c| c.find_subcommand(table).is_some()) {
            cmd = mut_at(cmd, &check, |c| c.mut_subcommand(table, |c| set(c, values)));
        }
    }
    cmd
}

/// One effective value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub key: String,
    /// The values as given (a list for repeatable flags); `******` for a secret.
    pub values: Vec<String>,
    pub integer: bool,
    pub multiple: bool,
    pub source: Source,
}

impl Resolved {
    fn table(&self) -> Option<&str> {
        table_of(&self.path)
    }

    fn is_from_file(&self, table: &str, id: &str) -> bool {
        self.file
            .as_ref()
            .and_then(|f| f.tables.get(table))
            .is_some_and(|t| t.contains_key(id))
    }

    /// The matches of the deepest subcommand (where global flags are propagated too).
    fn leaf_matches(&self) -> &ArgMatches {
        let mut m = &self.matches;
        while let Some((_, sub)) = m.subcommand() {
            m = sub;
        }
        m
    }

    fn effective(&self, arg: &Arg, table: &str, m: &ArgMatches) -> Option<Effective> {
        let key = key_of(arg)?;
        let id = arg.get_id().as_str();
        let source = match m.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env(
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            Some(ValueSource::DefaultValue) if self.is_from_file(table, id) => Source::File,
            Some(_) => Source::Default,
            None => Source::Unset,
        };
        let mut values: Vec<String> = m
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if SECRETS.contains(&key.as_str()) && !values.is_empty() {
            values = vec!["******".into()];
        }
        Some(Effective {
            key,
            values,
            integer: kind(arg) == Kind::Integer,
            multiple: multiple(arg),
            source,
        })
    }

    /// The effective global values, then those of the command's own flags.
    pub fn effective_values(&self) -> (Vec<Effective>, Vec<Effective>) {
        let m = self.leaf_matches();
        let root = self.command.get_arguments().filter(|a| a.is_global_set());
        let globals = root.filter_map(|a| self.effective(a, "", m)).collect();
        let table = self.table().unwrap_or_default();
        let own = subcommand_at(&self.command, &self.path)
            .map(|c| {
                let mut args: Vec<&Arg> =
                    c.get_arguments().filter(|a| !a.is_global_set()).collect();
                args.sort_by_key(|a| {
                    let id = a.get_id().as_str();
                    self.order
                        .iter()
                        .position(|o| o == id)
                        .unwrap_or(usize::MAX)
                });
                args.into_iter()
                    .filter_map(|a| self.effective(a, table, m))
                    .collect()
            })
            .unwrap_or_default();
        (globals, own)
    }

    /// The effective configuration as TOML, each value commented with where it came from.
    pub fn report(&self) -> String {
        let (globals, own) = self.effective_values();
        let mut out = String::new();
        match &self.file {
            Some(f) => {
                let mode = f
                    .mode
                    .map(|m| format!(" (mode {m:03o})"))
                    .unwrap_or_default();
                out.push_str(&format!("# file: {}{mode}\n", f.path.display()));
            }
            None => out.push_str("# file: none\n"),
        }
        for e in &globals {
            out.push_str(&line(e));
        }
        if let Some(table) = self.table() {
            out.push_str(&format!("\n[{table}]\n"));
        }
        for e in &own {
            out.push_str(&line(e));
        }
        out
    }
}

fn line(e: &Effective) -> String {
    let quote = |v: &String| {
        if e.integer {
            v.clone()
        } else {
            format!("{v:?}")
        }
    };
    let text = if e.source == Source::Unset {
        format!("# {} =", e.key)
    } else if e.multiple {
        let items: Vec<String> = e.values.iter().map(quote).collect();
        format!("{} = [{}]", e.key, items.join(", "))
    } else {
        format!(
            "{} = {}",
            e.key,
            e.values.first().map(quote).unwrap_or_default()
        )
    };
    format!("{text:<48} # {}\n", e.source)
}

/// The commands that have a table in the file, for `apig config check` without a command.
pub fn tables_in(file: &FileValues) -> Vec<&'static str> {
    TABLES
        .iter()
        .copied()
        .filter(|t| file.has_table(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command shaped like apig's, with environment variable names of its own so that tests
    /// running in parallel never see each other's variables.
    fn cmd(tag: &str) -> Command {
        let env = |name: &str| format!("APIG_UNIT_{tag}_{name}");
        Command::new("apig")
            .arg(
                Arg::new("log_format")
                    .long("log-format")
                    .global(true)
                    .default_value("text")
                    .value_parser(["text", "json"]),
            )
            .arg(Arg::new("config").long("config").global(true))
            .subcommand(
                Command::new("gateway")
                    .arg(
                        Arg::new("listen")
                            .long("listen")
                            .env(env("LISTEN"))
                            .default_value("127.0.0.1:8080")
                            .value_parser(clap::value_parser!(std::net::SocketAddr)),
                    )
                    .arg(
                        Arg::new("admin_listen")
                            .long("admin-listen")
                            .env(env("ADMIN_LISTEN"))
                            .default_value("127.0.0.1:8081")
                            .value_parser(clap::value_parser!(std::net::SocketAddr)),
                    )
                    .arg(
                        Arg::new("cache_dir")
                            .long("cache-dir")
                            .required(true)
                            .value_parser(clap::value_parser!(PathBuf)),
                    )
                    .arg(
                        Arg::new("cluster_token")
                            .long("cluster-token")
                            .env(env("CLUSTER_TOKEN")),
                    )
                    .arg(
                        Arg::new("default_api_rate_limit")
                            .long("default-api-rate-limit")
                            .default_value("200")
                            .value_parser(clap::value_parser!(u64)),
                    )
                    .arg(
                        Arg::new("trusted_proxies")
                            .long("trusted-proxy")
                            .action(ArgAction::Append),
                    ),
            )
            .subcommand(
                Command::new("control").arg(
                    Arg::new("data_dir")
                        .long("data-dir")
                        .required(true)
                        .value_parser(clap::value_parser!(PathBuf)),
                ),
            )
    }

    fn file(dir: &tempfile::TempDir, text: &str, mode: u32) -> PathBuf {
        let path = dir.path().join("apig.toml");
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        path
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("apig")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn run(tag: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Resolved, Failure> {
        // clap reads the real environment; the variables are unique to the test (`tag`).
        for (k, v) in env {
            std::env::set_var(format!("APIG_UNIT_{tag}_{k}"), v);
        }
        let env_map: BTreeMap<OsString, OsString> = env
            .iter()
            .map(|(k, v)| (format!("APIG_UNIT_{tag}_{k}").into(), OsString::from(v)))
            .collect();
        let r = resolve(cmd(tag), &argv(args), &|k| env_map.get(k).cloned());
        for (k, _) in env {
            std::env::remove_var(format!("APIG_UNIT_{tag}_{k}"));
        }
        r
    }

    fn problems(r: Result<Resolved, Failure>) -> Vec<String> {
        match r {
            Err(Failure::Problems(p)) => p,
            Err(Failure::Clap(e)) => panic!("clap error instead of problems: {e}"),
            Ok(_) => panic!("resolved without problems"),
        }
    }

    fn get(r: &Resolved, key: &str) -> Effective {
        let (globals, own) = r.effective_values();
        globals
            .into_iter()
            .chain(own)
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no {key}"))
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            &dir,
            "log_format = \"json\"\n[gateway]\nlisten = \"127.0.0.1:1001\"\n\
             admin_listen = \"127.0.0.1:1002\"\ncache_dir = \"/tmp/c\"\n\
             trusted_proxy = [\"10.0.0.0/8\", \"192.168.0.1\"]\n",
            0o600,
        );
        let f = f.to_str().unwrap();
        let r = run(
            "MERGE",
            &["--config", f, "gateway", "--listen", "127.0.0.1:3001"],
            &[
                ("LISTEN", "127.0.0.1:2001"),
                ("ADMIN_LISTEN", "127.0.0.1:2002"),
            ],
        )
        .unwrap_or_else(|_| panic!("resolves"));
        let listen = get(&r, "listen");
        assert_eq!(listen.values, ["127.0.0.1:3001"]);
        assert_eq!(listen.source, Source::Flag);
        let admin = get(&r, "admin_listen");
        assert_eq!(admin.values, ["127.0.0.1:2002"]);
        assert_eq!(
            admin.source,
            Source::Env("APIG_UNIT_MERGE_ADMIN_LISTEN".into())
        );
        let cache = get(&r, "cache_dir");
        assert_eq!(
            (cache.values, cache.source),
            (vec!["/tmp/c".into()], Source::File)
        );
        let rate = get(&r, "default_api_rate_limit");
        assert_eq!(
            (rate.values, rate.source),
            (vec!["200".into()], Source::Default)
        );
        let proxies = get(&r, "trusted_proxy");
        assert_eq!(proxies.values, ["10.0.0.0/8", "192.168.0.1"]);
        assert_eq!(proxies.source, Source::File);
        let format = get(&r, "log_format");
        assert_eq!(
            (format.values, format.source),
            (vec!["json".into()], Source::File)
        );
        assert_eq!(get(&r, "cluster_token").source, Source::Unset);
        // The typed value is the merged one too.
        let sub = r.matches.subcommand_matches("gateway").unwrap();
        assert_eq!(
            sub.get_one::<std::net::SocketAddr>("admin_listen")
                .unwrap()
                .port(),
            2002
        );
        let report = r.report();
        assert!(report.contains("[gateway]"), "{report}");
        assert!(
            report.contains("# env APIG_UNIT_MERGE_ADMIN_LISTEN"),
            "{report}"
        );
    }

    #[test]
    fn config_comes_from_the_environment_when_no_flag_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir, "[control]\ndata_dir = \"/var/lib/x\"\n", 0o644);
        let env: BTreeMap<OsString, OsString> =
            [(OsString::from(CONFIG_ENV), f.clone().into_os_string())].into();
        let r = resolve(cmd("ENVFILE"), &argv(&["control"]), &|k| {
            env.get(k).cloned()
        })
        .unwrap_or_else(|_| panic!("resolves"));
        assert_eq!(get(&r, "data_dir").source, Source::File);
    }

    #[test]
    fn every_mistake_is_listed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            &dir,
            "log_fromat = \"json\"\ndata_dir = \"/x\"\n[gateway]\nadmin_lisen = \"127.0.0.1:1\"\n\
             listen = \"nowhere\"\ndefault_api_rate_limit = \"fast\"\ncache-dir = \"/c\"\n\
             trusted_proxy = [1.5]\n[gatway]\nx = 1\n",
            0o600,
        );
        let p = problems(run(
            "MISTAKES",
            &[
                "--config",
                f.to_str().unwrap(),
                "gateway",
                "--cache-dir",
                "/c",
            ],
            &[("ADMIN_LISTEN", "not-an-address")],
        ));
        let all = p.join("\n");
        for want in [
            "unknown key `log_fromat` (did you mean `log_format`?)",
            "unknown key `data_dir` (it belongs in [control])",
            "unknown key `gateway.admin_lisen` (did you mean `admin_listen`?)",
            "`gateway.listen` = \"nowhere\": invalid socket address syntax",
            "`gateway.default_api_rate_limit` must be an integer, not string",
            "unknown key `gateway.cache-dir` (keys are snake_case: did you mean `cache_dir`?)",
            "`gateway.trusted_proxy` must be a list of strings, not float",
            "unknown table [gatway] (did you mean [gateway]?)",
            "environment variable APIG_UNIT_MISTAKES_ADMIN_LISTEN: `admin_listen` = \"not-an-address\"",
        ] {
            assert!(all.contains(want), "{want:?} missing from:\n{all}");
        }
        assert_eq!(p.len(), 9, "{all}");
    }

    #[test]
    fn a_missing_or_broken_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let p = problems(run(
            "MISSING",
            &[
                "--config",
                missing.to_str().unwrap(),
                "control",
                "--data-dir",
                "/d",
            ],
            &[],
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("cannot read the configuration file"), "{p:?}");

        let f = file(&dir, "[gateway\nlisten = 1\n", 0o600);
        let p = problems(run(
            "BROKEN",
            &[
                "--config",
                f.to_str().unwrap(),
                "control",
                "--data-dir",
                "/d",
            ],
            &[],
        ));
        assert!(p[0].contains("not valid TOML"), "{p:?}");
    }

    #[cfg(unix)]
    #[test]
    fn secrets_only_from_an_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[gateway]\ncache_dir = \"/c\"\ncluster_token = \"s3cret-token-value\"\n";
        let f = file(&dir, text, 0o640);
        let p = problems(run(
            "SHARED",
            &["--config", f.to_str().unwrap(), "gateway"],
            &[],
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("`gateway.cluster_token` is a secret"),
            "{p:?}"
        );
        assert!(p[0].contains("mode 640"), "{p:?}");
        assert!(p[0].contains("APIG_UNIT_SHARED_CLUSTER_TOKEN"), "{p:?}");
        assert!(!p[0].contains("s3cret"), "{p:?}");

        let f = file(&dir, text, 0o600);
        let r = run(
            "PRIVATE",
            &["--config", f.to_str().unwrap(), "gateway"],
            &[],
        )
        .unwrap_or_else(|_| panic!("resolves"));
        let token = get(&r, "cluster_token");
        assert_eq!(
            (token.values, token.source),
            (vec!["******".into()], Source::File)
        );
        assert!(!r.report().contains("s3cret"));
    }

    #[test]
    fn a_command_line_mistake_alone_is_clap_s_to_report() {
        let r = run("CLAP", &["gateway"], &[]);
        match r {
            Err(Failure::Clap(e)) => {
                assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument)
            }
            _ => panic!("expected clap's error"),
        }
    }

    #[test]
    fn the_scan_finds_the_command_and_the_file() {
        let c = cmd("SCAN");
        let (path, config) = scan(
            &c,
            &argv(&[
                "--log-format",
                "json",
                "gateway",
                "--config=/etc/a.toml",
                "--listen",
                "x",
            ]),
        );
        assert_eq!(path, ["gateway"]);
        assert_eq!(config, Some(PathBuf::from("/etc/a.toml")));
        assert_eq!(
            table_of(&["config".into(), "check".into(), "up".into()]),
            Some("up")
        );
    }
}
