//! Checks certificates, keys and CA bundles the way the gateway will use them (rustls with the
//! ring provider, webpki for names and client verification), so a certificate the control plane
//! accepts is one every replica can serve. What the certificate says (`CertInfo`) comes from
//! `apig_model::x509`.

use std::sync::Arc;

use apig_model::certificate::CertError;
use apig_model::x509::{self, CertInfo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn malformed(field: &'static str, why: impl Into<String>) -> CertError {
    CertError::Malformed {
        field,
        why: why.into(),
    }
}

/// The certificates of a PEM text, in order.
fn pem_certs(field: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| malformed(field, "not a PEM certificate"))?;
    if certs.is_empty() {
        return Err(malformed(field, "no PEM certificate in the text"));
    }
    Ok(certs)
}

/// Checks a certificate chain (leaf first) and its private key: both parse, the key belongs to
/// the leaf, every certificate is followed by its issuer, the leaf has not expired, and the key
/// is of `algorithm_type` when one is declared. Returns what the leaf says.
pub fn check_pair(
    cert_pem: &str,
    key_pem: &str,
    algorithm_type: Option<&str>,
    now_unix: i64,
) -> Result<CertInfo, CertError> {
    let chain = pem_certs("cert_content", cert_pem)?;
    let infos = chain
        .iter()
        .map(|c| x509::inspect(c).map_err(|e| malformed("cert_content", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if key_pem.contains("ENCRYPTED PRIVATE KEY") || key_pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(CertError::EncryptedKey);
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|_| malformed("private_key", "not a PEM private key"))?
        .ok_or_else(|| malformed("private_key", "no PEM private key in the text"))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| malformed("private_key", "an unsupported or malformed key"))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|_| CertError::KeyMismatch)?;
    let first = chain
        .first()
        .ok_or_else(|| malformed("cert_content", "no certificate"))?;
    webpki::EndEntityCert::try_from(first)
        .map_err(|e| malformed("cert_content", format!("the leaf certificate: {e}")))?;
    for pair in infos.windows(2) {
        if pair[0].issuer_der != pair[1].subject_der {
            return Err(CertError::ChainOrder);
        }
    }
    let mut infos = infos.into_iter();
    let leaf = infos
        .next()
        .ok_or_else(|| malformed("cert_content", "no certificate"))?;
    if leaf.not_after_unix < now_unix {
        return Err(CertError::Expired {
            not_after: leaf.not_after,
        });
    }
    if let Some(declared) = algorithm_type.filter(|a| !a.is_empty()) {
        if declared != leaf.algorithm_type {
            return Err(CertError::AlgorithmMismatch {
                declared: declared.to_owned(),
                actual: leaf.algorithm_type,
            });
        }
    }
    Ok(leaf)
}

/// The client-certificate verifier for a CA bundle, as the gateway builds it.
pub fn client_verifier(
    ca_pem: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, CertError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs("trusted_root_ca", ca_pem)? {
        roots.add(ca).map_err(|e| {
            malformed(
                "trusted_root_ca",
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| malformed("trusted_root_ca", e.to_string()))
}

/// Checks that the leaf of `cert_pem` is valid for `domain` (for a wildcard domain, for the
/// names it covers).
pub fn check_names(cert_pem: &str, domain: &str) -> Result<(), CertError> {
    let chain = pem_certs("cert_content", cert_pem)?;
    let mismatch = || CertError::DomainMismatch {
        domain: domain.to_owned(),
    };
    let probe = domain.replacen("*.", "wildcard-probe.", 1);
    let name = ServerName::try_from(probe).map_err(|_| mismatch())?;
    let first = chain
        .first()
        .ok_or_else(|| malformed("cert_content", "no certificate"))?;
    let leaf = webpki::EndEntityCert::try_from(first)
        .map_err(|e| malformed("cert_content", format!("the leaf certificate: {e}")))?;
    leaf.verify_is_valid_for_subject_name(&name)
        .map_err(|_| mismatch())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Root CA");
        (params.self_signed(&key).unwrap(), key)
    }

    fn leaf(ca: &(rcgen::Certificate, rcgen::KeyPair), names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example Org");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x32, 0xd2]));
        let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_good_pair_says_what_it_is() {
        let ca = ca();
        let (cert, key) = leaf(&ca, &["api.example.com", "*.api.example.com"]);
        let info = check_pair(&cert, &key, Some("ECC"), 0).unwrap();
        assert_eq!(info.common_name, "api.example.com");
        assert_eq!(info.san, vec!["api.example.com", "*.api.example.com"]);
        assert_eq!(info.organization, vec!["Example Org"]);
        assert_eq!(info.issuer, vec!["Test Root CA"]);
        assert_eq!(info.signature_algorithm, "ECDSA-SHA256");
        assert_eq!(info.algorithm_type, "ECC");
        assert_eq!(info.serial_number, "13010");
        assert_eq!(info.version, 3);
        assert!(info.not_after > info.not_before);
        assert!(info.not_after.ends_with('Z'));
        // With its issuer after it, the chain is in order; the other way round it is not.
        let chained = format!("{cert}{}", ca.0.pem());
        assert!(check_pair(&chained, &key, None, 0).is_ok());
        let reversed = format!("{}{cert}", ca.0.pem());
        assert!(check_pair(&reversed, &key, None, 0).is_err());
        assert!(check_names(&cert, "api.example.com").is_ok());
        assert!(check_names(&cert, "*.api.example.com").is_ok());
        assert_eq!(
            check_names(&cert, "other.example.com"),
            Err(CertError::DomainMismatch {
                domain: "other.example.com".into()
            })
        );
    }

    #[test]
    fn bad_pairs_say_why() {
        let ca = ca();
        let (cert, key) = leaf(&ca, &["api.example.com"]);
        let (_, other_key) = leaf(&ca, &["api.example.com"]);
        assert_eq!(
            check_pair(&cert, &other_key, None, 0),
            Err(CertError::KeyMismatch)
        );
        assert!(matches!(
            check_pair("garbage", &key, None, 0),
            Err(CertError::Malformed {
                field: "cert_content",
                ..
            })
        ));
        assert!(matches!(
            check_pair(&cert, "garbage", None, 0),
            Err(CertError::Malformed {
                field: "private_key",
                ..
            })
        ));
        let broken = cert.replace("MII", "MIX");
        assert!(check_pair(&broken, &key, None, 0).is_err());
        assert_eq!(
            check_pair(
                &cert,
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                None,
                0
            ),
            Err(CertError::EncryptedKey)
        );
        assert!(matches!(
            check_pair(&cert, &key, None, i64::MAX),
            Err(CertError::Expired { .. })
        ));
        assert!(matches!(
            check_pair(&cert, &key, Some("RSA"), 0),
            Err(CertError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn ca_bundles() {
        let ca = ca();
        assert!(client_verifier(&ca.0.pem()).is_ok());
        assert!(matches!(
            client_verifier("nothing"),
            Err(CertError::Malformed {
                field: "trusted_root_ca",
                ..
            })
        ));
    }
}
