"""Signature keys: the gateway signs backend requests; the backend verifies them.

The backend here is what a user would run: HMAC signatures are checked with the verifier of
`apigateway-sdk-python` (the signer APIG publishes), Basic by decoding the header, AES with the
`cryptography` package following the layout in the README. Each verifier doubles as the
shipped example of the backend side.
"""

import base64
import hmac
import http.server
import json
import re
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from apigateway_sdk_python import signer as app_signer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from huaweicloudsdkapig.v2 import model as m

from conftest import INSTANCE, until_routed

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"
HMAC_KEY, HMAC_SECRET = "backend_key_01", "backend_secret_0123456789"
AES_KEY, AES_IV = "0123456789abcdef", "fedcba9876543210"
AUTH = re.compile(r"SDK-HMAC-SHA256\s+Access=([^,]+),\s?SignedHeaders=([^,]+),\s?Signature=(\w+)")


def verify_hmac(method, path, query, headers, body, key, secret):
    """The backend-side check of an hmac signature key, with APIG's published signer."""
    match = AUTH.match(headers.get("authorization", ""))
    if not match or match.group(1) != key:
        return False
    signed = match.group(2).split(";")
    date = datetime.strptime(headers["x-sdk-date"], app_signer.BasicDateFormat).replace(tzinfo=timezone.utc)
    if abs((datetime.now(timezone.utc) - date).total_seconds()) > 15 * 60:
        return False
    url = f"http://{headers['host']}{path}" + (f"?{query}" if query else "")
    r = app_signer.HttpRequest(method, url, {h: headers[h] for h in signed}, body)
    s = app_signer.Signer()
    s.Key, s.Secret = key, secret
    return s.Verify(r, match.group(3))


def verify_aes(method, path, query, headers, key, iv):
    """The backend-side check of an aes signature key (layout: README, "Signature keys")."""
    text = "\n".join([headers["x-sdk-date"], method, path, query, headers["host"]]).encode()
    enc = Cipher(algorithms.AES(key.encode()), modes.CFB(iv.encode())).encryptor()
    want = base64.b64encode(enc.update(text) + enc.finalize()).decode()
    return hmac.compare_digest(want, headers.get("x-apig-signature-aes", ""))


class _Verifying(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        auth = headers.get("authorization", "")
        result = {
            "hmac": verify_hmac(self.command, path, query, headers, body, HMAC_KEY, HMAC_SECRET),
            "hmac_wrong_secret": verify_hmac(self.command, path, query, headers, body, HMAC_KEY, "x" * 20),
            "basic": auth.startswith("Basic ") and base64.b64decode(auth[6:]).decode(),
            "aes": "x-apig-signature-aes" in headers and verify_aes(self.command, path, query, headers, AES_KEY, AES_IV),
            "body": body,
        }
        payload = json.dumps(result).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def verifying_backend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Verifying)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _until(stack, host, path, check, method="GET", body=None, timeout=15):
    deadline = time.time() + timeout
    while True:
        r = requests.request(method, stack["gateway"] + path, headers={"Host": host}, data=body, timeout=10)
        if (r.status_code == 200 and check(r.json())) or time.time() > deadline:
            return r
        time.sleep(0.05)


def test_hmac_basic_and_aes_signatures_verified_by_the_backend(sdk, stack, verifying_backend):
    group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=f"signed_{uuid.uuid4().hex[:8]}")))
    api = sdk.create_api_v2(m.CreateApiV2Request(instance_id=INSTANCE, body=m.ApiCreate(
        name=f"signed_{uuid.uuid4().hex[:8]}", type=1, req_protocol="HTTP", req_method="ANY",
        req_uri="/signed", match_mode="SWA", auth_type="NONE", backend_type="HTTP", group_id=group.id,
        backend_api=m.BackendApiCreate(url_domain=verifying_backend, req_protocol="HTTP",
                                       req_method="ANY", req_uri="/orders", timeout=5000))))
    pub = sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
        instance_id=INSTANCE, body=m.ApiActionInfo(action="online", env_id=RELEASE, api_id=api.id)))
    host = group.sl_domain
    assert until_routed(stack, host, "/signed").status_code == 200

    key = sdk.create_signature_key_v2(m.CreateSignatureKeyV2Request(instance_id=INSTANCE, body=m.BaseSignature(
        name=f"sig_{uuid.uuid4().hex[:8]}", sign_type="hmac", sign_key=HMAC_KEY, sign_secret=HMAC_SECRET)))
    assert key.sign_secret == HMAC_SECRET  # shown in the create answer...
    listed = sdk.list_signature_keys_v2(m.ListSignatureKeysV2Request(instance_id=INSTANCE, name=key.name))
    assert listed.signs[0].sign_secret == "******" and listed.signs[0].bind_num == 0  # ...masked after

    bound = sdk.associate_signature_key_v2(m.AssociateSignatureKeyV2Request(
        instance_id=INSTANCE, body=m.SignApiBinding(sign_id=key.id, publish_ids=[pub.publish_id])))
    assert bound.bindings[0].sign_id == key.id and bound.bindings[0].api_id == api.id
    apis = sdk.list_apis_binded_to_signature_key_v2(m.ListApisBindedToSignatureKeyV2Request(
        instance_id=INSTANCE, sign_id=key.id))
    assert [b.api_id for b in apis.bindings] == [api.id]

    # GET (empty body) and POST with a body and a query: both verified by APIG's own signer.
    r = _until(stack, host, "/signed/x?b=2&a=1", lambda j: j["hmac"])
    assert r.json()["hmac"] is True and r.json()["hmac_wrong_secret"] is False, r.text
    r = _until(stack, host, "/signed/a%20b", lambda j: j["hmac"], method="POST", body='{"n": 1}')
    assert r.json() == {**r.json(), "hmac": True, "body": '{"n": 1}'}, r.text

    # The same key turned into Basic, then AES: bound APIs follow without rebinding.
    sdk.update_signature_key_v2(m.UpdateSignatureKeyV2Request(instance_id=INSTANCE, sign_id=key.id,
        body=m.BaseSignature(name=key.name, sign_type="basic", sign_key="gateway", sign_secret="basic-pass-1")))
    r = _until(stack, host, "/signed", lambda j: j["basic"])
    assert r.json()["basic"] == "gateway:basic-pass-1"
    sdk.update_signature_key_v2(m.UpdateSignatureKeyV2Request(instance_id=INSTANCE, sign_id=key.id,
        body=m.BaseSignature(name=key.name, sign_type="aes", sign_algorithm="aes-128-cfb",
                             sign_key=AES_KEY, sign_secret=AES_IV)))
    r = _until(stack, host, "/signed/p?q=1", lambda j: j["aes"])
    assert r.json()["aes"] is True, r.text

    # Unbinding stops the signing.
    sdk.disassociate_signature_key_v2(m.DisassociateSignatureKeyV2Request(
        instance_id=INSTANCE, sign_bindings_id=bound.bindings[0].id))
    r = _until(stack, host, "/signed", lambda j: not j["aes"])
    assert r.json()["aes"] is False and r.json()["hmac"] is False
    sdk.delete_signature_key_v2(m.DeleteSignatureKeyV2Request(instance_id=INSTANCE, sign_id=key.id))
