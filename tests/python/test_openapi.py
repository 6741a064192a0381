"""OpenAPI import and export with the official SDK: ImportApiDefinitionsV2 (a multipart upload
built by huaweicloudsdkcore) and ExportApiDefinitionsV2 (a file download), against the real
control plane; the imported API is then called through the real gateway."""

import json
import os
import tempfile
import uuid

import pytest
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.formdata import FormFile

from conftest import INSTANCE, until_routed

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"


def _document(title, backend):
    return {
        "swagger": "2.0",
        "info": {"title": title, "version": "1.0"},
        "schemes": ["http"],
        "paths": {
            "/sdk/items/{itemId}": {
                "get": {
                    "operationId": "get_item",
                    "parameters": [{"name": "itemId", "in": "path", "type": "string", "required": True}],
                    "responses": {"200": {"description": "ok"}},
                    "x-apigateway-backend": {
                        "type": "HTTP",
                        "parameters": [{"name": "id", "value": "itemId", "in": "path", "origin": "REQUEST"}],
                        "httpEndpoints": {"address": backend, "scheme": "http", "method": "GET",
                                          "path": "/stock/{id}", "timeout": 5000},
                    },
                    "x-apigateway-access-control": "sdk_loopback",
                }
            },
            "/sdk/ping": {
                "x-apigateway-any-method": {
                    "operationId": "ping",
                    "responses": {"default": {"description": "ok"}},
                    "x-apigateway-backend": {"type": "MOCK", "mockEndpoints": {"result-content": "pong"}},
                }
            },
        },
        "x-apigateway-access-controls": {
            "sdk_loopback": {"acl-type": "PERMIT", "entity-type": "IP", "value": "127.0.0.1"},
        },
    }


def _upload(name, content):
    # FormFile takes a path or a file opened "rb"; the upload is named after the file.
    directory = tempfile.mkdtemp()
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(content)
    return FormFile(path)


def _import(sdk, content, name="api.json", **fields):
    return sdk.import_api_definitions_v2(m.ImportApiDefinitionsV2Request(
        instance_id=INSTANCE,
        body=m.ImportApiDefinitionsV2RequestBody(file_name=_upload(name, content), **fields)))


def _export(sdk, group_id, oas_version="2.0", **fields):
    resp = sdk.export_api_definitions_v2(m.ExportApiDefinitionsV2Request(
        instance_id=INSTANCE, oas_version=oas_version,
        body=m.ExportOpenApiReq(env_id=RELEASE, group_id=group_id, **fields)))
    chunks = []
    resp.consume_download_stream(lambda stream: chunks.append(stream.content))
    return b"".join(chunks)


def test_import_publish_call_and_export(sdk, stack, backend):
    title = f"sdk_import_{uuid.uuid4().hex[:8]}"
    result = _import(sdk, json.dumps(_document(title, backend)).encode(), is_create_group=True)
    assert result.failure == [], result
    assert sorted(s.method for s in result.success) == ["ANY", "GET"]
    assert all(s.action == "create" for s in result.success)
    group = sdk.show_details_of_api_group_v2(m.ShowDetailsOfApiGroupV2Request(
        instance_id=INSTANCE, group_id=result.group_id))
    assert group.name == title
    for s in result.success:
        sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
            instance_id=INSTANCE, body=m.ApiActionInfo(action="online", env_id=RELEASE, api_id=s.id)))
    r = until_routed(stack, group.sl_domain, "/sdk/items/7")
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/stock/7"
    r = until_routed(stack, group.sl_domain, "/sdk/ping")
    assert (r.status_code, r.text) == (200, "pong")

    exported = _export(sdk, result.group_id, define="all", type="json")
    doc = json.loads(exported)
    assert doc["swagger"] == "2.0" and doc["info"]["title"] == title
    op = doc["paths"]["/sdk/items/{itemId}"]["get"]
    assert op["x-apigateway-backend"]["httpEndpoints"]["path"] == "/stock/{id}"
    assert op["x-apigateway-access-control"] == "sdk_loopback"
    assert doc["x-apigateway-access-controls"]["sdk_loopback"]["value"] == "127.0.0.1"

    # The export, as YAML and OpenAPI 3.0, imports into another group as the same APIs.
    yaml_doc = _export(sdk, result.group_id, oas_version="3.0", define="all", type="yaml")
    assert yaml_doc.lstrip().startswith(b"openapi:"), yaml_doc[:80]
    other = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=f"copy_{uuid.uuid4().hex[:8]}")))
    copy = _import(sdk, yaml_doc, name="api.yaml", is_create_group=False, group_id=other.id)
    assert copy.failure == [] and len(copy.success) == 2, copy
    apis = sdk.list_apis_v2(m.ListApisV2Request(instance_id=INSTANCE, group_id=other.id)).apis
    item = next(a for a in apis if a.name == "get_item")
    assert item.backend_api.req_uri == "/stock/{id}"
    assert item.backend_api.url_domain == backend


def test_bad_documents_are_refused(sdk):
    before = sdk.list_api_groups_v2(m.ListApiGroupsV2Request(instance_id=INSTANCE)).total
    for content in [b"{\"swagger\": \"2.0\", \"paths\": ", b"openapi: 3.1.0\npaths: {}\n",
                    b"a: &a [x, x, x, x, x, x, x, x]\n" + b"".join(
                        f"b{i}: &b{i} [{', '.join(['*' + ('a' if i == 0 else f'b{i - 1}')] * 9)}]\n".encode()
                        for i in range(10))]:
        with pytest.raises(ClientRequestException) as e:
            _import(sdk, content, name="bad.yaml")
        assert e.value.status_code == 400, content[:40]
        assert e.value.error_code == "APIG.2012"
    with pytest.raises(ClientRequestException) as e:
        _import(sdk, b"{}", is_create_group=False)
    assert e.value.error_code == "APIG.2001"
    assert sdk.list_api_groups_v2(m.ListApiGroupsV2Request(instance_id=INSTANCE)).total == before


def test_async_variants_answer_not_supported(sdk):
    with pytest.raises(ClientRequestException) as e:
        sdk.export_api_definitions_async(m.ExportApiDefinitionsAsyncRequest(
            instance_id=INSTANCE, body=m.ExportOpenApiReq(env_id=RELEASE, group_id="x" * 32)))
    assert (e.value.status_code, e.value.error_code) == (412, "APIG.3458")
