//! Shared setup for the end-to-end tests.

use std::path::PathBuf;
use std::time::Duration;

use apig_testkit::{eventually, http_client, ControlPlane, EchoBackend, Gateway, MgmtClient};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_apig"))
}

/// A control plane, one gateway replica of the bootstrap instance and an echo backend.
/// Fields drop in order: the gateway goes before the control plane, so teardown is quiet.
pub struct Stack {
    pub gw: Gateway,
    pub cp: ControlPlane,
    pub backend: EchoBackend,
    pub api: MgmtClient,
    pub instance: String,
    _dirs: tempfile::TempDir,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with_args(&[], &[]).await
    }

    /// Like [`Stack::start`], with extra flags for the control plane and the gateway.
    pub async fn start_with_args(control: &[&str], gateway: &[&str]) -> Stack {
        let dirs = tempfile::tempdir().expect("tempdir");
        let cp = ControlPlane::start_with_args(&bin(), &dirs.path().join("control"), control);
        let instance = cp.seed.instance_id.clone();
        let gw = Gateway::start_with_args(
            &bin(),
            &cp.grpc_url(),
            &instance,
            &dirs.path().join("gw-cache"),
            &cp.cluster_token,
            "127.0.0.1:0".parse().unwrap(),
            gateway,
        );
        let backend = EchoBackend::start().await;
        let api = cp.client();
        // The control plane sends the current snapshot on connect, even with nothing published.
        eventually(WAIT, "the gateway to be ready", || async {
            gw.is_ready().await.then_some(())
        })
        .await;
        Stack {
            cp,
            gw,
            backend,
            api,
            instance,
            _dirs: dirs,
        }
    }

    /// The gateway's snapshot cache directory.
    pub fn gw_cache(&self) -> PathBuf {
        self._dirs.path().join("gw-cache")
    }

    pub fn inst(&self, path: &str) -> String {
        format!("/instances/{}{path}", self.instance)
    }

    /// Creates a group; returns (id, sl_domain).
    pub async fn group(&self, name: &str) -> (String, String) {
        let r = self
            .api
            .post(&self.inst("/api-groups"), &json!({"name": name}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        (
            r.body["id"].as_str().unwrap().into(),
            r.body["sl_domain"].as_str().unwrap().into(),
        )
    }

    /// An HTTP API to the echo backend; `extra` is merged over the defaults.
    pub fn http_api(
        &self,
        group: &str,
        name: &str,
        method: &str,
        uri: &str,
        extra: Value,
    ) -> Value {
        let mut v = json!({
            "name": name, "type": 1, "req_protocol": "HTTP", "req_method": method, "req_uri": uri,
            "auth_type": "NONE", "backend_type": "HTTP", "group_id": group,
            "backend_api": {"url_domain": self.backend.authority(), "req_protocol": "HTTP",
                            "req_method": method, "req_uri": uri, "timeout": 5000},
        });
        merge(&mut v, extra);
        v
    }

    pub async fn create_api(&self, body: &Value) -> String {
        let r = self.api.post(&self.inst("/apis"), body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["id"].as_str().unwrap().into()
    }

    pub async fn publish(&self, api: &str, env: &str) -> Value {
        let r = self
            .api
            .post(
                &self.inst("/apis/action"),
                &json!({"action": "online", "api_id": api, "env_id": env}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body
    }

    pub async fn offline(&self, api: &str, env: &str) {
        let r = self
            .api
            .post(
                &self.inst("/apis/action"),
                &json!({"action": "offline", "api_id": api, "env_id": env}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    /// Calls the gateway with `Host: host`.
    pub async fn call(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        call(&self.gw, method, host, path, headers).await
    }

    /// Waits until `path` on `host` answers something other than 404 APIG.0101.
    pub async fn until_routed(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        eventually(WAIT, "the route to answer", || async {
            let r = self.call("GET", host, path, headers).await;
            (r.status != 404).then_some(r)
        })
        .await
    }

    /// Waits until every connected replica runs the control plane's current snapshot: after it,
    /// every change made so far is visible on every replica.
    pub async fn settled(&self) {
        eventually(WAIT, "every replica on the current snapshot", || async {
            let r = self.api.get(&self.inst("/replicas")).await;
            let current = r.body["snapshot_version"].clone();
            let all = r.body["replicas"].as_array().cloned().unwrap_or_default();
            let connected: Vec<_> = all.iter().filter(|x| x["status"] == "connected").collect();
            (!connected.is_empty() && connected.iter().all(|x| x["applied_version"] == current))
                .then_some(())
        })
        .await;
    }

    pub async fn until_gone(&self, host: &str, path: &str) {
        eventually(WAIT, "the route to disappear", || async {
            let r = self.call("GET", host, path, &[]).await;
            (r.status == 404).then_some(())
        })
        .await
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn call(
    gw: &Gateway,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = http_client()
        .request(method.parse().unwrap(), gw.url(path))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("gateway answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// Sends `request` as raw bytes and returns the whole answer: for hostile requests that HTTP
/// client libraries would normalise before sending.
pub async fn raw(gw: &Gateway, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect to the gateway");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

pub const RELEASE: &str = "DEFAULT_ENVIRONMENT_RELEASE_ID";

/// The Prometheus text a process serves on its admin listener.
pub async fn scrape(admin: std::net::SocketAddr) -> String {
    http_client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .unwrap_or_default()
}

/// The value of the first sample line that starts with `prefix`.
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
