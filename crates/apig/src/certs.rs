//! `apig certs`: the cluster CA and the certificates of the replica link's mutual TLS.
//!
//! Everything lives in one directory: `ca.pem`/`ca-key.pem`, `control.pem`/`control-key.pem` and
//! `replica-<name>.pem`/`replica-<name>-key.pem`. Private keys are written owner-only and nothing
//! is ever overwritten, so re-running a command cannot silently rotate a key in use.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use apig_proto::cluster::ReplicaIdentity;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create the cluster CA (`ca.pem`, `ca-key.pem`). Keep `ca-key.pem` offline if you can:
    /// only issuing certificates needs it.
    Ca(CaArgs),
    /// Issue the control plane's server certificate (`control.pem`, `control-key.pem`).
    Control(ControlCertArgs),
    /// Issue a replica's client certificate (`replica-<name>.pem`, `replica-<name>-key.pem`),
    /// which lets it join one instance only.
    Replica(ReplicaCertArgs),
}

#[derive(Args, Debug)]
pub struct CaArgs {
    /// Directory of the cluster's certificates (created owner-only when missing).
    #[arg(long)]
    dir: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
}

#[derive(Args, Debug)]
pub struct ControlCertArgs {
    #[arg(long)]
    dir: PathBuf,
    /// Host names and IP addresses replicas use to reach the control plane (repeatable); they
    /// check the certificate against the host in `--control-plane https://HOST:PORT`.
    #[arg(long = "san", required = true)]
    sans: Vec<String>,
    #[arg(long, default_value_t = 365)]
    days: u32,
}

#[derive(Args, Debug)]
pub struct ReplicaCertArgs {
    #[arg(long)]
    dir: PathBuf,
    /// The instance this replica may serve.
    #[arg(long)]
    instance: String,
    /// Pin the replica's node id too (it must then start with `--node-id` equal to this).
    #[arg(long)]
    node: Option<String>,
    /// File name part: `replica-<name>.pem` (default: the node id, else the instance id).
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value_t = 365)]
    days: u32,
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Ca(a) => ca(&a),
        CertsCommand::Control(a) => control(&a),
        CertsCommand::Replica(a) => replica(&a),
    }
}

fn ca(args: &CaArgs) -> anyhow::Result<()> {
    private_dir(&args.dir)?;
    let (cert_path, key_path) = paths(&args.dir, "ca");
    refuse_overwrite(&[&cert_path, &key_path])?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name("apig cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, args.days)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_pair(&cert_path, &cert.pem(), &key_path, &key.serialize_pem())?;
    println!("apig: cluster CA written to {}", cert_path.display());
    Ok(())
}

fn control(args: &ControlCertArgs) -> anyhow::Result<()> {
    let mut params = CertificateParams::new(args.sans.clone())
        .context("a --san is neither a host name nor an IP address")?;
    params.distinguished_name = name("apig control plane");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue(&args.dir, "control", params, args.days)
}

fn replica(args: &ReplicaCertArgs) -> anyhow::Result<()> {
    let identity = ReplicaIdentity::new(&args.instance, args.node.as_deref())
        .context("--instance and --node take letters, digits, '-', '_' and '.'")?;
    let file_name = args
        .name
        .clone()
        .or_else(|| args.node.clone())
        .unwrap_or_else(|| args.instance.clone());
    if !file_name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || file_name.starts_with('.')
    {
        bail!("--name {file_name:?}: use letters, digits, '-', '_' and '.'");
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("apig replica {file_name}"));
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    issue(
        &args.dir,
        &format!("replica-{file_name}"),
        params,
        args.days,
    )?;
    println!("apig: replica identity {}", identity.uri());
    Ok(())
}

/// Signs `params` with the cluster CA in `dir` and writes `<stem>.pem` and `<stem>-key.pem`.
fn issue(dir: &Path, stem: &str, mut params: CertificateParams, days: u32) -> anyhow::Result<()> {
    let (ca_cert_path, ca_key_path) = paths(dir, "ca");
    let ca_pem = std::fs::read_to_string(&ca_cert_path)
        .with_context(|| format!("{} (run `apig certs ca` first)", ca_cert_path.display()))?;
    let ca_key = KeyPair::from_pem(
        &std::fs::read_to_string(&ca_key_path)
            .with_context(|| ca_key_path.display().to_string())?,
    )
    .with_context(|| ca_key_path.display().to_string())?;
    let ca = CertificateParams::from_ca_cert_pem(&ca_pem)
        .with_context(|| ca_cert_path.display().to_string())?
        .self_signed(&ca_key)
        .context("the CA key does not belong to the CA certificate")?;

    let (cert_path, key_path) = paths(dir, stem);
    refuse_overwrite(&[&cert_path, &key_path])?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    write_pair(&cert_path, &cert.pem(), &key_path, &key.serialize_pem())?;
    println!("apig: {} written", cert_path.display());
    Ok(())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams, days: u32) -> anyhow::Result<()> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let today = chrono::Utc::now().date_naive();
    // Valid from yesterday: a day of slack for machines whose clocks run behind.
    let (y, m, d) = ymd(today - chrono::Days::new(1))?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(today + chrono::Days::new(u64::from(days)))?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    Ok(())
}

fn ymd(day: chrono::NaiveDate) -> anyhow::Result<(i32, u8, u8)> {
    use chrono::Datelike;
    let month = u8::try_from(day.month()).context("month")?;
    let day_of_month = u8::try_from(day.day()).context("day")?;
    Ok((day.year(), month, day_of_month))
}

fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}-key.pem")),
    )
}

fn refuse_overwrite(paths: &[&Path]) -> anyhow::Result<()> {
    for path in paths {
        if path.exists() {
            bail!("{} exists; remove it first to replace it", path.display());
        }
    }
    Ok(())
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_pair(cert: &Path, cert_pem: &str, key: &Path, key_pem: &str) -> anyhow::Result<()> {
    write_new(key, key_pem, 0o600)?;
    write_new(cert, cert_pem, 0o644)
}

/// Creates `path` (never replacing a file) with `mode` from the start, so a key is never
/// readable by others even for a moment.
fn write_new(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
