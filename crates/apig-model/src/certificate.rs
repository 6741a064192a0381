//! SSL certificates (`/v2/{project_id}/apigw/certificates`): project-scoped resources, `global`
//! (usable by every instance of the project) or `instance` (one instance), that bound domains
//! attach. One certificate may serve many domains; a domain presents one certificate at most.
//! A certificate with a `trusted_root_ca` lets its domains verify client certificates (mTLS).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::validate::Problems;
use crate::x509::CertInfo;
use crate::ApiError;

/// Largest PEM text accepted for a certificate chain, a key or a CA bundle.
pub const MAX_PEM: usize = 64 * 1024;
/// `instance_id` of a global certificate, as APIG shows it.
pub const GLOBAL_INSTANCE: &str = "common";
/// Domains one attach or detach call may name.
pub const MAX_DOMAINS_PER_CALL: usize = 100;

/// Why a certificate, key or CA bundle is refused. Mapped to APIG codes in `error.rs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The PEM text or what it encodes cannot be used.
    #[error("{field}: {why}")]
    Malformed { field: &'static str, why: String },
    #[error("Encrypted private keys are not supported.")]
    EncryptedKey,
    #[error("The certificate and private key do not match.")]
    KeyMismatch,
    #[error("The certificate has expired (not_after {not_after}).")]
    Expired { not_after: String },
    #[error(
        "The certificate chain is not matched: each certificate must be followed by its issuer."
    )]
    ChainOrder,
    #[error("The certificate domain name and the custom domain name {domain} do not match.")]
    DomainMismatch { domain: String },
    #[error("The signature algorithm of the certificate does not match: algorithm_type {declared}, the key is {actual}.")]
    AlgorithmMismatch { declared: String, actual: String },
}

/// CertificateForm (create and update bodies; an update replaces the whole certificate).
#[derive(Deserialize, Default, Clone)]
pub struct CertificateForm {
    pub name: Option<String>,
    pub cert_content: Option<String>,
    pub private_key: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub instance_id: Option<String>,
    pub trusted_root_ca: Option<String>,
    pub algorithm_type: Option<String>,
    pub cert_content_sign: Option<String>,
    pub private_key_sign: Option<String>,
}

impl fmt::Debug for CertificateForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateForm")
            .field("name", &self.name)
            .field("type", &self.kind)
            .field("instance_id", &self.instance_id)
            .field("algorithm_type", &self.algorithm_type)
            .finish_non_exhaustive()
    }
}

fn pem_field(p: &mut Problems, field: &str, v: &Option<String>, required: bool) {
    match v.as_deref() {
        None | Some("") if required => p.push(ApiError::required(field)),
        Some(pem) if pem.len() > MAX_PEM => {
            p.push(ApiError::invalid(field, "at most 64 KiB of PEM"))
        }
        _ => {}
    }
}

impl CertificateForm {
    /// Shape checks; the control plane parses the PEM and matches the key to the certificate.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match crate::validate::required("name", &self.name) {
            Ok(n) => p.check(crate::validate::certificate_name(n)),
            Err(e) => p.push(e),
        }
        pem_field(&mut p, "cert_content", &self.cert_content, true);
        pem_field(&mut p, "private_key", &self.private_key, true);
        pem_field(&mut p, "trusted_root_ca", &self.trusted_root_ca, false);
        if let Some(t) = &self.kind {
            p.check(crate::validate::one_of("type", t, &["instance", "global"]));
        }
        if self.is_instance() && self.instance_id.as_deref().unwrap_or_default().is_empty() {
            p.push(ApiError::required("instance_id"));
        }
        if let Some(a) = &self.algorithm_type {
            p.check(crate::validate::one_of(
                "algorithm_type",
                a,
                &["RSA", "ECC", "SM2"],
            ));
            if a == "SM2" {
                p.push(ApiError::not_supported("algorithm_type SM2"));
            }
        }
        if [&self.cert_content_sign, &self.private_key_sign]
            .iter()
            .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()))
        {
            p.push(ApiError::not_supported(
                "cert_content_sign and private_key_sign (SM2 certificates)",
            ));
        }
        p.into_result()
    }

    pub fn is_instance(&self) -> bool {
        self.kind.as_deref() == Some("instance")
    }
}

/// A stored certificate. The private key is never shown.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub id: String,
    pub project_id: String,
    pub name: String,
    /// `global` or `instance`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The instance of an `instance` certificate; [`GLOBAL_INSTANCE`] for a global one.
    pub instance_id: String,
    /// PEM chain, leaf first.
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: String,
    /// PEM CA certificates client certificates must chain to; empty: none.
    #[serde(default)]
    pub trusted_root_ca: String,
    /// What the leaf certificate says.
    pub info: CertInfo,
    pub create_time: String,
    pub update_time: String,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("type", &self.kind)
            .field("instance_id", &self.instance_id)
            .field("common_name", &self.info.common_name)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    pub fn has_trusted_root_ca(&self) -> bool {
        !self.trusted_root_ca.trim().is_empty()
    }

    pub fn is_global(&self) -> bool {
        self.kind == "global"
    }

    /// Whether domains of `instance` may use it.
    pub fn usable_by(&self, instance: &str) -> bool {
        self.is_global() || self.instance_id == instance
    }

    /// CertBase (list items).
    pub fn to_base_json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "type": self.kind,
            "instance_id": self.instance_id, "project_id": self.project_id,
            "common_name": self.info.common_name, "san": self.info.san,
            "not_after": self.info.not_after,
            "signature_algorithm": self.info.signature_algorithm,
            "create_time": self.create_time, "update_time": self.update_time,
            "is_has_trusted_root_ca": self.has_trusted_root_ca(),
            "algorithm_type": self.info.algorithm_type,
        })
    }

    /// CreateCertificateV2Response / ShowDetailsOfCertificateV2Response (also the domain
    /// route's certificate details).
    pub fn to_detail_json(&self) -> Value {
        let mut v = self.to_base_json();
        let i = &self.info;
        if let Value::Object(m) = &mut v {
            for (k, val) in [
                ("version", json!(i.version)),
                ("organization", json!(i.organization)),
                ("organizational_unit", json!(i.organizational_unit)),
                ("locality", json!(i.locality)),
                ("state", json!(i.state)),
                ("country", json!(i.country)),
                ("not_before", json!(i.not_before)),
                ("serial_number", json!(i.serial_number)),
                ("issuer", json!(i.issuer)),
            ] {
                m.insert(k.to_owned(), val);
            }
        }
        v
    }

    /// SslInfo (in a group's `url_domains`): `type` 1 = this instance, 2 = global.
    pub fn to_ssl_info_json(&self) -> Value {
        json!({
            "ssl_id": self.id, "ssl_name": self.name,
            "algorithm_type": self.info.algorithm_type,
            "type": if self.is_global() { 2 } else { 1 },
            "is_has_trusted_root_ca": self.has_trusted_root_ca(),
        })
    }
}

/// AttachOrDetachDomainInfo.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct AttachDomainInfo {
    pub domain: Option<String>,
    pub instance_ids: Option<Vec<String>>,
    pub verified_client_certificate_enabled: Option<bool>,
}

/// AttachOrDetachDomainsReqBody.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct AttachDomainsBody {
    pub domains: Option<Vec<AttachDomainInfo>>,
}

impl AttachDomainsBody {
    /// The domains, names checked and lower-cased.
    pub fn validate(&self) -> Result<Vec<(String, AttachDomainInfo)>, ApiError> {
        let domains = match self.domains.as_deref() {
            None | Some([]) => return Err(ApiError::required("domains")),
            Some(d) if d.len() > MAX_DOMAINS_PER_CALL => {
                return Err(ApiError::invalid(
                    "domains",
                    format!("at most {MAX_DOMAINS_PER_CALL} domains per call"),
                ))
            }
            Some(d) => d,
        };
        let mut p = Problems::new();
        let mut out = Vec::with_capacity(domains.len());
        for d in domains {
            match d.domain.as_deref() {
                None | Some("") => p.push(ApiError::required("domains.domain")),
                Some(name) => match crate::domain::check_domain(name) {
                    Ok(n) => out.push((n, d.clone())),
                    Err(e) => p.push(e),
                },
            }
        }
        p.into_result()?;
        Ok(out)
    }
}

/// AttachOrDetachCertsReqBody.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct AttachCertsBody {
    pub certificate_ids: Option<Vec<String>>,
    pub verified_client_certificate_enabled: Option<bool>,
}

impl AttachCertsBody {
    /// The one certificate id (APIG takes exactly one per call).
    pub fn validate(&self) -> Result<String, ApiError> {
        match self.certificate_ids.as_deref() {
            None | Some([]) => Err(ApiError::required("certificate_ids")),
            Some([id]) if !id.is_empty() => Ok(id.clone()),
            Some([_]) => Err(ApiError::required("certificate_ids")),
            Some(_) => Err(ApiError::invalid(
                "certificate_ids",
                "only one certificate ID can be specified",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(v: Value) -> CertificateForm {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn form_shape() {
        let good = json!({"name": "site_cert", "cert_content": "c", "private_key": "k"});
        assert!(form(good.clone()).validate().is_ok());
        for (patch, status) in [
            (json!({"name": "a"}), 400),
            (json!({"name": "1abc"}), 400),
            (json!({"name": "with-hyphen"}), 400),
            (json!({"cert_content": ""}), 400),
            (json!({"type": "region"}), 400),
            (json!({"type": "instance"}), 400),
            (json!({"algorithm_type": "SM2"}), 412),
            (json!({"cert_content_sign": "x"}), 412),
            (json!({"trusted_root_ca": "x".repeat(MAX_PEM + 1)}), 400),
        ] {
            let mut v = good.clone();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let err = form(v.clone()).validate().unwrap_err();
            assert_eq!(err.status(), status, "{v}: {err:?}");
        }
        let mut inst = good;
        inst["type"] = json!("instance");
        inst["instance_id"] = json!("i1");
        assert!(form(inst).validate().is_ok());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let f = form(json!({"name": "site_cert", "private_key": "SECRET-KEY"}));
        assert!(!format!("{f:?}").contains("SECRET-KEY"));
        let c = Certificate {
            id: "1".into(),
            project_id: "p".into(),
            name: "n".into(),
            kind: "global".into(),
            instance_id: GLOBAL_INSTANCE.into(),
            cert_pem: String::new(),
            key_pem: "SECRET-KEY".into(),
            trusted_root_ca: String::new(),
            info: CertInfo::default(),
            create_time: String::new(),
            update_time: String::new(),
        };
        assert!(!format!("{c:?}").contains("SECRET-KEY"));
        assert!(!c.to_detail_json().to_string().contains("SECRET-KEY"));
    }

    #[test]
    fn attach_bodies() {
        let b: AttachCertsBody =
            serde_json::from_value(json!({"certificate_ids": ["a", "b"]})).unwrap();
        assert_eq!(b.validate().unwrap_err().status(), 400);
        let b: AttachCertsBody = serde_json::from_value(json!({"certificate_ids": ["a"]})).unwrap();
        assert_eq!(b.validate().unwrap(), "a");
        let b: AttachDomainsBody =
            serde_json::from_value(json!({"domains": [{"domain": "A.Example.com"}]})).unwrap();
        assert_eq!(b.validate().unwrap()[0].0, "a.example.com");
        let b: AttachDomainsBody =
            serde_json::from_value(json!({"domains": [{"domain": "bad name"}]})).unwrap();
        assert_eq!(b.validate().unwrap_err().code.code(), "APIG.2024");
        let b: AttachDomainsBody = serde_json::from_value(json!({"domains": []})).unwrap();
        assert!(b.validate().is_err());
    }
}
