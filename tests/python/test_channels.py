"""Load-balance channels managed with the official SDK; the gateway routes through them."""

import http.server
import json
import threading
import time
import uuid

import pytest
import requests
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from conftest import INSTANCE, until_routed

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class _Named(http.server.BaseHTTPRequestHandler):
    """Answers with the port it listens on, so a test can tell members apart."""

    def do_GET(self):
        payload = json.dumps({"port": self.server.server_address[1],
                              "host": self.headers.get("host")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def members():
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield [s.server_address[1] for s in servers]
    for s in servers:
        s.shutdown()


def test_channel_lifecycle_and_routing(sdk, stack, members):
    first, second = members
    channel = sdk.create_vpc_channel_v2(m.CreateVpcChannelV2Request(
        instance_id=INSTANCE, body=m.VpcCreate(
            name=_name("lb"), port=first, balance_strategy=1, member_type="ip", type=2,
            member_groups=[m.MemberGroupCreate(member_group_name="blue", member_group_weight=2)],
            members=[m.MemberInfo(host="127.0.0.1", weight=1, member_group_name="blue")],
            vpc_health_config=m.VpcHealthConfig(
                protocol="TCP", threshold_normal=2, threshold_abnormal=3, time_interval=5, timeout=2))))
    assert channel.id and channel.balance_strategy == 1
    assert [g.member_group_name for g in channel.member_groups] == ["blue"]

    listed = sdk.list_vpc_channels_v2(m.ListVpcChannelsV2Request(instance_id=INSTANCE, name=channel.name))
    assert [c.id for c in listed.vpc_channels] == [channel.id]

    added = sdk.adding_backend_instances_v2(m.AddingBackendInstancesV2Request(
        instance_id=INSTANCE, vpc_channel_id=channel.id,
        body=m.VpcMemberCreate(members=[m.MemberInfo(host="127.0.0.1", port=second, weight=2)])))
    assert [(x.host, x.port) for x in added.members] == [("127.0.0.1", second)]

    detail = sdk.show_details_of_vpc_channel_v2(m.ShowDetailsOfVpcChannelV2Request(
        instance_id=INSTANCE, vpc_channel_id=channel.id))
    assert len(detail.members) == 2
    assert detail.vpc_health_config.protocol == "TCP"
    blue = next(x for x in detail.members if x.port == 0)
    assert blue.member_group_name == "blue"

    health = sdk.update_health_check(m.UpdateHealthCheckRequest(
        instance_id=INSTANCE, vpc_channel_id=channel.id,
        body=m.VpcHealthConfig(protocol="HTTP", path="/", method="GET", http_code="200",
                               threshold_normal=2, threshold_abnormal=2, time_interval=5, timeout=2)))
    assert health.protocol == "HTTP" and health.http_code == "200"

    # Bad input: every problem, no change.
    with pytest.raises(ClientRequestException) as e:
        sdk.adding_backend_instances_v2(m.AddingBackendInstancesV2Request(
            instance_id=INSTANCE, vpc_channel_id=channel.id,
            body=m.VpcMemberCreate(members=[m.MemberInfo(host="http://evil", weight=20000)])))
    assert e.value.status_code == 400 and e.value.error_code == "APIG.2012"
    with pytest.raises(ClientRequestException) as e:
        sdk.show_details_of_vpc_channel_v2(m.ShowDetailsOfVpcChannelV2Request(
            instance_id=INSTANCE, vpc_channel_id="0" * 32))
    assert e.value.error_code == "APIG.3023"

    group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=_name("channels").replace("-", "_"))))
    api = sdk.create_api_v2(m.CreateApiV2Request(instance_id=INSTANCE, body=m.ApiCreate(
        name=_name("lb_api").replace("-", "_"), type=1, req_protocol="HTTP", req_method="GET",
        req_uri="/lb", auth_type="NONE", backend_type="HTTP", group_id=group.id,
        backend_api=m.BackendApiCreate(
            req_protocol="HTTP", req_method="GET", req_uri="/", timeout=5000, vpc_channel_status=1,
            vpc_channel_info=m.ApiBackendVpcReq(vpc_channel_id=channel.id)))))
    sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
        instance_id=INSTANCE, body=m.ApiActionInfo(action="online", env_id=RELEASE, api_id=api.id)))
    assert until_routed(stack, group.sl_domain, "/lb").status_code == 200

    # The group weight (2) applies to its member: both members take half.
    seen = {}
    for _ in range(8):
        r = requests.get(stack["gateway"] + "/lb", headers={"Host": group.sl_domain}, timeout=10)
        assert r.status_code == 200, r.text
        seen[r.json()["port"]] = seen.get(r.json()["port"], 0) + 1
        # Without a proxy host, members see the client's Host.
        assert r.json()["host"] == group.sl_domain
    assert seen == {first: 4, second: 4}

    # Disable the second member: all traffic goes to the first, without republishing.
    second_id = next(x.id for x in detail.members if x.port == second)
    sdk.batch_disable_members(m.BatchDisableMembersRequest(
        instance_id=INSTANCE, vpc_channel_id=channel.id,
        body=m.MembersBatchEnableOrDisable(member_ids=[second_id])))
    deadline = time.time() + 15
    while True:
        ports = {requests.get(stack["gateway"] + "/lb", headers={"Host": group.sl_domain},
                              timeout=10).json()["port"] for _ in range(4)}
        if ports == {first} or time.time() > deadline:
            break
        time.sleep(0.05)
    assert ports == {first}

    with pytest.raises(ClientRequestException) as e:
        sdk.delete_vpc_channel_v2(m.DeleteVpcChannelV2Request(instance_id=INSTANCE, vpc_channel_id=channel.id))
    assert e.value.error_code == "APIG.3414"
    sdk.delete_backend_instance_v2(m.DeleteBackendInstanceV2Request(
        instance_id=INSTANCE, vpc_channel_id=channel.id, member_id=second_id))
    left = sdk.list_backend_instances_v2(m.ListBackendInstancesV2Request(
        instance_id=INSTANCE, vpc_channel_id=channel.id))
    assert left.total == 1
