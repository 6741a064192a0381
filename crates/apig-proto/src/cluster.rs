//! Mutual TLS on the replica link: what both ends agree on.
//!
//! One cluster CA signs the control plane's server certificate and every replica's client
//! certificate. A replica certificate carries its identity as a URI subject alternative name,
//! `spiffe://apig/instance/<instance id>` or `spiffe://apig/instance/<instance id>/node/<node>`:
//! the control plane lets it join that instance only (and, when a node is named, only under that
//! node id), so a stolen replica key cannot read another instance's snapshots. The SPIFFE form
//! lets the same certificates come from a SPIFFE/SPIRE deployment instead of `apig certs`.

use std::path::{Path, PathBuf};

const URI_PREFIX: &str = "spiffe://apig/instance/";
const NODE_SEGMENT: &str = "/node/";
const MAX_PART_LEN: usize = 128;

/// Who a replica certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaIdentity {
    pub instance_id: String,
    /// When set, the replica must say hello with exactly this node id.
    pub node_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    #[error(
        "the client certificate has no apig replica identity (URI SAN {URI_PREFIX}<instance id>)"
    )]
    Missing,
    #[error("the client certificate has more than one apig replica identity")]
    Ambiguous,
    #[error("the replica identity {0:?} is malformed")]
    Malformed(String),
}

impl ReplicaIdentity {
    pub fn new(instance_id: &str, node_id: Option<&str>) -> Result<Self, IdentityError> {
        let id = ReplicaIdentity {
            instance_id: instance_id.to_owned(),
            node_id: node_id.map(str::to_owned),
        };
        let parts_ok = valid_part(&id.instance_id) && id.node_id.as_deref().is_none_or(valid_part);
        if parts_ok {
            Ok(id)
        } else {
            Err(IdentityError::Malformed(id.uri()))
        }
    }

    /// The URI subject alternative name that carries this identity.
    pub fn uri(&self) -> String {
        match &self.node_id {
            Some(node) => format!("{URI_PREFIX}{}{NODE_SEGMENT}{node}", self.instance_id),
            None => format!("{URI_PREFIX}{}", self.instance_id),
        }
    }

    /// Parses one URI SAN; `Ok(None)` when it is not an apig identity at all.
    pub fn from_uri(uri: &str) -> Result<Option<Self>, IdentityError> {
        let Some(rest) = uri.strip_prefix(URI_PREFIX) else {
            return Ok(None);
        };
        let (instance, node) = match rest.split_once(NODE_SEGMENT) {
            Some((instance, node)) => (instance, Some(node)),
            None => (rest, None),
        };
        Self::new(instance, node).map(Some)
    }

    /// The identity in a DER client certificate's subject alternative names. Exactly one is
    /// required: a certificate naming two instances would be ambiguous about which it may join.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::Unparsable)?;
        let san = cert
            .subject_alternative_name()
            .map_err(|_| IdentityError::Unparsable)?;
        let mut found = None;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            if let x509_parser::extensions::GeneralName::URI(uri) = name {
                if let Some(id) = Self::from_uri(uri)? {
                    if found.replace(id).is_some() {
                        return Err(IdentityError::Ambiguous);
                    }
                }
            }
        }
        found.ok_or(IdentityError::Missing)
    }
}

/// Instance and node ids in identities: what the discovery service accepts as ids, restricted to
/// characters that cannot change the URI's structure.
fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PART_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The three PEM files of one end of the link: the cluster CA that authenticates the other end,
/// and this end's certificate chain and private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// [`TlsFiles`] read and checked: each holds what it should, so a wrong path or a swapped
/// certificate and key is reported by name at start-up rather than as a failed handshake later.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {what}")]
    Content { path: String, what: &'static str },
}

impl TlsFiles {
    /// Reads and checks all three files, reporting every problem, not just the first.
    pub fn load(&self) -> Result<TlsMaterial, Vec<TlsFileError>> {
        let mut errors = Vec::new();
        let ca = read_checked(&self.ca, PemKind::Certificates, &mut errors);
        let cert = read_checked(&self.cert, PemKind::Certificates, &mut errors);
        let key = read_checked(&self.key, PemKind::PrivateKey, &mut errors);
        match (ca, cert, key) {
            (Some(ca_pem), Some(cert_pem), Some(key_pem)) if errors.is_empty() => Ok(TlsMaterial {
                ca_pem,
                cert_pem,
                key_pem,
            }),
            _ => Err(errors),
        }
    }
}

#[derive(Clone, Copy)]
enum PemKind {
    Certificates,
    PrivateKey,
}

fn read_checked(path: &Path, kind: PemKind, errors: &mut Vec<TlsFileError>) -> Option<Vec<u8>> {
    let shown = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(error) => {
            errors.push(TlsFileError::Read { path: shown, error });
            return None;
        }
    };
    let problem = match kind {
        PemKind::Certificates => {
            let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut bytes.as_slice()).collect();
            match certs {
                Ok(c) if !c.is_empty() => None,
                Ok(_) => Some("no PEM certificate in the file"),
                Err(_) => Some("malformed PEM"),
            }
        }
        PemKind::PrivateKey => match rustls_pemfile::private_key(&mut bytes.as_slice()) {
            Ok(Some(_)) => None,
            Ok(None) => Some("no PEM private key in the file"),
            Err(_) => Some("malformed PEM"),
        },
    };
    match problem {
        None => Some(bytes),
        Some(what) => {
            errors.push(TlsFileError::Content { path: shown, what });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn uri_round_trips_with_and_without_node() {
        for node in [None, Some("gw-1.zone_a")] {
            let id = ReplicaIdentity::new(IID, node).unwrap();
            assert_eq!(ReplicaIdentity::from_uri(&id.uri()).unwrap(), Some(id));
        }
        assert_eq!(
            ReplicaIdentity::new(IID, None).unwrap().uri(),
            format!("spiffe://apig/instance/{IID}")
        );
    }

    #[test]
    fn foreign_uris_are_ignored_and_malformed_ones_refused() {
        assert_eq!(ReplicaIdentity::from_uri("spiffe://other/x").unwrap(), None);
        assert_eq!(
            ReplicaIdentity::from_uri("https://apig/instance/x").unwrap(),
            None
        );
        for bad in [
            "spiffe://apig/instance/",
            "spiffe://apig/instance/a/b",
            "spiffe://apig/instance/a?b",
            "spiffe://apig/instance/a/node/",
            "spiffe://apig/instance/a/node/b/node/c",
            "spiffe://apig/instance/%41",
        ] {
            assert!(
                matches!(
                    ReplicaIdentity::from_uri(bad),
                    Err(IdentityError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn identity_comes_from_exactly_one_uri_san() {
        let one = format!("spiffe://apig/instance/{IID}/node/n1");
        let id =
            ReplicaIdentity::from_certificate(&cert_with_uris(&["spiffe://x/y", &one])).unwrap();
        assert_eq!(id.instance_id, IID);
        assert_eq!(id.node_id.as_deref(), Some("n1"));

        let two = format!("spiffe://apig/instance/{IID}");
        assert_eq!(
            ReplicaIdentity::from_certificate(&cert_with_uris(&[&one, &two])),
            Err(IdentityError::Ambiguous)
        );
        assert_eq!(
            ReplicaIdentity::from_certificate(&cert_with_uris(&["spiffe://x/y"])),
            Err(IdentityError::Missing)
        );
        assert_eq!(
            ReplicaIdentity::from_certificate(b"not der"),
            Err(IdentityError::Unparsable)
        );
    }

    #[test]
    fn files_are_checked_and_every_problem_reported() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.path().join("c.pem");
        let key_path = dir.path().join("k.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();

        let good = TlsFiles {
            ca: cert_path.clone(),
            cert: cert_path.clone(),
            key: key_path.clone(),
        };
        assert!(good.load().is_ok());

        // Certificate and key swapped, and a missing CA: three problems, all named.
        let bad = TlsFiles {
            ca: dir.path().join("missing.pem"),
            cert: key_path,
            key: cert_path,
        };
        let errors = bad.load().unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        let text = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("missing.pem"), "{text}");
        assert!(text.contains("no PEM certificate"), "{text}");
        assert!(text.contains("no PEM private key"), "{text}");
    }
}
