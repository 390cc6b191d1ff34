"""The pure planner: from what Vault holds, what is due for each consumer. No I/O here.

A consumer is *due* when it has no current key (bootstrap), when its current key is older than
its ``max_age``, or when forced. A normal rotation waits while the previous key is still in its
grace period (its consumers may still use it); an emergency rotation never waits and revokes the
old key at once (zero grace). A rotation already in flight (a ``pending`` key) is resumed first.
Old keys are revoked (disabled, detached) once their grace period has passed, and deleted once
their retention has passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotation.config import Consumer
from rotation.records import KeyState, RotationRecord, from_iso

__all__ = ["REASON_CODES", "Decision", "calls_for", "decide"]

#: ``Decision.code`` values (the JSON outputs' ``reason`` enum; ``record_gone``: the consumer's
#: Vault record is deleted or destroyed, decided by the engine, not here).
REASON_CODES = ("in_flight", "emergency_requested", "no_current_key", "waiting_for_grace", "forced",
                "max_age_reached", "not_due", "record_gone")


@dataclass(frozen=True)
class Decision:
    """What one run should do for one consumer.

    ``rotate`` is one of ``none`` | ``bootstrap`` | ``rotate`` | ``emergency`` | ``resume``;
    ``revoke`` lists serials of old keys to disable, ``delete`` serials to delete. ``reason`` is
    for people; ``code`` is the same as an enum for scripts (:data:`REASON_CODES`).
    """

    consumer: str
    rotate: str
    reason: str
    revoke: tuple[int, ...] = ()
    delete: tuple[int, ...] = ()
    waiting: str = ""
    locked_by: str | None = None
    notes: tuple[str, ...] = field(default=())
    code: str = ""

    @property
    def has_work(self) -> bool:
        return self.rotate != "none" or bool(self.revoke) or bool(self.delete)


def _age(rec_time: str | None, now: datetime) -> timedelta | None:
    t = from_iso(rec_time)
    return (now - t) if t else None


def decide(consumer: Consumer, state: KeyState, journal: RotationRecord, now: datetime, *,
           force: bool = False, emergency: bool = False, owner: str = "", lease_now: float | None = None,
           early_revoke: bool = False) -> Decision:
    """Decide what to do for ``consumer``; pure and deterministic for given ``now`` (key ages)
    and ``lease_now`` (epoch seconds for lease expiry; defaults to ``now``). ``early_revoke``: the
    consumer acknowledged the new key and the old one has been idle for its quiet period, so the
    old key may go before its grace period ends."""
    name = consumer.name
    lease_now = now.timestamp() if lease_now is None else lease_now
    locked_by = journal.owner if journal.held_by_other(owner, lease_now) else None
    revoke: list[int] = []
    delete: list[int] = []
    waiting = ""
    prev = state.previous
    if prev is not None and prev.disabled_at is None:
        promoted = _age(state.current.promoted_at if state.current else None, now)
        if emergency or journal.emergency and journal.rotation_id == (state.current.rotation_id if state.current else None) or promoted is not None and promoted >= consumer.grace_period or early_revoke:
            revoke.append(prev.serial)
        else:
            left = consumer.grace_period - (promoted or timedelta(0))
            waiting = f"previous key {prev.serial} stays enabled for its grace period ({_fmt(left)} left)"
    for r in state.retired:
        if r.disabled_at is None:
            revoke.append(r.serial)
        else:
            age = _age(r.disabled_at, now)
            if age is not None and age >= consumer.retention:
                delete.append(r.serial)

    if state.pending is not None:
        return Decision(name, "resume", f"rotation {state.pending.rotation_id} in flight "
                                        f"(step {journal.step or 'pending_recorded'})",
                        tuple(revoke), tuple(delete), waiting, locked_by, code="in_flight")
    if emergency:
        return Decision(name, "emergency", "emergency rotation requested: old key revoked at once",
                        tuple(revoke), tuple(delete), "", locked_by, code="emergency_requested")
    if state.current is None:
        return Decision(name, "bootstrap", "no current key", tuple(revoke), tuple(delete), "", locked_by,
                        code="no_current_key")
    age = _age(state.current.promoted_at or state.current.created_at, now) or timedelta(0)
    due = age >= consumer.max_age
    if (due or force) and waiting:
        return Decision(name, "none", f"{'forced' if force else 'due'}, but waiting: {waiting}; "
                                      "use an emergency rotation to revoke it now",
                        tuple(revoke), tuple(delete), waiting, locked_by, code="waiting_for_grace")
    if force:
        return Decision(name, "rotate", "rotation requested", tuple(revoke), tuple(delete), waiting, locked_by,
                        code="forced")
    if due:
        return Decision(name, "rotate", f"current key is {_fmt(age)} old (max {_fmt(consumer.max_age)})",
                        tuple(revoke), tuple(delete), waiting, locked_by, code="max_age_reached")
    return Decision(name, "none", f"current key is {_fmt(age)} old; due in {_fmt(consumer.max_age - age)}",
                    tuple(revoke), tuple(delete), waiting, locked_by, code="not_due")


def calls_for(decision: Decision, consumer: Consumer) -> list[str]:
    """The Vault and AWS calls a run would make for ``decision`` (for ``rotation plan``)."""
    lease = ["vault: CAS write rotations/{c} (take lease)"]
    calls: list[str] = []
    if decision.locked_by:
        return [f"(skip: lease held by {decision.locked_by})"]
    if decision.rotate in ("bootstrap", "rotate", "emergency", "resume"):
        calls += [
            "vault: CAS write keys/{c} (record pending)",
            "aws: GetApiKeys nameQuery=<deterministic name> (look up before create)",
            "aws: CreateApiKey enabled=true, tags",
            "aws: CreateUsagePlanKey (attach to the tier's usage plan)",
            "vault: CAS write keys/{c} (record key id)",
            "aws: GetApiKey includeValue=true + GetUsagePlans keyId (test)",
        ]
        calls += [f"push: {t.target_id}" for t in consumer.targets]
        calls += ["vault: CAS write keys/{c} (promote: pending -> current -> previous)"]
        if decision.rotate == "emergency":
            calls += ["aws: UpdateApiKey enabled=false + DeleteUsagePlanKey (old key, zero grace)"]
    for serial in decision.revoke:
        calls += [f"aws: UpdateApiKey enabled=false + DeleteUsagePlanKey (serial {serial})",
                  "vault: CAS write keys/{c} (retire)"]
    for serial in decision.delete:
        calls += [f"aws: DeleteApiKey (serial {serial}, past retention)", "vault: CAS write keys/{c}"]
    if calls:
        calls = lease + calls + ["vault: CAS write rotations/{c} (release lease)"]
    return [c.replace("{c}", consumer.name) for c in calls]


def _fmt(td: timedelta) -> str:
    s = int(max(td.total_seconds(), 0))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"
