"""IAM authentication at the gateway with the management SDK's own signer (SIG-CORE): a project
credential signs gateway calls directly, or obtains a token from the control plane."""

import time
import uuid
from urllib.parse import urlparse

import requests
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from conftest import AK, INSTANCE, PROJECT, SK

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"


def core_signed(base, host, method, path, query=None, body=b"", headers=None, ak=AK, sk=SK):
    req = SdkRequest(method=method, schema="http", host=host, resource_path=path, uri=path,
                     query_params=query or [], header_params=dict(headers or {}), body=body)
    Signer(BasicCredentials(ak, sk, PROJECT)).sign(req)
    return requests.request(method, base + req.uri, headers=req.header_params, data=req.body, timeout=10)


def test_iam_signature_and_token(sdk, stack, backend):
    group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=f"iam_{uuid.uuid4().hex[:8]}")))
    api = sdk.create_api_v2(m.CreateApiV2Request(instance_id=INSTANCE, body=m.ApiCreate(
        name=f"iam_{uuid.uuid4().hex[:8]}", type=1, req_protocol="HTTP", req_method="POST", req_uri="/iam",
        auth_type="IAM", backend_type="HTTP", group_id=group.id,
        backend_api=m.BackendApiCreate(url_domain=backend, req_protocol="HTTP", req_method="POST",
                                       req_uri="/iam", timeout=5000))))
    sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
        instance_id=INSTANCE, body=m.ApiActionInfo(action="online", env_id=RELEASE, api_id=api.id)))
    host = group.sl_domain

    deadline = time.time() + 15
    while True:
        r = core_signed(stack["gateway"], host, "POST", "/iam", query=[("a", "1"), ("a", "0"), ("b", "x y")],
                        body=b'{"x": 1}', headers={"Content-Type": "application/json"})
        if r.status_code == 200 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 200, r.text
    assert "authorization" not in r.json()["headers"]
    # SIG-CORE marks non-JSON bodies UNSIGNED-PAYLOAD.
    r = core_signed(stack["gateway"], host, "POST", "/iam", body=b"raw text", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    r = core_signed(stack["gateway"], host, "POST", "/iam", body=b"{}", headers={"Content-Type": "application/json"},
                    sk="a-wrong-secret-key-000000")
    assert r.status_code == 401 and r.json()["error_code"] == "APIG.0301", r.text

    # A token for the same credential, from the control plane, signed with SIG-CORE too.
    mgmt = stack["mgmt"]
    t = core_signed(mgmt, urlparse(mgmt).netloc, "POST", f"/v2/{PROJECT}/apigw/tokens",
                    body=b'{"ttl_seconds": 300}', headers={"Content-Type": "application/json"})
    assert t.status_code == 201, t.text
    token = t.headers["X-Subject-Token"]
    assert token == t.json()["token"]
    r = requests.post(stack["gateway"] + "/iam", headers={"Host": host, "X-Auth-Token": token}, timeout=10)
    assert r.status_code == 200, r.text
    assert "x-auth-token" not in r.json()["headers"]
    head, claims, sig = token.split(".")
    forged = ".".join([head, claims[:-2] + ("AA" if claims[-2:] != "AA" else "BB"), sig])
    r = requests.post(stack["gateway"] + "/iam", headers={"Host": host, "X-Auth-Token": forged}, timeout=10)
    assert r.status_code == 401 and r.json()["error_code"] == "APIG.0301", r.text
