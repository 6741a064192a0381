//! Mutual TLS on the control plane ↔ replica link, with certificates made by `apig certs`: a
//! replica joins only with a certificate from the cluster CA that names its instance, and a
//! plaintext link off loopback is refused at start-up.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use apig_proto::discovery_client::DiscoveryClient;
use apig_proto::{replica_message, Hello, ReplicaMessage};
use apig_testkit::{Gateway, Seed};
use serde_json::json;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::support::{bin, Stack, RELEASE};

const OTHER_INSTANCE: &str = "00000000000000000000000000000001";

/// Runs `apig` to completion, killing it after 20 s so a regression cannot hang the suite.
fn apig(args: &[&str]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("APIG_CLUSTER_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run apig");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("apig {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn ok(args: &[&str]) -> String {
    let out = apig(args);
    assert!(
        out.status.success(),
        "apig {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// The cluster CA, the control plane's certificate for 127.0.0.1, and replica certificates:
/// `gw-a` (the test instance, node pinned), `other` (another instance).
fn cluster_certs(dir: &Path) {
    let d = dir.to_str().unwrap();
    ok(&["certs", "ca", "--dir", d]);
    ok(&[
        "certs",
        "control",
        "--dir",
        d,
        "--san",
        "127.0.0.1",
        "--san",
        "localhost",
    ]);
    let out = ok(&[
        "certs",
        "replica",
        "--dir",
        d,
        "--instance",
        &Seed::default().instance_id,
        "--node",
        "gw-a",
    ]);
    assert!(out.contains("spiffe://apig/instance/"), "{out}");
    ok(&[
        "certs",
        "replica",
        "--dir",
        d,
        "--instance",
        OTHER_INSTANCE,
        "--name",
        "other",
    ]);
}

fn control_flags(dir: &Path) -> Vec<String> {
    vec![
        "--cluster-ca".into(),
        file(dir, "ca.pem"),
        "--cluster-cert".into(),
        file(dir, "control.pem"),
        "--cluster-key".into(),
        file(dir, "control-key.pem"),
    ]
}

/// A replica's flags: trust `ca_dir`'s CA, present `replica-<name>` from `cert_dir`.
fn replica_flags(ca_dir: &Path, cert_dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--cluster-ca".into(),
        file(ca_dir, "ca.pem"),
        "--cluster-cert".into(),
        file(cert_dir, &format!("replica-{name}.pem")),
        "--cluster-key".into(),
        file(cert_dir, &format!("replica-{name}-key.pem")),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn mtls_stack(certs: &Path) -> Stack {
    let control = control_flags(certs);
    let mut gateway = replica_flags(certs, certs, "gw-a");
    gateway.extend(["--node-id".to_owned(), "gw-a".to_owned()]);
    Stack::start_with_args(&strs(&control), &strs(&gateway)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_joins_over_mutual_tls_and_serves() {
    let certs = tempfile::tempdir().unwrap();
    cluster_certs(certs.path());
    #[cfg(unix)]
    for key in ["ca-key.pem", "control-key.pem", "replica-gw-a-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key} is owner-only");
    }
    // Nothing is overwritten: a second CA in the same place is refused.
    let again = apig(&["certs", "ca", "--dir", certs.path().to_str().unwrap()]);
    assert!(!again.status.success());

    let s = mtls_stack(certs.path()).await;
    assert!(s.cp.grpc_url().starts_with("https://"));
    let (group, host) = s.group("mtls").await;
    let api = s
        .create_api(&s.http_api(&group, "mtls_api", "GET", "/m", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    let r = s.until_routed(&host, "/m", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.settled().await;
    let replicas = s.api.get(&s.inst("/replicas")).await;
    assert_eq!(
        replicas.body["replicas"][0]["node_id"], "gw-a",
        "{:?}",
        replicas.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_with_wrong_certificates_are_refused() {
    let certs = tempfile::tempdir().unwrap();
    cluster_certs(certs.path());
    // A second CA and a replica certificate it signed for the right instance.
    let rogue = tempfile::tempdir().unwrap();
    let r = rogue.path().to_str().unwrap();
    ok(&["certs", "ca", "--dir", r]);
    let instance = Seed::default().instance_id;
    ok(&[
        "certs",
        "replica",
        "--dir",
        r,
        "--instance",
        &instance,
        "--name",
        "rogue",
    ]);

    let s = mtls_stack(certs.path()).await;
    let caches = tempfile::tempdir().unwrap();
    let intruder = |name: &str, flags: Vec<String>| {
        Gateway::start_with_args(
            &bin(),
            &s.cp.grpc_url(),
            &s.instance,
            &caches.path().join(name),
            &s.cp.cluster_token,
            "127.0.0.1:0".parse().unwrap(),
            &strs(&flags),
        )
    };
    let from_rogue_ca = intruder("rogue", replica_flags(certs.path(), rogue.path(), "rogue"));
    let other_instance = intruder("other", replica_flags(certs.path(), certs.path(), "other"));
    let mut wrong_node = replica_flags(certs.path(), certs.path(), "gw-a");
    wrong_node.extend(["--node-id".to_owned(), "gw-b".to_owned()]);
    let wrong_node = intruder("wrong-node", wrong_node);

    // Without any client certificate, with the right token: the handshake is refused.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(certs.path().join("ca.pem")).unwrap(),
        ))
        .domain_name("127.0.0.1");
    let no_cert = async {
        let channel = Endpoint::from_shared(s.cp.grpc_url())?
            .tls_config(tls)?
            .connect()
            .await?;
        let hello = ReplicaMessage {
            msg: Some(replica_message::Msg::Hello(Hello {
                instance_id: instance.clone(),
                node_id: "no-cert".into(),
                ..Default::default()
            })),
        };
        let mut req = tonic::Request::new(tokio_stream::iter([hello]));
        let bearer = format!("Bearer {}", s.cp.cluster_token);
        req.metadata_mut()
            .insert("authorization", bearer.parse().unwrap());
        DiscoveryClient::new(channel)
            .stream(req)
            .await?
            .into_inner()
            .message()
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), no_cert)
        .await
        .expect("the no-certificate attempt finishes");
    assert!(refused.is_err(), "a replica without a certificate got in");

    tokio::time::sleep(Duration::from_secs(2)).await;
    for (what, gw) in [
        ("a certificate from another CA", &from_rogue_ca),
        ("a certificate for another instance", &other_instance),
        ("a certificate pinned to another node", &wrong_node),
    ] {
        assert!(!gw.is_ready().await, "a replica with {what} got a snapshot");
    }
    let r = s.api.get(&s.inst("/replicas")).await;
    assert_eq!(r.body["total"], 1, "only the real replica: {:?}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_off_loopback_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    // 192.0.2.0/24 is TEST-NET-1: the refusal comes before anything is bound or dialled.
    let out = apig(&[
        "gateway",
        "--control-plane",
        "http://192.0.2.1:9090",
        "--instance-id",
        OTHER_INSTANCE,
        "--cache-dir",
        &file(tmp.path(), "cache"),
        "--cluster-token",
        "test-cluster-token-0123456789",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--allow-plaintext-cluster"), "{err}");

    let out = apig(&[
        "control",
        "--data-dir",
        &file(tmp.path(), "control"),
        "--mgmt-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "192.0.2.1:0",
        "--cluster-token",
        "test-cluster-token-0123456789",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not on loopback"), "{err}");
    assert!(
        !tmp.path().join("control").exists(),
        "nothing is created before the refusal"
    );

    // Broken TLS files are all named before anything starts.
    let out = apig(&[
        "control",
        "--data-dir",
        &file(tmp.path(), "control"),
        "--grpc-listen",
        "127.0.0.1:0",
        "--mgmt-listen",
        "127.0.0.1:0",
        "--cluster-ca",
        &file(tmp.path(), "missing-ca.pem"),
        "--cluster-cert",
        &file(tmp.path(), "missing-cert.pem"),
        "--cluster-key",
        &file(tmp.path(), "missing-key.pem"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for name in ["missing-ca.pem", "missing-cert.pem", "missing-key.pem"] {
        assert!(err.contains(name), "{name} not named: {err}");
    }
}
