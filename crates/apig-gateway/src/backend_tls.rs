//! TLS towards backends: HTTPS backends, HTTPS health checks (and function endpoints). The
//! backend's certificate is verified against the Mozilla roots (webpki-roots) plus the CA
//! certificates of `--backend-ca-file`, for the name the request uses (the backend host, or a
//! channel member's address). There is no switch to skip verification.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

/// The client TLS settings every backend connection uses.
pub(crate) fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{}: no PEM certificate found", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
