//! Independent domains bound to API groups (`/api-groups/{group_id}/domains`). A domain is
//! bound to one group of an instance at most; every change reaches the replicas with the next
//! snapshot (the group's host names).

use std::sync::Arc;

use apig_model::certificate::Certificate;
use apig_model::domain::{check_domain, BoundDomain, CertForm, DomainSpec, MAX_PER_GROUP};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{certificates, created, no_content, ok, Result};
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

pub fn load(r: &(impl Reader + ?Sized), inst: &str, group: &str, id: &str) -> Res<BoundDomain> {
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
    if spec.verified_client_certificate_enabled == Some(true) {
        return Err(no_certificate_to_verify_with(None).into());
    }
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
        ssl_id: None,
        verified_client_certificate_enabled: false,
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
    if let Some(v) = spec.verified_client_certificate_enabled {
        if v {
            let cert = match d.ssl_id.as_deref() {
                Some(c) => Some(certificates::load(s.reader(), &project, c)?),
                None => None,
            };
            if !cert.as_ref().is_some_and(Certificate::has_trusted_root_ca) {
                return Err(no_certificate_to_verify_with(cert.as_ref()).into());
            }
        }
        d.verified_client_certificate_enabled = v;
    }
    s.save(&inst, keys::domain(&inst, &id), &d).await?;
    Ok(ok(d.to_json()))
}

/// Client certificates are verified against the attached certificate's trusted root CA.
fn no_certificate_to_verify_with(cert: Option<&Certificate>) -> ApiError {
    ApiError::invalid(
        "verified_client_certificate_enabled",
        match cert {
            None => "the domain has no certificate; attach one with a trusted_root_ca first".into(),
            Some(c) => format!(
                "the domain's certificate {} has no trusted_root_ca to verify client certificates with",
                c.id
            ),
        },
    )
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

/// `POST …/domains/{domain_id}/certificate` (AssociateCertificateV2): creates an `instance`
/// certificate resource from the inline CertForm and makes the domain present it (replacing the
/// certificate it presented, which stays a resource of its own).
pub async fn bind_certificate(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let form: CertForm = parse_json(&body)?;
    form.validate()?;
    let mut form = form.as_certificate_form();
    form.kind = Some("instance".into());
    form.instance_id = Some(inst.clone());
    let _w = s.lock_instance(&project, &inst).await?;
    let mut d = load(s.reader(), &inst, &group, &id)?;
    let g = super::groups::load(s.reader(), &inst, &group)?;
    let now = time::now_rfc3339();
    let cert = certificates::build(s.reader(), &s, &project, form, ids::new_id(), now)?;
    certificates::attach_to(&mut d, &cert, &inst, None, true)?;
    let mut tx = s.tx();
    tx.put(keys::certificate(&project, &cert.id), &cert)?;
    tx.put(keys::domain(&inst, &id), &d)?;
    s.commit(tx, &[&inst]).await?;
    Ok(created(d.to_ref_json(Some(&cert), &inst, &g.name)))
}

/// The domain's certificate, which must be `cert_id`.
fn certificate_of(
    r: &(impl Reader + ?Sized),
    project: &str,
    d: &BoundDomain,
    cert_id: &str,
) -> Res<Certificate> {
    if d.ssl_id.as_deref() != Some(cert_id) {
        return Err(ApiError::new(
            ErrorCode::CertificateBindingNotFound,
            "The binding record of this SSL certificate and domain name does not exist.",
        ));
    }
    certificates::load(r, project, cert_id)
}

pub async fn show_certificate(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id, cert_id)): Path<(String, String, String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let d = load(s.reader(), &inst, &group, &id)?;
    Ok(ok(
        certificate_of(s.reader(), &project, &d, &cert_id)?.to_detail_json()
    ))
}

/// `DELETE …/domains/{domain_id}/certificate/{certificate_id}`: the domain stops presenting the
/// certificate; the certificate resource stays (delete it under `/certificates`).
pub async fn unbind_certificate(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, group, id, cert_id)): Path<(String, String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    let mut d = load(s.reader(), &inst, &group, &id)?;
    certificate_of(s.reader(), &project, &d, &cert_id)?;
    certificates::detach_from(&mut d, &cert_id)?;
    s.save(&inst, keys::domain(&inst, &id), &d).await?;
    Ok(no_content())
}
