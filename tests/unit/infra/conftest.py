"""Fixtures for the Pulumi program tests (mocks only; no CLI, no cloud).

Pulumi mocks are process-global, so the dev stack is run ONCE per session (``dev_run``) and every
control test returns an Output built from that run's resources (failure case P5: a test that does
not return its Output would pass without asserting). Tests that need another config call
``infra.mocks.run_program`` themselves; that call installs fresh mocks but leaves the already
resolved outputs of ``dev_run`` intact.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from infra.mocks import ProgramRun, RecordedResource, run_program


@pytest.fixture(scope="session")
def dev_run() -> ProgramRun:
    """The dev stack (Pulumi.dev.yaml) run once under mocks."""
    return run_program()


@pytest.fixture(scope="session")
def no_cognito_run() -> ProgramRun:
    """The dev stack with ``cognito.enabled: false`` (API key only)."""
    from infra.config import dev_stack_config

    cfg = dev_stack_config()
    cfg["secure-mail-api:cognito"] = json.dumps({"enabled": False})
    return run_program(cfg)


def component_urns(run: ProgramRun) -> list[pulumi.Output[str]]:
    s = run.stack
    comps = [s.encryption, s.storage, s.audit, s.email, s.sender, s.api, s.waf, s.monitoring, s.rotator]
    if s.oauth is not None:
        comps.append(s.oauth)
    if s.scheduled_rotator is not None:
        comps.append(s.scheduled_rotator)
    return [c.urn for c in comps]


def check_recorded(run: ProgramRun, fn: Callable[[list[RecordedResource]], Any]) -> pulumi.Output:
    """Output that runs ``fn(recorded resources)`` once every component URN has resolved."""
    return pulumi.Output.all(*component_urns(run)).apply(lambda _: fn(run.resources))


def of_type(resources: list[RecordedResource], typ: str) -> list[RecordedResource]:
    found = [r for r in resources if r.typ == typ]
    assert found, f"no {typ} recorded"
    return found


def policy(doc: str | dict) -> dict:
    return json.loads(doc) if isinstance(doc, str) else doc


def statements(doc: str | dict) -> list[dict]:
    return policy(doc)["Statement"]


def plain_strings(value: Any, *, skip_secrets: bool = True):
    """Strings of ``value``; with ``skip_secrets`` only those outside Pulumi secret wrappers (what
    the state would hold in clear)."""
    from pulumi.runtime.rpc import is_rpc_secret

    if skip_secrets and is_rpc_secret(value):
        return
    if isinstance(value, dict):
        for v in value.values():
            yield from plain_strings(v, skip_secrets=skip_secrets)
    elif isinstance(value, list):
        for v in value:
            yield from plain_strings(v, skip_secrets=skip_secrets)
    elif isinstance(value, str):
        yield value


class Helpers:
    """Helper functions handed to tests through the ``h`` fixture (conftest modules are not importable)."""

    check_recorded = staticmethod(check_recorded)
    of_type = staticmethod(of_type)
    policy = staticmethod(policy)
    statements = staticmethod(statements)
    component_urns = staticmethod(component_urns)
    plain_strings = staticmethod(plain_strings)


@pytest.fixture(scope="session")
def h() -> type[Helpers]:
    return Helpers
