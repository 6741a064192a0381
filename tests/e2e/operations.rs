//! Production operations through the real binary: the audit log of management writes, and
//! backup and restore of the control plane's store.

use std::path::Path;
use std::process::{Command, Output};

use apig_testkit::{eventually, ControlPlane, EchoBackend, Gateway, MgmtClient};
use serde_json::{json, Value};

use crate::support::{bin, call, Stack, RELEASE, WAIT};

const APP_SECRET: &str = "audit-app-secret-value-0001";

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_records_writes_masks_secrets_and_is_per_project() {
    let s = Stack::start().await;
    let created = s
        .api
        .post(
            &s.inst("/apps"),
            &json!({"name": "audited", "app_key": "audit-app-key-0001", "app_secret": APP_SECRET}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let app_id = created.body["id"].as_str().unwrap().to_owned();
    // A refused write: the group has no name.
    let failed = s.api.post(&s.inst("/api-groups"), &json!({})).await;
    assert_eq!(failed.status, 400, "{:?}", failed.body);
    let deleted = s.api.delete(&s.inst(&format!("/apps/{app_id}"))).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    // Reads are not audited.
    assert_eq!(s.api.get(&s.inst("/apps")).await.status, 200);

    let log = s.api.get("/audit-logs?limit=10").await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    assert_eq!(log.body["total"], 3, "{:#}", log.body);
    assert_eq!(log.body["size"], 3);
    let entries = log.body["audit_logs"].as_array().unwrap();
    // Newest first.
    let (del, fail, create) = (&entries[0], &entries[1], &entries[2]);
    let seed = &s.cp.seed;
    for e in entries {
        assert_eq!(e["access_key"], seed.ak.as_str());
        assert_eq!(e["project_id"], seed.project_id.as_str());
        assert_eq!(e["admin"], true);
        assert_eq!(e["instance_id"], s.instance.as_str());
        let t = e["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with('Z'),
            "{t}"
        );
    }
    assert_eq!(create["method"], "POST");
    assert_eq!(create["resource_type"], "apps");
    assert_eq!(create["resource_id"], app_id.as_str());
    assert_eq!(create["status"], 201);
    assert_eq!(
        create["request_id"],
        created.request_id.clone().unwrap().as_str()
    );
    assert_eq!(create["request_body"]["name"], "audited");
    assert_eq!(create["request_body"]["app_secret"], "******");
    assert_eq!(create["response_body"]["app_secret"], "******");
    assert_eq!(fail["status"], 400);
    assert_eq!(fail["resource_type"], "api-groups");
    assert_eq!(fail["error_code"], failed.body["error_code"]);
    assert!(fail["error_code"].as_str().unwrap().starts_with("APIG."));
    assert_eq!(
        fail["request_id"],
        failed.request_id.clone().unwrap().as_str()
    );
    assert_eq!(del["method"], "DELETE");
    assert_eq!(del["resource_id"], app_id.as_str());
    assert_eq!(del["status"], 204);
    assert!(del["error_code"].is_null());
    assert!(
        !log.body.to_string().contains(APP_SECRET),
        "the app secret leaked into the audit log"
    );

    // Filters.
    let by = |q: &'static str| {
        let api = &s.api;
        async move { api.get(&format!("/audit-logs?{q}")).await }
    };
    assert_eq!(by("method=DELETE").await.body["total"], 1);
    assert_eq!(by("resource=apps").await.body["total"], 2);
    assert_eq!(by("access_key=nobody").await.body["total"], 0);
    assert_eq!(by("since=2999-01-01T00:00:00Z").await.body["total"], 0);
    assert_eq!(by("until=2999-01-01T00:00:00Z").await.body["total"], 3);
    let bad = by("since=yesterday").await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(bad.body["error_code"], "APIG.2012");

    // Another project sees none of it, and may not ask for all projects.
    let p = s.api.post("/projects", &json!({})).await;
    assert_eq!(p.status, 201, "{:?}", p.body);
    let other = MgmtClient::new(
        s.cp.mgmt,
        p.body["access_key"].as_str().unwrap(),
        p.body["secret_key"].as_str().unwrap(),
        p.body["project_id"].as_str().unwrap(),
    );
    let theirs = other.get("/audit-logs").await;
    assert_eq!(theirs.status, 200, "{:?}", theirs.body);
    assert_eq!(theirs.body["total"], 0, "{:#}", theirs.body);
    let all = other.get("/audit-logs?all_projects=true").await;
    assert_eq!(all.status, 403, "{:?}", all.body);
    // The tenant's own write is recorded for the tenant (and for the administrator's view).
    assert_eq!(other.post("/credentials", &json!({})).await.status, 201);
    let theirs = other.get("/audit-logs").await;
    assert_eq!(theirs.body["total"], 1);
    let entry: &Value = &theirs.body["audit_logs"][0];
    assert_eq!(entry["resource_type"], "credentials");
    assert_eq!(entry["admin"], false);
    assert_eq!(entry["response_body"]["secret_key"], "******");
    // The project-creation answer carried the tenant's secret key: masked too.
    let admin_all = s.api.get("/audit-logs?all_projects=true&limit=50").await;
    assert_eq!(admin_all.status, 200);
    assert_eq!(admin_all.body["total"], 5, "{:#}", admin_all.body);
    assert_eq!(
        admin_all.body["audit_logs"][0]["project_id"],
        p.body["project_id"]
    );
    let text = admin_all.body.to_string();
    assert!(!text.contains(p.body["secret_key"].as_str().unwrap()));
    assert!(!text.contains(APP_SECRET));
}

fn apig(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run apig")
}

fn restore(data: &Path, file: &Path) -> Output {
    apig(&[
        "restore",
        "--data-dir",
        data.to_str().unwrap(),
        "--in",
        file.to_str().unwrap(),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_wipe_restore_and_a_replica_serves_the_restored_api() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("control");
    let backend = EchoBackend::start().await;
    let mut cp = ControlPlane::start(&bin(), &data);
    let api = cp.client();
    let instance = cp.seed.instance_id.clone();
    let inst = move |p: &str| format!("/instances/{instance}{p}");
    let g = api
        .post(&inst("/api-groups"), &json!({"name": "kept"}))
        .await;
    assert_eq!(g.status, 201, "{:?}", g.body);
    let host = g.body["sl_domain"].as_str().unwrap().to_owned();
    let a = api
        .post(
            &inst("/apis"),
            &json!({
                "name": "kept", "type": 1, "req_protocol": "HTTP", "req_method": "GET",
                "req_uri": "/kept", "auth_type": "NONE", "backend_type": "HTTP",
                "group_id": g.body["id"],
                "backend_api": {"url_domain": backend.authority(), "req_protocol": "HTTP",
                                "req_method": "GET", "req_uri": "/kept", "timeout": 5000}
            }),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let app = api.post(&inst("/apps"), &json!({"name": "kept_app"})).await;
    assert_eq!(app.status, 201, "{:?}", app.body);
    let published = api
        .post(
            &inst("/apis/action"),
            &json!({"action": "online", "api_id": a.body["id"], "env_id": RELEASE}),
        )
        .await;
    assert_eq!(published.status, 201, "{:?}", published.body);

    // A live backup: administrator only, same format as `apig backup`.
    let live = api.get("/backup").await;
    assert_eq!(live.status, 200);
    assert!(live.raw.starts_with(b"apig-backup/1 sha256="));
    let p = api.post("/projects", &json!({})).await;
    let tenant = MgmtClient::new(
        cp.mgmt,
        p.body["access_key"].as_str().unwrap(),
        p.body["secret_key"].as_str().unwrap(),
        p.body["project_id"].as_str().unwrap(),
    );
    assert_eq!(tenant.get("/backup").await.status, 403);
    let live_file = tmp.path().join("live.backup");
    std::fs::write(&live_file, &live.raw).unwrap();

    // sled admits one process: the offline backup is for a stopped control plane.
    cp.kill();
    let file = tmp.path().join("apig.backup");
    let out = apig(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup holds secrets");
    }

    // A corrupted file is refused before anything is touched.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    let bad = tmp.path().join("corrupt.backup");
    std::fs::write(&bad, &bytes).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    let out = restore(&elsewhere, &bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt") && err.contains("SHA-256"), "{err}");
    assert!(!elsewhere.exists(), "a refused restore creates nothing");
    // The live backup restores too.
    let out = restore(&elsewhere, &live_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Wipe, restore; a second restore into the now non-empty store is refused.
    std::fs::remove_dir_all(&data).unwrap();
    let out = restore(&data, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = restore(&data, &file);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));

    // The restored control plane serves the same state, and a new replica the published API.
    let cp = ControlPlane::start(&bin(), &data);
    let api = cp.client();
    let apps = api.get(&inst("/apps")).await;
    assert_eq!(apps.body["total"], 1, "{:?}", apps.body);
    let gw = Gateway::start(
        &bin(),
        &cp.grpc_url(),
        &cp.seed.instance_id.clone(),
        &tmp.path().join("gw-cache"),
        &cp.cluster_token,
    );
    let r = eventually(WAIT, "the restored API to answer", || async {
        let r = call(&gw, "GET", &host, "/kept", &[]).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}
