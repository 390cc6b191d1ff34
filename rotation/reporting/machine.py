"""The JSON documents of ``rotation status | plan | run | rotate --output json``.

One document per command on stdout, for ``jq`` and scripts. The schemas are package data next to
``audit.schema.json`` (``rotation/reporting/schemas/{status,plan,run}.schema.json``; ``rotate``
shares ``run``'s) and follow its conventions: ``schema_version`` ``MAJOR.MINOR`` (a MAJOR change
breaks readers, a MINOR change only adds fields), timestamps RFC 3339 in UTC (``...Z``), durations
in seconds, states as enums, no sentences (the one exception: ``outcomes[].error.message``, a
diagnostic for people, scrubbed of secrets). A document never holds a key value.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from typing import Any

from rotation.audit import REDACTOR
from rotation.config import Consumer
from rotation.engine.planner import Decision, calls_for
from rotation.records import KeyState, RotationRecord, from_iso
from rotation.reporting.audit_report import rfc3339

__all__ = ["SCHEMA_VERSION", "dumps", "load_schema", "plan_document", "run_document", "status_document"]

SCHEMA_VERSION = "1.0"
_STEPS = ("locked", "pending_recorded", "key_created", "tested", "distributed", "promoted", "rolled_back", "failed")
_ROTATING = ("bootstrap", "rotate", "emergency", "resume")


def load_schema(command: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``command``'s document: ``status``, ``plan``, ``run``
    (also ``rotate``) or ``audit``. Raises ``FileNotFoundError`` for another name."""
    name = "run" if command == "rotate" else command
    return json.loads(resources.files("rotation.reporting").joinpath(f"schemas/{name}.schema.json")
                      .read_text(encoding="utf-8"))


def dumps(document: dict[str, Any]) -> str:
    """The document as one line of JSON, scrubbed of any registered secret (defence in depth)."""
    return REDACTOR.scrub(json.dumps(document, separators=(",", ":"), sort_keys=False))


def _envelope(command: str, now: datetime, stack: str) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "command": command, "generated_at": rfc3339(now), "stack": stack}


def _reason(d: Decision) -> str:
    return "record_gone" if d.rotate == "blocked" else d.code or ("waiting_for_grace" if d.waiting else "not_due")


def _secs(td) -> float:
    return round(td.total_seconds(), 3)


def status_document(decisions: Iterable[tuple[Consumer, KeyState, RotationRecord, Decision]], now: datetime,
                    stack: str) -> dict[str, Any]:
    """``rotation status``: per consumer its state (``ok`` | ``due`` | ``waiting`` | ``in_flight`` |
    ``blocked``), current and previous key (identifiers, fingerprints and times only), the rotation
    in flight and the last outcome. ``now`` is the shared (Vault's) clock."""
    rows: list[dict[str, Any]] = []   # JSON objects of the document
    for c, state, journal, d in decisions:
        if d.rotate == "blocked":
            rows.append({"name": c.name, "tier": c.tier, "state": "blocked", "reason": "record_gone",
                         "current": None, "next_due_at": None, "next_due_in_seconds": None, "previous": None,
                         "retired_count": 0, "in_flight": None, "last_outcome": None, "emergency_queued": False})
            continue
        cur = state.current
        promoted = from_iso(cur.promoted_at) if cur else None
        if state.pending is not None:
            st = "in_flight"
        elif d.rotate in _ROTATING:
            st = "due"
        elif d.waiting and d.code == "waiting_for_grace":
            st = "waiting"
        else:
            st = "ok"
        prev = state.previous
        revoke_at = promoted + c.grace_period if (prev and promoted) else None
        in_flight = None
        if state.pending is not None:
            step = journal.step if journal.step in _STEPS else "pending_recorded"
            in_flight = {"serial": state.pending.serial, "rotation_id": state.pending.rotation_id, "step": step,
                         "lease_owner": journal.owner,
                         "lease_expires_at": (rfc3339(datetime.fromtimestamp(journal.lease_expires_at, now.tzinfo))
                                              if journal.owner and journal.lease_expires_at else None)}
        last = journal.last_outcome or {}
        rows.append({
            "name": c.name, "tier": c.tier, "state": st, "reason": _reason(d),
            "current": ({"serial": cur.serial, "key_id": cur.key_id, "fingerprint": cur.fingerprint,
                         "promoted_at": rfc3339(promoted), "age_seconds": _secs(now - promoted) if promoted else None}
                        if cur else None),
            "next_due_at": rfc3339(promoted + c.max_age) if promoted else rfc3339(now),
            "next_due_in_seconds": _secs(promoted + c.max_age - now) if promoted else 0.0,
            "previous": ({"serial": prev.serial, "key_id": prev.key_id, "revoke_at": rfc3339(revoke_at),
                          "revoke_in_seconds": _secs(revoke_at - now) if revoke_at else None} if prev else None),
            "retired_count": len(state.retired),
            "in_flight": in_flight,
            "last_outcome": ({"action": last.get("action") or "none", "outcome": last["outcome"],
                              "at": rfc3339(from_iso(last.get("at"))), "rotation_id": last.get("rotation_id")}
                             if last.get("outcome") else None),
            "emergency_queued": bool(journal.emergency_request),
        })
    count = Counter(r["state"] for r in rows)
    return {**_envelope("status", now, stack),
            "summary": {"consumers": len(rows), **{k: count.get(k, 0)
                                                   for k in ("ok", "due", "waiting", "in_flight", "blocked")}},
            "consumers": rows}


def _call(text: str) -> dict[str, str]:
    service, _, operation = text.partition(": ")
    return {"service": service, "operation": operation}


def plan_document(decisions: Iterable[tuple[Consumer, KeyState, RotationRecord, Decision]], now: datetime,
                  stack: str, iam: dict[str, Any] | None = None) -> dict[str, Any]:
    """``rotation plan``: per consumer the action, its reason code, the serials to revoke and
    delete, and the Vault/AWS/push calls a run would make. ``iam``: the ``--iam-policy`` check
    (``{"policy", "ok", "unwritable"}``) or ``None``."""
    rows: list[dict[str, Any]] = []   # JSON objects of the document
    for c, _state, _journal, d in decisions:
        calls = [] if d.locked_by or d.rotate == "blocked" else [_call(x) for x in calls_for(d, c)]
        rows.append({"name": c.name, "tier": c.tier, "action": d.rotate, "reason": _reason(d),
                     "revoke_serials": list(d.revoke), "delete_serials": list(d.delete),
                     "waiting_for_grace": bool(d.waiting), "locked_by": d.locked_by, "calls": calls})
    return {**_envelope("plan", now, stack), "iam": iam,
            "summary": {"consumers": len(rows),
                        "rotate": sum(r["action"] in _ROTATING for r in rows),
                        "revoke": sum(len(r["revoke_serials"]) for r in rows),
                        "delete": sum(len(r["delete_serials"]) for r in rows),
                        "locked": sum(r["locked_by"] is not None for r in rows),
                        "blocked": sum(r["action"] == "blocked" for r in rows)},
            "consumers": rows}


def _error(outcome) -> dict[str, str] | None:
    from rotation.engine.runner import FAILED_OUTCOMES
    if outcome.outcome not in FAILED_OUTCOMES:
        return None
    head, sep, _ = outcome.detail.partition(":")
    kind = head if sep and head.isidentifier() else {"rolled_back": "RolledBack", "lost_lease": "LeaseLost"}.get(
        outcome.outcome, "RotationError")
    return {"type": kind, "message": REDACTOR.scrub(outcome.detail)}


def run_document(summary, *, command: str, started_at: datetime, finished_at: datetime, stack: str) -> dict[str, Any]:
    """``rotation run`` / ``rotation rotate``: the run's outcome per consumer and its exit code
    (0 ok, 1 some consumer failed, 3 deferred: a lease held elsewhere or an emergency queued)."""
    outcomes = [{"consumer": o.consumer, "action": o.action, "outcome": o.outcome, "serial": o.serial,
                 "rotation_id": o.rotation_id, "current_promoted_at": rfc3339(from_iso(o.current_promoted_at)),
                 "error": _error(o)} for o in summary.outcomes]
    code = summary.exit_code
    return {**_envelope(command, finished_at, stack),
            "started_at": rfc3339(started_at), "finished_at": rfc3339(finished_at),
            "duration_seconds": max(0.0, round((finished_at - started_at).total_seconds(), 3)),
            "status": {0: "ok", 1: "failed", 3: "deferred"}[code], "exit_code": code,
            "summary": {"consumers": len(outcomes), "failed": len(summary.failed),
                        "deferred": len(summary.deferred),
                        "by_outcome": dict(Counter(o["outcome"] for o in outcomes))},
            "outcomes": outcomes}
