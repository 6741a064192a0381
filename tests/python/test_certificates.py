"""SSL certificates with the official SDK: create, show, list, update, delete, attach to and
detach from bound domains from both sides, and the domains a certificate serves."""

import datetime
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from conftest import INSTANCE


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca(name):
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _server(ca, names):
    ca_cert, ca_key = ca
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SDK Test Org"),
        ]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(13010)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_cert(cert), _pem_key(key)


def _name(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_certificates_and_their_domains(sdk):
    ca = _ca("SDK Test CA")
    suffix = uuid.uuid4().hex[:8]
    domain = f"api.c{suffix}.example.com"
    cert_pem, key_pem = _server(ca, [domain, f"*.c{suffix}.example.com"])

    created = sdk.create_certificate_v2(m.CreateCertificateV2Request(body=m.CertificateForm(
        name=_name("sdk_cert"), cert_content=cert_pem, private_key=key_pem, type="global")))
    assert len(created.id) == 32
    assert created.common_name == domain
    assert created.san == [domain, f"*.c{suffix}.example.com"]
    assert created.signature_algorithm == "ECDSA-SHA256" and created.algorithm_type == "ECC"
    assert created.serial_number == "13010" and created.organization == ["SDK Test Org"]
    assert created.issuer == ["SDK Test CA"] and created.is_has_trusted_root_ca is False
    assert created.type == "global" and created.instance_id == "common"
    assert b"PRIVATE KEY" not in (created.raw_content or b"")

    shown = sdk.show_details_of_certificate_v2(m.ShowDetailsOfCertificateV2Request(certificate_id=created.id))
    assert shown.name == created.name and shown.not_after == created.not_after
    listed = sdk.list_certificates_v2(m.ListCertificatesV2Request(name=created.name, instance_id=INSTANCE))
    assert listed.total == 1 and listed.certs[0].id == created.id
    assert b"PRIVATE KEY" not in (listed.raw_content or b"")

    # Bad input answers APIG's codes and creates nothing.
    with pytest.raises(ClientRequestException) as e:
        sdk.create_certificate_v2(m.CreateCertificateV2Request(body=m.CertificateForm(
            name=_name("bad_cert"), cert_content="not a certificate", private_key=key_pem)))
    assert e.value.status_code == 400 and e.value.error_code == "APIG.2106"
    _, other_key = _server(ca, [domain])
    with pytest.raises(ClientRequestException) as e:
        sdk.create_certificate_v2(m.CreateCertificateV2Request(body=m.CertificateForm(
            name=_name("bad_cert"), cert_content=cert_pem, private_key=other_key)))
    assert e.value.status_code == 400 and e.value.error_code == "APIG.2101"
    listed = sdk.list_certificates_v2(m.ListCertificatesV2Request(name="bad_cert", instance_id=INSTANCE))
    assert listed.total == 0

    group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=_name("certgrp"))))
    bound = sdk.associate_domain_v2(m.AssociateDomainV2Request(
        instance_id=INSTANCE, group_id=group.id, body=m.UrlDomainCreate(url_domain=domain)))

    # Attach from the certificate's side; the domain lists it.
    sdk.batch_associate_domains_v2(m.BatchAssociateDomainsV2Request(
        certificate_id=created.id, body=m.AttachOrDetachDomainsReqBody(domains=[
            m.AttachOrDetachDomainInfo(domain=domain, instance_ids=[INSTANCE])])))
    attached = sdk.list_attached_domains_v2(m.ListAttachedDomainsV2Request(certificate_id=created.id))
    assert attached.total == 1
    d = attached.bound_domains[0]
    assert (d.id, d.url_domain, d.ssl_id, d.ssl_name) == (bound.id, domain, created.id, created.name)
    assert (d.api_group_id, d.instance_id, d.verified_client_certificate_enabled) == (group.id, INSTANCE, False)
    grp = sdk.show_details_of_api_group_v2(m.ShowDetailsOfApiGroupV2Request(instance_id=INSTANCE, group_id=group.id))
    assert grp.url_domains[0].ssl_id == created.id

    # Attached: not deletable.
    with pytest.raises(ClientRequestException) as e:
        sdk.delete_certificate_v2(m.DeleteCertificateV2Request(certificate_id=created.id))
    assert e.value.status_code == 400

    # A certificate with a CA, attached from the domain's side, verifies client certificates.
    with_ca = sdk.create_certificate_v2(m.CreateCertificateV2Request(body=m.CertificateForm(
        name=_name("mtls_cert"), cert_content=cert_pem, private_key=key_pem, type="instance",
        instance_id=INSTANCE, trusted_root_ca=_pem_cert(ca[0]))))
    assert with_ca.is_has_trusted_root_ca is True and with_ca.instance_id == INSTANCE
    with pytest.raises(ClientRequestException) as e:
        sdk.batch_associate_certs_v2(m.BatchAssociateCertsV2Request(
            instance_id=INSTANCE, group_id=group.id, domain_id=bound.id,
            body=m.AttachOrDetachCertsReqBody(certificate_ids=[with_ca.id])))
    assert e.value.status_code == 400 and e.value.error_code == "APIG.2051"
    sdk.batch_disassociate_domains_v2(m.BatchDisassociateDomainsV2Request(
        certificate_id=created.id, body=m.AttachOrDetachDomainsReqBody(domains=[
            m.AttachOrDetachDomainInfo(domain=domain)])))
    sdk.batch_associate_certs_v2(m.BatchAssociateCertsV2Request(
        instance_id=INSTANCE, group_id=group.id, domain_id=bound.id,
        body=m.AttachOrDetachCertsReqBody(certificate_ids=[with_ca.id])))
    attached = sdk.list_attached_domains_v2(m.ListAttachedDomainsV2Request(certificate_id=with_ca.id))
    assert attached.total == 1 and attached.bound_domains[0].verified_client_certificate_enabled is True
    updated = sdk.update_domain_v2(m.UpdateDomainV2Request(
        instance_id=INSTANCE, group_id=group.id, domain_id=bound.id,
        body=m.UrlDomainModify(min_ssl_version="TLSv1.2", verified_client_certificate_enabled=False)))
    assert updated.verified_client_certificate_enabled is False and updated.min_ssl_version == "TLSv1.2"

    # Renewal keeps the id and the domain.
    renewed_pem, renewed_key = _server(ca, [domain])
    renewed = sdk.update_certificate_v2(m.UpdateCertificateV2Request(certificate_id=with_ca.id, body=m.CertificateForm(
        name=with_ca.name, cert_content=renewed_pem, private_key=renewed_key, type="instance",
        instance_id=INSTANCE, trusted_root_ca=_pem_cert(ca[0]))))
    assert renewed.id == with_ca.id and renewed.san == [domain]
    attached = sdk.list_attached_domains_v2(m.ListAttachedDomainsV2Request(certificate_id=with_ca.id))
    assert attached.total == 1

    sdk.batch_disassociate_certs_v2(m.BatchDisassociateCertsV2Request(
        instance_id=INSTANCE, group_id=group.id, domain_id=bound.id,
        body=m.AttachOrDetachCertsReqBody(certificate_ids=[with_ca.id])))
    with pytest.raises(ClientRequestException) as e:
        sdk.batch_disassociate_certs_v2(m.BatchDisassociateCertsV2Request(
            instance_id=INSTANCE, group_id=group.id, domain_id=bound.id,
            body=m.AttachOrDetachCertsReqBody(certificate_ids=[with_ca.id])))
    assert e.value.status_code == 404 and e.value.error_code == "APIG.3097"

    for c in (created, with_ca):
        sdk.delete_certificate_v2(m.DeleteCertificateV2Request(certificate_id=c.id))
        with pytest.raises(ClientRequestException) as e:
            sdk.show_details_of_certificate_v2(m.ShowDetailsOfCertificateV2Request(certificate_id=c.id))
        assert e.value.status_code == 404 and e.value.error_code == "APIG.3021"
