//! Member health: what active checks and real requests learnt about a member, kept outside the
//! snapshot (a swap keeps it for every member whose address did not change).
//!
//! - Active checks (the channel's health check, run by every replica on its own): TCP connect,
//!   or an HTTP(S) request whose status must be in the accepted ranges, each within the timeout,
//!   every interval. `healthy_threshold` consecutive successes make an unhealthy member healthy;
//!   `unhealthy_threshold` consecutive failures make a healthy one unhealthy. A member starts
//!   healthy (a new member gets traffic at once; a dead one is found within
//!   interval × unhealthy_threshold).
//! - Probes connect only to the member addresses the backend address policy allows (`egress`):
//!   a member whose addresses are all refused is never dialled and fails every check.
//! - Passive marking: a request that cannot connect to a member counts as a failed check. With
//!   active checks only they bring a member back; without them a member that failed
//!   [`PASSIVE_FAILURES`] connections in a row sits out [`PASSIVE_EJECTION`] and is then
//!   tried again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::egress::AddressGuard;

/// Consecutive connection failures that take a member out when no active check runs.
pub(crate) const PASSIVE_FAILURES: u32 = 3;
/// How long such a member sits out.
pub(crate) const PASSIVE_EJECTION: Duration = Duration::from_secs(10);

/// The thresholds that turn check results into a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub healthy: u32,
    pub unhealthy: u32,
}

/// One member's health and load, shared by every snapshot that has the member.
#[derive(Debug)]
pub(crate) struct MemberHealth {
    healthy: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
    /// Unix ms until which a passive ejection holds (0: none).
    ejected_until_ms: AtomicI64,
    in_flight: AtomicU64,
    /// Identifies the member across snapshots (channel, member id, address).
    key: String,
    /// For logs: `host:port`.
    label: String,
    /// Counts verdict changes (`apig_gateway_backend_health_transitions_total`).
    transitions: Option<Transitions>,
}

/// The transition counters of one member.
#[derive(Debug)]
pub(crate) struct Transitions {
    pub to_healthy: prometheus::IntCounter,
    pub to_unhealthy: prometheus::IntCounter,
}

impl MemberHealth {
    #[cfg(test)]
    pub(crate) fn new(key: String, label: String) -> Self {
        Self::with_transitions(key, label, None)
    }

    pub(crate) fn with_transitions(
        key: String,
        label: String,
        transitions: Option<Transitions>,
    ) -> Self {
        Self {
            transitions,
            key,
            healthy: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejected_until_ms: AtomicI64::new(0),
            in_flight: AtomicU64::new(0),
            label,
        }
    }

    /// Whether requests may go to the member now.
    pub(crate) fn is_usable(&self, now_ms: i64) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    #[cfg(test)]
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub(crate) fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The result of an active check.
    pub(crate) fn record_check(&self, ok: bool, t: Thresholds) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            let n = self
                .successes
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if n >= t.healthy && !self.healthy.swap(true, Ordering::Relaxed) {
                tracing::info!(member = %self.label, "backend member is healthy again");
                if let Some(t) = &self.transitions {
                    t.to_healthy.inc();
                }
            }
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self
                .failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if n >= t.unhealthy && self.healthy.swap(false, Ordering::Relaxed) {
                tracing::warn!(member = %self.label, failures = n, "backend member is unhealthy");
                if let Some(t) = &self.transitions {
                    t.to_unhealthy.inc();
                }
            }
        }
    }

    /// A request could not connect to the member. `active`: the channel's check thresholds,
    /// when it has a health check.
    pub(crate) fn record_connect_failure(&self, active: Option<Thresholds>, now_ms: i64) {
        match active {
            Some(t) => self.record_check(false, t),
            None => {
                let n = self
                    .failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                if n >= PASSIVE_FAILURES {
                    self.failures.store(0, Ordering::Relaxed);
                    let until = now_ms.saturating_add(PASSIVE_EJECTION.as_millis() as i64);
                    self.ejected_until_ms.store(until, Ordering::Relaxed);
                    tracing::warn!(member = %self.label, "backend member refused connections; taken out for a while");
                }
            }
        }
    }

    /// A request got an answer from the member.
    pub(crate) fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }
}

/// A request in flight to a member (WLC's load); ends when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<MemberHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a probe checks a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    Tcp,
    Http {
        method: &'static str,
        path: String,
        accepted: Vec<(u16, u16)>,
        /// HTTPS: the member's certificate is verified like a backend's.
        tls: bool,
    },
}

/// A channel's active health check, prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckSpec {
    pub probe: Probe,
    /// 0: each member's port.
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
}

/// One member as the checker sees it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub health: Arc<MemberHealth>,
}

/// Runs the checks of one channel until aborted: all members at once, every interval.
pub(crate) async fn run(
    spec: CheckSpec,
    targets: Vec<Target>,
    tls: Arc<rustls::ClientConfig>,
    guard: Arc<AddressGuard>,
) {
    let tls = TlsConnector::from(tls);
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let probes = targets.iter().map(|t| {
            let (spec, tls, guard) = (&spec, &tls, &*guard);
            async move {
                let port = if spec.port == 0 { t.port } else { spec.port };
                let check = probe(&spec.probe, &t.host, port, tls, guard);
                let ok = tokio::time::timeout(spec.timeout, check)
                    .await
                    .unwrap_or(false);
                t.health.record_check(ok, spec.thresholds);
            }
        });
        futures_util::future::join_all(probes).await;
    }
}

/// One probe; `false` on any failure. Connects to the first address of the member the policy
/// allows.
async fn probe(
    probe: &Probe,
    host: &str,
    port: u16,
    tls: &TlsConnector,
    guard: &AddressGuard,
) -> bool {
    let Ok(addrs) = tokio::net::lookup_host((host, port)).await else {
        return false;
    };
    let addr = match guard.filter(host, addrs) {
        Ok(allowed) => match allowed.first() {
            Some(addr) => *addr,
            None => return false,
        },
        Err(refused) => {
            guard.warn("-", "health check", &refused);
            return false;
        }
    };
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let (method, path, accepted, use_tls) = match probe {
        Probe::Tcp => return true,
        Probe::Http {
            method,
            path,
            accepted,
            tls,
        } => (*method, path.as_str(), accepted, *tls),
    };
    let status = if use_tls {
        let Ok(name) = ServerName::try_from(host.to_owned()) else {
            return false;
        };
        let Ok(mut stream) = tls.connect(name, stream).await else {
            return false;
        };
        http_status(&mut stream, method, path, host, addr).await
    } else {
        let mut stream = stream;
        http_status(&mut stream, method, path, host, addr).await
    };
    status.is_some_and(|code| accepted.iter().any(|(a, b)| (*a..=*b).contains(&code)))
}

/// Sends one HTTP/1.1 request and reads the status code of the answer.
async fn http_status<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    host: &str,
    addr: SocketAddr,
) -> Option<u16> {
    let host_header = if host.contains(':') {
        format!("[{host}]:{}", addr.port())
    } else {
        format!("{host}:{}", addr.port())
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: apig-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = [0u8; 64];
    let mut len = 0;
    // "HTTP/1.1 200" is 12 bytes; read until the status code is in.
    while len < 12 {
        let n = stream.read(buf.get_mut(len..)?).await.ok()?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = std::str::from_utf8(buf.get(..len)?).ok()?;
    let rest = head.strip_prefix("HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1..2)? != " " {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        healthy: 2,
        unhealthy: 3,
    };

    #[test]
    fn thresholds_need_consecutive_results() {
        let h = MemberHealth::new("k".into(), "m".into());
        assert!(h.is_usable(0));
        h.record_check(false, T);
        h.record_check(false, T);
        h.record_check(true, T);
        h.record_check(false, T);
        h.record_check(false, T);
        assert!(h.is_healthy(), "the streak was broken");
        h.record_check(false, T);
        assert!(!h.is_healthy());
        h.record_check(true, T);
        assert!(!h.is_healthy());
        h.record_check(true, T);
        assert!(h.is_healthy());
    }

    #[test]
    fn passive_ejection_expires_without_active_checks() {
        let h = MemberHealth::new("k".into(), "m".into());
        for _ in 0..PASSIVE_FAILURES - 1 {
            h.record_connect_failure(None, 1000);
        }
        assert!(h.is_usable(1000));
        h.record_success();
        for _ in 0..PASSIVE_FAILURES - 1 {
            h.record_connect_failure(None, 1000);
        }
        assert!(h.is_usable(1000), "a success resets the count");
        h.record_connect_failure(None, 1000);
        assert!(!h.is_usable(1000));
        let back = 1000 + PASSIVE_EJECTION.as_millis() as i64;
        assert!(h.is_usable(back));
        // With active checks, passive failures count as failed checks and only checks heal.
        let h = MemberHealth::new("k".into(), "m".into());
        for _ in 0..3 {
            h.record_connect_failure(Some(T), 0);
        }
        assert!(!h.is_usable(i64::MAX));
    }

    #[test]
    fn in_flight_guards() {
        let h = Arc::new(MemberHealth::new("k".into(), "m".into()));
        let a = h.start_request();
        let b = h.start_request();
        assert_eq!(h.in_flight(), 2);
        drop(a);
        assert_eq!(h.in_flight(), 1);
        drop(b);
        assert_eq!(h.in_flight(), 0);
    }

    #[tokio::test]
    async fn probes_against_real_sockets() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                n += 1;
                let status = if n % 2 == 1 {
                    "204 No Content"
                } else {
                    "503 Busy"
                };
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let http = Probe::Http {
            method: "GET",
            path: "/health".into(),
            accepted: vec![(200, 299)],
            tls: false,
        };
        let tls = TlsConnector::from(crate::backend_tls::client_config(None).unwrap());
        let g = guard(&[]);
        assert!(probe(&http, "127.0.0.1", port, &tls, &g).await);
        assert!(
            !probe(&http, "127.0.0.1", port, &tls, &g).await,
            "503 is not accepted"
        );
        assert!(probe(&Probe::Tcp, "127.0.0.1", port, &tls, &g).await);
        // HTTPS against a plain-text server fails the handshake.
        let https = Probe::Http {
            method: "GET",
            path: "/health".into(),
            accepted: vec![(200, 299)],
            tls: true,
        };
        assert!(!probe(&https, "127.0.0.1", port, &tls, &g).await);
        // A closed port fails both kinds.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(!probe(&Probe::Tcp, "127.0.0.1", closed_port, &tls, &g).await);
        assert!(!probe(&http, "127.0.0.1", closed_port, &tls, &g).await);
    }

    fn guard(deny: &[&str]) -> AddressGuard {
        let deny: Vec<String> = deny.iter().map(|s| (*s).to_owned()).collect();
        let policy = apig_policy::BackendAddressPolicy::parse(&deny, &[]).unwrap();
        AddressGuard::new(policy, prometheus::IntCounter::new("r", "r").unwrap())
    }

    #[tokio::test]
    async fn probes_never_connect_to_refused_members() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = TlsConnector::from(crate::backend_tls::client_config(None).unwrap());
        let g = guard(&["127.0.0.0/8", "::1/128"]);
        for host in ["127.0.0.1", "localhost", "::ffff:127.0.0.1"] {
            assert!(!probe(&Probe::Tcp, host, port, &tls, &g).await, "{host}");
        }
        assert!(!probe(&Probe::Tcp, "169.254.169.254", 80, &tls, &g).await);
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        assert!(accepted.is_err(), "a refused member was connected to");
        // Allowed again without the deny list.
        assert!(probe(&Probe::Tcp, "127.0.0.1", port, &tls, &guard(&[])).await);
    }
}
