"""The orphan sweep: API keys tagged for a consumer that Vault does not know are removed (a crash
between CreateApiKey and recording its id, or a rolled-back key whose delete failed); a key named as
the pending one is adopted by the set step instead (docs/architecture.md, "Invariants")."""

from __future__ import annotations

import threading
from typing import Any

from rotation.audit import AuditLog
from rotation.backends.apigateway import TAG_CONSUMER, ApiGatewayKeys
from rotation.backends.vault import VaultStore
from rotation.config import Consumer
from rotation.engine.lease import Lease
from rotation.errors import VaultError
from rotation.records import KeyState, RotationRecord

__all__ = ["OrphanSweep"]


class OrphanSweep:
    """One managed-key listing per run (:meth:`reset` at run start), shared by every worker.
    Raises :class:`~rotation.errors.VaultError` when Vault has no record at all for a consumer that
    has tagged keys (a human decides), and the AWS/Vault errors of the calls it makes."""

    def __init__(self, vault: VaultStore, apigw: ApiGatewayKeys, audit: AuditLog, lease: Lease):
        self.vault = vault
        self.apigw = apigw
        self.audit = audit
        self.lease = lease
        self._managed_keys: list[dict[str, Any]] | None = None
        self._managed_lock = threading.Lock()

    def reset(self) -> None:
        """A new run: list the managed keys again when first asked."""
        with self._managed_lock:
            self._managed_keys = None

    def managed_by_consumer(self, consumer: str) -> list[dict[str, Any]]:
        with self._managed_lock:       # one listing per run, whichever worker asks first
            if self._managed_keys is None:
                self._managed_keys = self.apigw.list_managed_keys()
            keys = self._managed_keys
        return [k for k in keys if (k.get("tags") or {}).get(TAG_CONSUMER) == consumer]

    def orphans(self, c: Consumer, state: KeyState) -> list[dict[str, Any]]:
        known = state.known_key_ids()
        pending_name = state.pending.key_name if state.pending else None
        return [k for k in self.managed_by_consumer(c.name)
                if k["id"] not in known and k.get("name") != pending_name]

    def sweep(self, c: Consumer, state: KeyState, journal: RotationRecord) -> tuple[KeyState, RotationRecord]:
        """Remove API keys tagged for this consumer that Vault does not know (a crash between
        CreateApiKey and recording its id, or a rolled-back key whose delete failed). A key named
        as the pending one is adopted by the create step instead."""
        # The run-start listing is safe here: under our lease no other runner adds keys for this
        # consumer, and a key it misses (created after the listing) is swept by the next run.
        orphans = self.orphans(c, state)
        if orphans:
            # deleting is a rare path: judge it on a fresh read of the key record
            state = self.vault.read_key_state(c.name)
            orphans = self.orphans(c, state)
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
