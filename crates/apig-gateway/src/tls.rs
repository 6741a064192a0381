//! The HTTPS listener's certificates: chosen per connection by SNI from the applied snapshot's
//! bound domains, so a certificate bound, replaced or removed applies to the next handshake
//! without a restart. ALPN offers `h2` and `http/1.1`. rustls never negotiates TLS below 1.2,
//! whatever a domain's `min_ssl_version` says.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use apig_proto::DomainCertificate;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::state::Shared;

/// The certificates of one snapshot, by domain.
#[derive(Default)]
pub(crate) struct TlsCertificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Key: the wildcard's suffix with its leading dot (`.example.com`); covers one label.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Bound domains whose plain-HTTP GET/HEAD requests are redirected to HTTPS.
    redirect_exact: HashSet<String>,
    redirect_wildcard: HashSet<String>,
}

impl fmt::Debug for TlsCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificates")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TlsCertificates {
    /// Parses every certificate; any unusable one refuses the snapshot.
    pub(crate) fn prepare(
        certificates: &[DomainCertificate],
        redirects: &[String],
    ) -> Result<Self, String> {
        let provider = rustls::crypto::ring::default_provider();
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
            let domain = c.domain.to_ascii_lowercase();
            match domain.strip_prefix('*') {
                Some(suffix) => out.wildcard.insert(suffix.to_owned(), Arc::new(certified)),
                None => out.exact.insert(domain, Arc::new(certified)),
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

    /// The certificate for a server name: the exact domain, else a wildcard one label up.
    pub(crate) fn resolve(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = self.exact.get(&name) {
            return Some(Arc::clone(c));
        }
        let dot = name.find('.')?;
        self.wildcard.get(name.get(dot..)?).cloned()
    }
}

/// Picks the certificate of the applied snapshot for each handshake. No SNI, or a name without
/// a certificate: the handshake fails.
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

/// The HTTPS listener's TLS settings.
pub(crate) fn server_config(shared: Arc<Shared>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver { shared }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
