"""Drives each consumer's rotation through its steps, resumably, under a CAS lease.

The engine is the driver; each concern lives in its own module (docs/architecture.md, "Package
layout"), so a reader can check each one alone:

* :mod:`rotation.engine.lease`: the lease and the fence before every side effect (where the
  fencing rule lives on the runner's side; the targets apply :mod:`rotation.client.fencing`);
* :mod:`rotation.engine.steps`: the rotation steps, named as AWS Secrets Manager names them:
  **create** (``pending`` recorded in Vault before AWS is touched), **set** (the API key created,
  attached, quota carried), **test** (control plane + canary, with backoff), **distribute** (each
  target, fenced, each ack journaled), **finish** (promote in one CAS write);
* :mod:`rotation.engine.rollback`: a failure before finish gives every target the current key
  back, then disables and deletes the new key; ``current`` is untouched;
* :mod:`rotation.engine.revocation`: revoke (disable, detach) after the grace period, at once for
  an emergency, earlier once acknowledged and idle; delete after the retention period; tamper checks;
* :mod:`rotation.engine.sweep`: the orphan sweep (API keys tagged for a consumer Vault does not know);
* :mod:`rotation.engine.reconcile`: every run reads the targets back and restores the current key
  where a target holds another one;
* :mod:`rotation.engine.planner`: what is due (pure).

Every step is journaled with CAS before the next begins; a run killed anywhere resumes from the
journal (or from what Vault and AWS show) and never leaves two pending keys, an enabled API key
Vault does not know (the orphan sweep removes those), or a consumer without a working key.

**Time and fencing.** Leases, grace periods and retention are judged on one clock every runner
shares: Vault's (:class:`rotation.backends.vault.VaultClock`), unless a clock is injected. Every
side effect is fenced (:mod:`rotation.engine.lease`), and every push carries the fencing token
that the target checks where the write lands; a runner that lost its lease does nothing more and
reports ``lost_lease`` (a failure).

**Emergency requests are durable.** ``run(emergency=...)`` first records the request in the
consumer's rotation record (``emergency_request``, CAS), whoever holds the lease. Whoever holds
the lease (this run, the holder when its step ends, or the next run) carries it out and clears
it in the same write; a request that cannot be served now is reported ``queued`` (exit code 3).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any, Self

from rotation.audit import REDACTOR, AuditLog
from rotation.backends.apigateway import ApiGatewayKeys
from rotation.backends.traffic import QuotaCarrier, TrafficSignal
from rotation.backends.vault import VaultStore
from rotation.config import Consumer, ConsumersFile
from rotation.engine.lease import Lease
from rotation.engine.outcome import DEFERRED_OUTCOMES, FAILED_OUTCOMES, ConsumerOutcome, RunSummary
from rotation.engine.planner import Decision, decide
from rotation.engine.reconcile import Reconciler
from rotation.engine.revocation import RevocationSignals, Revoker
from rotation.engine.rollback import Rollback
from rotation.engine.steps import KEY_LENGTH, RotationSteps, Verifier, generate_key_value
from rotation.engine.sweep import OrphanSweep
from rotation.errors import (
    CasConflict,
    LockHeld,
    MalformedRecord,
    RecordGone,
    RotationError,
)
from rotation.records import KeyState, RotationRecord, Step, to_iso, utcnow
from rotation.targets import PushTarget

__all__ = ["DEFERRED_OUTCOMES", "FAILED_OUTCOMES", "KEY_LENGTH", "ConsumerOutcome", "Engine", "ProgressHook",
           "RunSummary", "generate_key_value"]

StepHook = Callable[[str, str], None]      # (consumer, step) -> None; may raise (tests: crash injection)
#: progress events of a run, for a progress bar or metrics: ``("started", total: int)`` once, then
#: ``("done", ConsumerOutcome)`` per consumer as it finishes. Must not raise (errors are ignored).
ProgressHook = Callable[[str, Any], None]


class Engine:
    """Rotates the consumers of one consumers file against one Vault and one API Gateway.

    ``targets_for(consumer)`` builds the consumer's push targets; ``after_step`` is called after
    each journaled step (fault injection in tests); ``verifiers`` add checks to the test step;
    ``progress`` receives the run's progress events (:data:`ProgressHook`).
    """

    def __init__(self, consumers: ConsumersFile, vault: VaultStore, apigw: ApiGatewayKeys, audit: AuditLog, *,
                 lease_ttl_seconds: float = 300, verify_timeout_seconds: float = 60,
                 targets_for: Callable[[Consumer], list[PushTarget]] | None = None,
                 after_step: StepHook | None = None, verifiers: Iterable[Verifier] = (),
                 owner: str | None = None, clock: Callable[[], datetime] | None = None,
                 traffic: TrafficSignal | None = None, quota: QuotaCarrier | None = None,
                 progress: ProgressHook | None = None, workers: int = 1, max_in_flight: int = 256,
                 sleep: Callable[[float], None] = time.sleep):
        if workers < 1 or max_in_flight < workers:
            raise ValueError("workers must be >= 1 and max_in_flight >= workers")
        self.consumers = consumers
        self.vault = vault
        self.apigw = apigw
        self.audit = audit
        self.lease_ttl = lease_ttl_seconds
        self.verify_timeout = verify_timeout_seconds
        self.targets_for = targets_for or (lambda c: [])
        self.after_step = after_step or (lambda c, s: None)
        self.verifiers = list(verifiers)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # the clock every runner shares (Vault's); a test injects a fake one
        vault_clock: Callable[[], datetime] = getattr(vault, "utcnow", utcnow)   # a test double may lack it
        self.clock = clock or vault_clock
        latest = None if clock is not None else getattr(vault, "latest_utcnow", None)
        self.lease = Lease(vault, audit, self.owner, lease_ttl_seconds, clock=self.clock, latest=latest)
        self.traffic = traffic
        self.quota = quota
        self.progress = progress
        self.signals = RevocationSignals(
            vault=vault, audit=audit, traffic=traffic, targets_for=self.targets_for, clock=self.clock,
            usage_plan_id=lambda c: apigw.resolve_usage_plan(consumers.usage_plans[c.tier]),
            lease_ttl=lease_ttl_seconds, renew=self.lease.renew,
            fence=lambda c, rec: self.lease.fence(c.name, rec))
        # the seams (docs/architecture.md, "Package layout"): lease and fence, the steps, rollback,
        # revocation, the orphan sweep, reconciliation; the engine drives them per consumer
        self.revoker = Revoker(vault, apigw, audit, self.lease, consumers, self.clock)
        self.rollback = Rollback(vault, apigw, audit, self.lease, consumers, self.targets_for,
                                 journal=lambda *a, **kw: self.steps.journal(*a, **kw), disable=self.revoker.disable)
        self.steps = RotationSteps(vault, apigw, audit, self.lease, consumers, self.targets_for, clock=self.clock,
                                   after_step=lambda c, s: self.after_step(c, s), verifiers=self.verifiers,
                                   verify_timeout=verify_timeout_seconds, quota=quota, wait=self._wait,
                                   rollback=self.rollback)
        self.sweep = OrphanSweep(vault, apigw, audit, self.lease)
        self.reconciler = Reconciler(audit, self.lease, self.targets_for)
        self._asked_serial: dict[str, int] = {}   # consumer -> current serial when a rotation was asked
        self._snapshot: dict[str, KeyState] = {}  # consumer -> key state read at run start (reused once)
        self.workers = workers
        self.max_in_flight = max_in_flight
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(workers)
        self._holding = threading.local()

    # -- the bounded pool ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold one of ``workers`` slots: at most ``workers`` consumers do Vault/AWS work at once."""
        self._slots.acquire()
        self._holding.held = True
        try:
            yield
        finally:
            self._holding.held = False
            self._slots.release()

    def _wait(self, seconds: float) -> None:
        """Sleep without holding a slot, so waits (propagation, canary backoff) overlap with
        other consumers' work; take a slot again afterwards."""
        held = getattr(self._holding, "held", False)
        if held:
            self._holding.held = False
            self._slots.release()
        try:
            self._sleep(seconds)
        finally:
            if held:
                self._slots.acquire()
                self._holding.held = True

    def _map(self, fn: Callable[[str], object], names: list[str]) -> list:
        """``fn`` over ``names`` with up to ``max_in_flight`` threads, ``workers`` of them busy."""
        def one(name: str):
            with self._slot():
                return fn(name)
        if self.max_in_flight == 1 or len(names) <= 1:
            return [one(n) for n in names]
        with ThreadPoolExecutor(max_workers=min(len(names), self.max_in_flight),
                                thread_name_prefix="rotation") as pool:
            return list(pool.map(one, names))

    def close(self) -> None:
        """End of the run: revoke the Vault token this process logged in with (not a VAULT_TOKEN)."""
        close = getattr(self.vault, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------------
    def decisions(self, *, force: Iterable[str] = (), emergency: Iterable[str] = (),
                  digests: bool = False) -> list[tuple[Consumer, KeyState, RotationRecord, Decision]]:
        """Read Vault (no writes) and decide for every consumer. A consumer whose record is
        deleted or destroyed gets the decision ``blocked`` (its reason says which and the fix).
        ``digests``: the records may come from their status digests (``status``, ``plan``: no
        key values, no acks or traffic counters in them; :mod:`rotation.status_digest`)."""
        force, emergency = set(force), set(emergency)
        now = self.clock()
        # VaultStore.read_fleet: on OpenBao one LIST of detailed metadata per record kind answers
        # for every consumer whose status digest is current; otherwise (HashiCorp Vault) one name
        # LIST per kind, then the records of those that have one, read concurrently, at most
        # ``max(2 * workers, 16)`` at a time.
        consumers = list(self.consumers.consumers)
        reader = getattr(self.vault, "read_fleet", None)
        if reader is not None:
            records = reader([c.name for c in consumers], max_workers=max(self.workers * 2, 16), digests=digests)
        else:
            records = {}
            for c in consumers:
                try:
                    records[c.name] = (self.vault.read_key_state(c.name), self.vault.read_rotation(c.name))
                except RecordGone as exc:
                    records[c.name] = exc

        def one(c: Consumer):
            got = records[c.name]
            if isinstance(got, (RecordGone, MalformedRecord)):
                return (c, KeyState(), RotationRecord(), Decision(c.name, "blocked", str(got)))
            state, journal = got
            return (c, state, journal, decide(c, state, journal, now, force=c.name in force,
                                              emergency=c.name in emergency or bool(journal.emergency_request),
                                              owner=self.owner, lease_now=now.timestamp()))

        return [one(c) for c in consumers]

    # -- running ---------------------------------------------------------------------------------
    def run(self, *, only: Iterable[str] | None = None, force: Iterable[str] = (),
            emergency: Iterable[str] = ()) -> RunSummary:
        """Process every consumer (or ``only`` those): resume, rotate what is due, revoke and
        delete what is past grace/retention, carry out recorded emergency requests. One
        consumer's failure never stops the others. Emergency requests are recorded in Vault first."""
        only = set(only) if only is not None else None
        force, emergency = set(force), set(emergency)
        summary = RunSummary()
        self.sweep.reset()
        # What "rotate now" means: a key newer than the one current when asked. Snapshot the
        # serials so a rotation completed meanwhile by another runner satisfies the request.
        self._asked_serial = {}
        self._snapshot = {}
        self._requested: set[str] = set()
        failed_early: dict[str, ConsumerOutcome] = {}
        lock = threading.Lock()

        def ask(name: str) -> None:
            try:
                state = self.vault.read_key_state(name)
                cur = state.current
                with lock:
                    self._asked_serial[name] = cur.serial if cur else 0
                    self._snapshot[name] = state    # process() reuses it once it is shown fresh
                if name in emergency:
                    # durable before anything else: if this process dies now, the next run does it
                    req = self.vault.request_emergency(name, by=self.owner, asked_serial=self._asked_serial[name],
                                                       now=self.lease.now())
                    with lock:
                        self._requested.add(name)
                    self.audit.emit("emergency", "requested", consumer=name, request_id=req["id"],
                                    asked_serial=req["asked_serial"])
                    self.after_step(name, "emergency_requested")
            except RotationError as exc:
                detail = REDACTOR.scrub(f"{type(exc).__name__}: {exc}")
                self.audit.emit("consumer", "failed", consumer=name, error=detail)
                with lock:
                    failed_early[name] = ConsumerOutcome(name, "emergency" if name in emergency else "rotate",
                                                         "failed", detail)

        self._map(ask, sorted((force | emergency) & (only if only is not None else force | emergency)))
        by_name = {c.name: c for c in self.consumers.consumers}

        def one(name: str) -> ConsumerOutcome:
            outcome = failed_early.get(name) or attempt(by_name[name])
            self._progress("done", outcome)
            return outcome

        def attempt(c: Consumer) -> ConsumerOutcome:
            try:
                return self.process(c, force=c.name in force, emergency=c.name in emergency)
            except Exception as exc:  # noqa: BLE001 - isolate each consumer (certbot-style)
                detail = REDACTOR.scrub(f"{type(exc).__name__}: {exc}")
                self.audit.emit("consumer", "failed", consumer=c.name, error=detail)
                return ConsumerOutcome(c.name, "error", "failed", detail)

        names = [c.name for c in self.consumers.consumers if only is None or c.name in only]
        self._progress("started", len(names))
        summary.outcomes.extend(self._map(one, names))
        self.audit.emit("run", "failed" if summary.failed else "deferred" if summary.deferred else "ok",
                        consumers=len(summary.outcomes), failed=len(summary.failed),
                        deferred=len(summary.deferred))
        return summary

    def _progress(self, kind: str, data: Any) -> None:
        if self.progress is not None:
            try:
                self.progress(kind, data)
            except Exception:  # noqa: BLE001, S110 - a progress display never fails a rotation
                pass

    def process(self, c: Consumer, *, force: bool = False, emergency: bool = False) -> ConsumerOutcome:
        """Everything one run does for consumer ``c``, under its lease.

        Reads the key record once (the run-start snapshot when there is one), then the rotation
        record; the key record is read again under the lease only when the rotation record does
        not vouch for it (see :meth:`_known_fresh`)."""
        state = self._snapshot.pop(c.name, None) or self.vault.read_key_state(c.name)
        journal = self.vault.read_rotation(c.name)
        requested = bool(journal.emergency_request)
        emergency = emergency or requested
        d = decide(c, state, journal, self.clock(), force=force, emergency=emergency, owner=self.owner,
                   lease_now=self.lease.now())
        orphans = self.sweep.orphans(c, state)
        early_possible = bool(d.waiting) and self.traffic is not None and state.previous is not None
        reports = self.signals.new_unwrap_reports(c, journal) if any(t.type == "webhook" for t in c.targets) else []
        drift = self.reconciler.drift(c, state) if not d.has_work and not d.locked_by else []
        if (not d.has_work and not orphans and not early_possible and not reports and not requested and not drift
                and not (journal.rotation_id and journal.step == Step.DISTRIBUTED.value)):
            outcome = "waiting" if d.waiting and (force or "waiting" in d.reason) else "skipped"
            return ConsumerOutcome(c.name, "none", outcome, d.reason,
                                   current_promoted_at=state.current.promoted_at if state.current else None)
        if d.locked_by:
            return self._deferred(c, d.rotate, journal, f"lease held by {d.locked_by}")
        prior_owner = journal.owner if journal.owner != self.owner else None   # set: a stale lease taken over
        try:
            journal = self.vault.acquire_lease(c.name, self.owner, self.lease_ttl, journal, now=self.lease.now())
        except LockHeld as exc:
            return self._deferred(c, d.rotate, self.vault.read_rotation(c.name), str(exc))
        self.lease.confirmed(c.name, journal)    # the acquire write confirms the lease
        self.audit.emit("lock", "ok", consumer=c.name, vault_version=journal.version, taken_over_from=prior_owner)
        known = state if self._known_fresh(state, journal) else None
        try:
            return self._process_locked(c, journal, force=force, emergency=emergency, known=known)
        except CasConflict as exc:
            # Lost a race (V1) or our lease ran out: someone else may act now; never clobber, never
            # revoke because of it, and report it as a failure (the run did not finish its work).
            self.audit.emit("lease", "lost", consumer=c.name, detail=str(exc))
            return ConsumerOutcome(c.name, d.rotate, "lost_lease", str(exc))

    def _deferred(self, c: Consumer, action: str, journal: RotationRecord, why: str) -> ConsumerOutcome:
        """Another runner holds the lease: ``queued`` when an emergency request waits in Vault for
        the holder (or the next run), else ``locked``. Both exit with code 3 (retry)."""
        if journal.emergency_request:
            self.audit.emit("emergency", "queued", consumer=c.name, request_id=journal.emergency_request.get("id"),
                            holder=journal.owner)
            return ConsumerOutcome(c.name, "emergency", "queued",
                                   f"emergency rotation recorded in Vault and queued: {why}; the lease holder "
                                   "carries it out when its step ends, or the next run does")
        self.audit.emit("lock", "skipped", consumer=c.name, detail=why)
        return ConsumerOutcome(c.name, action, "locked", why)

    @staticmethod
    def _known_fresh(state: KeyState, journal: RotationRecord) -> bool:
        """Is the key record read before the lease still the latest? Every release records the
        key record's version in ``last_outcome.keys_version``; the key record is read *before*
        the rotation record, and our lease was taken with a CAS on the version read, so a match
        means no lease holder wrote the key record since. Anything else (a crashed holder, a
        write by hand) reads it again."""
        return state.version > 0 and journal.last_outcome.get("keys_version") == state.version

    def _release(self, c: Consumer, state: KeyState, journal: RotationRecord, result: ConsumerOutcome,
                 done: dict | None) -> RotationRecord:
        changes: dict = {"last_outcome": {
            "outcome": result.outcome, "action": result.action, "at": to_iso(self.clock()),
            "rotation_id": result.rotation_id, "detail": result.detail[:300], "keys_version": state.version}}
        if done:
            changes["emergency_request"] = {}
        if result.outcome == "ok" and journal.step in (Step.TESTED.value, Step.DISTRIBUTED.value) \
                and state.pending is None and state.current is not None \
                and journal.rotation_id == state.current.rotation_id:
            changes["step"] = Step.PROMOTED.value       # the promote's journal entry, in the release write
        return self.vault.write_rotation(c.name, journal.evolve(owner=None, lease_expires_at=0.0, **changes))

    def _process_locked(self, c: Consumer, journal: RotationRecord, *, force: bool, emergency: bool,
                        known: KeyState | None = None) -> ConsumerOutcome:
        try:
            result, state, journal = self._work(c, journal, force=force, emergency=emergency, known=known)
            # An emergency request recorded while we worked (by a runner that found our lease):
            # we hold the lease, so we carry it out now rather than leave the leaked key enabled.
            # The release is a CAS write on the version we hold: if it fails, someone wrote the
            # record meanwhile; read it, and carry out a request that came in (at most twice more).
            for attempt in range(3):
                if attempt and self._request_open(state, journal) and result.outcome == "ok":
                    result, state, journal = self._work(c, journal, force=False, emergency=True)
                done = journal.emergency_request if not self._request_open(state, journal) else None
                result.current_promoted_at = state.current.promoted_at if state.current else None
                if not done and journal.emergency_request and result.outcome == "ok" and attempt < 2:
                    continue        # a request merged into our journal by a renewal: carry it out
                try:
                    self._release(c, state, journal, result, done)
                    break
                except CasConflict:
                    journal = self.vault.refresh_own(c.name, journal)   # CasConflict: really taken over
                    if attempt == 2:
                        # Requests keep arriving (each is a write): stop serving them, but never
                        # leave the lease held. The release keeps every request (a merging write),
                        # so the next run, or the holder that comes next, carries it out at once.
                        done = None
                        result = self._release_leaving_requests(c, state, journal, result)
            if done:
                self.audit.emit("emergency", "done", consumer=c.name, request_id=done.get("id"))
            return result
        except CasConflict:
            raise
        except Exception as exc:
            # Free the lease at once (the journal keeps the step, so the next run resumes there)
            # rather than leaving the consumer locked for the lease TTL.
            try:
                latest = self.vault.read_rotation(c.name)
                if latest.owner == self.owner:
                    self.vault.release_lease(c.name, latest, last_outcome={
                        "outcome": "failed", "at": to_iso(self.clock()),
                        "detail": REDACTOR.scrub(f"{type(exc).__name__}: {exc}")[:300]})
            except Exception as release_exc:  # noqa: BLE001 - the original error matters more
                self.audit.emit("lease", "release_failed", consumer=c.name, error=type(release_exc).__name__)
            raise

    def _release_leaving_requests(self, c: Consumer, state: KeyState, journal: RotationRecord,
                                  result: ConsumerOutcome) -> ConsumerOutcome:
        """Release the lease without clearing the emergency request (``release_lease`` merges a
        request recorded meanwhile). An open request makes the outcome ``queued`` (exit 3): it is
        recorded in Vault and the next run carries it out."""
        released = self.vault.release_lease(c.name, journal, last_outcome={
            "outcome": result.outcome, "action": result.action, "at": to_iso(self.clock()),
            "rotation_id": result.rotation_id, "detail": result.detail[:300], "keys_version": state.version})
        if released.emergency_request and result.outcome == "ok":
            self.audit.emit("emergency", "queued", consumer=c.name, holder=self.owner,
                            request_id=released.emergency_request.get("id"))
            return replace(result, outcome="queued",
                           detail="emergency requests kept arriving while the lease was released; the "
                                  "latest is recorded in Vault and the next run carries it out")
        return result

    @staticmethod
    def _request_open(state: KeyState, journal: RotationRecord) -> bool:
        """Is the recorded emergency request not yet carried out? It is once a key newer than
        ``asked_serial`` is current and no key up to ``asked_serial`` is still enabled."""
        asked = journal.asked_serial
        if asked is None:
            return False
        if state.current is None or state.current.serial <= asked:
            return True
        old = [r for r in (state.previous, *state.retired) if r is not None and r.serial <= asked]
        return any(r.disabled_at is None for r in old)

    def _work(self, c: Consumer, journal: RotationRecord, *, force: bool, emergency: bool,
              known: KeyState | None = None) -> tuple[ConsumerOutcome, KeyState, RotationRecord]:
        state = known if known is not None else self.vault.read_key_state(c.name)  # fresh, under the lease
        REDACTOR.register(*(r.value for r in (state.current, state.previous, state.pending, *state.retired) if r))
        journal = self.steps.finish_promoted_journal(c, state, journal)
        revoke_now = False
        if journal.emergency_request:
            emergency = True
            asked = journal.asked_serial
        else:
            asked = self._asked_serial.get(c.name)
        if (force or emergency) and state.current and asked is not None and state.current.serial > asked:
            # a rotation newer than the request is already current (done by another runner, or
            # by us): it satisfies the request; an emergency still revokes the older keys now
            revoke_now = emergency
            force = emergency = False
        state, journal = self.sweep.sweep(c, state, journal)
        journal, tampered = self.signals.check_unwrap_reports(c, state, journal)
        if tampered and not journal.reissue_required:
            journal = self.lease.renew(c.name, journal, reissue_required=True)
        if journal.reissue_required:
            # Someone else unwrapped a key: re-issue by an emergency rotation. A pending key went
            # out over the same channel, so it is rolled back first, never promoted.
            emergency = True
            if state.pending is not None:
                state, journal = self.rollback.run(c, state, journal, "tamper suspected: the pending key may be exposed")
        if state.previous is not None and state.previous.serial in decide(
                c, state, journal, self.clock(), owner=self.owner, lease_now=self.lease.now()).revoke:
            early = False       # past its grace already: no traffic read, no snapshot write
        else:
            journal, early = self.signals.early_revoke_ok(c, state, journal)
        early = early or revoke_now
        d = decide(c, state, journal, self.clock(), force=force, emergency=emergency, owner=self.owner,
                   lease_now=self.lease.now(), early_revoke=early)
        result = ConsumerOutcome(c.name, d.rotate, "ok", d.reason)
        if d.rotate in ("bootstrap", "rotate", "emergency", "resume"):
            state, journal, result = self.steps.rotate(c, state, journal, d, emergency_requested=emergency)
        elif d.waiting and force:
            result = ConsumerOutcome(c.name, "none", "waiting", d.reason)
        # revoke / delete (re-decide: a promotion just changed the labels)
        just_promoted = result.outcome == "ok" and d.rotate != "none"
        d2 = decide(c, state, journal, self.clock(), emergency=journal.emergency and just_promoted,
                    owner=self.owner, lease_now=self.lease.now(),
                    early_revoke=early and d.rotate == "none")
        if result.outcome == "ok" and (d2.revoke or d2.delete):
            state, journal = self.revoker.revoke_and_delete(c, state, journal, d2)
            if result.action == "none":
                result.action = "emergency" if revoke_now else "revoke"
                result.detail = f"revoked {list(d2.revoke)}, deleted {list(d2.delete)}"
        if result.outcome == "ok" and d.rotate == "none":
            # reconciliation: a target that holds another key than current gets it back (a run
            # that rotated has just pushed the new key to every target)
            drift = self.reconciler.drift(c, state)
            if drift:
                journal, failed = self.reconciler.repair(c, state, journal, drift)
                repaired = [x.target.target_id for x in drift]
                result.detail = f"{result.detail}; gave the current key back to {', '.join(repaired)}".lstrip("; ")
                if failed:
                    result.outcome = "failed"
                    result.detail = f"could not give the current key back to {'; '.join(failed)}"
        return result, state, journal

