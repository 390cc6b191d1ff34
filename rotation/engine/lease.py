"""The per-consumer lease and the fence before every side effect: the one place the fencing rule
lives on the runner's side (docs/architecture.md, "Time, leases and fencing").

**The lease.** ``<prefix>/rotations/<consumer>`` holds ``owner`` and ``lease_expires_at`` (epoch
seconds on Vault's clock); it is taken and renewed with check-and-set, so of two runners only one
holds it. Expiries are written, and other runners' leases judged, on the *lower* bound of Vault's
time (:meth:`rotation.backends.vault.VaultClock.__call__`); a runner judges its *own* lease on the
*upper* bound (:meth:`~rotation.backends.vault.VaultClock.latest`), so it stops before anyone may
take the lease over, never after.

**The fence.** Right before a side effect (a push, an AWS write, a Vault write of the keys) the
runner confirms the lease by a CAS renewal and checks that the lease has not run out since
(:meth:`Lease.fence`). That check-then-act is not enough on its own: a runner can stall between the
check and the write (a GC pause, a stopped process, a slow disk, an answer held in transit). So
the fence also returns the **fencing token**, the version of the rotation record that confirmed
the lease, which every push carries and every target checks where the write lands
(:mod:`rotation.client.fencing`): a stalled runner's write is refused by a target that holds a
later lease holder's. A Vault write of the keys is itself a CAS write; the runner checks the
lease again right after it (:meth:`Lease.confirm_after`) and undoes what it wrote when the lease
ran out meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from rotation.audit import AuditLog
from rotation.backends.vault import VaultStore
from rotation.errors import LeaseLost
from rotation.records import RotationRecord

__all__ = ["Lease"]


class Lease:
    """The leases one runner (``owner``) holds, one per consumer, each ``ttl`` seconds long.

    :param clock: the shared clock (Vault's time, lower bound) as an aware datetime.
    :param latest: the upper bound of the shared clock; defaults to ``clock`` (an injected test
        clock has no uncertainty).

    Thread-safe across consumers (each consumer is worked on by one thread at a time). Raises
    :class:`~rotation.errors.LeaseLost` when the lease ran out, and
    :class:`~rotation.errors.CasConflict` when another runner took the record.
    """

    def __init__(self, vault: VaultStore, audit: AuditLog, owner: str, ttl: float, *,
                 clock: Callable[[], datetime], latest: Callable[[], datetime] | None = None):
        self.vault = vault
        self.audit = audit
        self.owner = owner
        self.ttl = ttl
        self.clock = clock
        self.latest = latest or clock
        # consumer -> journal version we CAS-wrote with no external side effect since (a fresh fence)
        self._fresh: dict[str, int] = {}
        # consumer -> journal fields decided but not yet written (they go with the next CAS write)
        self._unsaved: dict[str, dict[str, Any]] = {}

    # -- time --------------------------------------------------------------------------------------
    def now(self) -> float:
        """Epoch seconds on the shared clock, lower bound (expiries are written with it)."""
        return self.clock().timestamp()

    def latest_now(self) -> float:
        """Epoch seconds on the shared clock, upper bound (our own lease is judged with it)."""
        return self.latest().timestamp()

    # -- journal bookkeeping -----------------------------------------------------------------------
    def confirmed(self, consumer: str, journal: RotationRecord) -> None:
        """``journal`` is what our own CAS write (the acquire) just returned: a fresh confirmation."""
        self._fresh[consumer] = journal.version

    def spent(self, consumer: str) -> None:
        """A side effect outside Vault happened: the next fence renews by CAS again."""
        self._fresh.pop(consumer, None)

    def defer(self, consumer: str, **changes: Any) -> None:
        """Journal fields that go with the next CAS write of the rotation record."""
        self._unsaved[consumer] = changes

    # -- renewal, check, fence ---------------------------------------------------------------------
    def renew(self, consumer: str, journal: RotationRecord, **changes: Any) -> RotationRecord:
        """Renew our lease (CAS) with journal ``changes`` (and any deferred ones); then :meth:`check`."""
        changes = {**self._unsaved.pop(consumer, {}), **changes}
        journal = self.vault.renew_lease(consumer, journal, self.ttl, now=self.now(), **changes)
        journal = self.check(consumer, journal)
        self._fresh[consumer] = journal.version
        return journal

    def check(self, consumer: str, journal: RotationRecord) -> RotationRecord:
        """Is the lease in ``journal`` ours, and not run out on the upper bound of the shared clock?"""
        if journal.owner != self.owner or self.latest_now() >= journal.lease_expires_at:
            self.audit.emit("lease", "expired", consumer=consumer, vault_version=journal.version)
            raise LeaseLost(f"{consumer}: our rotation lease ran out (this runner stalled past its "
                            f"{self.ttl:.0f}s lease); stopping before the next side effect")
        return journal

    def fence(self, consumer: str, journal: RotationRecord, *, vault_write: bool = False) -> RotationRecord:
        """Right before a side effect: confirm the lease by a CAS renewal and check it has not run
        out. Returns the journal at its new version; its ``version`` is the fencing token the side
        effect carries (module docstring).

        The CAS renewal is skipped when the journal we hold is the one our own last CAS write
        returned and no side effect outside Vault happened since (that write *is* the
        confirmation; the clock check still runs). A Vault key write (``vault_write``) does not
        use the confirmation up: it is a CAS write itself, which another writer makes fail."""
        journal = self.check(consumer, journal)
        if self._fresh.get(consumer) != journal.version:
            journal = self.renew(consumer, journal)
        if not vault_write:
            self.spent(consumer)
        return journal

    def guard(self, consumer: str, journal: RotationRecord) -> RotationRecord:
        """A lighter fence before AWS calls in a loop: the clock check, and a CAS renewal once
        less than half the lease is left."""
        journal = self.check(consumer, journal)
        if journal.lease_expires_at - self.latest_now() < self.ttl / 2:
            journal = self.renew(consumer, journal)
        return journal

    def confirm_after(self, consumer: str, journal: RotationRecord) -> RotationRecord:
        """Right *after* a Vault write of the keys: did it land while the lease was ours? If the
        lease has not run out on the upper bound of the shared clock *now*, the write (which landed
        before now) landed before anyone could take the lease over (a taker needs the lower bound
        past the expiry). No Vault call. Raises :class:`~rotation.errors.LeaseLost` otherwise: the
        caller undoes what it wrote."""
        return self.check(consumer, journal)
