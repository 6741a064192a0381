"""APP and IAM authentication at the gateway, exercised with the official signers: the app
signer of `apigateway-sdk-python` (SIG-APP) and the management SDK's signer (SIG-CORE), against
apps, authorizations and ACLs managed through the official `huaweicloudsdkapig` SDK."""

import datetime
import time
import uuid

import pytest
import requests
from apigateway_sdk_python import signer as app_signer
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from conftest import INSTANCE, until_routed

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"


def _name(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def world(sdk, stack, backend):
    """A group with two APP APIs (one POST), an authorized app and an unauthorized one."""
    group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=_name("auth"))))

    def api(method, uri, **extra):
        body = m.ApiCreate(
            name=_name("api"), type=1, req_protocol="HTTP", req_method=method, req_uri=uri,
            auth_type="APP", backend_type="HTTP", group_id=group.id,
            backend_api=m.BackendApiCreate(url_domain=backend, req_protocol="HTTP", req_method=method,
                                           req_uri=uri, timeout=5000),
            backend_params=[m.BackendParamBase(origin="SYSTEM", name="X-App-Id", location="HEADER",
                                               value="$context.appId")],
            **extra,
        )
        created = sdk.create_api_v2(m.CreateApiV2Request(instance_id=INSTANCE, body=body))
        sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
            instance_id=INSTANCE, body=m.ApiActionInfo(action="online", env_id=RELEASE, api_id=created.id)))
        return created

    get_api = api("GET", "/secure", auth_opt=m.AuthOpt(app_code_auth_type="HEADER"))
    post_api = api("POST", "/secure/post")
    other_api = api("GET", "/other")
    app = sdk.create_an_app_v2(m.CreateAnAppV2Request(instance_id=INSTANCE, body=m.AppCreate(name=_name("app"))))
    stranger = sdk.create_an_app_v2(m.CreateAnAppV2Request(instance_id=INSTANCE, body=m.AppCreate(name=_name("app"))))
    auths = sdk.create_authorizing_apps_v2(m.CreateAuthorizingAppsV2Request(
        instance_id=INSTANCE,
        body=m.ApiAuthCreate(env_id=RELEASE, app_ids=[app.id], api_ids=[get_api.id, post_api.id])))
    assert len(auths.auths) == 2
    # Wait until the authorization reached the gateway.
    deadline = time.time() + 15
    while True:
        r = send(stack, group.sl_domain, app.app_key, app.app_secret, "GET", "/secure")
        if r.status_code == 200 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 200, r.text
    return {"group": group, "get": get_api, "post": post_api, "other": other_api, "app": app, "stranger": stranger}


def send(stack, host, key, secret, method, path, body="", headers=None, date=None, mutate=None):
    """Signs with the official app signer and sends through the gateway with Host: host."""
    h = {"host": host}
    h.update(headers or {})
    if date is not None:
        h["X-Sdk-Date"] = date.strftime("%Y%m%dT%H%M%SZ")
    req = app_signer.HttpRequest(method, f"http://{host}{path}", h, body)
    s = app_signer.Signer()
    s.Key, s.Secret = key, secret
    s.Sign(req)
    if mutate:
        mutate(req)
    return requests.request(req.method, stack["gateway"] + req.uri, headers=req.headers, data=req.body, timeout=10)


def test_valid_signed_calls(world, stack):
    app, host = world["app"], world["group"].sl_domain
    r = send(stack, host, app.app_key, app.app_secret, "GET", "/secure?b=2&a=1&a=0&x=%7E%20&q=a+b&u=%E4%B8%AD")
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["headers"]["x-app-id"] == app.id
    for leaked in ("authorization", "x-sdk-date"):
        assert leaked not in seen["headers"], seen["headers"]
    r = send(stack, host, app.app_key, app.app_secret, "POST", "/secure/post", body='{"k": "v"}',
             headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["body"] == '{"k": "v"}'
    r = send(stack, host, app.app_key, app.app_secret, "POST", "/secure/post", body="plain text body",
             headers={"Content-Type": "text/plain", "x-sdk-content-sha256": "UNSIGNED-PAYLOAD"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("what", ["method", "query", "body", "header"])
def test_tampered_requests_are_rejected(world, stack, what):
    app, host = world["app"], world["group"].sl_domain
    path = "/secure/post?a=1"

    def mutate(req):
        if what == "method":
            req.method = "PUT"
        elif what == "path":
            req.uri = req.uri.replace("/secure/post", "/secure/post/")
        elif what == "query":
            req.uri = req.uri.replace("a=1", "a=2")
        elif what == "body":
            req.body = b'{"k": "tampered"}'
        elif what == "header":
            req.headers["X-Custom"] = "changed"

    r = send(stack, host, app.app_key, app.app_secret, "POST", path, body='{"k": "v"}',
             headers={"Content-Type": "application/json", "X-Custom": "original"}, mutate=mutate)
    assert r.status_code in (401, 404), r.text
    if what != "method":
        assert r.status_code == 401 and r.json()["error_code"] == "APIG.0303", r.text


def test_wrong_secret_unknown_key_and_dates(world, stack):
    app, host = world["app"], world["group"].sl_domain
    wrong = send(stack, host, app.app_key, "not-the-secret-123", "GET", "/secure")
    unknown = send(stack, host, "no-such-app-key-0001", app.app_secret, "GET", "/secure")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error_code"] == unknown.json()["error_code"] == "APIG.0303"
    assert wrong.json()["error_msg"] == unknown.json()["error_msg"], "an unknown key looks like a bad signature"
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    for skew in (-16, 16):
        r = send(stack, host, app.app_key, app.app_secret, "GET", "/secure", date=now + datetime.timedelta(minutes=skew))
        assert r.status_code == 401 and "expired" in r.json()["error_msg"], r.text
    r = send(stack, host, app.app_key, app.app_secret, "GET", "/secure", date=now - datetime.timedelta(minutes=14))
    assert r.status_code == 200, r.text


def test_signed_headers_must_cover_host_and_date(world, stack):
    app, host = world["app"], world["group"].sl_domain

    def drop(name):
        def mutate(req):
            auth = req.headers["Authorization"]
            signed = auth.split("SignedHeaders=")[1].split(",")[0]
            kept = ";".join(h for h in signed.split(";") if h != name)
            req.headers["Authorization"] = auth.replace(signed, kept)
        return mutate

    for name in ("host", "x-sdk-date"):
        r = send(stack, host, app.app_key, app.app_secret, "GET", "/secure", mutate=drop(name))
        assert r.status_code == 401, r.text


def test_replay_to_another_api_and_unauthorized_app(world, stack):
    app, host = world["app"], world["group"].sl_domain

    def to_other(req):
        req.uri = req.uri.replace("/secure", "/other")

    r = send(stack, host, app.app_key, app.app_secret, "GET", "/secure", mutate=to_other)
    assert r.status_code == 401, r.text
    # A correct signature for an API the app is not authorized for.
    r = send(stack, host, app.app_key, app.app_secret, "GET", "/other")
    assert r.status_code == 403 and r.json()["error_code"] == "APIG.0304", r.text
    stranger = world["stranger"]
    r = send(stack, host, stranger.app_key, stranger.app_secret, "GET", "/secure")
    assert r.status_code == 403 and r.json()["error_code"] == "APIG.0304", r.text


def test_app_code(world, sdk, stack):
    app, host = world["app"], world["group"].sl_domain
    code = sdk.create_app_code_auto_v2(m.CreateAppCodeAutoV2Request(instance_id=INSTANCE, app_id=app.id))
    assert len(code.app_code) >= 64
    codes = sdk.list_app_codes_v2(m.ListAppCodesV2Request(instance_id=INSTANCE, app_id=app.id))
    assert codes.total == 1
    r = until_routed(stack, host, "/secure", headers={"X-Apig-AppCode": code.app_code})
    deadline = time.time() + 15
    while r.status_code != 200 and time.time() < deadline:
        time.sleep(0.05)
        r = requests.get(stack["gateway"] + "/secure", headers={"Host": host, "X-Apig-AppCode": code.app_code}, timeout=10)
    assert r.status_code == 200, r.text
    assert "x-apig-appcode" not in r.json()["headers"]
    r = requests.get(stack["gateway"] + "/secure", headers={"Host": host, "X-Apig-AppCode": "x" * 64}, timeout=10)
    assert r.status_code == 401
    # /secure/post does not enable AppCode authentication.
    r = requests.post(stack["gateway"] + "/secure/post", headers={"Host": host, "X-Apig-AppCode": code.app_code}, timeout=10)
    assert r.status_code == 401


def test_app_secret_never_shown_again_and_reset(world, sdk, stack):
    app, host = world["app"], world["group"].sl_domain
    shown = sdk.show_details_of_app_v2(m.ShowDetailsOfAppV2Request(instance_id=INSTANCE, app_id=app.id))
    assert shown.app_secret is None and shown.app_key == app.app_key
    fresh = sdk.create_an_app_v2(m.CreateAnAppV2Request(instance_id=INSTANCE, body=m.AppCreate(name=_name("rst"))))
    sdk.create_authorizing_apps_v2(m.CreateAuthorizingAppsV2Request(
        instance_id=INSTANCE, body=m.ApiAuthCreate(env_id=RELEASE, app_ids=[fresh.id], api_ids=[world["get"].id])))
    deadline = time.time() + 15
    while send(stack, host, fresh.app_key, fresh.app_secret, "GET", "/secure").status_code != 200:
        assert time.time() < deadline
        time.sleep(0.05)
    reset = sdk.resetting_app_secret_v2(m.ResettingAppSecretV2Request(
        instance_id=INSTANCE, app_id=fresh.id, body=m.AppResetCreate()))
    assert reset.app_secret and reset.app_secret != fresh.app_secret
    deadline = time.time() + 15
    while send(stack, host, fresh.app_key, fresh.app_secret, "GET", "/secure").status_code != 401:
        assert time.time() < deadline, "the old secret still works"
        time.sleep(0.05)
    assert send(stack, host, fresh.app_key, reset.app_secret, "GET", "/secure").status_code == 200
    with pytest.raises(ClientRequestException) as e:
        sdk.create_an_app_v2(m.CreateAnAppV2Request(instance_id=INSTANCE, body=m.AppCreate(name=fresh.name)))
    assert e.value.error_code == "APIG.3203"


def test_app_acl(world, sdk, stack):
    app, host = world["app"], world["group"].sl_domain
    sdk.update_app_acl(m.UpdateAppAclRequest(instance_id=INSTANCE, app_id=app.id, body=m.AppAclCreate(
        app_acl_type="DENY", app_acl_values=["127.0.0.0/8"])))
    deadline = time.time() + 15
    while True:
        r = send(stack, host, app.app_key, app.app_secret, "GET", "/secure")
        if r.status_code == 403 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 403 and r.json()["error_code"] == "APIG.0405", r.text
    sdk.update_app_acl(m.UpdateAppAclRequest(instance_id=INSTANCE, app_id=app.id, body=m.AppAclCreate(
        app_acl_type="PERMIT", app_acl_values=["10.0.0.1", "127.0.0.1-127.0.0.9"])))
    acl = sdk.show_details_of_app_acl(m.ShowDetailsOfAppAclRequest(instance_id=INSTANCE, app_id=app.id))
    assert acl.app_acl_type == "PERMIT"
    deadline = time.time() + 15
    while send(stack, host, app.app_key, app.app_secret, "GET", "/secure").status_code != 200:
        assert time.time() < deadline
        time.sleep(0.05)
    with pytest.raises(ClientRequestException) as e:
        sdk.update_app_acl(m.UpdateAppAclRequest(instance_id=INSTANCE, app_id=app.id, body=m.AppAclCreate(
            app_acl_type="PERMIT", app_acl_values=["not-an-ip"])))
    assert e.value.status_code == 400
    sdk.delete_app_acl(m.DeleteAppAclRequest(instance_id=INSTANCE, app_id=app.id))


def test_authorization_listings(world, sdk):
    app = world["app"]
    bound = sdk.list_apis_binded_to_app_v2(m.ListApisBindedToAppV2Request(instance_id=INSTANCE, app_id=app.id))
    assert {a.api_id for a in bound.auths} >= {world["get"].id, world["post"].id}
    apps = sdk.list_apps_binded_to_api_v2(m.ListAppsBindedToApiV2Request(instance_id=INSTANCE, api_id=world["get"].id))
    assert app.id in {a.app_id for a in apps.auths}
    unbound = sdk.list_apis_unbinded_to_app_v2(m.ListApisUnbindedToAppV2Request(
        instance_id=INSTANCE, app_id=app.id, env_id=RELEASE))
    assert world["other"].id in {a.id for a in unbound.apis}
    assert world["get"].id not in {a.id for a in unbound.apis}
