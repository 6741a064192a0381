//! The HTTPS listener's TLS: certificates chosen per connection by SNI from the applied
//! snapshot's bound domains, so a certificate attached, replaced or detached applies to the next
//! handshake without a restart. ALPN offers `h2` and `http/1.1`.
//!
//! Client certificates (mTLS): a domain with `verified_client_certificate_enabled` carries the
//! CA bundle of its certificate (`client_ca_pem`). rustls verifies client certificates per
//! `ServerConfig`, so [`TlsAcceptor`] reads the ClientHello first (`LazyConfigAcceptor`) and, for
//! such a domain, continues with that domain's own `ServerConfig` (built once per snapshot in
//! [`TlsCertificates::prepare`], requiring a client certificate that chains to the CA); every
//! other name continues with the shared configuration whose resolver picks the certificate.
//! Picking a configuration is an arc-swap load and a map lookup: no lock on the handshake path.
//!
//! Versions: rustls speaks TLS 1.2 and 1.3 only, so both `min_ssl_version` values APIG offers
//! (`TLSv1.1`, the default, and `TLSv1.2`) mean TLS 1.2 at least.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::sync::Arc;

use apig_proto::DomainCertificate;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::state::Shared;

/// One bound domain's TLS settings.
struct DomainTls {
    key: Arc<CertifiedKey>,
    /// For a domain that verifies client certificates: its own configuration, and the name
    /// connections verified with it are marked with.
    client_auth: Option<(Arc<str>, Arc<ServerConfig>)>,
}

/// The certificates of one snapshot, by domain.
#[derive(Default)]
pub(crate) struct TlsCertificates {
    exact: HashMap<String, DomainTls>,
    /// Key: the wildcard's suffix with its leading dot (`.example.com`); covers one label.
    wildcard: HashMap<String, DomainTls>,
    /// Bound domains whose plain-HTTP GET/HEAD requests are redirected to HTTPS.
    redirect_exact: HashSet<String>,
    redirect_wildcard: HashSet<String>,
    /// Some domain verifies client certificates (the request path checks nothing otherwise).
    any_client_auth: bool,
}

impl fmt::Debug for TlsCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificates")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A domain's own configuration: its certificate, and client certificates required and
/// verified against `ca_pem`.
fn client_auth_config(key: Arc<CertifiedKey>, ca_pem: &str) -> Result<ServerConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let ca = ca.map_err(|_| "the client CA bundle is not PEM".to_owned())?;
        roots
            .add(ca)
            .map_err(|e| format!("a client CA certificate is unusable: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the client CA bundle has no certificate".into());
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = alpn();
    Ok(config)
}

fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

impl TlsCertificates {
    /// Parses every certificate (and builds the configurations of domains that verify client
    /// certificates); any unusable one refuses the snapshot.
    pub(crate) fn prepare(
        certificates: &[DomainCertificate],
        redirects: &[String],
    ) -> Result<Self, String> {
        let provider = provider();
        let mut out = Self::default();
        for c in certificates {
            let fail = |why: &str| format!("certificate of {}: {why}", c.domain);
            let chain: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut c.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|_| fail("not a PEM certificate chain"))?;
            if chain.is_empty() {
                return Err(fail("no certificate"));
            }
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut c.key_pem.as_bytes())
                    .map_err(|_| fail("not a PEM private key"))?
                    .ok_or_else(|| fail("no private key"))?;
            let signing = provider
                .key_provider
                .load_private_key(key)
                .map_err(|_| fail("unsupported private key"))?;
            let certified = CertifiedKey::new(chain, signing);
            certified
                .keys_match()
                .map_err(|_| fail("the key does not belong to the certificate"))?;
            let key = Arc::new(certified);
            let domain = c.domain.to_ascii_lowercase();
            let client_auth = if c.client_ca_pem.trim().is_empty() {
                None
            } else {
                let config = client_auth_config(Arc::clone(&key), &c.client_ca_pem)
                    .map_err(|why| fail(&why))?;
                Some((Arc::from(domain.as_str()), Arc::new(config)))
            };
            out.any_client_auth |= client_auth.is_some();
            let entry = DomainTls { key, client_auth };
            match domain.strip_prefix('*') {
                Some(suffix) => out.wildcard.insert(suffix.to_owned(), entry),
                None => out.exact.insert(domain, entry),
            };
        }
        for d in redirects {
            let d = d.to_ascii_lowercase();
            match d.strip_prefix('*') {
                Some(suffix) => out.redirect_wildcard.insert(suffix.to_owned()),
                None => out.redirect_exact.insert(d),
            };
        }
        Ok(out)
    }

    /// Whether plain-HTTP GET/HEAD for `host` (normalised: lower case, no port) go to HTTPS.
    pub(crate) fn redirects(&self, host: &str) -> bool {
        if self.redirect_exact.is_empty() && self.redirect_wildcard.is_empty() {
            return false;
        }
        self.redirect_exact.contains(host)
            || host
                .find('.')
                .and_then(|dot| host.get(dot..))
                .is_some_and(|suffix| self.redirect_wildcard.contains(suffix))
    }

    /// The settings for a server name: the exact domain, else a wildcard one label up.
    fn lookup(&self, server_name: &str) -> Option<&DomainTls> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = self.exact.get(&name) {
            return Some(c);
        }
        let dot = name.find('.')?;
        self.wildcard.get(name.get(dot..)?)
    }

    /// The certificate for a server name.
    pub(crate) fn resolve(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.lookup(server_name).map(|d| Arc::clone(&d.key))
    }

    /// For a name whose domain verifies client certificates: the domain's mark and its own
    /// configuration.
    fn client_auth(&self, server_name: &str) -> Option<(Arc<str>, Arc<ServerConfig>)> {
        self.lookup(server_name)?.client_auth.clone()
    }

    /// The mark of the domain `host` (normalised: lower case, no port, no trailing dot)
    /// belongs to when that domain requires a verified client certificate: requests for it must
    /// come over a connection verified for that mark. Matches like the handshake's lookup,
    /// without allocating.
    pub(crate) fn required_client_auth(&self, host: &str) -> Option<&str> {
        if !self.any_client_auth {
            return None;
        }
        let entry = match self.exact.get(host) {
            Some(e) => e,
            None => {
                let dot = host.find('.')?;
                self.wildcard.get(host.get(dot..)?)?
            }
        };
        entry.client_auth.as_ref().map(|(m, _)| &**m)
    }
}

/// Picks the certificate of the applied snapshot for each handshake that did not need a
/// domain's own configuration. No SNI, or a name without a certificate: the handshake fails.
struct SniResolver {
    shared: Arc<Shared>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        self.shared.runtime()?.tls.resolve(name)
    }
}

/// The HTTPS listener's handshakes.
#[derive(Clone)]
pub(crate) struct TlsAcceptor {
    shared: Arc<Shared>,
    /// Names without client verification: the certificate is resolved by SNI.
    default: Arc<ServerConfig>,
}

/// A finished handshake: the stream, and for a connection whose client certificate was
/// verified, the mark of the domain it was verified for.
pub(crate) type Accepted = (TlsStream<TcpStream>, Option<Arc<str>>);

impl TlsAcceptor {
    pub(crate) fn new(shared: Arc<Shared>) -> Result<Self, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver {
                shared: Arc::clone(&shared),
            }));
        config.alpn_protocols = alpn();
        Ok(Self {
            shared,
            default: Arc::new(config),
        })
    }

    /// Reads the ClientHello, then completes the handshake with the configuration its SNI
    /// calls for.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<Accepted> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let client_auth = start.client_hello().server_name().and_then(|name| {
            self.shared
                .runtime()
                .and_then(|rt| rt.tls.client_auth(name))
        });
        match client_auth {
            Some((mark, config)) => Ok((start.into_stream(config).await?, Some(mark))),
            None => Ok((start.into_stream(Arc::clone(&self.default)).await?, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (params.self_signed(&key).unwrap(), key)
    }

    fn domain(name: &str, client_ca: &str) -> DomainCertificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        DomainCertificate {
            domain: name.into(),
            certificate_id: format!("id-{name}"),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            client_ca_pem: client_ca.into(),
        }
    }

    #[test]
    fn client_verification_is_per_domain() {
        let (ca, _) = ca();
        let certs = TlsCertificates::prepare(
            &[
                domain("open.example.com", ""),
                domain("m.example.com", &ca.pem()),
                domain("*.w.example.com", &ca.pem()),
            ],
            &[],
        )
        .unwrap();
        assert!(certs.any_client_auth);
        assert_eq!(certs.required_client_auth("open.example.com"), None);
        assert_eq!(
            certs.required_client_auth("m.example.com"),
            Some("m.example.com")
        );
        assert_eq!(
            certs.required_client_auth("x.w.example.com"),
            Some("*.w.example.com")
        );
        assert_eq!(certs.required_client_auth("unknown.example.com"), None);
        assert!(certs.client_auth("M.Example.com.").is_some());
        assert!(certs.client_auth("open.example.com").is_none());
        assert!(certs.resolve("x.w.example.com").is_some());
    }

    #[test]
    fn an_unusable_client_ca_refuses_the_snapshot() {
        let bad = TlsCertificates::prepare(&[domain("m.example.com", "not pem")], &[]);
        assert!(bad.is_err());
        let none = TlsCertificates::prepare(&[domain("m.example.com", "")], &[]).unwrap();
        assert!(!none.any_client_auth);
        assert_eq!(none.required_client_auth("m.example.com"), None);
    }
}
