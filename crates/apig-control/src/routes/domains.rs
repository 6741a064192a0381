//! Independent domains bound to API groups (`/api-groups/{group_id}/domains`). A domain is
//! bound to one group of an instance at most; every change reaches the replicas with the next
//! snapshot (the group's host names).

use std::sync::Arc;

use apig_model::domain::{
    check_domain, BoundDomain, CertForm, DomainCertificate, DomainSpec, MAX_PER_GROUP,
};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{created, no_content, ok, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{keys, ControlState};

type Res<T> = std::result::Result<T, ApiError>;

/// The domains of an instance.
pub fn all(r: &(impl Reader + ?Sized), inst: &str) -> Res<Vec<BoundDomain>> {
    let mut d: Vec<BoundDomain> = r.scan_json(&keys::domains(inst))?;
    d.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    Ok(d)
}

fn load(r: &(impl Reader + ?Sized), inst: &str, group: &str, id: &str) -> Res<BoundDomain> {
    let d: BoundDomain = r.get_json(&keys::domain(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::DomainNotFound,
            format!("The URL domain {id} does not exist"),
        )
    })?;
    if d.group_id != group {
        return Err(ApiError::new(
            ErrorCode::DomainNotFound,
            format!("The URL domain {id} is not bound to the API group {group}"),
        ));
    }
    Ok(d)
}

pub async fn bind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: DomainSpec = parse_json(&body)?;
    spec.validate(true)?;
    let name = check_domain(spec.url_domain.as_deref().unwrap_or_default())?;
    let _w = s.lock_instance(&project, &inst).await?;
    let g = super::groups::load(s.reader(), &inst, &group)?;
    let existing = all(s.reader(), &inst)?;
    if existing.iter().any(|d| d.url_domain == name) || g.sl_domain == name {
        return Err(ApiError::new(
            ErrorCode::DomainExists,
            format!("The URL domain name already exists: {name}"),
        )
        .into());
    }
    if existing.iter().filter(|d| d.group_id == group).count() >= MAX_PER_GROUP {
        return Err(ApiError::new(
            ErrorCode::DomainQuota,
            format!("An API group has at most {MAX_PER_GROUP} domain names."),
        )
        .into());
    }
    let d = BoundDomain {
        id: ids::new_id(),
        group_id: group,
        url_domain: name,
        min_ssl_version: spec.min_ssl_version.unwrap_or_else(|| "TLSv1.1".into()),
        is_http_redirect_to_https: spec.is_http_redirect_to_https.unwrap_or(false),
        create_time: time::now_rfc3339(),
        certificate: None,
    };
    s.save(&inst, keys::domain(&inst, &d.id), &d).await?;
    Ok(created(d.to_json()))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: DomainSpec = parse_json(&body)?;
    spec.validate(false)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut d = load(s.reader(), &inst, &group, &id)?;
    if let Some(v) = spec.min_ssl_version {
        d.min_ssl_version = v;
    }
    if let Some(v) = spec.is_http_redirect_to_https {
        d.is_http_redirect_to_https = v;
    }
    s.save(&inst, keys::domain(&inst, &id), &d).await?;
    Ok(ok(d.to_json()))
}

pub async fn unbind(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &group, &id)?;
    let mut tx = s.tx();
    tx.delete(keys::domain(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

/// Parses a certificate chain and its key as the gateway will, and checks they belong together
/// and that the certificate names the domain.
fn check_certificate(domain: &str, cert_pem: &str, key_pem: &str) -> Res<()> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let bad = |field: &str, why: &str| ApiError::invalid(field, why);
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("cert_content", "not a PEM certificate chain"))?;
    let Some(leaf) = certs.first() else {
        return Err(bad("cert_content", "no certificate in the PEM text"));
    };
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|_| bad("private_key", "not a PEM private key"))?
        .ok_or_else(|| bad("private_key", "no private key in the PEM text"))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| bad("private_key", "an unsupported or malformed key"))?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing);
    certified
        .keys_match()
        .map_err(|_| bad("private_key", "the key does not belong to the certificate"))?;
    // The leaf must be valid for the domain (for a wildcard domain, for one of its names).
    let probe = domain.replacen("*.", "wildcard-probe.", 1);
    let name = ServerName::try_from(probe).map_err(|_| bad("url_domain", "not a server name"))?;
    let end_entity = webpki::EndEntityCert::try_from(leaf)
        .map_err(|_| bad("cert_content", "the leaf certificate cannot be parsed"))?;
    end_entity
        .verify_is_valid_for_subject_name(&name)
        .map_err(|_| {
            ApiError::new(
                ErrorCode::CertificateDomainMismatch,
                format!(
                    "The certificate domain name and the custom domain name {domain} do not match."
                ),
            )
        })?;
    Ok(())
}

/// `POST …/domains/{domain_id}/certificate`: binds a certificate (given inline) to the domain.
pub async fn bind_certificate(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let form: CertForm = parse_json(&body)?;
    form.validate()?;
    let (cert_pem, key_pem) = (
        form.cert_content.unwrap_or_default(),
        form.private_key.unwrap_or_default(),
    );
    let _w = s.lock_instance(&project, &inst).await?;
    let mut d = load(s.reader(), &inst, &group, &id)?;
    check_certificate(&d.url_domain, &cert_pem, &key_pem)?;
    let cert = DomainCertificate {
        id: ids::new_id(),
        name: form.name.unwrap_or_default(),
        cert_pem,
        key_pem,
        create_time: time::now_rfc3339(),
    };
    let body = cert.to_json(&d.url_domain);
    d.certificate = Some(cert);
    s.save(&inst, keys::domain(&inst, &id), &d).await?;
    Ok(created(body))
}

fn certificate_of<'d>(d: &'d BoundDomain, cert_id: &str) -> Res<&'d DomainCertificate> {
    d.certificate
        .as_ref()
        .filter(|c| c.id == cert_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::CertificateBindingNotFound,
                "The binding record of this SSL certificate and domain name does not exist.",
            )
        })
}

pub async fn show_certificate(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id, cert_id)): Path<(String, String, String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let d = load(s.reader(), &inst, &group, &id)?;
    Ok(ok(certificate_of(&d, &cert_id)?.to_json(&d.url_domain)))
}

pub async fn unbind_certificate(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id, cert_id)): Path<(String, String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    let mut d = load(s.reader(), &inst, &group, &id)?;
    certificate_of(&d, &cert_id)?;
    d.certificate = None;
    s.save(&inst, keys::domain(&inst, &id), &d).await?;
    Ok(no_content())
}
