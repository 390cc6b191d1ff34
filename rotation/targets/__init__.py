"""Where new keys are pushed: each target returns a :class:`PushResult` per consumer.

A target never raises for a consumer's failure; it reports ``ok=False`` with a reason, so one
slow or broken consumer never stops the others (failure case S2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Delivery", "PushResult", "PushTarget"]


@dataclass(frozen=True)
class Delivery:
    """What a target needs to deliver one key generation. ``value`` is the secret."""

    consumer: str
    serial: int
    rotation_id: str
    key_id: str
    value: str = field(repr=False)
    fingerprint: str = ""


@dataclass(frozen=True)
class PushResult:
    target_id: str
    ok: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class PushTarget(Protocol):
    target_id: str
    required: bool

    def push(self, delivery: Delivery) -> PushResult: ...


def safe_push(target: PushTarget, delivery: Delivery) -> PushResult:
    """Push, turning an exception into a failed :class:`PushResult` (secrets scrubbed): a target
    that raises is a failed push, never a crash of the run."""
    from rotation.audit import REDACTOR

    try:
        return target.push(delivery)
    except Exception as exc:  # noqa: BLE001
        return PushResult(target.target_id, False, REDACTOR.scrub(f"{type(exc).__name__}: {exc}")[:200])
