"""Rollback: undo a rotation that failed before its finish step (docs/architecture.md, "A rotation,
step by step"): every target gets the current key back (fenced: a later lease holder's write is
never replaced), and only when all took it, the new API key is disabled and deleted and
``pending`` cleared. ``current`` is never touched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rotation.audit import REDACTOR, AuditLog
from rotation.backends.apigateway import ApiGatewayKeys
from rotation.backends.vault import VaultStore
from rotation.config import Consumer, ConsumersFile
from rotation.engine.lease import Lease
from rotation.errors import LeaseLost, PushError, VaultError
from rotation.records import KeyState, RotationRecord, Step
from rotation.targets import Delivery, PushTarget, safe_push

__all__ = ["Rollback"]


class Rollback:
    """Rolls back one consumer's pending rotation under its lease (:meth:`run`).

    :param journal: records a journal step (the steps' :meth:`~rotation.engine.steps.RotationSteps.journal`).
    :param disable: disables an API key, already gone is fine (:meth:`~rotation.engine.revocation.Revoker.disable`).
    """

    def __init__(self, vault: VaultStore, apigw: ApiGatewayKeys, audit: AuditLog, lease: Lease,
                 consumers: ConsumersFile, targets_for: Callable[[Consumer], list[PushTarget]], *,
                 journal: Callable[..., RotationRecord], disable: Callable[[str], Any]):
        self.vault = vault
        self.apigw = apigw
        self.audit = audit
        self.lease = lease
        self.consumers = consumers
        self.targets_for = targets_for
        self.owner = lease.owner
        self.journal = journal
        self.disable = disable

    def run(self, c: Consumer, state: KeyState, journal: RotationRecord, reason: str) -> tuple[KeyState, RotationRecord]:
        """Undo a rotation that failed before promotion: give the current key back to every
        target (any of them may hold the new one), and only when
        all of them took it back, disable and delete the new key and clear ``pending``.
        ``current`` is untouched. A failed restore raises :class:`PushError` and leaves the
        rotation at ``rolling_back`` with both keys enabled; the next run retries the rollback."""
        # Work from what Vault holds now, not from what was read before the failed step: that
        # step's write may have gone through although its answer was lost (a race against
        # ourselves is not a lost lease). Someone else holding the record is one.
        fresh = self.vault.read_rotation(c.name)
        if fresh.owner != self.owner:
            raise LeaseLost(f"{c.name}: the rotation lease was taken over before the rollback")
        journal = fresh
        pending = state.require_pending()
        state = self.vault.read_key_state(c.name)
        if state.pending is None or state.pending.rotation_id != pending.rotation_id:
            raise VaultError(f"{c.name}: the pending key of rotation {pending.rotation_id} changed before the "
                             "rollback; the next run looks again")
        pending = state.require_pending()
        journal = self.lease.fence(c.name, journal)
        journal = self.lease.renew(c.name, journal, step="rolling_back")
        restored: list[str] = []
        not_restored: list[str] = []
        if state.current is not None:
            # Every target, even one whose push failed for us: another runner's concurrent push
            # (after a lease takeover) may still have handed it the new key.
            cur = state.current
            for target in self.targets_for(c):
                journal = self.lease.fence(c.name, journal)
                r = safe_push(target, Delivery(c.name, cur.serial, cur.rotation_id, cur.key_id or "",
                                               cur.value, cur.fingerprint, fence=journal.version))
                (restored if r.ok else not_restored).append(target.target_id)
        if not_restored:
            self.audit.emit("rollback", "incomplete", consumer=c.name, rotation_id=pending.rotation_id,
                            serial=pending.serial, not_restored=not_restored)
            raise PushError(f"rollback of serial {pending.serial} waits: could not give the current key back to "
                            f"{', '.join(not_restored)}; both keys stay enabled, the next run retries")
        key_ids = {pending.key_id} if pending.key_id else set()
        key_ids |= {k["id"] for k in self.apigw.find_keys_by_name(self.apigw.key_name(c.name, pending.serial))}
        plan_id = self.apigw.resolve_usage_plan(self.consumers.usage_plans[c.tier])
        for kid in key_ids:
            journal = self.lease.guard(c.name, journal)
            self.disable(kid)
            self.apigw.detach(plan_id, kid)
            self.apigw.delete_key(kid)
        journal = self.lease.fence(c.name, journal)
        state = self.vault.write_key_state(c.name, state.evolve(pending=None))
        journal = self.journal(c, journal, Step.ROLLED_BACK, acks={})
        self.audit.emit("rollback", "rolled_back", consumer=c.name, rotation_id=pending.rotation_id,
                        serial=pending.serial, key_id=pending.key_id, reason=REDACTOR.scrub(reason),
                        restored=restored, vault_version=state.version)
        return state, journal
