"""The rotation steps, named as AWS Secrets Manager's rotation names them (create, set, test, finish;
https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda-functions.html),
with our distribution between test and finish:

1. **create**: the new value (CSPRNG, 40 alphanumerics) recorded as ``pending`` in Vault (CAS)
   *before* AWS is touched; withdrawn again if the lease ran out while the write was under way.
2. **set**: the API key created under a deterministic name (looked up first on a resume), enabled,
   tagged, attached to the tier's usage plan, the old key's remaining quota carried over.
3. **test**: the key is enabled, holds Vault's value, sits in the right usage plan, and the
   verifiers (the canary call) accept it, retried with backoff up to a deadline (failure case A1).
4. **distribute**: each push target gets the key, fenced (:mod:`rotation.engine.lease`); each
   acknowledgement is journaled, so a resumed run skips acked targets.
5. **finish**: promote, ``current`` -> new, ``previous`` -> old, in one CAS write.

A failure before finish rolls back (:mod:`rotation.engine.rollback`). Every step is journaled with
CAS before the next begins, so a run killed anywhere resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import secrets
import string
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from rotation.audit import REDACTOR, AuditLog
from rotation.backends.apigateway import ApiGatewayKeys
from rotation.backends.traffic import QuotaCarrier
from rotation.backends.vault import VaultStore
from rotation.config import Consumer, ConsumersFile
from rotation.engine.lease import Lease
from rotation.engine.outcome import ConsumerOutcome
from rotation.engine.planner import Decision
from rotation.engine.rollback import Rollback
from rotation.errors import (
    CanaryMisconfigured,
    CasConflict,
    LeaseLost,
    PushError,
    RotationError,
    VerificationFailed,
)
from rotation.records import KeyRecord, KeyState, RotationRecord, Step, to_iso
from rotation.targets import Delivery, PushTarget, preflight_problems, safe_push

__all__ = ["KEY_LENGTH", "RotationSteps", "Verifier", "generate_key_value"]

KEY_LENGTH = 40  # alphanumerics: about 238 bits from the OS CSPRNG; API Gateway allows 20-128
_ALPHABET = string.ascii_letters + string.digits

Verifier = Callable[[Consumer, KeyRecord], None]  # raises VerificationFailed


def generate_key_value(length: int = KEY_LENGTH) -> str:
    """A new API key value from :mod:`secrets` (the OS CSPRNG): ``length`` alphanumerics."""
    if length < 30:
        raise ValueError("key length must be at least 30 characters")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class RotationSteps:
    """The steps of one engine, each called under the consumer's lease.

    :param after_step: called after each journaled step (fault injection in tests); read at call
        time through the callable given, so an engine's hook may be replaced.
    :param wait: sleeps without holding a worker slot (the engine's pool).
    """

    def __init__(self, vault: VaultStore, apigw: ApiGatewayKeys, audit: AuditLog, lease: Lease,
                 consumers: ConsumersFile, targets_for: Callable[[Consumer], list[PushTarget]], *,
                 clock: Callable[[], Any], after_step: Callable[[str, str], None], verifiers: Iterable[Verifier],
                 verify_timeout: float, quota: QuotaCarrier | None, wait: Callable[[float], None],
                 rollback: Rollback):
        self.vault = vault
        self.apigw = apigw
        self.audit = audit
        self.lease = lease
        self.consumers = consumers
        self.targets_for = targets_for
        self.clock = clock
        self.after_step = after_step
        self.verifiers = verifiers
        self.verify_timeout = verify_timeout
        self.quota = quota
        self.wait = wait
        self.rollback = rollback

    def journal(self, c: Consumer, journal: RotationRecord, step: Step, **changes: Any) -> RotationRecord:
        """Record ``step`` (and ``changes``) in the journal with the lease renewal, then the
        ``after_step`` hook."""
        journal = self.lease.renew(c.name, journal, step=step.value, **changes)
        self.after_step(c.name, step.value)
        return journal

    def rotate(self, c: Consumer, state: KeyState, journal: RotationRecord, d: Decision, *,
               emergency_requested: bool = False) -> tuple[KeyState, RotationRecord, ConsumerOutcome]:
        """Drive one rotation through its steps, from where the journal says it stopped: create
        (or resume), set, test, distribute, finish. A failure before finish rolls back
        (:class:`~rotation.engine.rollback.Rollback`). Returns ``(state, journal, outcome)``;
        raises ``CasConflict``/``LeaseLost`` when the lease is lost."""
        # The emergency flag lives on the pending record itself (same CAS write), so a crash
        # before the journal is written cannot lose it; a later emergency request upgrades a
        # normal rotation in flight.
        emergency = (d.rotate == "emergency" or emergency_requested
                     or bool(state.pending and state.pending.emergency)
                     or (d.rotate == "resume" and journal.emergency
                         and journal.rotation_id == (state.pending.rotation_id if state.pending else None)))
        problems = self.preflight(c) if state.pending is None or state.pending.key_id is None else []
        if problems and state.pending is None:
            # nothing changed yet: no pending key, no API key (failure case H8)
            return state, journal, ConsumerOutcome(c.name, d.rotate, "failed",
                                                   f"not started: {'; '.join(problems)}")
        journal = self.lease.fence(c.name, journal, vault_write=True)
        if state.pending is not None and emergency and not state.pending.emergency:
            state = self.vault.write_key_state(c.name, state.evolve(pending=replace(state.pending, emergency=True)),
                                               mirror_labels=False)
        created = None      # CreateApiKey's answer when this run mints the key
        fresh = state.pending is None
        if state.pending is None:
            state = self.create(c, state, journal, emergency=emergency)
        else:
            REDACTOR.register(state.pending.value)
            if journal.rotation_id != state.pending.rotation_id or journal.emergency != emergency:
                journal = self.journal(c, journal, Step.PENDING_RECORDED, rotation_id=state.pending.rotation_id,
                                        emergency=emergency, started_at=to_iso(self.clock()), acks={})
            self.audit.emit("resume", "ok", consumer=c.name, rotation_id=state.pending.rotation_id,
                            serial=state.pending.serial, step=journal.step)
        pending = state.require_pending()
        out = ConsumerOutcome(c.name, d.rotate, "ok", d.reason, pending.serial, pending.rotation_id)
        step = Step.PENDING_RECORDED.value if fresh else journal.step
        try:
            if step == Step.ROLLED_BACK.value or step == "rolling_back":
                raise VerificationFailed("resuming an interrupted rollback")
            if problems:        # a resumed rotation whose API key does not exist yet: roll back, create nothing
                raise PushError(f"required target(s) would refuse the key: {'; '.join(problems)}")
            if pending.key_id is None or step in (Step.PENDING_RECORDED.value, Step.LOCKED.value, None):
                # A resumed rotation looks the key up by name (it may exist); a fresh one cannot.
                state, journal, created = self.set(c, state, journal, fresh=fresh)
                step = Step.KEY_CREATED.value
            if step == Step.KEY_CREATED.value:
                self.test(c, state.require_pending(), created=created)
                journal = self.journal(c, journal, Step.TESTED)
                self.audit.emit("test", "ok", consumer=c.name, rotation_id=pending.rotation_id,
                                key_id=state.require_pending().key_id, serial=pending.serial)
                step = journal.step
            if step == Step.TESTED.value:
                journal, failed_required = self.distribute(c, state.require_pending(), journal)
                if failed_required:
                    raise PushError(f"required target(s) failed: {'; '.join(failed_required)}")
                # no journal write of its own: each ack is journaled; a resume at "tested"
                # skips the acked targets
                self.after_step(c.name, Step.DISTRIBUTED.value)
                step = Step.DISTRIBUTED.value
        except (VerificationFailed, PushError, RotationError) as exc:
            if isinstance(exc, (CasConflict, CanaryMisconfigured)):
                raise
            state, journal = self.rollback.run(c, state, journal, str(exc))
            out.outcome, out.detail = "rolled_back", REDACTOR.scrub(str(exc))
            return state, journal, out
        state, journal = self.finish(c, state, journal, emergency=emergency)
        return state, journal, out

    def preflight(self, c: Consumer) -> list[str]:
        """What would make a required target refuse the new key, found before the rotation's first
        side effect by reading only (:func:`rotation.targets.preflight_problems`), each audited.
        Failure case H8."""
        problems = preflight_problems(self.targets_for(c), c.name)
        for target_id, problem in problems:
            self.audit.emit("preflight", "failed", consumer=c.name, target=target_id, detail=problem)
        return [f"{target_id}: {problem}" for target_id, problem in problems]

    def create(self, c: Consumer, state: KeyState, journal: RotationRecord, *, emergency: bool) -> KeyState:
        """**create**: a new value from the OS CSPRNG, recorded as ``pending`` in Vault (CAS)
        before AWS is touched (:meth:`_record_pending`). The journal learns the rotation id with
        the next CAS write of the rotation record. Returns the key state as written."""
        rotation_id = uuid.uuid4().hex
        serial = state.next_serial()
        value = generate_key_value()
        REDACTOR.register(value)
        pending = KeyRecord(serial=serial, value=value, rotation_id=rotation_id, created_at=to_iso(self.clock()),
                            key_name=self.apigw.key_name(c.name, serial), emergency=emergency)
        state = self._record_pending(c, state, pending, journal)
        self.audit.emit("create", "pending_recorded", consumer=c.name, rotation_id=rotation_id, serial=serial,
                        fingerprint=pending.fingerprint, vault_version=state.version, emergency=emergency)
        # The journal learns the rotation id with the test step's write: until then the
        # pending record in the key record is the journal (a resume starts from it).
        self.lease.defer(c.name, rotation_id=rotation_id, emergency=emergency, started_at=to_iso(self.clock()),
                         step=Step.PENDING_RECORDED.value, acks={})
        self.after_step(c.name, Step.PENDING_RECORDED.value)
        return state

    def _record_pending(self, c: Consumer, state: KeyState, pending: KeyRecord, journal: RotationRecord) -> KeyState:
        """The create step's Vault write: ``pending`` recorded (CAS on the key record). A runner
        frozen between its fence and this write must not leave a pending key behind once its
        lease ran out: the lease is checked again after the write, and when it ran out, the write
        is undone (CAS on the version just written; if someone wrote since, it is theirs now)
        and :class:`LeaseLost` raised."""
        written = self.vault.write_key_state(c.name, state.evolve(pending=pending), mirror_labels=False)
        try:
            self.lease.confirm_after(c.name, journal)
        except LeaseLost:
            with contextlib.suppress(CasConflict):
                self.vault.write_key_state(c.name, written.evolve(pending=None), mirror_labels=False)
                self.audit.emit("create", "pending_withdrawn", consumer=c.name, rotation_id=pending.rotation_id,
                                serial=pending.serial, reason="lease ran out before the pending key was recorded")
            raise
        return written

    def set(self, c: Consumer, state: KeyState, journal: RotationRecord, *,
            fresh: bool = False) -> tuple[KeyState, RotationRecord, dict[str, Any] | None]:
        """**set**: the pending key put into the service: CreateApiKey (no lookup by name for a
        ``fresh`` rotation: its key cannot exist yet), CreateUsagePlanKey, the quota carry-over. The key id is kept in memory and reaches Vault
        with the promote write: a resume finds the key by its deterministic name. Returns
        ``(state, journal, created)``; ``created`` is CreateApiKey's answer or ``None``."""
        pending = state.require_pending()
        plan_id = self.apigw.resolve_usage_plan(self.consumers.usage_plans[c.tier])
        journal = self.lease.fence(c.name, journal)
        created = None
        if fresh and hasattr(self.apigw, "create_new_key"):
            created = self.apigw.create_new_key(consumer=c.name, serial=pending.serial, value=pending.value,
                                                rotation_id=pending.rotation_id)
            key_id = created["id"]
        else:
            key_id = self.apigw.create_key(consumer=c.name, serial=pending.serial, value=pending.value,
                                           rotation_id=pending.rotation_id)
        if pending.key_id != key_id:
            state = state.evolve(pending=replace(pending, key_id=key_id))   # in memory (see above)
        self.after_step(c.name, "api_key_created")
        journal = self.lease.guard(c.name, journal)
        self.apigw.attach(plan_id, key_id)
        if self.quota is not None and state.current is not None and state.current.key_id:
            carried = self.quota.carry(plan_id, state.current.key_id, key_id)
            self.audit.emit("quota", "carried" if carried is not None else "skipped", consumer=c.name,
                            rotation_id=pending.rotation_id, key_id=key_id, remaining=carried)
        self.audit.emit("create", "ok", consumer=c.name, rotation_id=pending.rotation_id, serial=pending.serial,
                        key_id=key_id, usage_plan=plan_id, vault_version=state.version)
        self.after_step(c.name, Step.KEY_CREATED.value)
        return state, journal, created

    def test(self, c: Consumer, pending: KeyRecord, *, created: dict[str, Any] | None = None) -> None:
        """**test**: prove the new key works: enabled, right value, right usage plan; then the verifiers
        (the canary: the gateway honours the key). Retries with exponential backoff until
        ``verify_timeout`` (failure case A1).

        The control-plane state is checked from CreateApiKey's answer when this run created the
        key (``created``: enabled, value; CreateUsagePlanKey succeeded), else read once
        (GetApiKey, GetUsagePlans) and read again only while it is wrong: retries wait for
        propagation, which only the verifiers observe. Waits hold no worker slot."""
        plan_id = self.apigw.resolve_usage_plan(self.consumers.usage_plans[c.tier])
        deadline = time.monotonic() + self.verify_timeout
        delay = 0.2
        problem = None
        if created is not None and created.get("value") is not None:
            if not created.get("enabled"):
                problem = f"API key {pending.key_id} is not enabled"
            elif created.get("value") != pending.value:
                problem = f"API key {pending.key_id} does not hold the value Vault holds"
        else:
            created = None
        control_ok = created is not None and problem is None
        while True:
            if control_ok:
                problem = None
            else:
                problem = self._check_key(pending, plan_id)
                control_ok = problem is None
            if problem is None:
                try:
                    for verify in self.verifiers:
                        verify(c, pending)
                    return
                except CanaryMisconfigured:
                    raise
                except VerificationFailed as exc:
                    problem = str(exc)
                except Exception as exc:  # noqa: BLE001 - a broken verifier is a failed test, not a crash
                    problem = REDACTOR.scrub(f"verifier error {type(exc).__name__}: {exc}")
            if time.monotonic() + delay > deadline:
                raise VerificationFailed(f"{c.name} serial {pending.serial}: {problem}")
            self.wait(delay)
            delay = min(delay * 2, 1.0)   # a canary answer costs no control-plane call: ask often

    def _check_key(self, pending: KeyRecord, plan_id: str) -> str | None:
        if pending.key_id is None:
            return "the pending key has no API key id yet"
        key = self.apigw.get_key(pending.key_id, include_value=True)
        if key is None:
            return f"API key {pending.key_id} does not exist"
        if not key.get("enabled"):
            return f"API key {pending.key_id} is not enabled"
        if key.get("value") != pending.value:
            return f"API key {pending.key_id} does not hold the value Vault holds"
        if plan_id not in self.apigw.plans_of_key(pending.key_id):
            return f"API key {pending.key_id} is not in usage plan {plan_id}"
        return None

    def distribute(self, c: Consumer, pending: KeyRecord,
                   journal: RotationRecord) -> tuple[RotationRecord, list[str]]:
        """**distribute** (between test and finish): push to every target not yet acked for this serial; journal each ack. Returns the
        journal at its new version and the failed required targets."""
        delivery = Delivery(c.name, pending.serial, pending.rotation_id, pending.key_id or "", pending.value,
                            pending.fingerprint)
        acks = dict(journal.acks)
        failed_required = []
        for target in self.targets_for(c):
            prior = acks.get(target.target_id)
            if prior and prior.get("ok") and prior.get("serial") == pending.serial:
                continue
            journal = self.lease.fence(c.name, journal)   # still ours, and not run out, right before each push
            # the fencing token rides with the write: the target refuses it if a later lease
            # holder wrote first (we may stall right here; rotation.engine.lease)
            result = safe_push(target, replace(delivery, fence=journal.version))
            acks[target.target_id] = {"ok": result.ok, "serial": pending.serial, "at": to_iso(self.clock()),
                                      "detail": REDACTOR.scrub(result.detail)[:200], "required": target.required,
                                      **{k: v for k, v in result.extra.items()
                                         if k in ("wrap_token_hash", "wrap_expires_at")}}
            journal = self.lease.renew(c.name, journal, acks=acks)
            self.audit.emit("distribute", "ok" if result.ok else "failed", consumer=c.name,
                            rotation_id=pending.rotation_id, serial=pending.serial, target=target.target_id,
                            detail=REDACTOR.scrub(result.detail))
            if not result.ok and target.required:
                failed_required.append(f"{target.target_id}: {result.detail}")
        return journal, failed_required

    def finish(self, c: Consumer, state: KeyState, journal: RotationRecord, *,
               emergency: bool) -> tuple[KeyState, RotationRecord]:
        """**finish**: promote, one CAS write under a confirmed lease: ``current`` -> the pending key,
        ``previous`` -> the old current (a still older previous goes to ``retired``, revoked by this
        run), ``pending`` cleared. The journal's ``promoted`` entry goes with the next write."""
        # promote: one CAS write moves every label
        now = to_iso(self.clock())
        new_current = replace(state.require_pending(), promoted_at=now)
        if emergency and (not journal.emergency or journal.reissue_required):
            journal = self.lease.renew(c.name, journal, emergency=True, reissue_required=False)
        journal = self.lease.fence(c.name, journal, vault_write=True)   # the promote write happens under a confirmed lease
        retired = list(state.retired)
        if state.previous is not None:
            retired.append(state.previous)  # an older key still around: revoked by this run
        state = self.vault.write_key_state(c.name, state.evolve(
            current=new_current, previous=state.current, pending=None, retired=tuple(retired)))
        self.audit.emit("promote", "ok", consumer=c.name, rotation_id=new_current.rotation_id,
                        serial=new_current.serial, key_id=new_current.key_id, fingerprint=new_current.fingerprint,
                        vault_version=state.version, emergency=emergency)
        # the journal's "promoted" entry goes with the next write (a revoke's, or the release)
        self.lease.spent(c.name)
        self.after_step(c.name, Step.PROMOTED.value)
        return state, journal

    def finish_promoted_journal(self, c: Consumer, state: KeyState, journal: RotationRecord) -> RotationRecord:
        """A crash after the promote write but before its journal entry: record it now."""
        if (state.pending is None and state.current is not None and journal.rotation_id == state.current.rotation_id
                and journal.step not in (Step.PROMOTED.value, None)):
            return self.journal(c, journal, Step.PROMOTED)
        return journal
