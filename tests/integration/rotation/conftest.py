"""Fixtures: the worker's real OpenBao dev server and moto server, reset before each test and set up
by the same bootstrap as the demo; helpers to build engines and to check the invariants."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotation.audit import AuditLog
from rotation.backends.apigateway import ApiGatewayKeys
from rotation.backends.ratelimit import ControlPlaneLimiter
from rotation.backends.vault import VaultStore
from rotation.config import ConsumersFile
from rotation.dev.stack import DevCredentials, EmbeddedStack
from rotation.engine.runner import Engine
from rotation.settings import Settings
from rotation.wiring import make_targets

FLEET_WORKERS = 3   # consumers worked on at once by every test engine (Engine(workers=...))


def consumers_file(tmp: Path, names=("billing", "crm", "newsletter"), **defaults) -> ConsumersFile:
    return ConsumersFile.model_validate({
        "version": 1,
        "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
        "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d", **defaults},
        "consumers": [
            {"name": n, "tier": "premium" if i == 0 else "standard",
             "targets": [{"type": "file", "path": str(tmp / f"{n}.key")}]}
            for i, n in enumerate(names)
        ],
    })


class FakeClock:
    """A settable UTC clock shared by every engine of a test: it stands for the clock all runners
    share (Vault's), so it drives grace, retention *and* lease expiry without sleeping."""

    def __init__(self):
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


@dataclass
class Env:
    stack: EmbeddedStack
    creds: DevCredentials
    consumers: ConsumersFile
    settings: Settings
    tmp: Path
    clock: FakeClock = field(default_factory=FakeClock)
    audits: list[AuditLog] = field(default_factory=list)

    def engine(self, **kw) -> Engine:
        """An engine on this test's stack; ``clock=None`` gives it its production clock (Vault's)."""
        settings = kw.pop("settings", self.settings)
        vault = VaultStore(settings)
        apigw = ApiGatewayKeys(settings, limiter=ControlPlaneLimiter(1e6, 10**6, 1e6))
        audit = kw.pop("audit", None) or AuditLog(self.tmp / "audit.jsonl")
        self.audits.append(audit)
        kw.setdefault("targets_for", lambda c: make_targets(c, vault, settings))
        kw.setdefault("clock", self.clock)
        if kw["clock"] is None:
            del kw["clock"]
        kw.setdefault("verify_timeout_seconds", 3)
        # every engine test (the crash and race tests included) runs with a worker pool
        kw.setdefault("workers", FLEET_WORKERS)
        return Engine(kw.pop("consumers", self.consumers), vault, apigw, audit, **kw)

    def expire_leases(self) -> None:
        """Let every lease run out on the shared clock (instead of sleeping past it)."""
        self.clock.advance(seconds=301)

    def root(self):
        return self.stack.root_client()

    def apigw(self):
        return self.stack.aws_session().client("apigateway", endpoint_url=self.stack.aws_endpoint)

    def state(self, consumer: str):
        return VaultStore(self.settings).read_key_state(consumer)

    def audit_text(self) -> str:
        p = self.tmp / "audit.jsonl"
        return p.read_text() if p.exists() else ""


@pytest.fixture
def env(worker_stack, tmp_path, monkeypatch):
    worker_stack.reset()
    cf = consumers_file(tmp_path)
    creds = worker_stack.bootstrap(cf)
    for k, v in worker_stack.env(creds).items():
        monkeypatch.setenv(k, v)
    # the tests' webhook receivers listen on loopback, which a real rotator refuses by default
    monkeypatch.setenv("ROTATION_WEBHOOK_ALLOW_LOOPBACK", "true")
    # the file targets live in tmp_path: the file target checks the allowed directories at write time
    monkeypatch.setenv("ROTATION_FILE_TARGET_DIRS", str(tmp_path))
    settings = Settings()
    return Env(worker_stack, creds, cf, settings, tmp_path)


def assert_invariants(env: Env) -> None:
    """The architecture's invariants, checked against the real servers:
    every consumer with a current key holds one the API accepts (enabled, its value, its plan);
    no enabled managed API key exists that Vault does not know; at most one pending per consumer."""
    api = env.apigw()
    keys = api.get_api_keys(includeValues=True)["items"]
    by_id = {k["id"]: k for k in keys}
    known: set[str] = set()
    for c in env.consumers.consumers:
        st = env.state(c.name)
        known |= st.known_key_ids()
        if st.pending is not None and st.pending.key_name:
            # A key minted for the pending record is known by its deterministic name (its id
            # reaches Vault with the promote write): it must hold the pending value.
            for k in keys:
                if k["name"] == st.pending.key_name:
                    assert k["value"] == st.pending.value, f"{c.name}: pending key value differs from Vault"
                    known.add(k["id"])
        if st.current is not None:
            k = by_id.get(st.current.key_id)
            assert k is not None, f"{c.name}: current key {st.current.key_id} missing in API Gateway"
            assert k["enabled"], f"{c.name}: current key disabled"
            assert k["value"] == st.current.value, f"{c.name}: API Gateway value differs from Vault"
            plan = env.creds.usage_plan_ids[c.tier]
            plans = {p["id"] for p in api.get_usage_plans(keyId=st.current.key_id)["items"]}
            assert plan in plans, f"{c.name}: current key not in its usage plan"
    unknown_enabled = [k["name"] for k in keys if k["enabled"] and k["id"] not in known]
    assert not unknown_enabled, f"enabled API keys Vault does not know: {unknown_enabled}"
