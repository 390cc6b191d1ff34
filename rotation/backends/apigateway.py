"""API Gateway API keys and usage plans: where the mail API checks a caller's key.

Every call goes through :class:`~rotation.backends.ratelimit.ControlPlaneLimiter` (AWS's published
control-plane limits) and botocore's ``standard`` retry mode (jittered exponential backoff on
429/5xx). Errors become :class:`~rotation.errors.AwsError` naming the operation and AWS error
code, never a key value.

AWS facts this module relies on (API Gateway developer guide and API reference):

* ``CreateApiKey`` has no idempotency token, so :meth:`ApiGatewayKeys.create_key` looks the
  deterministic name up first, and a ``ConflictException`` (same value = same key) is resolved by
  looking the name up again.
* ``enabled`` must be set explicitly on creation.
* A key value is 20-128 characters; ``GetApiKey`` returns the value only with ``includeValue``
  (failure case A3).
* Tagging an existing key is a separate ``TagResource`` call, so tags are set at creation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config

from rotation.backends.aws_errors import aws_errors
from rotation.backends.ratelimit import ControlPlaneLimiter
from rotation.errors import AwsError, ConfigError, EmptyKeyValue
from rotation.settings import Settings

__all__ = ["TAG_CONSUMER", "TAG_MANAGED_BY", "TAG_ROTATION", "TAG_SERIAL", "TAG_STACK", "ApiGatewayKeys"]

TAG_MANAGED_BY = "managed-by"
TAG_STACK = "secure-mail-api:stack"
TAG_CONSUMER = "secure-mail-api:consumer"
TAG_SERIAL = "secure-mail-api:serial"
TAG_ROTATION = "secure-mail-api:rotation-id"
MANAGED_BY = "secure-mail-api-rotation"


def _no_retry_on_server_error(response: Any = None, **_: Any) -> bool | None:
    """botocore ``needs-retry`` handler for DeleteUsagePlanKey: ``False`` (do not retry) for an
    HTTP 5xx answer, ``None`` (the retry mode decides: throttling, connection errors) otherwise.
    A key another runner already detached is answered 404 by AWS but HTTP 500 by moto, and eight
    standard-mode attempts with backoff took 6-10 s, longer than a short lease; :meth:`detach`
    reads the plan back instead. A handler for the operation's own event runs before the service's
    retry handler, and ``False`` stops the retry (botocore ``Endpoint._needs_retry``)."""
    http = response[0] if isinstance(response, tuple) and response else None
    if http is not None and getattr(http, "status_code", 0) >= 500:
        return False
    return None


class ApiGatewayKeys:
    """API keys and usage-plan membership for one stack (``settings.stack``)."""

    def __init__(self, settings: Settings, *, session: boto3.Session | None = None,
                 limiter: ControlPlaneLimiter | None = None, client: Any = None):
        self.stack = settings.stack
        self.region = settings.aws_region
        self.limiter = limiter or ControlPlaneLimiter(
            settings.apigw_rate_per_second, settings.apigw_burst, settings.apigw_key_writes_per_second)
        session = session or boto3.Session(region_name=settings.aws_region)
        self.client = client or session.client(
            "apigateway", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region,
            config=Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=15),
        )
        # before-send fires once per HTTP attempt, so retries are rate-limited too.
        self.client.meta.events.register("before-send.apigateway", self._before_send)
        # detach() reads the plan back on any error: a server error is not retried blindly first
        self.client.meta.events.register("needs-retry.api-gateway.DeleteUsagePlanKey", _no_retry_on_server_error)
        self._plan_ids: dict[str, str] = {}

    def _before_send(self, event_name: str = "", **_: Any) -> None:
        self.limiter.before_call(event_name.rsplit(".", 1)[-1])

    # -- naming ---------------------------------------------------------------------------------
    def key_name(self, consumer: str, serial: int) -> str:
        """Deterministic API key name: ``secure-mail-api-<stack>-<consumer>-<serial>``."""
        return f"secure-mail-api-{self.stack}-{consumer}-{serial}"

    # -- usage plans ----------------------------------------------------------------------------
    def resolve_usage_plan(self, name: str) -> str:
        """Usage plan id for ``name`` (GetUsagePlans, paginated; cached per instance).

        Raises :class:`AwsError` when no plan, or more than one, has that name.
        """
        if name in self._plan_ids:
            return self._plan_ids[name]
        found = []
        with aws_errors("GetUsagePlans"):
            for page in self.client.get_paginator("get_usage_plans").paginate():
                found += [p["id"] for p in page.get("items", []) if p.get("name") == name]
        if len(found) != 1:
            raise AwsError(f"usage plan {name!r}: found {len(found)} plans with that name, expected 1 "
                           "(check usage_plans in the consumers file against the stack outputs)")
        self._plan_ids[name] = found[0]
        return found[0]

    def resolve_usage_plans(self, usage_plans: Mapping[str, str], source: str = "consumers file") -> dict[str, str]:
        """Resolve every ``tier -> usage plan name`` of the consumers file up front (one paginated
        GetUsagePlans), before any side effect, so a misspelt plan stops ``plan``/``run`` with a usage
        error instead of failing half-way through a rotation (the key created, the attach failing).

        Returns ``{tier: plan id}`` and caches the ids for :meth:`resolve_usage_plan`.
        Raises :class:`~rotation.errors.ConfigError` (exit code 2) naming ``usage_plans.<tier>`` for
        each name that matches no plan, or more than one; :class:`AwsError` when GetUsagePlans fails.
        """
        by_name: dict[str, list[str]] = {}
        with aws_errors("GetUsagePlans"):
            for page in self.client.get_paginator("get_usage_plans").paginate():
                for p in page.get("items", []):
                    by_name.setdefault(p.get("name", ""), []).append(p["id"])
        out, problems = {}, []
        for tier, name in usage_plans.items():
            ids = by_name.get(name, [])
            if len(ids) == 1:
                out[tier] = self._plan_ids[name] = ids[0]
            elif not ids:
                problems.append((f"usage_plans.{tier}", (f"no usage plan named {name!r} exists in {self.region} "
                                                         "(use the names of the stack output usagePlanIds)")))
            else:
                problems.append((f"usage_plans.{tier}", (f"{len(ids)} usage plans are named {name!r}; "
                                                         "the name must identify one plan")))
        if problems:
            raise ConfigError(source, problems)
        return out

    def plans_of_key(self, key_id: str) -> set[str]:
        """Ids of the usage plans ``key_id`` belongs to (GetUsagePlans with keyId)."""
        return self._ids("GetUsagePlans", key_id, "get_usage_plans", keyId=key_id)

    def attach(self, plan_id: str, key_id: str) -> None:
        """Add the key to the usage plan (CreateUsagePlanKey); already attached is fine."""
        try:
            with aws_errors("CreateUsagePlanKey", f"{plan_id}/{key_id}"):
                self.client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
        except AwsError as exc:
            if exc.code != "ConflictException":
                raise

    def plan_key_ids(self, plan_id: str) -> set[str]:
        """Ids of the API keys in usage plan ``plan_id`` (GetUsagePlanKeys, paginated)."""
        return self._ids("GetUsagePlanKeys", plan_id, "get_usage_plan_keys", usagePlanId=plan_id)

    def _ids(self, operation: str, what: str, paginator: str, **params: str) -> set[str]:
        """The ``id`` of every item of a paginated API Gateway listing (every page)."""
        with aws_errors(operation, what):
            return {item["id"] for page in self.client.get_paginator(paginator).paginate(**params)
                    for item in page.get("items", [])}

    def detach(self, plan_id: str, key_id: str) -> None:
        """Remove the key from the usage plan (DeleteUsagePlanKey). Idempotent: a key that is
        already out of the plan counts as done *whatever the service answered*, so on any error the
        plan's keys are read back (GetUsagePlanKeys) instead of trusting one error code (AWS answers
        404 ``NotFoundException``, moto HTTP 500). Raises the original :class:`AwsError` when the
        key is still in the plan or the read-back fails too.
        """
        try:
            with aws_errors("DeleteUsagePlanKey", f"{plan_id}/{key_id}"):
                self.client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
        except AwsError as exc:
            try:
                still_there = key_id in self.plan_key_ids(plan_id)
            except AwsError:
                raise exc from exc.__cause__
            if still_there:
                raise

    # -- keys -----------------------------------------------------------------------------------
    def find_keys_by_name(self, name: str) -> list[dict[str, Any]]:
        """Keys whose name is exactly ``name`` (GetApiKeys nameQuery, no values)."""
        with aws_errors("GetApiKeys", name):
            out = []
            for page in self.client.get_paginator("get_api_keys").paginate(nameQuery=name, includeValues=False):
                out += [k for k in page.get("items", []) if k.get("name") == name]
            return out

    def list_managed_keys(self) -> list[dict[str, Any]]:
        """Every key tagged as managed by this tool for this stack (GetApiKeys, paginated)."""
        with aws_errors("GetApiKeys"):
            out = []
            for page in self.client.get_paginator("get_api_keys").paginate(
                    includeValues=False, PaginationConfig={"PageSize": 500}):
                for k in page.get("items", []):
                    tags = k.get("tags") or {}
                    if tags.get(TAG_MANAGED_BY) == MANAGED_BY and tags.get(TAG_STACK) == self.stack:
                        out.append(k)
            return out

    def create_key(self, *, consumer: str, serial: int, value: str, rotation_id: str) -> str:
        """Create (or find, on a retry) the enabled key ``key_name(consumer, serial)``; return its id.

        Looks the name up first, since CreateApiKey has no idempotency token. Raises
        :class:`EmptyKeyValue` for a value outside 20-128 alphanumerics, :class:`AwsError` otherwise.
        """
        if not value or not value.isalnum() or not 20 <= len(value) <= 128:
            raise EmptyKeyValue(f"{consumer} serial {serial}: key value must be 20-128 alphanumerics")
        name = self.key_name(consumer, serial)
        existing = self.find_keys_by_name(name)
        if existing:
            return existing[0]["id"]
        tags = {TAG_MANAGED_BY: MANAGED_BY, TAG_STACK: self.stack, TAG_CONSUMER: consumer,
                TAG_SERIAL: str(serial), TAG_ROTATION: rotation_id}
        try:
            with aws_errors("CreateApiKey", name):
                return self.client.create_api_key(
                    name=name, value=value, enabled=True, tags=tags,
                    description=f"{consumer} key {serial}, minted by secure-mail-api rotation {rotation_id}",
                )["id"]
        except AwsError as exc:
            if exc.code == "ConflictException":
                again = self.find_keys_by_name(name)
                if again:
                    return again[0]["id"]
            raise

    def get_key(self, key_id: str, *, include_value: bool = False) -> dict[str, Any] | None:
        """GetApiKey; ``None`` when the key does not exist."""
        try:
            with aws_errors("GetApiKey", key_id):
                return self.client.get_api_key(apiKey=key_id, includeValue=include_value)
        except AwsError as exc:
            if exc.code == "NotFoundException":
                return None
            raise

    def set_enabled(self, key_id: str, enabled: bool) -> None:
        """UpdateApiKey ``/enabled``."""
        with aws_errors("UpdateApiKey", key_id):
            self.client.update_api_key(apiKey=key_id, patchOperations=[
                {"op": "replace", "path": "/enabled", "value": "true" if enabled else "false"}])

    def delete_key(self, key_id: str) -> None:
        """DeleteApiKey; already gone is fine."""
        try:
            with aws_errors("DeleteApiKey", key_id):
                self.client.delete_api_key(apiKey=key_id)
        except AwsError as exc:
            if exc.code != "NotFoundException":
                raise

    # -- fleet-scale variants (fewest calls on the happy path) ------------------------------------
    def create_new_key(self, *, consumer: str, serial: int, value: str, rotation_id: str) -> dict[str, Any]:
        """CreateApiKey for a key this run has just recorded as pending (so it cannot exist yet):
        one call, value and tags in the request, no lookup by name first. Returns CreateApiKey's
        answer (``id``, ``enabled``, ``value``...). A ``ConflictException`` falls back to the
        lookup by name (:meth:`create_key`'s resume path) and returns ``{"id": ...}`` only.
        Raises :class:`EmptyKeyValue` / :class:`AwsError` like :meth:`create_key`."""
        if not value or not value.isalnum() or not 20 <= len(value) <= 128:
            raise EmptyKeyValue(f"{consumer} serial {serial}: key value must be 20-128 alphanumerics")
        name = self.key_name(consumer, serial)
        tags = {TAG_MANAGED_BY: MANAGED_BY, TAG_STACK: self.stack, TAG_CONSUMER: consumer,
                TAG_SERIAL: str(serial), TAG_ROTATION: rotation_id}
        try:
            with aws_errors("CreateApiKey", name):
                return self.client.create_api_key(
                    name=name, value=value, enabled=True, tags=tags,
                    description=f"{consumer} key {serial}, minted by secure-mail-api rotation {rotation_id}",
                )
        except AwsError as exc:
            if exc.code == "ConflictException":
                again = self.find_keys_by_name(name)
                if again:
                    return {"id": again[0]["id"]}
            raise

    def disable_key(self, key_id: str) -> bool:
        """UpdateApiKey ``/enabled`` = false without a GetApiKey first; ``False`` when the key is
        already gone (NotFoundException), ``True`` otherwise. Raises :class:`AwsError`."""
        try:
            self.set_enabled(key_id, False)
            return True
        except AwsError as exc:
            if exc.code == "NotFoundException":
                return False
            raise
