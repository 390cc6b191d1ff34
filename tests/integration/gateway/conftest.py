"""Fixtures for the dev gateway, canary and zero-downtime tests: one embedded stack (OpenBao dev +
moto) and one :class:`rotation.dev.gateway.DevGateway` per module; API keys made per test.

The root conftest clears ``AWS_*`` before every test; the gateway's handler reads its settings
from the environment, so :func:`_gateway_env` puts them back (with ``monkeypatch``) per test.
"""

from __future__ import annotations

import itertools
import json
import secrets
import string
import urllib.request
from dataclasses import dataclass

import pytest

from rotation.config import ConsumersFile
from rotation.dev.gateway import DevGateway
from rotation.dev.stack import EmbeddedStack

CONSUMERS = ConsumersFile.model_validate({
    "version": 1,
    "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
    "consumers": [{"name": "billing", "tier": "premium"}, {"name": "crm", "tier": "standard"}],
})
CACHE_SECONDS = 0.5
_n = itertools.count(1)


def new_value() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


@dataclass
class Keys:
    """Makes API keys in the emulator: ``make(plan=..., enabled=...) -> (key_id, value)``."""

    stack: EmbeddedStack

    def client(self):
        return self.stack.aws_session().client("apigateway", endpoint_url=self.stack.aws_endpoint)

    def make(self, plan: str | None = "premium", *, enabled: bool = True) -> tuple[str, str]:
        value = new_value()
        api = self.client()
        key_id = api.create_api_key(name=f"test-key-{next(_n)}", value=value, enabled=enabled)["id"]
        if plan is not None:
            plan_id = self.stack.creds.usage_plan_ids.get(plan, plan)
            api.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
        return key_id, value

    def sent_count(self) -> int:
        with urllib.request.urlopen(f"{self.stack.aws_endpoint}/moto-api/data.json", timeout=60) as r:
            ses = json.load(r).get("ses", {})
        return len(ses.get("Message", [])) + len(ses.get("RawMessage", []))


@pytest.fixture(scope="module")
def stack():
    with EmbeddedStack() as st:
        st.creds = st.bootstrap(CONSUMERS)
        yield st


@pytest.fixture(scope="module")
def gateway(stack):
    with DevGateway(stack.aws_endpoint, key_cache_seconds=CACHE_SECONDS, quiet=True) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _gateway_env(request, monkeypatch):
    """Re-apply the handler's environment after the root conftest cleared it."""
    if "gateway" in request.fixturenames:
        gw = request.getfixturevalue("gateway")
        for k, v in gw.handler_environment().items():
            monkeypatch.setenv(k, v)


@pytest.fixture
def keys(stack) -> Keys:
    return Keys(stack)


@pytest.fixture
def engine_env(stack, gateway, monkeypatch, tmp_path):
    """(Settings for the rotator on this stack, tmp dir); the handler's environment is set."""
    from rotation.settings import Settings

    for k, v in stack.env(stack.creds).items():
        monkeypatch.setenv(k, v)
    for k, v in gateway.handler_environment().items():
        monkeypatch.setenv(k, v)
    return Settings(verify_timeout_seconds=10, lease_ttl_seconds=60), tmp_path


def canary_engine(settings, tmp_path, url):
    """The real engine (``build_engine``) with the canary on ``url`` in its test step."""
    from rotation.audit import AuditLog
    from rotation.verifiers.canary import CanaryVerifier
    from rotation.wiring import build_engine

    return build_engine(settings, CONSUMERS, audit=AuditLog(tmp_path / "audit.jsonl"),
                        verifiers=[CanaryVerifier(url)])
