"""Run the rotation jobs as an AWS Lambda function, e.g. on an EventBridge Scheduler schedule.

Stateless: every invocation is one ``rotation run``; many invocations (or a Lambda next to a
CronJob) coordinate only through the CAS leases in Vault. Settings come from the function's
environment (:mod:`rotation.settings`; ``ROTATION_CONSUMERS_FILE`` names the consumers file
bundled with the function). Vault auth is typically AppRole with the secret id from the
function's encrypted environment, or Kubernetes/JWT where available.

Event (all optional): ``{"force": ["crm"], "emergency": ["billing"], "only": ["crm", "billing"]}``.
Returns ``{"consumers": int, "failed": int, "outcomes": [{"consumer", "action", "outcome", "serial"}]}``
and raises :class:`RotationFailed` when a consumer failed, so the invocation counts as an error
for Lambda's ``Errors`` metric and the alarm on it.
"""

from __future__ import annotations

import os
from typing import Any

from .app import build_engine, publish_run_metrics
from .audit import REDACTOR
from .config import load_consumers_file
from .errors import RotationError
from .settings import load_settings

__all__ = ["RotationFailed", "handler"]


class RotationFailed(RotationError):
    """At least one consumer's rotation failed in this invocation (details in the audit log)."""


def _names(event: dict[str, Any], key: str) -> list[str]:
    value = event.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"event.{key}: must be a list of consumer names")
    return value


def handler(event: dict[str, Any] | None, context: Any = None) -> dict[str, Any]:
    """One rotation run; see the module docstring for the event and the result."""
    event = event or {}
    settings = load_settings()
    consumers = load_consumers_file(os.environ.get("ROTATION_CONSUMERS_FILE", "consumers.yaml"))
    only = _names(event, "only") or None
    engine = build_engine(settings, consumers)
    summary = engine.run(only=only, force=_names(event, "force"), emergency=_names(event, "emergency"))
    publish_run_metrics(settings, consumers, summary)
    result = {
        "consumers": len(summary.outcomes),
        "failed": len(summary.failed),
        "outcomes": [{"consumer": o.consumer, "action": o.action, "outcome": o.outcome, "serial": o.serial}
                     for o in summary.outcomes],
    }
    if summary.failed:
        raise RotationFailed(REDACTOR.scrub(
            "; ".join(f"{o.consumer}: {o.outcome} ({o.detail[:120]})" for o in summary.failed)))
    return result
