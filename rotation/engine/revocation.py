"""Revocation signals: when may an old key go early, and was a delivery intercepted?

* **Early revoke.** The previous key may be revoked before its grace period ends once the consumer
  acknowledged the current key (its app's ack in Vault, or every required push target took it)
  *and* the previous key's request counter (a :class:`~rotation.backends.traffic.TrafficSignal`) has not
  moved for ``quiet_period``. The grace period stays the upper bound.
* **Revocation itself** (:class:`Revoker`): disable and detach the old key, delete it after the
  retention period, each AWS call guarded by the lease.
* **Tamper detection** (failure case V6). A receiver that cannot unwrap a wrapping token reports it
  in the consumer's ack record; each report is checked once. A token gone although its TTL had not
  run out when the consumer tried was unwrapped by someone else: an alarm event, and the engine
  re-issues the key by an emergency rotation.

Both read what a consumer writes (its ack record), so every field is validated and bounded here;
a consumer can never make a run raise or do unbounded work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from rotation.audit import AuditLog
from rotation.backends.apigateway import ApiGatewayKeys
from rotation.backends.traffic import TrafficSignal
from rotation.backends.vault import VaultStore
from rotation.config import Consumer, ConsumersFile
from rotation.engine.lease import Lease
from rotation.engine.planner import Decision
from rotation.records import KeyRecord, KeyState, RotationRecord, fingerprint, from_iso, to_iso
from rotation.targets import Delivery, PushTarget, safe_push

__all__ = ["RevocationSignals", "Revoker"]


class RevocationSignals:
    """The early-revoke and tamper checks of one engine; each method is called under the
    consumer's lease and returns the journal at its new version when it wrote it."""

    def __init__(self, *, vault: VaultStore, audit: AuditLog, traffic: TrafficSignal | None,
                 targets_for: Callable[[Consumer], list[PushTarget]], usage_plan_id: Callable[[Consumer], str],
                 clock: Callable[[], datetime], lease_ttl: float,
                 renew: Callable[..., RotationRecord] | None = None,
                 fence: Callable[[Consumer, RotationRecord], RotationRecord] | None = None):
        self.vault = vault
        self.audit = audit
        self.traffic = traffic
        self.targets_for = targets_for
        self.usage_plan_id = usage_plan_id
        self.clock = clock
        self.lease_ttl = lease_ttl
        # the engine's lease renewal (on its shared clock) and its fence before a side effect
        self.renew = renew or (lambda name, rec, **ch: vault.renew_lease(name, rec, lease_ttl, **ch))
        self.fence = fence or (lambda c, rec: rec)

    def acknowledged(self, c: Consumer, current: KeyRecord, journal: RotationRecord) -> bool:
        """The consumer uses ``current``: its app's ack in Vault names that serial (``app``), or
        every required push target took it (``targets``)."""
        if c.acknowledged_by == "app":
            ack = self.vault.read_ack(c.name) or {}
            try:
                return int(ack.get("serial", 0)) >= current.serial
            except (TypeError, ValueError):
                return False
        required = [t for t in self.targets_for(c) if t.required]
        return bool(required) and all(
            (journal.acks.get(t.target_id) or {}).get("ok") and journal.acks[t.target_id].get("serial") == current.serial
            for t in required)

    def early_revoke_ok(self, c: Consumer, state: KeyState, journal: RotationRecord) -> tuple[RotationRecord, bool]:
        """May the previous key go before its grace period ends? Only when the consumer
        acknowledged the current key and the traffic signal shows the previous key idle for
        ``quiet_period``. Snapshots the previous key's request counter in the journal."""
        prev, cur = state.previous, state.current
        if self.traffic is None or prev is None or cur is None or prev.disabled_at or not prev.key_id:
            return journal, False
        plan_id = self.usage_plan_id(c)
        count = self.traffic.request_count(prev.key_id, plan_id)
        if count is None:
            return journal, False
        now = self.clock()
        snap = journal.traffic.get(prev.key_id)
        if snap and snap.get("count") == count:
            idle_for = now - (from_iso(snap.get("since")) or now)
        else:
            journal = self.renew(c.name, journal, traffic={prev.key_id: {"count": count, "since": to_iso(now)}})
            idle_for = None
        if idle_for is None or idle_for < c.quiet_period:
            return journal, False
        acked = self.acknowledged(c, cur, journal)
        if acked:
            self.audit.emit("revoke", "early", consumer=c.name, serial=prev.serial, key_id=prev.key_id,
                            idle_seconds=int(idle_for.total_seconds()), acknowledged_by=c.acknowledged_by)
        return journal, acked

    #: the newest reports considered per consumer (the client keeps 10); older ones are ignored,
    #: so a consumer writing a long list cannot make every run do unbounded work.
    MAX_UNWRAP_REPORTS = 10

    def new_unwrap_reports(self, c: Consumer, journal: RotationRecord) -> list[dict]:
        """Well-formed unwrap failures the consumer reported in its ack record, not yet handled.

        The ack record is the consumer's to write, so each entry is checked (``token`` a string of
        8-512 characters, ``serial`` an integer or absent) and a malformed one is skipped, never
        raised on: a consumer must not be able to block its own (emergency) rotation."""
        ack = self.vault.read_ack(c.name) or {}
        reports = ack.get("unwrap_failures")
        out = []
        for r in (reports[-self.MAX_UNWRAP_REPORTS:] if isinstance(reports, list) else []):
            token = r.get("token") if isinstance(r, dict) else None
            serial = r.get("serial") if isinstance(r, dict) else None
            if not isinstance(token, str) or not 8 <= len(token) <= 512 or not (
                    serial is None or (isinstance(serial, int) and not isinstance(serial, bool))):
                continue
            if fingerprint(token) not in journal.handled_reports:
                out.append(r)
        return out

    def _report_time(self, report: dict, sent_at: datetime | None) -> datetime:
        """When the consumer says it tried to unwrap: clamped to [sent time, now], since the
        consumer's clock and word are not trusted beyond that; ``now`` when unparseable."""
        now = self.clock()
        try:
            at = from_iso(report.get("at")) if isinstance(report.get("at"), str) else None
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            return now
        if sent_at is not None and at < sent_at:
            at = sent_at
        return min(at, now)

    def check_unwrap_reports(self, c: Consumer, state: KeyState, journal: RotationRecord) -> tuple[RotationRecord, bool]:
        """Failure case V6. For each new report: a token still valid means a consumer-side
        failure (it is only looked up, never unwrapped); a token that is gone although its TTL had
        not run out when the consumer tried means someone else unwrapped it (tamper: alarm event,
        emergency rotation); an expired token is re-issued by pushing the current key again.
        Reports of tokens this rotator never sent are recorded as ``unknown_token`` and ignored."""
        reports = self.new_unwrap_reports(c, journal) if any(t.type == "webhook" for t in c.targets) else []
        tampered = False
        handled = list(journal.handled_reports)
        for r in reports:
            fp = fingerprint(r["token"])
            handled.append(fp)
            sent = next((a for a in journal.acks.values() if a.get("wrap_token_hash") == fp), None)
            if sent is None:
                self.audit.emit("tamper_check", "unknown_token", consumer=c.name, token_fingerprint=fp)
                continue
            info = self.vault.lookup_wrapping_token(r["token"])
            expires = from_iso(sent.get("wrap_expires_at"))
            tried_at = self._report_time(r, from_iso(sent.get("at")))
            if info is not None:
                verdict = "still_valid"
            elif expires is not None and tried_at < expires:
                verdict = "tampered"
                tampered = True
            else:
                verdict = "expired"
            self.audit.emit("tamper_check", "alarm" if verdict == "tampered" else verdict, consumer=c.name,
                            token_fingerprint=fp, serial=r.get("serial"))
            if verdict == "expired" and state.current is not None and state.pending is None:
                cur = state.current
                for t in self.targets_for(c):
                    if t.target_id.startswith("webhook:"):
                        journal = self.fence(c, journal)
                        res = safe_push(t, Delivery(c.name, cur.serial, cur.rotation_id, cur.key_id or "",
                                                    cur.value, cur.fingerprint, fence=journal.version))
                        self.audit.emit("reissue", "ok" if res.ok else "failed", consumer=c.name,
                                        target=t.target_id, serial=cur.serial)
        if reports:
            journal = self.renew(c.name, journal, handled_reports=handled[-5 * self.MAX_UNWRAP_REPORTS:])
        return journal, tampered


class Revoker:
    """Carries out revocation (disable + detach at the end of the grace period; at once for an
    emergency) and deletion (after the retention period) for one consumer under its lease."""

    def __init__(self, vault: VaultStore, apigw: ApiGatewayKeys, audit: AuditLog, lease: Lease,
                 consumers: ConsumersFile, clock: Callable[[], datetime]):
        self.vault = vault
        self.apigw = apigw
        self.audit = audit
        self.lease = lease
        self.consumers = consumers
        self.clock = clock

    def revoke_and_delete(self, c: Consumer, state: KeyState, journal: RotationRecord,
                          d: Decision) -> tuple[KeyState, RotationRecord]:
        """Disable and detach the keys of ``d.revoke`` (recorded ``disabled_at``), delete those of
        ``d.delete``, then one CAS write of the key record. Each AWS call is guarded by the lease."""
        plan_id = self.apigw.resolve_usage_plan(self.consumers.usage_plans[c.tier])
        now = to_iso(self.clock())
        previous, retired = state.previous, list(state.retired)
        for serial in d.revoke:
            rec = previous if previous is not None and previous.serial == serial else \
                next((r for r in retired if r.serial == serial), None)
            if rec is None:
                continue
            if rec.key_id:
                journal = self.lease.guard(c.name, journal)
                self.disable(rec.key_id)
                self.apigw.detach(plan_id, rec.key_id)
            disabled = replace(rec, disabled_at=now)
            if rec is previous:
                previous = None
                retired.append(disabled)
            else:
                retired = [disabled if r.serial == serial else r for r in retired]
            self.audit.emit("revoke", "ok", consumer=c.name, serial=serial, key_id=rec.key_id,
                            fingerprint=rec.fingerprint, rotation_id=rec.rotation_id)
        for serial in d.delete:
            rec = next((r for r in retired if r.serial == serial), None)
            if rec is None:
                continue
            if rec.key_id:
                journal = self.lease.guard(c.name, journal)
                self.apigw.delete_key(rec.key_id)
            retired = [r for r in retired if r.serial != serial]
            self.audit.emit("delete", "ok", consumer=c.name, serial=serial, key_id=rec.key_id,
                            fingerprint=rec.fingerprint)
        journal = self.lease.guard(c.name, journal)
        state = self.vault.write_key_state(c.name, state.evolve(previous=previous, retired=tuple(retired)))
        return state, journal      # the lease is renewed by the release that follows

    def disable(self, key_id: str) -> None:
        """Disable an API key; already gone is fine. One UpdateApiKey (no GetApiKey first)."""
        disable = getattr(self.apigw, "disable_key", None)
        if disable is not None:
            disable(key_id)
        elif self.apigw.get_key(key_id) is not None:
            self.apigw.set_enabled(key_id, False)
