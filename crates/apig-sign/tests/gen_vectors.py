#!/usr/bin/env python3
"""Generate tests/vectors.json by running the official Huawei Cloud Python signers.

Run from the workspace root with the venv that has both SDKs installed:

    /work/venv/bin/python crates/apig-sign/tests/gen_vectors.py

Signers exercised:
  SIG-APP  apigateway_sdk_python.signer      (APIG app authentication SDK)
  SIG-CORE huaweicloudsdkcore.signer.signer  (management SDK), driven through a real
           ApigClient so that Host, path-parameter quoting, query serialisation, the
           User-Agent / X-Project-Id headers and the UNSIGNED-PAYLOAD rule are exactly what
           the SDK puts on the wire.

For every vector we record the request as it goes on the wire (computed with `requests`'
own URL preparation, so e.g. raw spaces or unicode in a URL become %-escapes exactly as the
client would send them), the canonical request and string to sign the signer computed
internally, and the resulting Authorization header. Both signers rewrite the query into its
canonical form before sending; `query_original` keeps the query as the caller wrote it so the
Rust tests can check that both spellings verify.
"""

import hashlib
import json
import os
import sys

import requests

import apigateway_sdk_python.signer as app_signer
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.signer import signer as core_signer
from huaweicloudsdkapig.v2 import ApigClient

DATE = "20240101T000000Z"
DATE_UNIX = 1704067200
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")

captured = {}


# ---- capture hooks ---------------------------------------------------------------------
_orig_app_cr = app_signer.CanonicalRequest
_orig_app_sts = app_signer.StringToSign


def _app_cr(r, signed_headers):
    out = _orig_app_cr(r, signed_headers)
    captured["canonical_request"] = out
    return out


def _app_sts(canonical_request, t):
    out = _orig_app_sts(canonical_request, t)
    captured["string_to_sign"] = out
    return out


app_signer.CanonicalRequest = _app_cr
app_signer.StringToSign = _app_sts

_orig_core_sts = core_signer.Signer._process_string_to_sign


def _core_sts(self, canonical_request, time):
    captured["canonical_request"] = canonical_request
    out = _orig_core_sts(self, canonical_request, time)
    captured["string_to_sign"] = out
    return out


core_signer.Signer._process_string_to_sign = _core_sts


def split_wire(url):
    """Path and query exactly as `requests` would put them in the request line."""
    path_url = requests.Request("GET", url).prepare().path_url
    if "?" in path_url:
        path, query = path_url.split("?", 1)
    else:
        path, query = path_url, None
    return path, query


def to_text(body):
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body.decode("utf-8")
    return body


# ---- SIG-APP ---------------------------------------------------------------------------
def app_vector(name, method, url, headers, body="", key="AK123", secret="SK456", note=""):
    captured.clear()
    given = dict(headers)
    given.setdefault("X-Sdk-Date", DATE)
    sig = app_signer.Signer()
    sig.Key = key
    sig.Secret = secret
    r = app_signer.HttpRequest(method, url, dict(given), body)
    sig.Sign(r)
    # r.uri now carries the canonical query; the caller's URL had the original one.
    wire_url = r.scheme + "://" + r.host + r.uri
    path, query = split_wire(wire_url)
    _, query_original = split_wire(url)
    # SIG-APP rewrites header values stripped (and latin-1 mangled); keep what the caller
    # gave so the verifier's trimming is exercised too.
    sent_headers = [[k, given.get(k, r.headers[k])] for k in r.headers if k.lower() != "content-length"]
    return {
        "name": name,
        "signer": "SIG-APP",
        "note": note,
        "key": key,
        "secret": secret,
        "method": method,
        "path": path,
        "query": query,
        "query_original": query_original,
        "headers": sent_headers,
        "body": to_text(body),
        "sdk_date": DATE,
        "now": DATE_UNIX,
        "canonical_request": captured["canonical_request"],
        "string_to_sign": captured["string_to_sign"],
        "authorization": r.headers["Authorization"],
        "signature": r.headers["Authorization"].rsplit("Signature=", 1)[1],
        "payload_hash": captured["canonical_request"].rsplit("\n", 1)[1],
    }


# ---- SIG-CORE --------------------------------------------------------------------------
CORE_AK = "CORE_AK_1"
CORE_SK = "core-secret/+=xyz"
CORE_ENDPOINT = "http://127.0.0.1:9080"


def core_client():
    cfg = HttpConfig.get_default_config()
    cfg.user_agent = "apig-sign-vectors"
    cfg.retry_times = 0
    creds = BasicCredentials(CORE_AK, CORE_SK, "proj1")
    return (ApigClient.new_builder().with_credentials(creds).with_endpoint(CORE_ENDPOINT)
            .with_http_config(cfg).build())


def core_vector(name, method, resource_path, path_params=None, query_params=None,
                header_params=None, body=None, note=""):
    captured.clear()
    client = core_client()
    headers = {"X-Sdk-Date": DATE}
    headers.update(header_params or {})
    given = dict(headers)
    fut = client.build_future_request(method, resource_path, dict(path_params or {}),
                                      list(query_params or []), headers, body, None, None,
                                      None, {}, None)
    req = fut.result()
    path, query = split_wire(req.url)
    sent_headers = [[k, given.get(k, v)] for k, v in req.header_params.items()]
    auth = req.header_params["Authorization"]
    return {
        "name": name,
        "signer": "SIG-CORE",
        "note": note,
        "key": CORE_AK,
        "secret": CORE_SK,
        "method": method,
        "path": path,
        "query": query,
        "query_original": query,
        "headers": sent_headers,
        "body": to_text(req.body),
        "sdk_date": DATE,
        "now": DATE_UNIX,
        "canonical_request": captured["canonical_request"],
        "string_to_sign": captured["string_to_sign"],
        "authorization": auth,
        "signature": auth.rsplit("Signature=", 1)[1],
        "payload_hash": captured["canonical_request"].rsplit("\n", 1)[1],
    }


def main():
    v = []
    v.append(app_vector(
        "spec_1_1", "GET", "https://api.example.com/v1/a b/c?b=2&a=1&a=0&x=%7E%20",
        {"Content-Type": "application/json", "host": "api.example.com"},
        note="apig-semantics.md section 1.1 test vector"))
    v.append(app_vector(
        "repeated_unordered_query", "GET",
        "http://api.example.com/list?z=3&b=2&a=2&a=1&b=1&A=0&a=10",
        {"host": "api.example.com"}))
    v.append(app_vector(
        "pct_and_unicode_path", "GET",
        "http://api.example.com/v1/%E4%BD%A0%E5%A5%BD/caf%C3%A9/%61%62?name=%E4%B8%AD%E6%96%87&e=caf%C3%A9",
        {"host": "api.example.com"}))
    v.append(app_vector(
        "raw_unicode_url", "GET", "http://api.example.com/数据/ü?k=值&ü=ö",
        {"host": "api.example.com"}, note="requests escapes raw unicode on the wire"))
    v.append(app_vector(
        "spaces_tilde_plus_reserved", "GET",
        "http://api.example.com/p/a%20b~c+d/%21%24%26%27%28%29%2A%2C%3B%3D%3A%40?q=a+b&s=a%20b&t=~x"
        "&r=%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%23%5B%5D&plus%2Bkey=1",
        {"host": "api.example.com"},
        note="'+' is literal (urllib unquote, not unquote_plus): a+b signs as a%2Bb"))
    v.append(app_vector(
        "encoded_slash_in_path", "GET", "http://api.example.com/v1/a%2Fb/c",
        {"host": "api.example.com"}, note="%2F is decoded before splitting: signs as /v1/a/b/c/"))
    v.append(app_vector(
        "empty_query", "GET", "http://api.example.com/path?",
        {"host": "api.example.com"}))
    v.append(app_vector(
        "key_without_equals", "GET", "http://api.example.com/p?flag&x=1&empty=&&=novalue",
        {"host": "api.example.com"}, note="flag -> flag=, empty key dropped"))
    v.append(app_vector(
        "trailing_slash_present", "GET", "http://api.example.com/v1/items/",
        {"host": "api.example.com"}))
    v.append(app_vector(
        "trailing_slash_absent", "GET", "http://api.example.com/v1/items",
        {"host": "api.example.com"}))
    v.append(app_vector(
        "root_without_path", "GET", "http://api.example.com",
        {"host": "api.example.com"}))
    v.append(app_vector(
        "post_json_body", "POST", "http://api.example.com/v1/orders?dry_run=true",
        {"host": "api.example.com", "Content-Type": "application/json"},
        body='{"a": 1, "b": "x y", "c": "\u00e9"}'))
    v.append(app_vector(
        "unsigned_payload_with_body", "POST", "https://api.example.com/",
        {"host": "api.example.com", "x-sdk-content-sha256": "UNSIGNED-PAYLOAD"}, body="abc",
        note="apig-semantics.md section 1.1 UNSIGNED-PAYLOAD example"))
    v.append(app_vector(
        "unsigned_payload_empty_body", "GET", "http://api.example.com/v1/x",
        {"host": "api.example.com", "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"},
        note="SIG-APP uses the literal even for an empty body"))
    v.append(app_vector(
        "literal_body_hash", "PUT", "http://api.example.com/v1/blob",
        {"host": "api.example.com", "Content-Type": "application/octet-stream",
         "x-sdk-content-sha256": hashlib.sha256(b"hello").hexdigest()}, body="hello"))
    v.append(app_vector(
        "headers_with_spaces", "GET", "http://api.example.com/h",
        {"host": "  api.example.com ", "X-Custom": "  hello   world  ", "Content-Type": "\ttext/plain "},
        note="values trimmed, inner whitespace kept"))
    v.append(app_vector(
        "host_with_port", "GET", "http://127.0.0.1:9080/v1/ping?x=1", {},
        note="SIG-APP fills host from the URL netloc, port included"))
    v.append(app_vector(
        "underscore_header_app", "GET", "http://api.example.com/u",
        {"host": "api.example.com", "X_Custom_Id": "abc"},
        note="SIG-APP signs headers containing '_' (SIG-CORE skips them)"))
    v.append(app_vector(
        "non_ascii_header_value", "GET", "http://api.example.com/n",
        {"host": "api.example.com", "X-Name": "Zo\u00eb"}))
    v.append(app_vector(
        "lowercase_method", "patch", "http://api.example.com/m",
        {"host": "api.example.com"}, body="x"))
    v.append(app_vector(
        "other_credentials", "DELETE", "http://api.example.com/d?id=7",
        {"host": "api.example.com"}, key="app-key-0123456789abcdef",
        secret="s3cr3t!@#$%-value_with_longer_length_than_sixty_four_bytes_0123456789abcdef"))

    v.append(core_vector(
        "core_get_query", "GET", "/v2/{project_id}/apigw/instances/{instance_id}/apis",
        path_params={"instance_id": "inst 1/x"},
        query_params=[("name", "a+b c~d"), ("req_uri", "/x?y"), ("tags", "b"), ("tags", "a"),
                      ("unicode", "\u4e2d\u6587"), ("flag", True), ("empty", "")],
        note="Host 127.0.0.1:9080 (netloc, port included); path param '/' sent as %2F"))
    v.append(core_vector(
        "core_post_json", "POST", "/v2/{project_id}/apigw/instances/{instance_id}/api-groups",
        path_params={"instance_id": "i1"}, body={"name": "grp", "remark": "r\u00e9"}))
    v.append(core_vector(
        "core_post_text", "POST", "/v2/{project_id}/apigw/instances/{instance_id}/raw",
        path_params={"instance_id": "i1"}, header_params={"Content-Type": "text/plain"},
        body="hello raw body", note="non-JSON Content-Type: SIG-CORE adds UNSIGNED-PAYLOAD"))
    v.append(core_vector(
        "core_empty_body_unsigned", "DELETE", "/v2/{project_id}/apigw/instances/{instance_id}/raw",
        path_params={"instance_id": "i1"}, header_params={"Content-Type": "text/plain"},
        note="UNSIGNED-PAYLOAD header signed but empty body: SIG-CORE hashes the empty body"))
    v.append(core_vector(
        "core_underscore_header", "GET", "/v2/{project_id}/apigw/instances/{instance_id}/apis",
        path_params={"instance_id": "i1"},
        header_params={"X_Custom_Id": "abc", "X-Trace": "  spaced value  "},
        note="header with '_' is sent but not signed; value trimmed"))

    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(v, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote %d vectors to %s" % (len(v), OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
