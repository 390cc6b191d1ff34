"""Issue 12, item 12: the quiet-period counter of API Gateway usage must not reset at midnight.

GetUsage counts per UTC day; the signal sums every day since the key was created, so a snapshot
taken before midnight and a look after it compare like with like. GetUsage is not answered by
moto: botocore's Stubber checks each request against the service model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
from botocore.stub import Stubber

from rotation.backends.traffic import ApiGatewayUsage, QuotaCarrier


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _client():
    client = boto3.client("apigateway", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


CREATED = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)


def _usage(stub, start, end, days, position=None, next_position=None):
    expected = {"usagePlanId": "plan1", "keyId": "k1", "startDate": start, "endDate": end}
    if position:
        expected["position"] = position
    resp = {"usagePlanId": "plan1", "startDate": start, "endDate": end, "items": {"k1": days}}
    if next_position:
        resp["position"] = next_position
    stub.add_response("get_usage", resp, expected)


def test_a_request_just_before_midnight_is_not_lost_when_the_day_changes():
    """Snapshot at 23:50, a request at 23:55, next look at 00:06: the counter must have moved
    (per-day counting read 3 then 0, and the old key looked idle)."""
    client, stub = _client()
    clock = Clock(datetime(2026, 3, 10, 23, 50, tzinfo=UTC))
    stub.add_response("get_api_key", {"id": "k1", "createdDate": CREATED}, {"apiKey": "k1", "includeValue": False})
    _usage(stub, "2026-03-09", "2026-03-10", [[5, 95], [3, 92]])
    _usage(stub, "2026-03-09", "2026-03-11", [[5, 95], [4, 91], [0, 100]])
    with stub:
        signal = ApiGatewayUsage(client, clock=clock)
        before = signal.request_count("k1", "plan1")
        clock.now += timedelta(minutes=16)
        after = signal.request_count("k1", "plan1")
    stub.assert_no_pending_responses()
    assert (before, after) == (8, 9)


def test_an_idle_key_reads_the_same_count_on_both_sides_of_midnight():
    client, stub = _client()
    clock = Clock(datetime(2026, 3, 10, 23, 50, tzinfo=UTC))
    stub.add_response("get_api_key", {"id": "k1", "createdDate": CREATED})
    _usage(stub, "2026-03-09", "2026-03-10", [[5, 95], [3, 92]])
    _usage(stub, "2026-03-09", "2026-03-12", [[5, 95], [3, 92], [0, 100]], next_position="p2")
    _usage(stub, "2026-03-09", "2026-03-12", [[0, 100]], position="p2")    # every page is summed
    with stub:
        signal = ApiGatewayUsage(client, clock=clock)
        before = signal.request_count("k1", "plan1")
        clock.now += timedelta(days=1, minutes=16)                      # a whole day later
        assert signal.request_count("k1", "plan1") == before == 8
    stub.assert_no_pending_responses()


def test_usage_of_unknown_origin_is_never_idle():
    client, stub = _client()
    stub.add_client_error("get_api_key", "NotFoundException", http_status_code=404)
    stub.add_response("get_api_key", {"id": "k1", "createdDate": CREATED})
    stub.add_client_error("get_usage", "TooManyRequestsException", http_status_code=429)
    with stub:
        signal = ApiGatewayUsage(client, clock=Clock(datetime(2026, 3, 10, 12, tzinfo=UTC)))
        assert signal.request_count("k1", "plan1") is None       # creation day unknown
        assert signal.request_count("k1", "plan1") is None       # usage unknown


def test_quota_carry_over_reads_the_clocks_day():
    client, stub = _client()
    stub.add_response("get_usage", {"items": {"old": [[800, 200]]}},
                      {"usagePlanId": "plan1", "keyId": "old", "startDate": "2026-03-11", "endDate": "2026-03-11"})
    stub.add_response("update_usage", {"usagePlanId": "plan1"})
    with stub:
        carrier = QuotaCarrier(client, clock=Clock(datetime(2026, 3, 11, 0, 1, tzinfo=UTC)))
        assert carrier.carry("plan1", "old", "new") == 200
