//! Spawning `apig control` and `apig gateway` and learning their bound addresses from the
//! `apig: listening <role> <url>` lines they print.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Fixed bootstrap identity for tests (the control plane never has defaults; tests seed them).
#[derive(Clone, Debug)]
pub struct Seed {
    pub ak: String,
    pub sk: String,
    pub project_id: String,
    /// The project's account name (what DOMAIN access control policies list).
    pub project_name: String,
    pub instance_id: String,
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            ak: "TESTADMINAK0001".into(),
            sk: "test-admin-secret-0123456789abcdef".into(),
            project_id: "0123456789abcdef0123456789abcdef".into(),
            project_name: "apig-test".into(),
            instance_id: "fedcba9876543210fedcba9876543210".into(),
        }
    }
}

struct Spawned {
    child: Child,
    addrs: HashMap<String, SocketAddr>,
    output: mpsc::Receiver<String>,
}

/// A command running the `apig` binary without any `APIG_*` variable of the caller's
/// environment (they would configure it), logging at `APIG_TEST_LOG` (default `warn`).
pub fn apig_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("APIG_") {
            cmd.env_remove(k);
        }
    }
    cmd.env(
        "RUST_LOG",
        std::env::var("APIG_TEST_LOG").unwrap_or_else(|_| "warn".into()),
    );
    cmd
}

fn spawn(bin: &Path, args: &[String], envs: &[(&str, &str)], roles: &[&str]) -> Spawned {
    let mut cmd = apig_command(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addrs = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while roles.iter().any(|r| !addrs.contains_key(*r)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("apig: listening ") {
                    if let Some((role, url)) = rest.split_once(' ') {
                        let addr = url
                            .trim_start_matches("http://")
                            .trim_start_matches("https://")
                            .parse()
                            .expect("listening address");
                        addrs.insert(role.to_owned(), addr);
                    }
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{} {:?} did not report listeners {roles:?} in time",
                    bin.display(),
                    args
                );
            }
        }
    }
    Spawned {
        child,
        addrs,
        output: rx,
    }
}

/// A running `apig control`.
pub struct ControlPlane {
    child: Child,
    pub mgmt: SocketAddr,
    pub grpc: SocketAddr,
    /// The admin listener (`/health`, `/ready`, `/metrics`).
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub seed: Seed,
    pub cluster_token: String,
    bin: PathBuf,
    /// Flags given besides the defaults, kept for [`ControlPlane::restart`].
    extra: Vec<String>,
    _output: mpsc::Receiver<String>,
}

impl ControlPlane {
    /// Starts a control plane on free loopback ports with a fresh seed identity.
    pub fn start(bin: &Path, data_dir: &Path) -> ControlPlane {
        Self::start_at(
            bin,
            data_dir,
            Seed::default(),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
    }

    pub fn start_at(
        bin: &Path,
        data_dir: &Path,
        seed: Seed,
        mgmt: SocketAddr,
        grpc: SocketAddr,
    ) -> ControlPlane {
        Self::launch(bin, data_dir, seed, mgmt, grpc, Vec::new())
    }

    /// Like [`ControlPlane::start`], with extra flags (e.g. `--cluster-ca FILE`).
    pub fn start_with_args(bin: &Path, data_dir: &Path, extra: &[&str]) -> ControlPlane {
        let any = "127.0.0.1:0".parse().unwrap();
        let extra = extra.iter().map(|a| a.to_string()).collect();
        Self::launch(bin, data_dir, Seed::default(), any, any, extra)
    }

    fn launch(
        bin: &Path,
        data_dir: &Path,
        seed: Seed,
        mgmt: SocketAddr,
        grpc: SocketAddr,
        extra: Vec<String>,
    ) -> ControlPlane {
        let token = "test-cluster-token-0123456789";
        let mut args = vec![
            "control".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--mgmt-listen".into(),
            mgmt.to_string(),
            "--grpc-listen".into(),
            grpc.to_string(),
            "--control-admin-listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().cloned());
        let envs = [
            ("APIG_ADMIN_AK", seed.ak.as_str()),
            ("APIG_ADMIN_SK", seed.sk.as_str()),
            ("APIG_PROJECT_ID", seed.project_id.as_str()),
            ("APIG_PROJECT_NAME", seed.project_name.as_str()),
            ("APIG_INSTANCE_ID", seed.instance_id.as_str()),
            ("APIG_CLUSTER_TOKEN", token),
        ];
        let s = spawn(bin, &args, &envs, &["management", "grpc", "control-admin"]);
        ControlPlane {
            child: s.child,
            mgmt: s.addrs["management"],
            grpc: s.addrs["grpc"],
            admin: s.addrs["control-admin"],
            data_dir: data_dir.to_owned(),
            seed,
            cluster_token: token.into(),
            bin: bin.to_owned(),
            extra,
            _output: s.output,
        }
    }

    /// The discovery URL replicas connect to (`https://` when the link runs mutual TLS).
    pub fn grpc_url(&self) -> String {
        let scheme = if self.extra.iter().any(|a| a == "--cluster-ca") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.grpc)
    }

    /// A management client signed with the bootstrap credential.
    pub fn client(&self) -> crate::MgmtClient {
        crate::MgmtClient::new(
            self.mgmt,
            &self.seed.ak,
            &self.seed.sk,
            &self.seed.project_id,
        )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL: nothing gets a chance to flush).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills and starts again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.kill();
        let next = Self::launch(
            &self.bin.clone(),
            &self.data_dir.clone(),
            self.seed.clone(),
            self.mgmt,
            self.grpc,
            self.extra.clone(),
        );
        *self = next;
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `apig gateway`.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Every listener the process reported, by role.
    addrs: HashMap<String, SocketAddr>,
    args: Vec<String>,
    token: String,
    bin: PathBuf,
    _output: mpsc::Receiver<String>,
}

impl Gateway {
    /// The address of another listener the process reported (e.g. `gateway-tls`).
    pub fn extra_addr(&self, role: &str) -> Option<SocketAddr> {
        self.addrs.get(role).copied()
    }

    pub fn start(
        bin: &Path,
        control_grpc: &str,
        instance_id: &str,
        cache_dir: &Path,
        token: &str,
    ) -> Gateway {
        Self::start_with(
            bin,
            control_grpc,
            instance_id,
            cache_dir,
            token,
            "127.0.0.1:0".parse().unwrap(),
        )
    }

    pub fn start_with(
        bin: &Path,
        control_grpc: &str,
        instance_id: &str,
        cache_dir: &Path,
        token: &str,
        listen: SocketAddr,
    ) -> Gateway {
        Self::start_with_args(
            bin,
            control_grpc,
            instance_id,
            cache_dir,
            token,
            listen,
            &[],
        )
    }

    /// Like [`Gateway::start_with`], with extra flags (e.g. `--default-api-rate-limit 0`).
    pub fn start_with_args(
        bin: &Path,
        control_grpc: &str,
        instance_id: &str,
        cache_dir: &Path,
        token: &str,
        listen: SocketAddr,
        extra: &[&str],
    ) -> Gateway {
        let mut args = vec![
            "gateway".into(),
            "--control-plane".into(),
            control_grpc.into(),
            "--instance-id".into(),
            instance_id.into(),
            "--listen".into(),
            listen.to_string(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
            "--cache-dir".into(),
            cache_dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut roles = vec!["gateway", "gateway-admin"];
        if extra.contains(&"--tls-listen") {
            roles.push("gateway-tls");
        }
        let s = spawn(bin, &args, &[("APIG_CLUSTER_TOKEN", token)], &roles);
        Gateway {
            child: s.child,
            addr: s.addrs["gateway"],
            admin: s.addrs["gateway-admin"],
            addrs: s.addrs.clone(),
            args,
            token: token.into(),
            bin: bin.to_owned(),
            _output: s.output,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM) and waits for it, killing it after 10 s.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Stops gracefully (SIGTERM) and starts again with the same flags and listener address.
    pub fn restart_graceful(&mut self) {
        self.terminate();
        self.respawn();
    }

    /// Kills (SIGKILL) and starts again with the same flags and listener address.
    pub fn restart(&mut self) {
        self.kill();
        self.respawn();
    }

    fn respawn(&mut self) {
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = self.addr.to_string();
        }
        let s = spawn(
            &self.bin,
            &args,
            &[("APIG_CLUSTER_TOKEN", &self.token)],
            &["gateway", "gateway-admin"],
        );
        self.child = s.child;
        self.addr = s.addrs["gateway"];
        self.admin = s.addrs["gateway-admin"];
        self.addrs = s.addrs;
        self._output = s.output;
    }

    /// The process id (to read `/proc/<pid>` in soak tests).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /ready` on the admin listener answers 200.
    pub async fn is_ready(&self) -> bool {
        let url = format!("http://{}/ready", self.admin);
        matches!(crate::http_client().get(url).send().await, Ok(r) if r.status() == 200)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Any `apig` process (e.g. one configured by a file), once it has reported its listeners.
pub struct ApigProcess {
    child: Child,
    /// Every listener the process reported, by role (`gateway`, `gateway-admin`, ...).
    pub addrs: HashMap<String, SocketAddr>,
    _output: mpsc::Receiver<String>,
}

impl ApigProcess {
    /// Starts `apig args...` with `envs` added to a clean environment (see [`apig_command`]) and
    /// waits until it has reported a listener for each of `roles`.
    pub fn start(bin: &Path, args: &[&str], envs: &[(&str, &str)], roles: &[&str]) -> ApigProcess {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let s = spawn(bin, &args, envs, roles);
        ApigProcess {
            child: s.child,
            addrs: s.addrs,
            _output: s.output,
        }
    }

    /// The address of the listener reported for `role`.
    pub fn addr(&self, role: &str) -> SocketAddr {
        self.addrs[role]
    }
}

impl Drop for ApigProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
