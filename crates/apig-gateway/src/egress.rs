//! Connect-time enforcement of the backend address policy ([`apig_policy::backend_address`]):
//! every connection to a backend (pooled HTTP/1.1 and HTTP/2 clients, WebSocket upgrades,
//! function calls, channel health checks) is checked against the address it would connect to.
//!
//! - Names: [`PolicyResolver`] wraps hyper-util's `GaiResolver` for `HttpConnector` and drops
//!   every resolved address the policy refuses, so a name resolving to allowed and refused
//!   addresses only ever connects to the allowed ones; when none is left the lookup fails with
//!   [`AddressRefused`]. Since this is the address actually dialled, a name that resolved to a
//!   public address when the API was published and to a private one now (DNS rebinding) is
//!   refused too.
//! - IP literals: `HttpConnector` does not call its resolver for them, so [`GuardedConnector`]
//!   checks a literal host before handing the URI on; a refused one is never dialled.
//!
//! A refusal counts in `apig_gateway_backend_address_refused_total`; its warning is logged by
//! [`AddressGuard::warn`], at most once a second (the rest are counted into the next line), so
//! clients cannot flood the log.

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use apig_policy::{BackendAddressPolicy, Refusal};
use http::Uri;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn StdError + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// A backend address the policy refused: no connection was attempted to it.
#[derive(Debug, thiserror::Error)]
#[error("backend address {addr} (of {host:?}) refused: {refusal}")]
pub(crate) struct AddressRefused {
    /// The host as the backend address gave it (a name or the literal).
    pub host: Box<str>,
    /// The first refused address.
    pub addr: IpAddr,
    pub refusal: Refusal,
}

/// The policy with its counter and log limiter, shared by every connector and health check.
#[derive(Debug)]
pub(crate) struct AddressGuard {
    policy: BackendAddressPolicy,
    refused: prometheus::IntCounter,
    /// Unix second of the last warning logged.
    last_warned: AtomicU64,
    /// Warnings not logged since then.
    suppressed: AtomicU64,
}

// === impl AddressGuard ===

impl AddressGuard {
    pub(crate) fn new(policy: BackendAddressPolicy, refused: prometheus::IntCounter) -> Self {
        Self {
            policy,
            refused,
            last_warned: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Checks one address; a refusal is counted.
    pub(crate) fn check(&self, host: &str, addr: IpAddr) -> Result<(), AddressRefused> {
        self.policy.check(addr).map_err(|refusal| {
            self.refused.inc();
            AddressRefused {
                host: host.into(),
                addr,
                refusal,
            }
        })
    }

    /// The allowed ones of `host`'s resolved addresses, in their order; `Err` when addresses
    /// were resolved and all were refused (counted once).
    pub(crate) fn filter(
        &self,
        host: &str,
        addrs: impl Iterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, AddressRefused> {
        let mut first_refused = None;
        let allowed: Vec<SocketAddr> = addrs
            .filter(|a| match self.policy.check(a.ip()) {
                Ok(()) => true,
                Err(refusal) => {
                    first_refused.get_or_insert((a.ip(), refusal));
                    false
                }
            })
            .collect();
        match first_refused {
            Some((addr, refusal)) if allowed.is_empty() => {
                self.refused.inc();
                Err(AddressRefused {
                    host: host.into(),
                    addr,
                    refusal,
                })
            }
            _ => Ok(allowed),
        }
    }

    /// Logs a refusal at warn, at most once a second; `api` is the API id (`-` for a health
    /// check), `during` what connected.
    pub(crate) fn warn(&self, api: &str, during: &'static str, refused: &AddressRefused) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_warned.load(Ordering::Relaxed);
        if last == now
            || self
                .last_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            api,
            during,
            host = %refused.host,
            address = %refused.addr,
            reason = %refused.refusal,
            suppressed,
            "backend address refused by the backend address policy"
        );
    }
}

/// `HttpConnector`'s resolver: `getaddrinfo`, then the policy.
#[derive(Clone)]
pub(crate) struct PolicyResolver {
    inner: GaiResolver,
    guard: Arc<AddressGuard>,
}

impl Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let lookup = self.inner.call(name.clone());
        let guard = Arc::clone(&self.guard);
        Box::pin(async move {
            let addrs = lookup.await?;
            let allowed = guard.filter(name.as_str(), addrs)?;
            Ok(allowed.into_iter())
        })
    }
}

/// `HttpConnector` (resolving through [`PolicyResolver`]) with the check of IP literal hosts
/// it would dial without resolving.
#[derive(Clone)]
pub(crate) struct GuardedConnector {
    inner: HttpConnector<PolicyResolver>,
    guard: Arc<AddressGuard>,
}

impl GuardedConnector {
    /// `configure` sets up the `HttpConnector` (timeouts, keep-alive, ...).
    pub(crate) fn new(
        guard: Arc<AddressGuard>,
        configure: impl FnOnce(&mut HttpConnector<PolicyResolver>),
    ) -> Self {
        let mut inner = HttpConnector::new_with_resolver(PolicyResolver {
            inner: GaiResolver::new(),
            guard: Arc::clone(&guard),
        });
        configure(&mut inner);
        Self { inner, guard }
    }
}

impl Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some((host, ip)) = literal_ip(&uri) {
            if let Err(refused) = self.guard.check(host, ip) {
                return Box::pin(std::future::ready(Err(refused.into())));
            }
        }
        let connect = self.inner.call(uri);
        Box::pin(async move { connect.await.map_err(Into::into) })
    }
}

/// The URI's host when it is an IP literal (what `HttpConnector` parses without resolving).
fn literal_ip(uri: &Uri) -> Option<(&str, IpAddr)> {
    let host = uri.host()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok().map(|ip| (host, ip))
}

/// The refusal somewhere in an error's source chain.
pub(crate) fn refusal_in<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a AddressRefused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn guard(deny: &[&str]) -> Arc<AddressGuard> {
        let deny: Vec<String> = deny.iter().map(|s| (*s).to_owned()).collect();
        let policy = BackendAddressPolicy::parse(&deny, &[]).unwrap();
        let counter = prometheus::IntCounter::new("refused", "refused").unwrap();
        Arc::new(AddressGuard::new(policy, counter))
    }

    async fn connect(c: &mut GuardedConnector, uri: &str) -> Result<(), BoxError> {
        std::future::poll_fn(|cx| c.poll_ready(cx)).await?;
        c.call(uri.parse().unwrap()).await.map(drop)
    }

    #[test]
    fn literals_are_found_as_the_connector_sees_them() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            literal_ip(&uri("http://169.254.169.254/x")).map(|x| x.1),
            Some("169.254.169.254".parse().unwrap())
        );
        assert_eq!(
            literal_ip(&uri("https://[::ffff:a9fe:a9fe]:8443/")).map(|x| x.1),
            Some("::ffff:169.254.169.254".parse().unwrap())
        );
        assert!(literal_ip(&uri("http://localhost:80/")).is_none());
    }

    #[tokio::test]
    async fn refused_literals_and_names_never_connect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let g = guard(&["127.0.0.0/8", "::1/128"]);
        let mut c = GuardedConnector::new(Arc::clone(&g), |h| h.enforce_http(false));
        for uri in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://localhost:{port}/"),
            "http://169.254.169.254/".to_owned(),
            "http://[fd00:ec2::254]/".to_owned(),
            "http://0.0.0.0/".to_owned(),
        ] {
            let e = connect(&mut c, &uri).await.unwrap_err();
            assert!(refusal_in(&*e).is_some(), "{uri}: {e}");
        }
        assert_eq!(g.refused.get(), 6);
        // Nothing reached the listener.
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(50), listener.accept()).await;
        assert!(accepted.is_err(), "a refused address was connected to");

        // Without the deny list, loopback is fine.
        let mut c = GuardedConnector::new(guard(&[]), |h| h.enforce_http(false));
        connect(&mut c, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap();
        connect(&mut c, &format!("http://localhost:{port}/"))
            .await
            .unwrap_or_else(|e| assert!(refusal_in(&*e).is_none(), "{e}"));
    }

    #[test]
    fn filtering_keeps_the_allowed_addresses() {
        let g = guard(&["10.0.0.0/8"]);
        let addrs: Vec<SocketAddr> = ["10.0.0.1:0", "192.0.2.1:0", "169.254.169.254:0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let kept = g.filter("name", addrs.clone().into_iter()).unwrap();
        assert_eq!(kept, vec!["192.0.2.1:0".parse().unwrap()]);
        assert_eq!(g.refused.get(), 0);
        let refused = g
            .filter("name", [addrs[0], addrs[2]].into_iter())
            .unwrap_err();
        assert_eq!(refused.addr, addrs[0].ip());
        assert_eq!(g.refused.get(), 1);
        // Nothing resolved is not a refusal.
        assert!(g.filter("name", std::iter::empty()).unwrap().is_empty());
    }
}
