"""Where new keys are pushed: each target returns a :class:`PushResult` per consumer.

A target never raises for a consumer's failure; it reports ``ok=False`` with a reason, so one
slow or broken consumer never stops the others (failure case S2).

A target may also offer ``preflight(consumer) -> str | None``: why a push would be refused, found
by reading only (the webhook's signing secret from Vault, the file target's directory), so the
engine can stop a rotation before its first side effect (failure case H8; :func:`preflight`).

**Fencing at the target** (docs/architecture.md, "Fencing at the target"). A check of the lease
before a push is never a fence by itself: a runner can stall between the check and the write. So
every target decides at the write itself with :func:`supersedes` (the rule and its source:
:mod:`rotation.client.fencing`): each :class:`Delivery` carries ``serial`` and ``fence``, a target
stores both beside the key and refuses a write older than what it holds (``ok=False``,
``extra[SUPERSEDED]``). A target that can say what it holds (:class:`ReadableTarget`) is read back
by every run and repaired when it holds an older or revoked key (:mod:`rotation.engine.reconcile`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rotation.client.fencing import Held, supersedes

__all__ = ["SUPERSEDED", "Delivery", "Held", "PushResult", "PushTarget", "ReadableTarget", "preflight",
           "preflight_problems", "refused", "safe_push", "supersedes"]

#: ``PushResult.extra`` key set when a target refused a write because it holds a newer one
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Delivery:
    """What a target needs to deliver one key generation. ``value`` is the secret."""

    consumer: str
    serial: int
    rotation_id: str
    key_id: str
    value: str = field(repr=False)
    fingerprint: str = ""
    #: the fencing token: version of ``rotations/<consumer>`` that confirmed the writer's lease
    #: (0: unfenced, e.g. a tool outside the engine; any fenced write replaces it)
    fence: int = 0


@dataclass(frozen=True)
class PushResult:
    target_id: str
    ok: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def refused(target_id: str, delivery: Delivery, held: Held) -> PushResult:
    """The :class:`PushResult` of a write refused by :func:`supersedes` (``ok=False``,
    ``extra[SUPERSEDED]``)."""
    return PushResult(target_id, False,
                      f"refused: the target holds serial {held.serial} (fence {held.fence}), newer than "
                      f"serial {delivery.serial} (fence {delivery.fence}): a later lease holder wrote it, or "
                      "something outside the rotation did (a target restored or written by hand, a Vault "
                      "restored from a snapshot); docs/operations.md, 'A push target refuses the key'",
                      {SUPERSEDED: True, "held_serial": held.serial, "held_fence": held.fence})


class PushTarget(Protocol):
    target_id: str
    required: bool

    def push(self, delivery: Delivery) -> PushResult: ...


class ReadableTarget(PushTarget, Protocol):
    """A target that can say what it holds (for reconciliation, :mod:`rotation.engine.reconcile`)."""

    def read_back(self, consumer: str) -> Held | None:
        """What the target serves now, or ``None`` when it holds nothing we can read. Raises
        :class:`~rotation.errors.PushError` when it cannot be read."""
        ...


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
