"""Traffic signals: has an API key been used lately? Feeds the early revoke of an old key.

A signal answers :meth:`TrafficSignal.request_count` with a counter of requests made with a key
(any monotonic-per-period counter works), or ``None`` when it cannot tell. The engine snapshots
the counter in the rotation journal; an old key whose counter has not moved for the consumer's
``quiet_period`` is idle. ``None`` never counts as idle, so without a signal the grace period
alone decides.

Implementations:

* :class:`ApiGatewayUsage`: API Gateway ``GetUsage`` for the key in its usage plan
  (https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsage.html). GetUsage counts per UTC
  day, so one day's figure drops to zero at midnight: a quiet-period check spanning midnight would
  compare yesterday's snapshot with today's zero. The signal therefore sums *every* day from a
  fixed start (the UTC day the key was created, from GetApiKey ``createdDate``) to today, a counter
  that only grows, whatever the days between two looks. Not answered by moto (tested with
  botocore's Stubber).
* :class:`NoTrafficSignal`: always ``None``.
* :class:`UsageEndpointTraffic`: per-key counters served as JSON ``{"<key id>": <count>}`` by an
  HTTP endpoint (the local dev gateway's ``/_dev/usage``, for the zero-downtime proof).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from rotation.errors import AwsError

__all__ = ["ApiGatewayUsage", "NoTrafficSignal", "QuotaCarrier", "TrafficSignal", "UsageEndpointTraffic"]


class TrafficSignal(Protocol):
    def request_count(self, key_id: str, usage_plan_id: str) -> int | None: ...


class NoTrafficSignal:
    def request_count(self, key_id: str, usage_plan_id: str) -> int | None:
        return None


class UsageEndpointTraffic:
    """Per-key request counters read with ``GET <url>`` answering ``{"<key id>": <count>}``.

    Returns the count for the key (0 for a key the endpoint never saw), or ``None`` when the
    endpoint cannot be reached or answers something else (unknown traffic never counts as idle).
    ``usage_plan_id`` is ignored. ``timeout_seconds`` bounds each read; ``token`` is sent as
    ``Authorization: Bearer <token>`` (hidden from ``repr``).
    """

    def __init__(self, url: str, *, token: str | None = None, timeout_seconds: float = 2.0):
        self.url = url
        self._token = token
        self.timeout = timeout_seconds

    def __repr__(self) -> str:
        return f"UsageEndpointTraffic({self.url!r})"

    def request_count(self, key_id: str, usage_plan_id: str) -> int | None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url, headers=headers),
                                        timeout=self.timeout) as resp:
                counts = json.load(resp)
            return int(counts.get(key_id, 0))
        except (OSError, ValueError, AttributeError, TypeError):
            return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _day(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d")


def _used_and_remaining(resp: dict, key_id: str) -> tuple[int, int] | None:
    days = (resp.get("items") or {}).get(key_id)
    if not days:
        return None
    used, remaining = days[-1][0], days[-1][1]
    return int(used), int(remaining)


class ApiGatewayUsage:
    """Requests made with ``key_id`` in ``usage_plan_id`` since the UTC day the key was created,
    summed over every day up to today (GetApiKey for ``createdDate``, then GetUsage from that day
    to today, every page). A counter that never resets at midnight, so "unchanged" means "idle".

    :param apigw_client: a boto3 ``apigateway`` client (the rate-limited one).
    :param clock: returns the current time (aware datetime); injected by tests.
    Returns ``None`` (unknown, never idle) when either call fails or ``createdDate`` is missing.
    """

    def __init__(self, apigw_client, *, clock: Callable[[], datetime] = _utcnow):
        self.client = apigw_client
        self.clock = clock
        self._created: dict[str, str] = {}

    def _start_day(self, key_id: str) -> str | None:
        if key_id not in self._created:
            created = self.client.get_api_key(apiKey=key_id, includeValue=False).get("createdDate")
            if not isinstance(created, datetime):
                return None
            self._created[key_id] = _day(created if created.tzinfo else created.replace(tzinfo=UTC))
        return self._created[key_id]

    def request_count(self, key_id: str, usage_plan_id: str) -> int | None:
        try:
            start = self._start_day(key_id)
            if start is None:
                return None
            today = _day(self.clock())
            total, position = 0, None
            while True:
                kwargs = {"usagePlanId": usage_plan_id, "keyId": key_id, "startDate": min(start, today),
                          "endDate": today}
                if position:
                    kwargs["position"] = position
                resp = self.client.get_usage(**kwargs)
                total += sum(int(day[0]) for day in (resp.get("items") or {}).get(key_id) or [] if day)
                position = resp.get("position")
                if not position:
                    return total
        except Exception:  # noqa: BLE001 - unknown traffic is "not idle", never an error
            return None


class QuotaCarrier:
    """Carry the old key's remaining quota over to the new key (GetUsage + UpdateUsage), so a
    rotation does not hand the consumer a fresh quota. During the grace period the old key keeps
    its own remaining quota too; once the app has switched, the old key is idle.

    Returns the remaining count carried over, or ``None`` when the usage plan has no quota or the
    API does not answer (the emulator); raises :class:`AwsError` only for a failed UpdateUsage.
    https://docs.aws.amazon.com/apigateway/latest/api/API_UpdateUsage.html
    """

    def __init__(self, apigw_client, *, clock: Callable[[], datetime] = _utcnow):
        self.client = apigw_client
        self.clock = clock

    def carry(self, usage_plan_id: str, old_key_id: str, new_key_id: str) -> int | None:
        try:
            today = _day(self.clock())
            resp = self.client.get_usage(usagePlanId=usage_plan_id, keyId=old_key_id, startDate=today,
                                         endDate=today)
        except Exception:  # noqa: BLE001
            return None
        found = _used_and_remaining(resp, old_key_id)
        if found is None:
            return None
        remaining = found[1]
        try:
            self.client.update_usage(usagePlanId=usage_plan_id, keyId=new_key_id, patchOperations=[
                {"op": "replace", "path": "/remaining", "value": str(remaining)}])
        except Exception as exc:  # noqa: BLE001
            raise AwsError(f"UpdateUsage {usage_plan_id}/{new_key_id}: {type(exc).__name__}") from None
        return remaining
