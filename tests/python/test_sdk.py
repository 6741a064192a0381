"""The official huaweicloudsdkapig SDK, unchanged, against our control plane; calls through the
real gateway to a real backend."""

import uuid

import pytest
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from conftest import INSTANCE, call_gateway, make_client, until_routed

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"


def _name(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _group(sdk):
    return sdk.create_api_group_v2(
        m.CreateApiGroupV2Request(instance_id=INSTANCE, body=m.ApiGroupCreate(name=_name("grp"), remark="sdk"))
    )


def _http_api(group_id, backend, uri, **extra):
    return m.ApiCreate(
        name=_name("api"), type=1, req_protocol="HTTP", req_method="GET", req_uri=uri,
        auth_type="NONE", backend_type="HTTP", group_id=group_id,
        backend_api=m.BackendApiCreate(
            url_domain=backend, req_protocol="HTTP", req_method="GET",
            req_uri=extra.pop("backend_uri", uri), timeout=5000,
        ),
        **extra,
    )


def test_instances_groups_and_envs(sdk):
    instances = sdk.list_instances_v2(m.ListInstancesV2Request())
    assert any(i.id == INSTANCE for i in instances.instances)
    detail = sdk.show_details_of_instance_v2(m.ShowDetailsOfInstanceV2Request(instance_id=INSTANCE))
    assert detail.id == INSTANCE

    group = _group(sdk)
    assert len(group.id) == 32 and group.sl_domain.startswith(group.id)
    shown = sdk.show_details_of_api_group_v2(m.ShowDetailsOfApiGroupV2Request(instance_id=INSTANCE, group_id=group.id))
    assert shown.name == group.name
    updated = sdk.update_api_group_v2(m.UpdateApiGroupV2Request(
        instance_id=INSTANCE, group_id=group.id, body=m.ApiGroupBase(name=group.name + "_x", remark="r2")))
    assert updated.name == group.name + "_x"
    listed = sdk.list_api_groups_v2(m.ListApiGroupsV2Request(instance_id=INSTANCE, limit=500))
    assert listed.total >= 1 and any(g.id == group.id for g in listed.groups)

    envs = sdk.list_environments_v2(m.ListEnvironmentsV2Request(instance_id=INSTANCE))
    assert envs.envs[0].id == RELEASE and envs.envs[0].name == "RELEASE"
    env = sdk.create_environment_v2(m.CreateEnvironmentV2Request(
        instance_id=INSTANCE, body=m.EnvCreate(name=_name("ENV"), remark="test")))
    sdk.update_environment_v2(m.UpdateEnvironmentV2Request(
        instance_id=INSTANCE, env_id=env.id, body=m.EnvCreate(name=env.name + "b")))
    sdk.delete_environment_v2(m.DeleteEnvironmentV2Request(instance_id=INSTANCE, env_id=env.id))
    with pytest.raises(ClientRequestException) as e:
        sdk.delete_environment_v2(m.DeleteEnvironmentV2Request(instance_id=INSTANCE, env_id=RELEASE))
    assert e.value.status_code == 403

    sdk.delete_api_group_v2(m.DeleteApiGroupV2Request(instance_id=INSTANCE, group_id=group.id))
    with pytest.raises(ClientRequestException) as e:
        sdk.show_details_of_api_group_v2(m.ShowDetailsOfApiGroupV2Request(instance_id=INSTANCE, group_id=group.id))
    assert e.value.status_code == 404 and e.value.error_code == "APIG.3001"


def test_create_publish_call_offline(sdk, stack, backend):
    group = _group(sdk)
    body = _http_api(
        group.id, backend, "/orders/{oid}", backend_uri="/backend/orders/{id}",
        req_params=[m.ReqParamBase(name="oid", type="STRING", location="PATH")],
        backend_params=[
            m.BackendParamBase(origin="REQUEST", name="id", location="PATH", value="oid"),
            m.BackendParamBase(origin="SYSTEM", name="X-Req", location="HEADER", value="$context.requestId"),
        ],
    )
    api = sdk.create_api_v2(m.CreateApiV2Request(instance_id=INSTANCE, body=body))
    assert api.id and api.req_params[0].id and api.backend_api.url_domain == backend

    pub = sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
        instance_id=INSTANCE, body=m.ApiActionInfo(action="online", env_id=RELEASE, api_id=api.id, remark="first")))
    assert pub.publish_id and pub.version_id

    r = until_routed(stack, group.sl_domain, "/orders/77")
    assert r.status_code == 200, r.text
    assert r.raw.version == 11, "an HTTP/1.0 backend does not downgrade the client's answer"
    seen = r.json()
    assert seen["path"] == "/backend/orders/77"
    assert seen["headers"]["x-req"] == r.headers["X-Request-Id"]

    runtime = sdk.list_api_runtime_definition_v2(m.ListApiRuntimeDefinitionV2Request(
        instance_id=INSTANCE, api_id=api.id, env_id=RELEASE))
    assert runtime.req_uri == "/orders/{oid}"
    versions = sdk.list_api_versions_v2(m.ListApiVersionsV2Request(instance_id=INSTANCE, api_id=api.id))
    assert versions.total == 1 and versions.api_versions[0].status == 1
    listed = sdk.list_apis_v2(m.ListApisV2Request(instance_id=INSTANCE, group_id=group.id, env_id=RELEASE))
    assert [a.id for a in listed.apis] == [api.id] and listed.apis[0].run_env_name == "RELEASE"

    sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
        instance_id=INSTANCE, body=m.ApiActionInfo(action="offline", env_id=RELEASE, api_id=api.id)))
    for _ in range(300):
        r = call_gateway(stack, group.sl_domain, "/orders/77")
        if r.status_code == 404:
            break
    assert r.status_code == 404 and r.json()["error_code"] == "APIG.0101"

    sdk.delete_api_v2(m.DeleteApiV2Request(instance_id=INSTANCE, api_id=api.id))


def test_batch_publish_and_env_variables(sdk, stack, backend):
    group = _group(sdk)
    env = sdk.create_environment_v2(m.CreateEnvironmentV2Request(
        instance_id=INSTANCE, body=m.EnvCreate(name=_name("STAGE"))))
    var = sdk.create_environment_variable_v2(m.CreateEnvironmentVariableV2Request(
        instance_id=INSTANCE, body=m.EnvVariableCreate(
            group_id=group.id, env_id=env.id, variable_name="prefix", variable_value="staged")))
    assert var.id
    vars_ = sdk.list_environment_variables_v2(m.ListEnvironmentVariablesV2Request(
        instance_id=INSTANCE, group_id=group.id))
    assert vars_.total == 1
    api = sdk.create_api_v2(m.CreateApiV2Request(
        instance_id=INSTANCE, body=_http_api(group.id, backend, "/stage", backend_uri="/#prefix#/x")))
    # Publishing where the variable is undefined fails; where it is defined it works.
    result = sdk.batch_publish_or_offline_api_v2(m.BatchPublishOrOfflineApiV2Request(
        instance_id=INSTANCE, action="online", body=m.ApiBatchPublish(apis=[api.id], env_id=env.id)))
    assert [s.api_id for s in result.success] == [api.id]
    r = until_routed(stack, group.sl_domain, "/stage", headers={"X-Stage": env.name})
    assert r.status_code == 200 and r.json()["path"] == "/staged/x"
    with pytest.raises(ClientRequestException) as e:
        sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
            instance_id=INSTANCE, body=m.ApiActionInfo(action="online", env_id=RELEASE, api_id=api.id)))
    assert e.value.status_code == 400 and "prefix" in e.value.error_msg


def test_bad_requests_answer_apig_errors(sdk, stack):
    with pytest.raises(ClientRequestException) as e:
        sdk.create_api_group_v2(m.CreateApiGroupV2Request(instance_id=INSTANCE, body=m.ApiGroupCreate(name="x")))
    assert e.value.status_code == 400 and e.value.error_code == "APIG.2012"
    assert e.value.request_id and len(e.value.request_id) == 32
    with pytest.raises(ClientRequestException) as e:
        sdk.show_details_of_api_v2(m.ShowDetailsOfApiV2Request(instance_id=INSTANCE, api_id="0" * 32))
    assert e.value.status_code == 404 and e.value.error_code == "APIG.3002"
    wrong = make_client(stack["mgmt"], sk="definitely-not-the-right-secret")
    with pytest.raises(ClientRequestException) as e:
        wrong.list_api_groups_v2(m.ListApiGroupsV2Request(instance_id=INSTANCE))
    assert e.value.status_code == 401
