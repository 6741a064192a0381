"""Custom authorizers managed with the official SDK; the gateway enforces them."""

import http.server
import json
import threading
import uuid

import pytest
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from conftest import INSTANCE, call_gateway, until_routed

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"


def _name(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class _Authorizer(http.server.BaseHTTPRequestHandler):
    """A custom authorizer function: allows the token `letmein`, with the caller as context."""

    calls = 0

    def do_POST(self):
        type(self).calls += 1
        event = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        token = event.get("headers", {}).get("x-token", "")
        status = "allow" if token == "letmein" else "deny"
        body = json.dumps({"statusCode": 200, "body": json.dumps(
            {"status": status, "context": {"user": "alice", "ud": event.get("user_data", "")}})}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def function():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Authorizer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/authorize"
    server.shutdown()


def _create(sdk, url, name, kind="FRONTEND", **extra):
    return sdk.create_custom_authorizer_v2(m.CreateCustomAuthorizerV2Request(
        instance_id=INSTANCE, body=m.AuthorizerCreate(
            name=name, type=kind, authorizer_type="FUNC", authorizer_uri=url, **extra)))


def test_authorizer_crud_and_errors(sdk, function):
    name = _name("auth")
    created = _create(sdk, function, name, ttl=30, user_data="tenant",
                      identities=[m.Identity(name="X-Token", location="HEADER", validation="^[a-z]+$")])
    assert created.id and created.type == "FRONTEND" and created.authorizer_type == "FUNC"
    assert created.ttl == 30 and created.identities[0].name == "X-Token"

    shown = sdk.show_details_of_custom_authorizers_v2(m.ShowDetailsOfCustomAuthorizersV2Request(
        instance_id=INSTANCE, authorizer_id=created.id))
    assert shown.name == name and shown.user_data == "tenant"

    listed = sdk.list_custom_authorizers_v2(m.ListCustomAuthorizersV2Request(
        instance_id=INSTANCE, name=name, type="FRONTEND"))
    assert [a.id for a in listed.authorizer_list] == [created.id]
    assert sdk.list_custom_authorizers_v2(m.ListCustomAuthorizersV2Request(
        instance_id=INSTANCE, name=name, type="BACKEND")).total == 0

    updated = sdk.update_custom_authorizer_v2(m.UpdateCustomAuthorizerV2Request(
        instance_id=INSTANCE, authorizer_id=created.id, body=m.AuthorizerCreate(
            name=name, type="FRONTEND", authorizer_type="FUNC", authorizer_uri=function,
            ttl=0, user_data="other")))
    assert updated.ttl == 0 and updated.user_data == "other" and updated.id == created.id

    # The type is immutable; names are unique; bad values and URNs are refused, nothing stored.
    for body, status, code in [
        (m.AuthorizerCreate(name=name, type="BACKEND", authorizer_type="FUNC", authorizer_uri=function), 400, "APIG.2012"),
    ]:
        with pytest.raises(ClientRequestException) as e:
            sdk.update_custom_authorizer_v2(m.UpdateCustomAuthorizerV2Request(
                instance_id=INSTANCE, authorizer_id=created.id, body=body))
        assert (e.value.status_code, e.value.error_code) == (status, code)
    for kwargs, status, code in [
        (dict(name=name), 400, "APIG.3211"),
        (dict(name=_name("auth"), ttl=7200), 400, "APIG.2012"),
        (dict(name="a"), 400, "APIG.2012"),
    ]:
        with pytest.raises(ClientRequestException) as e:
            _create(sdk, function, kwargs.pop("name"), **kwargs)
        assert (e.value.status_code, e.value.error_code) == (status, code)
    with pytest.raises(ClientRequestException) as e:
        _create(sdk, "urn:fss:eu-de:1:function:default:auth:latest", _name("urn"))
    assert (e.value.status_code, e.value.error_code) == (412, "APIG.3458")

    sdk.delete_custom_authorizer_v2(m.DeleteCustomAuthorizerV2Request(
        instance_id=INSTANCE, authorizer_id=created.id))
    with pytest.raises(ClientRequestException) as e:
        sdk.show_details_of_custom_authorizers_v2(m.ShowDetailsOfCustomAuthorizersV2Request(
            instance_id=INSTANCE, authorizer_id=created.id))
    assert (e.value.status_code, e.value.error_code) == (404, "APIG.3081")


def test_custom_authentication_through_the_gateway(sdk, stack, backend, function):
    authorizer = _create(sdk, function, _name("gate"), user_data="ud-1",
                         identities=[m.Identity(name="X-Token", location="HEADER")])
    group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=_name("authz"))))
    api = sdk.create_api_v2(m.CreateApiV2Request(instance_id=INSTANCE, body=m.ApiCreate(
        name=_name("custom"), type=1, req_protocol="HTTP", req_method="GET", req_uri="/custom",
        auth_type="AUTHORIZER", authorizer_id=authorizer.id, backend_type="HTTP",
        group_id=group.id,
        backend_params=[m.BackendParamBase(origin="SYSTEM", name="X-User", location="HEADER",
                                           value="$context.authorizer.frontend.user")],
        backend_api=m.BackendApiCreate(url_domain=backend, req_protocol="HTTP", req_method="GET",
                                       req_uri="/echo", timeout=5000))))
    assert api.authorizer_id == authorizer.id
    sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
        instance_id=INSTANCE, body=m.ApiActionInfo(action="online", api_id=api.id, env_id=RELEASE)))

    ok = until_routed(stack, group.sl_domain, "/custom", {"X-Token": "letmein"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["headers"]["x-user"] == "alice"
    denied = call_gateway(stack, group.sl_domain, "/custom", {"X-Token": "nope"})
    assert denied.status_code == 500 and denied.json()["error_code"] == "APIG.0305"
    calls = _Authorizer.calls
    missing = call_gateway(stack, group.sl_domain, "/custom")
    assert missing.status_code == 401 and _Authorizer.calls == calls

    # In use: cannot be deleted.
    with pytest.raises(ClientRequestException) as e:
        sdk.delete_custom_authorizer_v2(m.DeleteCustomAuthorizerV2Request(
            instance_id=INSTANCE, authorizer_id=authorizer.id))
    assert (e.value.status_code, e.value.error_code) == (400, "APIG.2012")
