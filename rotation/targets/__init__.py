"""Where new keys are pushed: each target returns a :class:`PushResult` per consumer.

A target never raises for a consumer's failure; it reports ``ok=False`` with a reason, so one
slow or broken consumer never stops the others (failure case S2).

A target may also offer ``preflight(consumer) -> str | None``: why a push would be refused, found
by reading only (the webhook's signing secret from Vault, the file target's directory), so the
engine can stop a rotation before its first side effect (failure case H8; :func:`preflight`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Delivery", "PushResult", "PushTarget", "preflight", "preflight_problems", "safe_push"]


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


def preflight(target: PushTarget, consumer: str) -> str | None:
    """Why ``target`` would refuse to push ``consumer``'s next key, or ``None`` (also for a target
    without a ``preflight`` method). Reads only; an exception is a problem (secrets scrubbed)."""
    from rotation.audit import REDACTOR

    check = getattr(target, "preflight", None)
    if check is None:
        return None
    try:
        problem = check(consumer)
    except Exception as exc:  # noqa: BLE001 - reported as this target's problem
        return REDACTOR.scrub(f"{type(exc).__name__}: {exc}")[:200]
    return REDACTOR.scrub(problem)[:300] if problem else None


def preflight_problems(targets: Iterable[PushTarget], consumer: str) -> list[tuple[str, str]]:
    """``[(target id, problem)]`` of the *required* targets that would refuse ``consumer``'s next
    key (:func:`preflight`); empty when a rotation may start (failure case H8)."""
    out = []
    for target in targets:
        if target.required and (problem := preflight(target, consumer)):
            out.append((target.target_id, problem))
    return out
