"""Throttling and access-control policies managed with the official SDK, enforced by the gateway."""

import time
import uuid

import pytest
import requests
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from conftest import INSTANCE, until_routed

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"


def _name(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def published(sdk, stack, backend):
    group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=_name("traffic"))))
    api = sdk.create_api_v2(m.CreateApiV2Request(instance_id=INSTANCE, body=m.ApiCreate(
        name=_name("api"), type=1, req_protocol="HTTP", req_method="GET", req_uri="/traffic",
        auth_type="NONE", backend_type="HTTP", group_id=group.id,
        backend_api=m.BackendApiCreate(url_domain=backend, req_protocol="HTTP", req_method="GET",
                                       req_uri="/traffic", timeout=5000))))
    pub = sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
        instance_id=INSTANCE, body=m.ApiActionInfo(action="online", env_id=RELEASE, api_id=api.id)))
    assert until_routed(stack, group.sl_domain, "/traffic").status_code == 200
    return {"group": group, "api": api, "publish_id": pub.publish_id}


def _wait_status(stack, host, want, timeout=15):
    deadline = time.time() + timeout
    while True:
        r = requests.get(stack["gateway"] + "/traffic", headers={"Host": host}, timeout=10)
        if r.status_code == want or time.time() > deadline:
            return r
        time.sleep(0.05)


def test_throttle_policy_lifecycle(sdk, stack, published):
    t = sdk.create_request_throttling_policy_v2(m.CreateRequestThrottlingPolicyV2Request(
        instance_id=INSTANCE, body=m.ThrottleBaseInfo(
            name=_name("thr"), api_call_limits=2, time_interval=1, time_unit="MINUTE", type=1)))
    assert t.id and t.bind_num == 0
    with pytest.raises(ClientRequestException) as e:
        sdk.create_request_throttling_policy_v2(m.CreateRequestThrottlingPolicyV2Request(
            instance_id=INSTANCE, body=m.ThrottleBaseInfo(
                name=t.name, api_call_limits=2, time_interval=1, time_unit="MINUTE")))
    assert e.value.error_code == "APIG.3204"
    special = sdk.create_special_throttling_configuration_v2(m.CreateSpecialThrottlingConfigurationV2Request(
        instance_id=INSTANCE, throttle_id=t.id,
        body=m.ThrottleSpecialCreate(object_type="USER", object_id="a" * 32, call_limits=1)))
    specials = sdk.list_special_throttling_configurations_v2(m.ListSpecialThrottlingConfigurationsV2Request(
        instance_id=INSTANCE, throttle_id=t.id))
    assert [s.id for s in specials.throttle_specials] == [special.id]

    bound = sdk.associate_request_throttling_policy_v2(m.AssociateRequestThrottlingPolicyV2Request(
        instance_id=INSTANCE, body=m.ThrottleApiBindingCreate(strategy_id=t.id, publish_ids=[published["publish_id"]])))
    binding_id = bound.throttle_applys[0].id
    host = published["group"].sl_domain
    r = _wait_status(stack, host, 429)
    assert r.status_code == 429 and r.json()["error_code"] == "APIG.0308"
    apis = sdk.list_apis_binded_to_request_throttling_policy_v2(
        m.ListApisBindedToRequestThrottlingPolicyV2Request(instance_id=INSTANCE, throttle_id=t.id))
    assert [a.id for a in apis.apis] == [published["api"].id]
    policies = sdk.list_request_throttling_policies_binded_to_api_v2(
        m.ListRequestThrottlingPoliciesBindedToApiV2Request(instance_id=INSTANCE, api_id=published["api"].id))
    assert [p.id for p in policies.throttles] == [t.id]
    with pytest.raises(ClientRequestException) as e:
        sdk.delete_request_throttling_policy_v2(m.DeleteRequestThrottlingPolicyV2Request(
            instance_id=INSTANCE, throttle_id=t.id))
    assert e.value.status_code == 403

    result = sdk.batch_disassociate_throttling_policy_v2(m.BatchDisassociateThrottlingPolicyV2Request(
        instance_id=INSTANCE, action="delete", body=m.ThrottleBindingBatchDelete(throttle_bindings=[binding_id])))
    assert result.success_count == 1
    assert _wait_status(stack, host, 200).status_code == 200
    sdk.delete_request_throttling_policy_v2(m.DeleteRequestThrottlingPolicyV2Request(instance_id=INSTANCE, throttle_id=t.id))


def test_acl_policy_lifecycle(sdk, stack, published):
    acl = sdk.create_acl_strategy_v2(m.CreateAclStrategyV2Request(instance_id=INSTANCE, body=m.ApiAclCreate(
        acl_name=_name("acl"), acl_type="DENY", entity_type="IP", acl_value="127.0.0.1,10.1.0.0/16")))
    bound = sdk.create_api_acl_binding_v2(m.CreateApiAclBindingV2Request(instance_id=INSTANCE, body=m.AclApiBindingCreate(
        acl_id=acl.id, publish_ids=[published["publish_id"]])))
    host = published["group"].sl_domain
    r = _wait_status(stack, host, 403)
    assert r.status_code == 403 and r.json()["error_code"] == "APIG.0402"
    listed = sdk.list_acl_strategies_v2(m.ListAclStrategiesV2Request(instance_id=INSTANCE, name=acl.acl_name))
    assert listed.total == 1
    apis = sdk.list_apis_binded_to_acl_policy_v2(m.ListApisBindedToAclPolicyV2Request(instance_id=INSTANCE, acl_id=acl.id))
    assert [a.api_id for a in apis.apis] == [published["api"].id]
    sdk.delete_api_acl_binding_v2(m.DeleteApiAclBindingV2Request(
        instance_id=INSTANCE, acl_bindings_id=bound.acl_bindings[0].id))
    assert _wait_status(stack, host, 200).status_code == 200
    result = sdk.batch_delete_acl_v2(m.BatchDeleteAclV2Request(
        instance_id=INSTANCE, action="delete", body=m.AclBatchDelete(acls=[acl.id])))
    assert result.success_count == 1
