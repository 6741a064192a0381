"""APIG's statistics operations through the official SDK: ListLatelyApiStatisticsV2,
ListLatelyGroupStatisticsV2 and ListMetricData, counted from calls through the real gateway."""

import time
import uuid

import pytest
from huaweicloudsdkapig.v2 import model as m
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from conftest import INSTANCE, PROJECT, call_gateway, until_routed

RELEASE = "DEFAULT_ENVIRONMENT_RELEASE_ID"


def _name(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _api(sdk, group_id, backend, uri, **extra):
    body = m.ApiCreate(
        name=_name("stat"), type=1, req_protocol="HTTP", req_method="GET", req_uri=uri,
        auth_type=extra.pop("auth_type", "NONE"), backend_type="HTTP", group_id=group_id,
        backend_api=m.BackendApiCreate(url_domain=backend, req_protocol="HTTP", req_method="GET",
                                       req_uri=uri, timeout=2000),
    )
    api = sdk.create_api_v2(m.CreateApiV2Request(instance_id=INSTANCE, body=body))
    sdk.create_or_delete_publish_record_for_api_v2(m.CreateOrDeletePublishRecordForApiV2Request(
        instance_id=INSTANCE, body=m.ApiActionInfo(action="online", api_id=api.id, env_id=RELEASE)))
    return api


def _api_stats(sdk, api_id, duration="1h"):
    return sdk.list_lately_api_statistics_v2(m.ListLatelyApiStatisticsV2Request(
        instance_id=INSTANCE, api_id=api_id, duration=duration))


def _wait_count(sdk, api_id, want, timeout=20):
    deadline = time.time() + timeout
    while True:
        stats = _api_stats(sdk, api_id)
        if sum(e.req_count for e in stats.list) >= want or time.time() > deadline:
            return stats
        time.sleep(0.2)


def test_statistics_through_the_sdk(sdk, stack, backend):
    group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=_name("statgrp"))))
    probe_group = sdk.create_api_group_v2(m.CreateApiGroupV2Request(
        instance_id=INSTANCE, body=m.ApiGroupCreate(name=_name("probegrp"))))
    ok = _api(sdk, group.id, backend, "/stat/ok")
    guarded = _api(sdk, group.id, backend, "/stat/guarded", auth_type="APP")
    # A backend nobody listens on: 502 from the gateway.
    broken = _api(sdk, group.id, "127.0.0.1:9", "/stat/broken")
    # Published last: once it answers, the APIs above are served too (and were never called).
    _api(sdk, probe_group.id, backend, "/stat/probe")
    host = group.sl_domain
    assert until_routed(stack, probe_group.sl_domain, "/stat/probe").status_code == 200

    sent_out = {"ok": 0, "guarded": 0, "broken": 0}
    for api, path, n, status in [("ok", "/stat/ok", 4, 200), ("guarded", "/stat/guarded", 2, 401),
                                 ("broken", "/stat/broken", 1, 502)]:
        for _ in range(n):
            r = call_gateway(stack, host, path)
            assert r.status_code == status, r.text
            sent_out[api] += len(r.content)

    stats = _wait_count(sdk, ok.id, 4)
    assert stats.code == "APIG.0000"
    assert stats.end_time - stats.start_time == 59 * 60
    assert sum(e.req_count for e in stats.list) == 4
    assert sum(e.req_count2xx for e in stats.list) == 4
    assert sum(e.output_throughput for e in stats.list) == sent_out["ok"]
    entry = stats.list[-1]
    assert entry.api_id == ok.id and entry.group_id == group.id and entry.provider == PROJECT
    assert entry.cycle == "MINUTE" and entry.status == 1 and entry.current_minute % 60 == 0
    assert entry.avg_latency > 0 and entry.max_latency >= 1
    assert entry.req_time is not None and entry.register_time is not None

    guarded_stats = _wait_count(sdk, guarded.id, 2)
    assert sum(e.req_count4xx for e in guarded_stats.list) == 2
    assert sum(e.req_count_error for e in guarded_stats.list) == 2
    broken_stats = _wait_count(sdk, broken.id, 1)
    assert sum(e.req_count5xx for e in broken_stats.list) == 1

    groups = sdk.list_lately_group_statistics_v2(m.ListLatelyGroupStatisticsV2Request(
        instance_id=INSTANCE, group_id=group.id))
    assert sum(e.req_count for e in groups.list) == 7
    assert sum(e.req_count_error for e in groups.list) == 3
    assert sum(e.output_throughput for e in groups.list) == sum(sent_out.values())
    assert all(e.group_id == group.id for e in groups.list)

    now = int(time.time() * 1000)
    data = sdk.list_metric_data(m.ListMetricDataRequest(
        instance_id=INSTANCE, dim="inbound_eip", metric_name="up_stream",
        _from=str(now - 3_600_000), to=str(now + 120_000), period=300, filter="sum"))
    assert data.datapoints and all(p.unit == "Byte" for p in data.datapoints)
    # Other tests share the instance: at least our calls' bytes.
    assert sum(p.sum for p in data.datapoints) >= sum(sent_out.values())

    with pytest.raises(ClientRequestException) as e:
        _api_stats(sdk, ok.id, duration="3h")
    assert e.value.status_code == 400 and e.value.error_code == "APIG.2012"
    with pytest.raises(ClientRequestException) as e:
        _api_stats(sdk, uuid.uuid4().hex)
    assert e.value.status_code == 404 and e.value.error_code == "APIG.3002"
    with pytest.raises(ClientRequestException) as e:
        sdk.list_lately_group_statistics_v2(m.ListLatelyGroupStatisticsV2Request(
            instance_id=INSTANCE, group_id=uuid.uuid4().hex))
    assert e.value.status_code == 404 and e.value.error_code == "APIG.3001"
    with pytest.raises(ClientRequestException) as e:
        sdk.list_metric_data(m.ListMetricDataRequest(
            instance_id=INSTANCE, dim="inbound_eip", metric_name="up_stream",
            _from=str(now), to=str(now - 1), period=300, filter="sum"))
    assert e.value.status_code == 400 and e.value.error_code == "APIG.2012"
