//! Independent domains bound to API groups (`/api-groups/{id}/domains`): requests for a bound
//! domain route to its group, like the group's generated sub-domain.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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
    /// The certificate the HTTPS listener presents for this domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<DomainCertificate>,
}

/// A certificate bound to a domain (AssociateCertificateV2's CertForm, stored).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DomainCertificate {
    pub id: String,
    pub name: String,
    /// PEM chain, leaf first.
    pub cert_pem: String,
    /// PEM private key; never shown in answers.
    pub key_pem: String,
    pub create_time: String,
}

/// CertForm.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct CertForm {
    pub name: Option<String>,
    pub cert_content: Option<String>,
    pub private_key: Option<String>,
}

impl CertForm {
    /// Shape checks; the control plane parses the PEM and matches the key to the certificate.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match crate::validate::required("name", &self.name) {
            Ok(n) => p.check(crate::validate::max_chars("name", n, 64)),
            Err(e) => p.push(e),
        }
        for (field, v, marker) in [
            (
                "cert_content",
                &self.cert_content,
                "-----BEGIN CERTIFICATE-----",
            ),
            ("private_key", &self.private_key, "PRIVATE KEY-----"),
        ] {
            match crate::validate::required(field, v) {
                Ok(pem) if pem.len() > 64 * 1024 => {
                    p.push(ApiError::invalid(field, "at most 64 KiB of PEM"))
                }
                Ok(pem) if !pem.contains(marker) => p.push(ApiError::invalid(field, "PEM text")),
                Ok(_) => {}
                Err(e) => p.push(e),
            }
        }
        p.into_result()
    }
}

impl DomainCertificate {
    /// CertificateInfo (the private key left out).
    pub fn to_json(&self, domain: &str) -> Value {
        json!({
            "id": self.id, "name": self.name, "url_domain": domain,
            "cert_content": self.cert_pem, "create_time": self.create_time,
        })
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
        if self.verified_client_certificate_enabled == Some(true) {
            p.push(ApiError::not_supported(
                "verified_client_certificate_enabled (client certificates on domains)",
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
    /// AssociateDomainV2Response.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "url_domain": self.url_domain, "status": 3,
            "min_ssl_version": self.min_ssl_version,
            "is_http_redirect_to_https": self.is_http_redirect_to_https,
            "verified_client_certificate_enabled": false,
            "ingress_http_port": -1, "ingress_https_port": -1,
        })
    }

    /// UrlDomain (in a group's `url_domains`).
    pub fn to_group_json(&self) -> Value {
        let cert = self.certificate.as_ref();
        json!({
            "id": self.id, "domain": self.url_domain, "cname_status": 3,
            "ssl_id": cert.map(|c| c.id.as_str()).unwrap_or_default(),
            "ssl_name": cert.map(|c| c.name.as_str()).unwrap_or_default(),
            "min_ssl_version": self.min_ssl_version,
            "verified_client_certificate_enabled": false, "is_has_trusted_root_ca": false,
            "ingress_http_port": -1, "ingress_https_port": -1, "ssl_infos": [],
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
        assert_eq!(
            spec(json!({"verified_client_certificate_enabled": true}))
                .validate(false)
                .unwrap_err()
                .status(),
            412
        );
        assert_eq!(
            spec(json!({"ingress_http_port": 80}))
                .validate(false)
                .unwrap_err()
                .status(),
            400
        );
    }
}
