//! SSL certificates (`/v2/{project_id}/apigw/certificates`) and their attachment to bound
//! domains, from either side (`/certificates/{id}/domains/attach|detach`,
//! `…/domains/{domain_id}/certificates/attach|detach`).
//!
//! Certificates belong to a project; a `global` one may serve domains of every instance of the
//! project, an `instance` one only that instance's. A domain presents one certificate at most
//! (attaching another answers APIG.2051; detach first). An attached certificate cannot be
//! deleted. Every change that touches an attached certificate recompiles the snapshots of the
//! instances whose domains use it, so replicas present the new certificate on the next
//! handshake without a restart.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use apig_model::certificate::{
    AttachCertsBody, AttachDomainsBody, Certificate, CertificateForm, GLOBAL_INSTANCE,
};
use apig_model::domain::BoundDomain;
use apig_model::instance::Instance;
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{certs, keys, ControlState};

type Res<T> = std::result::Result<T, ApiError>;

pub fn load(r: &(impl Reader + ?Sized), project: &str, id: &str) -> Res<Certificate> {
    r.get_json(&keys::certificate(project, id))?
        .ok_or_else(|| ApiError::certificate_not_found(id))
}

/// The project's certificates by id.
pub fn by_id(r: &(impl Reader + ?Sized), project: &str) -> Res<HashMap<String, Certificate>> {
    Ok(r.scan_json::<Certificate>(&keys::certificates(project))?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect())
}

fn project_instances(r: &(impl Reader + ?Sized), project: &str) -> Res<Vec<String>> {
    let mut ids: Vec<String> = r
        .scan_json::<Instance>(keys::INSTANCES)?
        .into_iter()
        .filter(|i| i.project_id == project)
        .map(|i| i.id)
        .collect();
    ids.sort();
    Ok(ids)
}

/// The domains (with their instance) that present certificate `id`.
fn attached(
    r: &(impl Reader + ?Sized),
    project: &str,
    id: &str,
) -> Res<Vec<(String, BoundDomain)>> {
    let mut out = Vec::new();
    for inst in project_instances(r, project)? {
        for d in super::domains::all(r, &inst)? {
            if d.ssl_id.as_deref() == Some(id) {
                out.push((inst.clone(), d));
            }
        }
    }
    out.sort_by(|a, b| (&a.1.url_domain, &a.0).cmp(&(&b.1.url_domain, &b.0)));
    Ok(out)
}

/// Makes `d` (a domain of `instance`) present `cert`. `verified`: client-certificate
/// verification, by default on exactly when the certificate has a trusted root CA. A domain
/// that presents another certificate is refused unless `replace`.
pub fn attach_to(
    d: &mut BoundDomain,
    cert: &Certificate,
    instance: &str,
    verified: Option<bool>,
    replace: bool,
) -> Res<()> {
    if !cert.usable_by(instance) {
        return Err(ApiError::invalid(
            "instance_id",
            format!(
                "the certificate {} belongs to instance {}; domains of instance {instance} cannot use it",
                cert.id, cert.instance_id
            ),
        ));
    }
    certs::check_names(&cert.cert_pem, &d.url_domain)?;
    if let Some(current) = d.ssl_id.as_deref().filter(|c| *c != cert.id) {
        if !replace {
            return Err(ApiError::new(
                ErrorCode::DomainHasCertificate,
                format!(
                    "A domain name cannot be bound with different certificates: {} presents certificate {current}; detach it first.",
                    d.url_domain
                ),
            ));
        }
    }
    let verified = verified.unwrap_or_else(|| cert.has_trusted_root_ca());
    if verified && !cert.has_trusted_root_ca() {
        return Err(ApiError::invalid(
            "verified_client_certificate_enabled",
            format!(
                "the certificate {} has no trusted_root_ca to verify client certificates with",
                cert.id
            ),
        ));
    }
    d.ssl_id = Some(cert.id.clone());
    d.verified_client_certificate_enabled = verified;
    Ok(())
}

/// Makes `d` present no certificate; it must present `cert_id`.
pub fn detach_from(d: &mut BoundDomain, cert_id: &str) -> Res<()> {
    if d.ssl_id.as_deref() != Some(cert_id) {
        return Err(ApiError::new(
            ErrorCode::CertificateBindingNotFound,
            format!(
                "The binding record of this SSL certificate and domain name does not exist: {} does not present {cert_id}",
                d.url_domain
            ),
        ));
    }
    d.ssl_id = None;
    d.verified_client_certificate_enabled = false;
    Ok(())
}

/// Checks a form's certificate, key and CA bundle and builds the certificate it describes.
/// `instance` scopes an `instance` certificate (the form's `instance_id` unless forced).
pub fn build(
    r: &(impl Reader + ?Sized),
    s: &ControlState,
    project: &str,
    form: CertificateForm,
    id: String,
    create_time: String,
) -> Res<Certificate> {
    let (kind, instance_id) = if form.is_instance() {
        let inst = form.instance_id.clone().unwrap_or_default();
        s.instance(r, project, &inst)?;
        ("instance", inst)
    } else {
        ("global", GLOBAL_INSTANCE.to_owned())
    };
    let cert_pem = form.cert_content.unwrap_or_default();
    let key_pem = form.private_key.unwrap_or_default();
    let info = certs::check_pair(
        &cert_pem,
        &key_pem,
        form.algorithm_type.as_deref(),
        chrono::Utc::now().timestamp(),
    )?;
    let trusted_root_ca = form.trusted_root_ca.unwrap_or_default();
    if !trusted_root_ca.trim().is_empty() {
        certs::client_verifier(&trusted_root_ca)?;
    }
    Ok(Certificate {
        id,
        project_id: project.to_owned(),
        name: form.name.unwrap_or_default(),
        kind: kind.to_owned(),
        instance_id,
        cert_pem,
        key_pem,
        trusted_root_ca,
        info,
        create_time,
        update_time: time::now_rfc3339(),
    })
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path(project): Path<String>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    let r = s.reader();
    let instance = q.get("instance_id").filter(|i| !i.is_empty());
    if let Some(i) = instance {
        s.instance(r, &project, i)?;
    }
    let mut all: Vec<Certificate> = r.scan_json(&keys::certificates(&project))?;
    all.retain(|c| {
        instance.is_none_or(|i| c.usable_by(i))
            && name_matches(&q, "name", &c.name)
            && name_matches(&q, "common_name", &c.info.common_name)
            && eq_filter(&q, "signature_algorithm", &c.info.signature_algorithm)
            && eq_filter(&q, "type", &c.kind)
            && eq_filter(&q, "algorithm_type", &c.info.algorithm_type)
    });
    all.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    Ok(ok(paged(
        all.iter().map(Certificate::to_base_json).collect(),
        page,
        "certs",
    )))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let form: CertificateForm = parse_json(&body)?;
    form.validate()?;
    let _w = s.write_lock().await;
    let cert = build(
        s.reader(),
        &s,
        &project,
        form,
        ids::new_id(),
        time::now_rfc3339(),
    )?;
    let mut tx = s.tx();
    tx.put(keys::certificate(&project, &cert.id), &cert)?;
    s.commit(tx, &[]).await?;
    Ok(ok(cert.to_detail_json()))
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response> {
    Ok(ok(load(s.reader(), &project, &id)?.to_detail_json()))
}

/// Replaces the certificate (a full CertificateForm). Its domains keep it, so the new one must
/// still be usable by each of them: valid for the domain's name, in scope for its instance,
/// and with a trusted root CA while a domain verifies client certificates (removing the CA
/// would silently turn verification off; disable it on the domain first).
pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let form: CertificateForm = parse_json(&body)?;
    form.validate()?;
    let _w = s.write_lock().await;
    let old = load(s.reader(), &project, &id)?;
    let cert = build(s.reader(), &s, &project, form, id.clone(), old.create_time)?;
    let users = attached(s.reader(), &project, &id)?;
    for (inst, d) in &users {
        if !cert.usable_by(inst) {
            return Err(ApiError::invalid(
                "instance_id",
                format!(
                    "the domain {} of instance {inst} uses this certificate; detach it first",
                    d.url_domain
                ),
            )
            .into());
        }
        certs::check_names(&cert.cert_pem, &d.url_domain).map_err(ApiError::from)?;
        if d.verified_client_certificate_enabled && !cert.has_trusted_root_ca() {
            return Err(ApiError::invalid(
                "trusted_root_ca",
                format!(
                    "the domain {} verifies client certificates with it; disable verified_client_certificate_enabled there first",
                    d.url_domain
                ),
            )
            .into());
        }
    }
    let mut tx = s.tx();
    tx.put(keys::certificate(&project, &id), &cert)?;
    let instances: BTreeSet<&str> = users.iter().map(|(i, _)| i.as_str()).collect();
    s.commit(tx, &instances.into_iter().collect::<Vec<_>>())
        .await?;
    Ok(ok(cert.to_detail_json()))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response> {
    let _w = s.write_lock().await;
    load(s.reader(), &project, &id)?;
    let users = attached(s.reader(), &project, &id)?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|(_, d)| d.url_domain.as_str()).collect();
        return Err(ApiError::new(
            ErrorCode::CertificateInUse,
            format!(
                "Invalid parameter value,parameterName:certificate_id. The certificate is bound to domain names ({}); unbind them first.",
                names.join(", ")
            ),
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::certificate(&project, &id));
    s.commit(tx, &[]).await?;
    Ok(no_content())
}

/// ListAttachedDomainsV2: `bound_domains`, filtered by `url_domain` (substring).
pub async fn attached_domains(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    let r = s.reader();
    let cert = load(r, &project, &id)?;
    let mut items = Vec::new();
    for (inst, d) in attached(r, &project, &id)? {
        if !name_matches(&q, "url_domain", &d.url_domain) {
            continue;
        }
        let group_name = super::groups::load(r, &inst, &d.group_id)
            .map(|g| g.name)
            .unwrap_or_default();
        items.push(d.to_ref_json(Some(&cert), &inst, &group_name));
    }
    Ok(ok(paged(items, page, "bound_domains")))
}

/// Attach (`true`) or detach the certificate to or from domains named by the body, in the given
/// instances or, without `instance_ids`, wherever the project binds them.
async fn domains_change(
    s: Arc<ControlState>,
    project: String,
    id: String,
    body: Bytes,
    attach: bool,
) -> Result<Response> {
    let body: AttachDomainsBody = parse_json(&body)?;
    let items = body.validate()?;
    let _w = s.write_lock().await;
    let cert = load(s.reader(), &project, &id)?;
    let all_instances = project_instances(s.reader(), &project)?;
    let mut tx = s.tx();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    for (name, info) in items {
        let explicit = info.instance_ids.clone().filter(|ids| !ids.is_empty());
        let targets = match &explicit {
            Some(ids) => {
                for i in ids {
                    s.instance(&tx, &project, i)?;
                }
                ids.clone()
            }
            // Without instance ids: wherever the certificate may be attached (or, to detach,
            // wherever a domain of that name presents it).
            None => all_instances
                .iter()
                .filter(|i| !attach || cert.usable_by(i))
                .cloned()
                .collect(),
        };
        let mut found = false;
        for inst in targets {
            let domain = super::domains::all(&tx, &inst)?.into_iter().find(|d| {
                d.url_domain == name
                    && (attach || explicit.is_some() || d.ssl_id.as_deref() == Some(&id))
            });
            let Some(mut d) = domain else {
                if explicit.is_some() {
                    return Err(ApiError::new(
                        ErrorCode::DomainNotFound,
                        format!("The URL domain {name} is not bound in instance {inst}"),
                    )
                    .into());
                }
                continue;
            };
            if attach {
                attach_to(
                    &mut d,
                    &cert,
                    &inst,
                    info.verified_client_certificate_enabled,
                    false,
                )?;
            } else {
                detach_from(&mut d, &id)?;
            }
            tx.put(keys::domain(&inst, &d.id), &d)?;
            touched.insert(inst);
            found = true;
        }
        if !found {
            return Err(ApiError::new(
                ErrorCode::DomainNotFound,
                format!("The URL domain {name} does not exist"),
            )
            .into());
        }
    }
    let instances: Vec<&str> = touched.iter().map(String::as_str).collect();
    s.commit(tx, &instances).await?;
    Ok(no_content())
}

pub async fn attach_domains(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    domains_change(s, project, id, body, true).await
}

pub async fn detach_domains(
    State(s): State<Arc<ControlState>>,
    Path((project, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    domains_change(s, project, id, body, false).await
}

/// The domain side: `…/domains/{domain_id}/certificates/attach|detach` (one certificate id).
async fn certs_change(
    s: Arc<ControlState>,
    (project, inst, group, domain): (String, String, String, String),
    body: Bytes,
    attach: bool,
) -> Result<Response> {
    let body: AttachCertsBody = parse_json(&body)?;
    let cert_id = body.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut d = super::domains::load(s.reader(), &inst, &group, &domain)?;
    let cert = load(s.reader(), &project, &cert_id)?;
    if attach {
        attach_to(
            &mut d,
            &cert,
            &inst,
            body.verified_client_certificate_enabled,
            false,
        )?;
    } else {
        detach_from(&mut d, &cert_id)?;
    }
    s.save(&inst, keys::domain(&inst, &domain), &d).await?;
    Ok(no_content())
}

pub async fn attach_certs(
    State(s): State<Arc<ControlState>>,
    Path(p): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    certs_change(s, p, body, true).await
}

pub async fn detach_certs(
    State(s): State<Arc<ControlState>>,
    Path(p): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    certs_change(s, p, body, false).await
}

/// Moves certificates that older versions embedded in domains into certificate resources
/// (`instance` certificates keeping their ids), once, on start.
pub async fn migrate_embedded(s: &ControlState) -> Res<()> {
    let _w = s.write_lock().await;
    let instances: Vec<Instance> = Reader::scan_json(s.reader(), keys::INSTANCES)?;
    let mut tx = s.tx();
    let mut touched = Vec::new();
    for inst in &instances {
        for mut d in super::domains::all(s.reader(), &inst.id)? {
            let Some(old) = d.certificate.take() else {
                continue;
            };
            let info = rustls_pemfile::certs(&mut old.cert_pem.as_bytes())
                .next()
                .and_then(|c| c.ok())
                .and_then(|c| apig_model::x509::inspect(&c).ok())
                .unwrap_or_default();
            let cert = Certificate {
                id: old.id.clone(),
                project_id: inst.project_id.clone(),
                name: old.name,
                kind: "instance".into(),
                instance_id: inst.id.clone(),
                cert_pem: old.cert_pem,
                key_pem: old.key_pem,
                trusted_root_ca: String::new(),
                info,
                create_time: old.create_time.clone(),
                update_time: old.create_time,
            };
            tracing::info!(instance = %inst.id, domain = %d.url_domain, certificate = %cert.id, "moving an embedded domain certificate to a certificate resource");
            tx.put(keys::certificate(&inst.project_id, &cert.id), &cert)?;
            d.ssl_id = Some(cert.id);
            d.verified_client_certificate_enabled = false;
            tx.put(keys::domain(&inst.id, &d.id), &d)?;
            touched.push(inst.id.as_str());
        }
    }
    if tx.is_empty() {
        return Ok(());
    }
    touched.dedup();
    s.commit(tx, &touched).await
}

/// Deleting an instance removes its `instance` certificates (its domains go with it).
pub fn delete_of_instance(
    r: &(impl Reader + ?Sized),
    tx: &mut crate::tx::Tx<'_>,
    project: &str,
    instance: &str,
) -> Res<()> {
    for c in r.scan_json::<Certificate>(&keys::certificates(project))? {
        if !c.is_global() && c.instance_id == instance {
            tx.delete(keys::certificate(project, &c.id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_model::domain::DomainCertificate;

    fn state() -> ControlState {
        ControlState::new(
            Arc::new(apig_store::MemoryStore::new()),
            "epoch".into(),
            "apigw.test".into(),
            apig_sign::token::TokenSigner::from_seed(&[7; 32]),
            crate::metrics::ControlMetrics::new().unwrap(),
        )
    }

    #[tokio::test]
    async fn embedded_domain_certificates_become_resources() {
        let s = state();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["old.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let inst = Instance {
            id: "i1".into(),
            project_id: "p1".into(),
            instance_name: "default".into(),
            description: String::new(),
            create_time: 0,
        };
        let domain = BoundDomain {
            id: "d1".into(),
            group_id: "g1".into(),
            url_domain: "old.example.com".into(),
            min_ssl_version: "TLSv1.1".into(),
            is_http_redirect_to_https: false,
            create_time: "2024-01-01T00:00:00Z".into(),
            ssl_id: None,
            verified_client_certificate_enabled: false,
            certificate: Some(DomainCertificate {
                id: "c1".into(),
                name: "old_cert".into(),
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                create_time: "2024-01-01T00:00:00Z".into(),
            }),
        };
        let mut tx = s.tx();
        crate::routes::create_instance(&mut tx, &inst).unwrap();
        tx.put(keys::domain("i1", "d1"), &domain).unwrap();
        s.commit(tx, &["i1"]).await.unwrap();
        let before = s.publisher.current("i1").unwrap();
        assert_eq!(before.certificates.len(), 1);

        migrate_embedded(&s).await.unwrap();
        let d: BoundDomain = Reader::get_json(s.reader(), &keys::domain("i1", "d1"))
            .unwrap()
            .unwrap();
        assert_eq!((d.ssl_id.as_deref(), d.certificate), (Some("c1"), None));
        let c = load(s.reader(), "p1", "c1").unwrap();
        assert_eq!(
            (c.kind.as_str(), c.instance_id.as_str()),
            ("instance", "i1")
        );
        assert_eq!(c.info.san, vec!["old.example.com"]);
        // The replicas' view is the same certificate.
        let after = s.publisher.current("i1").unwrap();
        assert_eq!(after.certificates, before.certificates);
        // Once moved, nothing is left to move.
        migrate_embedded(&s).await.unwrap();
    }
}
