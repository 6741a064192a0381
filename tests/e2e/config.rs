//! Configuration from a file, the environment and flags, through the real binary.

use std::net::SocketAddr;
use std::path::Path;

use apig_testkit::{apig_command, eventually, http_client, ApigProcess, ControlPlane};

use crate::support::{bin, WAIT};

const ROLES: &[&str] = &["gateway", "gateway-admin"];

/// A port free right now (the kernel may hand it out again, but not soon).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn write_file(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write the config file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A complete `[gateway]` table for a replica of `cp`'s instance, admin listener on `admin_port`.
fn gateway_table(cp: &ControlPlane, cache: &Path, admin_port: u16) -> String {
    format!(
        "log_format = \"json\"\n\n[gateway]\ncontrol_plane = \"{}\"\ninstance_id = \"{}\"\n\
         listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
         cache_dir = \"{}\"\ncluster_token = \"{}\"\n",
        cp.grpc_url(),
        cp.seed.instance_id,
        cache.display(),
        cp.cluster_token
    )
}

async fn ready(admin: SocketAddr) {
    eventually(WAIT, "the gateway to be ready", || async {
        let r = http_client()
            .get(format!("http://{admin}/ready"))
            .send()
            .await;
        matches!(r, Ok(r) if r.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_runs_from_a_config_file_alone() {
    let dirs = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&bin(), &dirs.path().join("control"));
    let port = free_port();
    let file = dirs.path().join("apig.toml");
    write_file(
        &file,
        &gateway_table(&cp, &dirs.path().join("cache"), port),
        0o600,
    );
    // No flag but the file, no environment variable at all (not even the cluster token).
    let gw = ApigProcess::start(
        &bin(),
        &["--config", file.to_str().unwrap(), "gateway"],
        &[],
        ROLES,
    );
    assert_eq!(
        gw.addr("gateway-admin"),
        SocketAddr::from(([127, 0, 0, 1], port))
    );
    ready(gw.addr("gateway-admin")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_overrides_the_file_and_a_flag_overrides_the_environment() {
    let dirs = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&bin(), &dirs.path().join("control"));
    let (in_file, in_env, in_flag) = (free_port(), free_port(), free_port());
    let file = dirs.path().join("apig.toml");
    write_file(
        &file,
        &gateway_table(&cp, &dirs.path().join("cache"), in_file),
        0o600,
    );
    let file = file.to_str().unwrap();
    let env_value = format!("127.0.0.1:{in_env}");
    let flag_value = format!("127.0.0.1:{in_flag}");
    // The file named by APIG_CONFIG this time.
    let envs = [
        ("APIG_CONFIG", file),
        ("APIG_ADMIN_LISTEN", env_value.as_str()),
    ];

    let gw = ApigProcess::start(&bin(), &["gateway"], &envs, ROLES);
    assert_eq!(gw.addr("gateway-admin").port(), in_env, "env over file");
    ready(gw.addr("gateway-admin")).await;
    drop(gw);

    let gw = ApigProcess::start(
        &bin(),
        &["gateway", "--admin-listen", &flag_value],
        &envs,
        ROLES,
    );
    assert_eq!(gw.addr("gateway-admin").port(), in_flag, "flag over env");
    ready(gw.addr("gateway-admin")).await;
    drop(gw);

    // `apig config check` tells the same story, and never prints the secret.
    let out = apig_command(&bin())
        .args(["config", "check", "gateway", "--listen", "127.0.0.1:0"])
        .envs(envs)
        .output()
        .expect("apig config check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no {key} in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("listen").ends_with("# flag"), "{stdout}");
    assert!(
        line("admin_listen").contains(&env_value)
            && line("admin_listen").ends_with("# env APIG_ADMIN_LISTEN"),
        "{stdout}"
    );
    assert!(line("cache_dir").ends_with("# file"), "{stdout}");
    assert!(
        line("cluster_token").contains("\"******\"") && line("cluster_token").ends_with("# file"),
        "{stdout}"
    );
    assert!(
        line("default_api_rate_limit").starts_with("default_api_rate_limit = 200")
            && line("default_api_rate_limit").ends_with("# default"),
        "{stdout}"
    );
    assert!(line("log_format").ends_with("# file"), "{stdout}");
    assert!(!stdout.contains(&cp.cluster_token), "{stdout}");
}

#[test]
fn a_file_with_three_mistakes_is_refused_naming_all_three() {
    let dirs = tempfile::tempdir().unwrap();
    let file = dirs.path().join("apig.toml");
    write_file(
        &file,
        &format!(
            "[gateway]\ninstance_id = \"fedcba9876543210fedcba9876543210\"\ncache_dir = \"{}\"\n\
             admin_lisen = \"127.0.0.1:0\"\nlisten = \"127.0.0.1:80800\"\n\
             default_api_rate_limit = \"fast\"\n",
            dirs.path().join("cache").display()
        ),
        0o600,
    );
    let out = apig_command(&bin())
        .args(["--config", file.to_str().unwrap(), "gateway"])
        .env("APIG_CLUSTER_TOKEN", "test-cluster-token-0123456789")
        .output()
        .expect("apig runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("3 configuration problems"), "{stderr}");
    for want in [
        "unknown key `gateway.admin_lisen` (did you mean `admin_listen`?)",
        "`gateway.listen` = \"127.0.0.1:80800\": invalid socket address syntax",
        "`gateway.default_api_rate_limit` must be an integer, not string",
    ] {
        assert!(stderr.contains(want), "{want:?} missing from:\n{stderr}");
    }
    assert!(!stdout.contains("apig: listening"), "{stdout}");
    assert!(!dirs.path().join("cache").exists(), "nothing was started");
}

#[test]
fn a_secret_in_a_group_readable_file_is_refused() {
    let dirs = tempfile::tempdir().unwrap();
    let file = dirs.path().join("apig.toml");
    write_file(
        &file,
        "[control]\ndata_dir = \"/nonexistent/apig\"\nadmin_sk = \"a-secret-that-is-long-enough\"\n",
        0o644,
    );
    let out = apig_command(&bin())
        .args(["--config", file.to_str().unwrap(), "control"])
        .output()
        .expect("apig runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`control.admin_sk` is a secret")
            && stderr.contains("mode 644")
            && stderr.contains("chmod 600")
            && stderr.contains("APIG_ADMIN_SK"),
        "{stderr}"
    );
    assert!(!stderr.contains("a-secret-that"), "{stderr}");
}

/// The `apig.toml` block of the ConfigMap in `deploy/kubernetes/config.yaml` (a literal block
/// scalar: the lines indented under `apig.toml: |`).
fn config_map_toml(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "apig.toml: |")
        .skip(1);
    let mut out = String::new();
    let mut indent = None;
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        let here = line.len() - line.trim_start().len();
        let indent = *indent.get_or_insert(here);
        if here < indent {
            break;
        }
        out.push_str(&line[indent..]);
        out.push('\n');
    }
    out
}

#[test]
fn the_deployment_config_files_pass_config_check() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let dirs = tempfile::tempdir().unwrap();
    let from_k8s = dirs.path().join("apig.toml");
    let yaml = std::fs::read_to_string(deploy.join("kubernetes/config.yaml")).unwrap();
    let text = config_map_toml(&yaml);
    assert!(text.contains("[gateway]"), "{text}");
    // A ConfigMap file is mounted 0644: fine, it holds no secret.
    write_file(&from_k8s, &text, 0o644);
    // The pods' certificate paths do not exist here: real files stand in for them (through the
    // environment, which overrides the file), so the check still reads and checks them.
    let certs = dirs.path().join("certs");
    let certs_dir = certs.to_str().unwrap();
    for args in [
        vec!["certs", "ca", "--dir", certs_dir],
        vec![
            "certs",
            "control",
            "--dir",
            certs_dir,
            "--san",
            "apig-control",
        ],
    ] {
        let out = apig_command(&bin())
            .args(&args)
            .output()
            .expect("apig certs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for file in [deploy.join("systemd/apig.toml"), from_k8s] {
        // The secrets and the instance come from the environment, as the units and pods do.
        let out = apig_command(&bin())
            .args(["--config", file.to_str().unwrap(), "config", "check"])
            .env("APIG_CLUSTER_TOKEN", "test-cluster-token-0123456789")
            .env("APIG_INSTANCE_ID", "fedcba9876543210fedcba9876543210")
            .env("APIG_CLUSTER_CA", certs.join("ca.pem"))
            .env("APIG_CLUSTER_CERT", certs.join("control.pem"))
            .env("APIG_CLUSTER_KEY", certs.join("control-key.pem"))
            .output()
            .expect("apig runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}:\n{stdout}\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("[control]") && stdout.contains("[gateway]"),
            "{stdout}"
        );
    }
}

/// `--worker-threads 1`: the replica runs on a current-thread runtime and still serves
/// concurrent callers through its pooled backend connections; 0 is refused before anything
/// starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_threaded_replica_serves_concurrent_callers() {
    use crate::support::Stack;
    use serde_json::json;

    let s = Stack::start_with_args(
        &[],
        &["--worker-threads", "1", "--default-api-rate-limit", "0"],
    )
    .await;
    let (group, host) = s.group("threads").await;
    let api = s
        .create_api(&s.http_api(&group, "one_thread", "GET", "/one", json!({})))
        .await;
    s.publish(&api, "DEFAULT_ENVIRONMENT_RELEASE_ID").await;
    assert_eq!(s.until_routed(&host, "/one", &[]).await.status, 200);
    let before = s.backend.hits();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (gw, host) = (s.gw.url("/one"), host.clone());
            tokio::spawn(async move {
                let http = http_client();
                for _ in 0..50 {
                    let r = http.get(&gw).header("host", &host).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    assert_eq!(s.backend.hits() - before, 400);

    let out = apig_command(&bin())
        .args(["--worker-threads", "0", "gateway", "--instance-id", "x"])
        .args(["--cache-dir", "/nonexistent/apig-cache"])
        .env("APIG_CLUSTER_TOKEN", "test-cluster-token-0123456789")
        .output()
        .expect("apig runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("0 is not in 1..=1024"), "{stderr}");
}
