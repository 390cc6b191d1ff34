"""Reconciliation: every run reads back what each push target holds and gives the current key back
to a target that holds another one (docs/architecture.md, "Fencing at the target").

Fencing at the target (:mod:`rotation.client.fencing`) keeps a stalled runner from replacing a
newer key, but a target can still hold the wrong one: a stalled runner's write that landed before
the lease holder's, a key set back by hand, a push that failed on a target that is not required.
The acknowledgement journal cannot tell (it records what was pushed, not what is held), so each
run asks the targets themselves (:class:`rotation.targets.ReadableTarget`: file, Secrets Manager,
SSM; a webhook receiver cannot be read back, it refuses older deliveries itself).

A target is repaired only when no rotation is in flight (no ``pending`` key: during a rotation a
target may rightly hold the new key) and it holds a serial other than ``current``'s. A revoked
key (disabled, or deleted) found in a target is an alarm-worthy audit event
(``reconcile``/``revoked_key_found``, ``alarm: true``): an app that reads it is cut off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rotation.audit import REDACTOR, AuditLog
from rotation.config import Consumer
from rotation.engine.lease import Lease
from rotation.errors import PushError
from rotation.records import KeyState, RotationRecord
from rotation.targets import Delivery, Held, PushTarget, safe_push

__all__ = ["Drift", "Reconciler"]


@dataclass(frozen=True)
class Drift:
    """One target that holds something other than the current key: ``held`` is what it holds
    (``None``: nothing), ``revoked`` whether that is a revoked key's serial."""

    target: PushTarget
    held: Held | None
    revoked: bool


class Reconciler:
    """Finds (:meth:`drift`) and repairs (:meth:`repair`) targets that do not hold the current key.

    :param targets_for: the consumer's push targets (the engine's).
    :param lease: the engine's :class:`~rotation.engine.lease.Lease`; every repair push is fenced.
    """

    def __init__(self, audit: AuditLog, lease: Lease, targets_for: Callable[[Consumer], list[PushTarget]]):
        self.audit = audit
        self.lease = lease
        self.targets_for = targets_for

    def drift(self, c: Consumer, state: KeyState) -> list[Drift]:
        """Read back every readable target of ``c`` (no lease needed: reads only). Empty while a
        rotation is in flight or before the first key. A target that cannot be read is reported
        in the audit trail (``reconcile``/``unreadable``) and left alone."""
        cur = state.current
        if cur is None or state.pending is not None:
            return []
        # serials whose API key is still enabled besides current's: the previous key in its grace
        enabled = {r.serial for r in (state.previous, *state.retired) if r is not None and not r.disabled_at}
        out = []
        for target in self.targets_for(c):
            read_back = getattr(target, "read_back", None)
            if read_back is None:
                continue
            try:
                held: Held | None = read_back(c.name)
            except PushError as exc:
                self.audit.emit("reconcile", "unreadable", consumer=c.name, target=target.target_id,
                                detail=REDACTOR.scrub(str(exc))[:200])
                continue
            if held is not None and held.serial == cur.serial:
                continue
            # any other serial we wrote (> 0) is a revoked, deleted or rolled-back key: it no longer works
            out.append(Drift(target, held, held is not None and held.serial > 0 and held.serial not in enabled))
        return out

    def repair(self, c: Consumer, state: KeyState, journal: RotationRecord,
               drift: list[Drift]) -> tuple[RotationRecord, list[str]]:
        """Give the current key back to each drifted target, fenced (the target refuses it if a
        later lease holder wrote first). Returns the journal at its new version and the required
        targets that could not be repaired (an optional one is reported in the audit trail only). Raises :class:`~rotation.errors.LeaseLost` /
        ``CasConflict`` when the lease is lost."""
        cur = state.current
        failed: list[str] = []
        if cur is None:
            return journal, failed
        for d in drift:
            held = {"held_serial": d.held.serial if d.held else None, "held_fence": d.held.fence if d.held else None}
            if d.revoked:
                self.audit.emit("reconcile", "revoked_key_found", alarm=True, consumer=c.name,
                                target=d.target.target_id, current_serial=cur.serial, **held)
            elif d.held is not None and d.held.serial == 0:
                self.audit.emit("reconcile", "unknown_key_found", alarm=True, consumer=c.name,
                                target=d.target.target_id, current_serial=cur.serial, **held)
            journal = self.lease.fence(c.name, journal)
            result = safe_push(d.target, Delivery(c.name, cur.serial, cur.rotation_id, cur.key_id or "", cur.value,
                                                  cur.fingerprint, fence=journal.version))
            self.audit.emit("reconcile", "restored" if result.ok else "failed", consumer=c.name,
                            target=d.target.target_id, serial=cur.serial, fingerprint=cur.fingerprint,
                            detail=REDACTOR.scrub(result.detail)[:200], **held)
            if not result.ok and d.target.required:      # an optional target never fails the run
                failed.append(f"{d.target.target_id}: {REDACTOR.scrub(result.detail)[:200]}")
        return journal, failed
