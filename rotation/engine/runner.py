"""Drives each consumer's rotation through its steps, resumably, under a CAS lease.

Steps (docs/architecture.md, modelled on AWS Secrets Manager's create/set/test/finish):

1. **lock**: take the consumer's lease in ``rotations/<consumer>`` (CAS; a stale lease is taken over).
2. **create**: generate the value (CSPRNG, 40 alphanumerics), record it as ``pending`` in Vault
   (CAS) *before* touching AWS, then create the API key under a deterministic name (looked up
   first), enabled, tagged, attached to the tier's usage plan; record its id (CAS).
3. **test**: the key is enabled, holds the value Vault holds, and sits in the right usage plan,
   checked with backoff up to a deadline (failure case A1); extra verifiers (a canary call) plug in.
4. **distribute**: push to each target; each ack is journaled, so a resumed run skips acked ones.
5. **promote**: ``current`` -> new, ``previous`` -> old, in one CAS write.
6. **revoke** (a later run, after the grace period; at once for an emergency; earlier once
   acknowledged and idle, see :mod:`rotation.engine.revocation`): disable and detach the old key;
   **delete** it after its retention period.

The test step runs before distribution (docs/architecture.md, "A rotation, step by step"): a
key is proven to work before any consumer is handed it, so a failed test never leaves a consumer holding a key
that is then deleted. A failure before promotion rolls back: targets that took the new key get
the current one back, the new key is disabled and deleted, and ``current`` is untouched.

Every step is journaled with CAS before the next begins; a run killed anywhere resumes from the
journal (or from what Vault and AWS show) and never leaves two pending keys, an enabled API key
Vault does not know (the orphan sweep removes those), or a consumer without a working key.

**Time and fencing.** Leases, grace periods and retention are judged on one clock every runner
shares: Vault's (:class:`rotation.backends.vault.VaultClock`), unless a clock is injected. Every
side effect (a push, an AWS write, a Vault write of the keys) is *fenced*: the lease is confirmed
by a check-and-set renewal, and the lease must not have run out on that clock since, right before
it; a runner that lost its lease does nothing more and reports ``lost_lease`` (a failure).

**Emergency requests are durable.** ``run(emergency=...)`` first records the request in the
consumer's rotation record (``emergency_request``, CAS), whoever holds the lease. Whoever holds
the lease (this run, the holder when its step ends, or the next run) carries it out and clears
it in the same write; a request that cannot be served now is reported ``queued`` (exit code 3).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Self

from rotation.audit import REDACTOR, AuditLog
from rotation.backends.apigateway import TAG_CONSUMER, ApiGatewayKeys
from rotation.backends.traffic import QuotaCarrier, TrafficSignal
from rotation.backends.vault import VaultStore
from rotation.config import Consumer, ConsumersFile
from rotation.engine.lease import Lease
from rotation.engine.planner import Decision, decide
from rotation.engine.reconcile import Reconciler
from rotation.engine.revocation import RevocationSignals
from rotation.errors import (
    CanaryMisconfigured,
    CasConflict,
    LeaseLost,
    LockHeld,
    PushError,
    RecordGone,
    RotationError,
    VaultError,
    VerificationFailed,
)
from rotation.records import KeyRecord, KeyState, RotationRecord, Step, to_iso, utcnow
from rotation.targets import Delivery, PushTarget, safe_push

__all__ = ["KEY_LENGTH", "ConsumerOutcome", "Engine", "ProgressHook", "RunSummary", "generate_key_value"]

KEY_LENGTH = 40  # alphanumerics: about 238 bits from the OS CSPRNG; API Gateway allows 20-128
_ALPHABET = string.ascii_letters + string.digits


def generate_key_value(length: int = KEY_LENGTH) -> str:
    """A new API key value from :mod:`secrets` (the OS CSPRNG): ``length`` alphanumerics."""
    if length < 30:
        raise ValueError("key length must be at least 30 characters")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass
class ConsumerOutcome:
    consumer: str
    action: str            # none | bootstrap | rotate | emergency | resume | revoke | blocked
    outcome: str           # ok | failed | rolled_back | skipped | locked | queued | waiting | lost_lease
    detail: str = ""
    serial: int | None = None
    rotation_id: str | None = None
    current_promoted_at: str | None = None   # after this run; feeds the key-age metrics


#: outcomes that mean "not done": a failure (exit 1)
FAILED_OUTCOMES = ("failed", "rolled_back", "lost_lease")
#: outcomes that mean "not done yet, retry": another runner holds the lease (exit 3)
DEFERRED_OUTCOMES = ("locked", "queued")


@dataclass
class RunSummary:
    outcomes: list[ConsumerOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ConsumerOutcome]:
        return [o for o in self.outcomes if o.outcome in FAILED_OUTCOMES]

    @property
    def deferred(self) -> list[ConsumerOutcome]:
        return [o for o in self.outcomes if o.outcome in DEFERRED_OUTCOMES]

    @property
    def exit_code(self) -> int:
        """0 all done; 1 some consumer failed (rolled back, lost its lease); 3 none failed but
        some were skipped because another runner holds the lease, or an emergency is queued."""
        return 1 if self.failed else 3 if self.deferred else 0


StepHook = Callable[[str, str], None]      # (consumer, step) -> None; may raise (tests: crash injection)
#: progress events of a run, for a progress bar or metrics: ``("started", total: int)`` once, then
#: ``("done", ConsumerOutcome)`` per consumer as it finishes. Must not raise (errors are ignored).
ProgressHook = Callable[[str, Any], None]
Verifier = Callable[[Consumer, KeyRecord], None]  # raises VerificationFailed


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
        self.clock: Callable[[], datetime] = clock or getattr(vault, "utcnow", utcnow)
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
        self.reconciler = Reconciler(audit, self.lease, self.targets_for)
        self._managed_keys: list[dict] | None = None
        self._managed_lock = threading.Lock()
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
    def decisions(self, *, force: Iterable[str] = (), emergency: Iterable[str] = ()) -> list[tuple[Consumer, KeyState, RotationRecord, Decision]]:
        """Read Vault (no writes) and decide for every consumer. A consumer whose record is
        deleted or destroyed gets the decision ``blocked`` (its reason says which and the fix)."""
        force, emergency = set(force), set(emergency)
        now = self.clock()
        # One LIST per record kind says which consumers have a record at all: those without one
        # need no read (an absent path costs a 404 and a metadata read). The rest are read
        # concurrently, at most ``max(2 * workers, 16)`` at a time: calls grow with the fleet, time
        # with the fleet divided by that bound.
        lister = getattr(self.vault, "list_records", None)
        have_keys = lister("keys") if lister else None
        have_rotation = lister("rotations") if lister else None

        def one(c: Consumer):
            try:
                state = self.vault.read_key_state(c.name) if have_keys is None or c.name in have_keys \
                    else KeyState()
                journal = self.vault.read_rotation(c.name) if have_rotation is None or c.name in have_rotation \
                    else RotationRecord()
            except RecordGone as exc:
                return (c, KeyState(), RotationRecord(), Decision(c.name, "blocked", str(exc)))
            return (c, state, journal, decide(c, state, journal, now, force=c.name in force,
                                              emergency=c.name in emergency or bool(journal.emergency_request),
                                              owner=self.owner, lease_now=now.timestamp()))

        consumers = list(self.consumers.consumers)
        if len(consumers) <= 1:
            return [one(c) for c in consumers]
        with ThreadPoolExecutor(max_workers=min(len(consumers), max(self.workers * 2, 16)),
                                thread_name_prefix="rotation-read") as pool:
            return list(pool.map(one, consumers))

    # -- running ---------------------------------------------------------------------------------
    def run(self, *, only: Iterable[str] | None = None, force: Iterable[str] = (),
            emergency: Iterable[str] = ()) -> RunSummary:
        """Process every consumer (or ``only`` those): resume, rotate what is due, revoke and
        delete what is past grace/retention, carry out recorded emergency requests. One
        consumer's failure never stops the others. Emergency requests are recorded in Vault first."""
        only = set(only) if only is not None else None
        force, emergency = set(force), set(emergency)
        summary = RunSummary()
        self._managed_keys = None
        # What "rotate now" means: a key newer than the one current when asked. Snapshot the
        # serials so a rotation completed meanwhile by another runner satisfies the request.
        self._asked_serial = {}
        self._snapshot = {}
        self._requested = set()
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

    def _managed_by_consumer(self, consumer: str) -> list[dict]:
        with self._managed_lock:       # one listing per run, whichever worker asks first
            if self._managed_keys is None:
                self._managed_keys = self.apigw.list_managed_keys()
            keys = self._managed_keys
        return [k for k in keys if (k.get("tags") or {}).get(TAG_CONSUMER) == consumer]

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
        orphans = self._orphans(c, state)
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
        journal = self._finish_promoted_journal(c, state, journal)
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
        state, journal = self._sweep_orphans(c, state, journal)
        journal, tampered = self.signals.check_unwrap_reports(c, state, journal)
        if tampered and not journal.reissue_required:
            journal = self.lease.renew(c.name, journal, reissue_required=True)
        if journal.reissue_required:
            # Someone else unwrapped a key: re-issue by an emergency rotation. A pending key went
            # out over the same channel, so it is rolled back first, never promoted.
            emergency = True
            if state.pending is not None:
                state, journal = self._rollback(c, state, journal, "tamper suspected: the pending key may be exposed")
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
            state, journal, result = self._rotate(c, state, journal, d, emergency_requested=emergency)
        elif d.waiting and force:
            result = ConsumerOutcome(c.name, "none", "waiting", d.reason)
        # revoke / delete (re-decide: a promotion just changed the labels)
        just_promoted = result.outcome == "ok" and d.rotate != "none"
        d2 = decide(c, state, journal, self.clock(), emergency=journal.emergency and just_promoted,
                    owner=self.owner, lease_now=self.lease.now(),
                    early_revoke=early and d.rotate == "none")
        if result.outcome == "ok" and (d2.revoke or d2.delete):
            state, journal = self._revoke_and_delete(c, state, journal, d2)
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

    # -- rotation steps --------------------------------------------------------------------------
    def _journal(self, c: Consumer, journal: RotationRecord, step: Step, **changes) -> RotationRecord:
        journal = self.lease.renew(c.name, journal, step=step.value, **changes)
        self.after_step(c.name, step.value)
        return journal

    def _rotate(self, c: Consumer, state: KeyState, journal: RotationRecord, d: Decision, *,
                emergency_requested: bool = False):
        # The emergency flag lives on the pending record itself (same CAS write), so a crash
        # before the journal is written cannot lose it; a later emergency request upgrades a
        # normal rotation in flight.
        emergency = (d.rotate == "emergency" or emergency_requested
                     or bool(state.pending and state.pending.emergency)
                     or (d.rotate == "resume" and journal.emergency
                         and journal.rotation_id == (state.pending.rotation_id if state.pending else None)))
        journal = self.lease.fence(c.name, journal, vault_write=True)
        if state.pending is not None and emergency and not state.pending.emergency:
            state = self.vault.write_key_state(c.name, state.evolve(pending=replace(state.pending, emergency=True)),
                                               mirror_labels=False)
        created = None      # CreateApiKey's answer when this run mints the key
        fresh = state.pending is None
        if state.pending is None:
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
        else:
            REDACTOR.register(state.pending.value)
            if journal.rotation_id != state.pending.rotation_id or journal.emergency != emergency:
                journal = self._journal(c, journal, Step.PENDING_RECORDED, rotation_id=state.pending.rotation_id,
                                        emergency=emergency, started_at=to_iso(self.clock()), acks={})
            self.audit.emit("resume", "ok", consumer=c.name, rotation_id=state.pending.rotation_id,
                            serial=state.pending.serial, step=journal.step)
        pending = state.pending
        out = ConsumerOutcome(c.name, d.rotate, "ok", d.reason, pending.serial, pending.rotation_id)
        step = Step.PENDING_RECORDED.value if fresh else journal.step
        try:
            if step == Step.ROLLED_BACK.value or step == "rolling_back":
                raise VerificationFailed("resuming an interrupted rollback")
            if pending.key_id is None or step in (Step.PENDING_RECORDED.value, Step.LOCKED.value, None):
                # A resumed rotation looks the key up by name (it may exist); a fresh one cannot.
                state, journal, created = self._create(c, state, journal, fresh=fresh)
                step = Step.KEY_CREATED.value
            if step == Step.KEY_CREATED.value:
                self._test(c, state.pending, created=created)
                journal = self._journal(c, journal, Step.TESTED)
                self.audit.emit("test", "ok", consumer=c.name, rotation_id=pending.rotation_id,
                                key_id=state.pending.key_id, serial=pending.serial)
                step = journal.step
            if step == Step.TESTED.value:
                journal, failed_required = self._distribute(c, state.pending, journal)
                if failed_required:
                    raise PushError(f"required target(s) failed: {'; '.join(failed_required)}")
                # no journal write of its own: each ack is journaled; a resume at "tested"
                # skips the acked targets
                self.after_step(c.name, Step.DISTRIBUTED.value)
                step = Step.DISTRIBUTED.value
        except (VerificationFailed, PushError, RotationError) as exc:
            if isinstance(exc, (CasConflict, CanaryMisconfigured)):
                raise
            state, journal = self._rollback(c, state, journal, str(exc))
            out.outcome, out.detail = "rolled_back", REDACTOR.scrub(str(exc))
            return state, journal, out
        # promote: one CAS write moves every label
        now = to_iso(self.clock())
        new_current = replace(state.pending, promoted_at=now)
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
        return state, journal, out

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

    def _create(self, c: Consumer, state: KeyState, journal: RotationRecord, *, fresh: bool = False):
        """CreateApiKey (no lookup by name for a ``fresh`` rotation: its key cannot exist yet),
        CreateUsagePlanKey, the quota carry-over. The key id is kept in memory and reaches Vault
        with the promote write: a resume finds the key by its deterministic name. Returns
        ``(state, journal, created)``; ``created`` is CreateApiKey's answer or ``None``."""
        pending = state.pending
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

    def _test(self, c: Consumer, pending: KeyRecord, *, created: dict | None = None) -> None:
        """Prove the new key works: enabled, right value, right usage plan; then the verifiers
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
            self._wait(delay)
            delay = min(delay * 2, 1.0)   # a canary answer costs no control-plane call: ask often

    def _check_key(self, pending: KeyRecord, plan_id: str) -> str | None:
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

    def _distribute(self, c: Consumer, pending: KeyRecord, journal: RotationRecord) -> tuple[RotationRecord, list[str]]:
        """Push to every target not yet acked for this serial; journal each ack. Returns the
        journal at its new version and the failed required targets."""
        delivery = Delivery(c.name, pending.serial, pending.rotation_id, pending.key_id, pending.value,
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

    def _rollback(self, c: Consumer, state: KeyState, journal: RotationRecord, reason: str):
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
        pending = state.pending
        state = self.vault.read_key_state(c.name)
        if state.pending is None or state.pending.rotation_id != pending.rotation_id:
            raise VaultError(f"{c.name}: the pending key of rotation {pending.rotation_id} changed before the "
                             "rollback; the next run looks again")
        pending = state.pending
        journal = self.lease.fence(c.name, journal)
        journal = self.lease.renew(c.name, journal, step="rolling_back")
        restored, not_restored = [], []
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
            self._disable(kid)
            self.apigw.detach(plan_id, kid)
            self.apigw.delete_key(kid)
        journal = self.lease.fence(c.name, journal)
        state = self.vault.write_key_state(c.name, state.evolve(pending=None))
        journal = self._journal(c, journal, Step.ROLLED_BACK, acks={})
        self.audit.emit("rollback", "rolled_back", consumer=c.name, rotation_id=pending.rotation_id,
                        serial=pending.serial, key_id=pending.key_id, reason=REDACTOR.scrub(reason),
                        restored=restored, vault_version=state.version)
        return state, journal

    def _finish_promoted_journal(self, c: Consumer, state: KeyState, journal: RotationRecord) -> RotationRecord:
        """A crash after the promote write but before its journal entry: record it now."""
        if (state.pending is None and state.current is not None and journal.rotation_id == state.current.rotation_id
                and journal.step not in (Step.PROMOTED.value, None)):
            return self._journal(c, journal, Step.PROMOTED)
        return journal

    # -- revoke, delete, orphans -----------------------------------------------------------------
    def _revoke_and_delete(self, c: Consumer, state: KeyState, journal: RotationRecord, d: Decision):
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
                self._disable(rec.key_id)
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

    def _disable(self, key_id: str) -> None:
        """Disable an API key; already gone is fine. One UpdateApiKey (no GetApiKey first)."""
        disable = getattr(self.apigw, "disable_key", None)
        if disable is not None:
            disable(key_id)
        elif self.apigw.get_key(key_id) is not None:
            self.apigw.set_enabled(key_id, False)

    def _orphans(self, c: Consumer, state: KeyState) -> list[dict]:
        known = state.known_key_ids()
        pending_name = state.pending.key_name if state.pending else None
        return [k for k in self._managed_by_consumer(c.name)
                if k["id"] not in known and k.get("name") != pending_name]

    def _sweep_orphans(self, c: Consumer, state: KeyState, journal: RotationRecord):
        """Remove API keys tagged for this consumer that Vault does not know (a crash between
        CreateApiKey and recording its id, or a rolled-back key whose delete failed). A key named
        as the pending one is adopted by the create step instead."""
        # The run-start listing is safe here: under our lease no other runner adds keys for this
        # consumer, and a key it misses (created after the listing) is swept by the next run.
        orphans = self._orphans(c, state)
        if orphans:
            # deleting is a rare path: judge it on a fresh read of the key record
            state = self.vault.read_key_state(c.name)
            orphans = self._orphans(c, state)
        if orphans and state.version == 0:
            # API keys for a consumer Vault has no record of at all: Vault lost its state (a
            # destroyed path?). Deleting them could cut every app off: a human decides.
            self.audit.emit("orphan", "held", consumer=c.name, key_ids=[k["id"] for k in orphans])
            raise VaultError(f"{c.name}: API Gateway holds {len(orphans)} key(s) tagged for this consumer but Vault "
                             f"has no record at {self.vault.mount}/{self.vault.path('keys', c.name)}; restore it, "
                             "or delete those keys by hand")
        for k in orphans:
            journal = self.lease.guard(c.name, journal)
            if k.get("enabled"):
                self.apigw.set_enabled(k["id"], False)
            self.apigw.delete_key(k["id"])
            self.audit.emit("orphan", "removed", consumer=c.name, key_id=k["id"], key_name=k.get("name"))
            with self._managed_lock:
                self._managed_keys = [m for m in self._managed_keys or [] if m["id"] != k["id"]]
        return state, journal
