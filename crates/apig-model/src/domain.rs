//! Independent domains bound to API groups (`/api-groups/{id}/domains`): requests for a bound
//! domain route to its group, like the group's generated sub-domain.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::certificate::{Certificate, CertificateForm};
use crate::validate::Problems;
use crate::{ApiError, ErrorCode};

/// Domains per group (APIG's quota).
pub const MAX_PER_GROUP: usize = 5;

/// UrlDomainCreate / UrlDomainModify.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct DomainSpec {
    pub url_domain: Option<String>,
    pub min_ssl_version: Option<String>,
    pub is_http_redirect_to_https: Option<bool>,
    pub verified_client_certificate_enabled: Option<bool>,
    pub ingress_http_port: Option<i64>,
    pub ingress_https_port: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BoundDomain {
    pub id: String,
    pub group_id: String,
    /// Lower case; `*.example.com` for a wildcard.
    pub url_domain: String,
    pub min_ssl_version: String,
    pub is_http_redirect_to_https: bool,
    pub create_time: String,
    /// The certificate resource (`/certificates/{ssl_id}`) the HTTPS listener presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_id: Option<String>,
    /// Handshakes must present a client certificate issued by the certificate's
    /// `trusted_root_ca` (only with such a certificate attached).
    #[serde(default)]
    pub verified_client_certificate_enabled: bool,
    /// Stores written before certificates were resources kept the certificate here; it is moved
    /// to a certificate resource on start (`ssl_id`), so this is `None` everywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<DomainCertificate>,
}

/// A certificate embedded in a domain by older versions (see [`BoundDomain::certificate`]).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct DomainCertificate {
    pub id: String,
    pub name: String,
    /// PEM chain, leaf first.
    pub cert_pem: String,
    /// PEM private key; never shown.
    pub key_pem: String,
    pub create_time: String,
}

impl fmt::Debug for DomainCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainCertificate")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// CertForm (a certificate given inline to `POST …/domains/{id}/certificate`).
#[derive(Deserialize, Default, Clone)]
pub struct CertForm {
    pub name: Option<String>,
    pub cert_content: Option<String>,
    pub private_key: Option<String>,
}

impl fmt::Debug for CertForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertForm")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CertForm {
    /// Shape checks; the control plane parses the PEM and matches the key to the certificate.
    pub fn validate(&self) -> Result<(), ApiError> {
        self.as_certificate_form().validate()
    }

    /// The same certificate as a CertificateForm (an `instance` certificate of `instance`).
    pub fn as_certificate_form(&self) -> CertificateForm {
        CertificateForm {
            name: self.name.clone(),
            cert_content: self.cert_content.clone(),
            private_key: self.private_key.clone(),
            ..CertificateForm::default()
        }
    }
}

/// A bound domain name: a DNS name of 1–255 characters, labels of letters, digits and hyphens,
/// at least two labels, optionally `*.` in front (one wildcard label).
pub fn check_domain(d: &str) -> Result<String, ApiError> {
    let bad = || ApiError::new(ErrorCode::InvalidDomain, format!("Invalid URL domain: {d}"));
    let lower = d.trim_end_matches('.').to_ascii_lowercase();
    if lower.is_empty() || lower.len() > 255 {
        return Err(bad());
    }
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(bad());
    }
    // A TLD is never all digits: that would be an IP address, not a domain.
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(lower)
}

impl DomainSpec {
    /// Checks the settings (all bodies) and the name (`with_name`: create).
    pub fn validate(&self, with_name: bool) -> Result<(), ApiError> {
        let mut p = Problems::new();
        if with_name {
            match self.url_domain.as_deref() {
                Some(d) => {
                    if let Err(e) = check_domain(d) {
                        p.push(e);
                    }
                }
                None => p.push(ApiError::required("url_domain")),
            }
        }
        if let Some(v) = &self.min_ssl_version {
            p.check(crate::validate::one_of(
                "min_ssl_version",
                v,
                &["TLSv1.1", "TLSv1.2"],
            ));
        }
        for (field, v) in [
            ("ingress_http_port", self.ingress_http_port),
            ("ingress_https_port", self.ingress_https_port),
        ] {
            match v {
                None | Some(-1) => {}
                Some(1024..=49151) => p.push(ApiError::not_supported(format!(
                    "{field} (custom ingress ports)"
                ))),
                Some(_) => p.push(ApiError::invalid(field, "-1 or 1024 to 49151")),
            }
        }
        p.into_result()
    }
}

impl BoundDomain {
    /// AssociateDomainV2Response / UpdateDomainV2Response.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "url_domain": self.url_domain, "status": 3,
            "min_ssl_version": self.min_ssl_version,
            "is_http_redirect_to_https": self.is_http_redirect_to_https,
            "verified_client_certificate_enabled": self.verified_client_certificate_enabled,
            "ingress_http_port": -1, "ingress_https_port": -1,
        })
    }

    /// UrlDomainRefInfo (a certificate's attached domains) and AssociateCertificateV2Response.
    pub fn to_ref_json(
        &self,
        cert: Option<&Certificate>,
        instance_id: &str,
        group_name: &str,
    ) -> Value {
        let mut v = self.to_json();
        if let Value::Object(m) = &mut v {
            m.insert(
                "ssl_id".into(),
                json!(cert.map(|c| c.id.as_str()).unwrap_or_default()),
            );
            m.insert(
                "ssl_name".into(),
                json!(cert.map(|c| c.name.as_str()).unwrap_or_default()),
            );
            m.insert("instance_id".into(), json!(instance_id));
            m.insert("api_group_id".into(), json!(self.group_id));
            m.insert("api_group_name".into(), json!(group_name));
        }
        v
    }

    /// UrlDomain (in a group's `url_domains`), with its attached certificate if any.
    pub fn to_group_json(&self, cert: Option<&Certificate>) -> Value {
        json!({
            "id": self.id, "domain": self.url_domain, "cname_status": 3,
            "ssl_id": cert.map(|c| c.id.as_str()).unwrap_or_default(),
            "ssl_name": cert.map(|c| c.name.as_str()).unwrap_or_default(),
            "min_ssl_version": self.min_ssl_version,
            "verified_client_certificate_enabled": self.verified_client_certificate_enabled,
            "is_has_trusted_root_ca": cert.is_some_and(Certificate::has_trusted_root_ca),
            "ingress_http_port": -1, "ingress_https_port": -1,
            "ssl_infos": cert.map(|c| vec![c.to_ssl_info_json()]).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names() {
        for (ok, want) in [
            ("api.example.com", "api.example.com"),
            ("API.Example.COM.", "api.example.com"),
            ("*.example.com", "*.example.com"),
            ("a-b.c1.io", "a-b.c1.io"),
        ] {
            assert_eq!(check_domain(ok).unwrap(), want);
        }
        for bad in [
            "",
            "localhost",
            "*.com.*",
            "a..b",
            "-a.com",
            "10.0.0.1",
            "a b.com",
            "*.*.a.com",
            "x:80.com",
            "a.com/x",
        ] {
            assert!(check_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings() {
        let spec = |v: Value| serde_json::from_value::<DomainSpec>(v).unwrap();
        assert!(
            spec(json!({"url_domain": "a.example.com", "min_ssl_version": "TLSv1.2"}))
                .validate(true)
                .is_ok()
        );
        assert!(
            spec(json!({"url_domain": "a.example.com", "min_ssl_version": "SSLv3"}))
                .validate(true)
                .is_err()
        );
        assert!(
            spec(json!({"url_domain": "a.example.com", "is_http_redirect_to_https": true}))
                .validate(true)
                .is_ok()
        );
        // Whether verification can be enabled depends on the attached certificate: the
        // handler decides.
        assert!(spec(json!({"verified_client_certificate_enabled": true}))
            .validate(false)
            .is_ok());
        assert_eq!(
            spec(json!({"ingress_http_port": 80}))
                .validate(false)
                .unwrap_err()
                .status(),
            400
        );
    }
}
