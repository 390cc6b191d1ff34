"""The audit report: what ``rotation audit`` observes, and the report built from it.

Two halves, so the report logic is tested on fake data without servers:

* :func:`observe` reads the world once through the existing readers: the engine's
  :meth:`~rotation.engine.runner.Engine.decisions` (the same read as ``rotation status``:
  :class:`~rotation.records.KeyState` and :class:`~rotation.records.RotationRecord` per consumer),
  :meth:`~rotation.backends.vault.VaultStore.read_ack` (the app's acknowledgement),
  :meth:`~rotation.backends.apigateway.ApiGatewayKeys.list_managed_keys` / ``get_key`` (the key
  inventory) and the engine's traffic signal (``request_count``, e.g. API Gateway ``GetUsage``).
* :func:`build_report` turns an :class:`Observed` into the report dict (pure; ``now`` injected).

The report is JSON data described by ``schemas/audit.schema.json`` (``schema_version`` below):
timestamps are RFC 3339 strings in UTC, durations are seconds, states are enums. It never holds a
key value: key records are reduced to serial, API key id, fingerprint and timestamps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

from rotation.records import KeyRecord, KeyState, RotationRecord, from_iso

__all__ = ["SCHEMA_VERSION", "TRAFFIC_WINDOW_DAYS", "ConsumerObservation", "Observed", "build_report",
           "last_seen_day", "load_schema", "observe", "rfc3339"]

#: bumped on any incompatible change of the JSON output (major) or an added field (minor)
SCHEMA_VERSION = "1.0"

LAST_OUTCOMES = ("ok", "failed", "rolled_back", "skipped", "locked", "waiting", "lost_lease", "none", "unknown")
SEVERITIES = ("high", "medium", "low")
TRAFFIC_WINDOW_DAYS = 14   # how far back "last traffic" looks (GetUsage, one row per UTC day)


def rfc3339(dt: datetime | None) -> str | None:
    """``dt`` as an RFC 3339 timestamp in UTC (``2026-01-02T03:04:05Z``), ``None`` stays ``None``."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{dt.astimezone(UTC).microsecond // 1000:03d}Z" if dt.microsecond else "Z")


def _ts(iso: str | None) -> str | None:
    try:
        return rfc3339(from_iso(iso))
    except (TypeError, ValueError):
        return None


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the report, shipped as package data."""
    return json.loads(resources.files("rotation.reporting").joinpath("schemas/audit.schema.json")
                      .read_text(encoding="utf-8"))


@dataclass
class ConsumerObservation:
    """What was read for one consumer. ``requests_today``: key id -> count or ``None`` (unknown)."""

    name: str
    tier: str
    max_age_seconds: float
    grace_period_seconds: float
    state: KeyState
    journal: RotationRecord
    decision_rotate: str = "none"
    decision_reason: str = ""
    app_ack: dict[str, Any] | None = None
    requests_today: dict[str, int | None] = field(default_factory=dict)
    #: key id -> last UTC day with requests in the window ("YYYY-MM-DD"), "" = none in the window,
    #: absent = unknown (GetUsage did not answer)
    last_seen_day: dict[str, str] = field(default_factory=dict)
    read_error: str | None = None


@dataclass
class Observed:
    """Everything :func:`build_report` needs; every field is plain data (tests build it by hand)."""

    stack: str
    vault_mount: str
    vault_prefix: str
    consumers: list[ConsumerObservation]
    #: API keys tagged as managed for this stack: dicts with id, name, enabled, tags (no values)
    managed_keys: list[dict[str, Any]] = field(default_factory=list)
    #: key ids Vault holds that GetApiKey answered "not found" for
    absent_key_ids: set[str] = field(default_factory=set)
    inventory_error: str | None = None
    policy_drift: dict[str, Any] | None = None       # from rotation.reporting.policy_drift
    security_policy: dict[str, Any] | None = None    # policies.check --json output, reduced
    vault_audit: dict[str, Any] | None = None        # from rotation.reporting.vault_audit_log


# -- reading ------------------------------------------------------------------------------------
def last_seen_day(apigw_client: Any, usage_plan_id: str, key_id: str, today: date,
                  days: int = TRAFFIC_WINDOW_DAYS) -> str | None:
    """The last UTC day (``YYYY-MM-DD``) in the ``days`` up to ``today`` with requests made with
    ``key_id`` in ``usage_plan_id``, ``""`` when there were none, ``None`` when API Gateway does not
    answer (unknown). API Gateway ``GetUsage`` returns one ``[used, remaining]`` row per day from
    ``startDate`` (https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsage.html)."""
    from rotation.backends.aws_errors import aws_errors
    from rotation.errors import AwsError

    start = today - timedelta(days=days - 1)
    try:
        with aws_errors("GetUsage", key_id):
            resp = apigw_client.get_usage(usagePlanId=usage_plan_id, keyId=key_id, startDate=start.isoformat(),
                                          endDate=today.isoformat())
    except AwsError:
        return None
    rows = (resp.get("items") or {}).get(key_id) or []
    used = [i for i, row in enumerate(rows) if row and int(row[0]) > 0]
    return (start + timedelta(days=used[-1])).isoformat() if used else ""


def observe(engine: Any, *, stack: str) -> Observed:
    """Read Vault and API Gateway through ``engine`` (built by :func:`rotation.wiring.build_engine`).

    Reads only; raises :class:`~rotation.errors.VaultError` / :class:`~rotation.errors.AwsError`
    when the key state cannot be read at all. A consumer-level read failure (its ack) and a
    failed key inventory are recorded in the report instead.
    """
    from rotation.audit import REDACTOR
    from rotation.errors import RotationError

    vault, apigw = engine.vault, engine.apigw
    consumers: list[ConsumerObservation] = []
    for c, state, journal, d in engine.decisions():
        # never printed, but registered so any output can be scrubbed (defence in depth)
        REDACTOR.register(*(r.value for r in (state.current, state.previous, state.pending, *state.retired) if r))
        obs = ConsumerObservation(
            name=c.name, tier=c.tier, max_age_seconds=c.max_age.total_seconds(),
            grace_period_seconds=c.grace_period.total_seconds(), state=state, journal=journal,
            decision_rotate=d.rotate, decision_reason=d.reason)
        try:
            obs.app_ack = vault.read_ack(c.name)
        except RotationError as exc:
            obs.read_error = f"ack: {exc}"
        if engine.traffic is not None:
            plan = None
            try:
                plan = apigw.resolve_usage_plan(engine.consumers.usage_plans[c.tier])
            except (RotationError, KeyError):
                pass
            for rec in (state.current, state.previous):
                if rec and rec.key_id:
                    obs.requests_today[rec.key_id] = (engine.traffic.request_count(rec.key_id, plan)
                                                      if plan else None)
                    seen = last_seen_day(apigw.client, plan, rec.key_id, engine.clock().date()) if plan else None
                    if seen is not None:
                        obs.last_seen_day[rec.key_id] = seen
        consumers.append(obs)
    out = Observed(stack=stack, vault_mount=vault.mount, vault_prefix=vault.prefix, consumers=consumers)
    try:
        out.managed_keys = [{k: v for k, v in key.items() if k in ("id", "name", "enabled", "tags", "createdDate")}
                            for key in apigw.list_managed_keys()]
        listed = {k["id"] for k in out.managed_keys}
        for obs in consumers:
            for key_id in obs.state.known_key_ids() - listed:
                if apigw.get_key(key_id) is None:
                    out.absent_key_ids.add(key_id)
    except RotationError as exc:
        out.inventory_error = str(exc)
    return out


# -- building -----------------------------------------------------------------------------------
def _key(rec: KeyRecord | None, now: datetime) -> dict[str, Any] | None:
    if rec is None:
        return None
    promoted = from_iso(rec.promoted_at)
    return {
        "serial": rec.serial, "key_id": rec.key_id, "fingerprint": rec.fingerprint,
        "created_at": _ts(rec.created_at), "promoted_at": _ts(rec.promoted_at),
        "disabled_at": _ts(rec.disabled_at), "emergency": bool(rec.emergency),
        "age_seconds": round((now - promoted).total_seconds(), 3) if promoted else None,
    }


def _finding(findings: list, severity: str, kind: str, message: str, consumer: str | None = None) -> None:
    findings.append({"severity": severity, "kind": kind, "consumer": consumer, "message": message})


def _consumer(obs: ConsumerObservation, now: datetime, findings: list) -> dict[str, Any]:
    st, j = obs.state, obs.journal
    cur = _key(st.current, now)
    last = None
    if j.last_outcome:
        outcome = j.last_outcome.get("outcome")
        last = {"outcome": outcome if outcome in LAST_OUTCOMES else "unknown",
                "action": j.last_outcome.get("action"), "at": _ts(j.last_outcome.get("at")),
                "rotation_id": j.last_outcome.get("rotation_id"), "detail": str(j.last_outcome.get("detail") or "")}
    in_flight = None
    if st.pending is not None:
        in_flight = {"serial": st.pending.serial, "step": j.step or "pending_recorded",
                     "rotation_id": st.pending.rotation_id, "lease_owner": j.owner,
                     "started_at": _ts(j.started_at)}
    targets = [{"target": t, "ok": bool(a.get("ok")), "serial": a.get("serial"), "at": _ts(a.get("at")),
                "required": bool(a.get("required", True)), "detail": str(a.get("detail") or "")}
               for t, a in sorted(j.acks.items())]
    app = None
    if obs.app_ack:
        serial = obs.app_ack.get("serial")
        app = {"serial": serial if isinstance(serial, int) else None, "key_id": obs.app_ack.get("key_id"),
               "at": _ts(obs.app_ack.get("at")), "host": obs.app_ack.get("host"),
               "on_current": st.current is not None and serial == st.current.serial}

    def traffic(rec: KeyRecord | None) -> dict[str, Any] | None:
        if rec is None or not rec.key_id:
            return None
        snap = j.traffic.get(rec.key_id) or {}
        seen = obs.last_seen_day.get(rec.key_id)
        return {"key_id": rec.key_id, "requests_today": obs.requests_today.get(rec.key_id),
                "last_seen_day": seen or None, "seen_in_window": None if seen is None else bool(seen),
                "window_days": TRAFFIC_WINDOW_DAYS,
                "snapshot_count": snap.get("count"), "snapshot_since": _ts(snap.get("since"))}

    history = [{"serial": r.serial, "promoted_at": _ts(r.promoted_at), "emergency": bool(r.emergency)}
               for r in sorted((r for r in (st.current, st.previous, *st.retired) if r and r.promoted_at),
                               key=lambda r: r.serial)]
    overdue = cur is not None and cur["age_seconds"] is not None and cur["age_seconds"] >= obs.max_age_seconds
    name = obs.name
    if cur is None:
        _finding(findings, "high", "no_current_key", f"{name} has no current key (run `rotation run`)", name)
    elif overdue:
        _finding(findings, "high", "key_overdue",
                 f"{name}: current key serial {cur['serial']} is {int(cur['age_seconds'])}s old, "
                 f"over its max_age of {int(obs.max_age_seconds)}s", name)
    if last and last["outcome"] in ("failed", "rolled_back"):
        _finding(findings, "high", "rotation_failed", f"{name}: last run {last['outcome']}: {last['detail']}", name)
    if in_flight:
        _finding(findings, "medium", "rotation_in_flight",
                 f"{name}: rotation of serial {in_flight['serial']} stopped at step {in_flight['step']}", name)
    for t in targets:
        if t["required"] and not t["ok"]:
            _finding(findings, "medium", "ack_missing", f"{name}: target {t['target']} did not acknowledge "
                                                        f"serial {t['serial']}", name)
    if app is not None and st.current and not app["on_current"]:
        _finding(findings, "low", "app_behind", f"{name}: the app acknowledged serial {app['serial']}, "
                                                f"current is {st.current.serial}", name)
    if obs.read_error:
        _finding(findings, "medium", "read_error", f"{name}: {obs.read_error}", name)
    return {
        "name": name, "tier": obs.tier, "kv_version": st.version,
        "current": cur, "previous": _key(st.previous, now), "pending": _key(st.pending, now),
        "retired_count": len(st.retired),
        "max_age_seconds": obs.max_age_seconds, "grace_period_seconds": obs.grace_period_seconds,
        "overdue": overdue,
        "next_due_in_seconds": (round(obs.max_age_seconds - cur["age_seconds"], 3)
                                if cur and cur["age_seconds"] is not None else None),
        "planned_action": obs.decision_rotate, "planned_reason": obs.decision_reason,
        "last_rotation": last, "in_flight": in_flight,
        "acknowledgements": {"targets": targets, "app": app},
        "traffic": {"current": traffic(st.current), "previous": traffic(st.previous)},
        "history": history,
    }


def _inventory(observed: Observed, findings: list) -> dict[str, Any]:
    known: dict[str, tuple[str, str, int]] = {}   # key id -> (consumer, label, serial)
    for obs in observed.consumers:
        st = obs.state
        for label in ("current", "previous", "pending"):
            rec = getattr(st, label)
            if rec and rec.key_id:
                known[rec.key_id] = (obs.name, label, rec.serial)
        for rec in st.retired:
            if rec.key_id:
                known[rec.key_id] = (obs.name, "retired", rec.serial)
    configured = {obs.name for obs in observed.consumers}
    unknown = []
    for k in observed.managed_keys:
        if k["id"] in known:
            continue
        consumer = (k.get("tags") or {}).get("secure-mail-api:consumer")
        unknown.append({"key_id": k["id"], "name": k.get("name"), "consumer": consumer,
                        "enabled": bool(k.get("enabled")), "consumer_configured": consumer in configured})
        _finding(findings, "high" if k.get("enabled") else "medium", "unknown_key",
                 f"API Gateway key {k['id']} ({k.get('name')}, {'enabled' if k.get('enabled') else 'disabled'}) "
                 "is not known to Vault", consumer)
    missing = []
    for key_id in sorted(observed.absent_key_ids):
        consumer, label, serial = known.get(key_id, (None, "unknown", 0))
        missing.append({"key_id": key_id, "consumer": consumer, "label": label, "serial": serial})
        _finding(findings, "high" if label in ("current", "pending") else "low", "missing_key",
                 f"Vault's {label} key serial {serial} ({key_id}) does not exist in API Gateway", consumer)
    if observed.inventory_error:
        _finding(findings, "medium", "read_error", f"key inventory: {observed.inventory_error}")
    return {"checked": observed.inventory_error is None, "error": observed.inventory_error,
            "managed_keys": len(observed.managed_keys), "unknown_to_vault": unknown,
            "missing_in_api_gateway": missing}


def build_report(observed: Observed, now: datetime) -> dict[str, Any]:
    """The report (schema ``schemas/audit.schema.json``, version :data:`SCHEMA_VERSION`) for ``observed``
    at ``now`` (an aware datetime). Pure: no I/O. Findings are sorted high, medium, low."""
    findings: list[dict[str, Any]] = []
    consumers = [_consumer(o, now, findings) for o in observed.consumers]
    inventory = _inventory(observed, findings)
    drift = observed.policy_drift
    unreadable = [i for i in (drift or {}).get("items", []) if i["state"] == "unreadable"]
    for item in (drift or {}).get("items", []):
        if item["state"] not in ("match", "unreadable"):
            _finding(findings, "high", "policy_drift", f"{item['kind']} {item['name']}: {item['state']} - {item['detail']}")
    if unreadable:   # one finding: the cause (a token's missing capability) is usually shared
        _finding(findings, "medium", "policy_unreadable",
                 f"{len(unreadable)} policies not compared ({', '.join(i['name'] for i in unreadable[:4])}"
                 f"{', ...' if len(unreadable) > 4 else ''}): {unreadable[0]['detail']}")
    sec = observed.security_policy
    for v in (sec or {}).get("violations", []):
        _finding(findings, "high" if v["level"] == "mandatory" else "low", "security_policy",
                 f"[{', '.join(v['controls'])}] {v['rule']}: {v['message']}")
    va = observed.vault_audit
    if va:
        for d in va.get("denied", []):
            _finding(findings, "high", "vault_denied",
                     f"denied {d['operation']} {d['path']} by {d['identity']} at {d['time']}")
        for d in va.get("unexpected_logins", []):
            _finding(findings, "high", "unexpected_login",
                     f"login by unexpected identity {d['identity']} on {d['path']} at {d['time']}")
        for d in va.get("failed_logins", []):
            _finding(findings, "medium", "failed_login", f"failed login on {d['path']} at {d['time']}")
    findings.sort(key=lambda f: SEVERITIES.index(f["severity"]))
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": rfc3339(now),
        "stack": observed.stack,
        "vault": {"mount": observed.vault_mount, "prefix": observed.vault_prefix},
        "summary": {
            "consumers": len(consumers),
            "overdue": sum(1 for c in consumers if c["overdue"]),
            "findings": {s: sum(1 for f in findings if f["severity"] == s) for s in SEVERITIES},
            "status": "findings" if findings else "ok",
        },
        "consumers": consumers,
        "key_inventory": inventory,
        "policy_drift": drift,
        "security_policy": sec,
        "vault_audit": va,
        "findings": findings,
    }
