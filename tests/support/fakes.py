"""In-memory stand-ins for the backends, for unit tests of the engine's logic. Each one keeps the
contract of the real backend it replaces; ``tests/contract`` runs the same suite against both, so a
fake cannot drift from Vault's behaviour unnoticed."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from rotation.errors import CasConflict, EmptyKeyValue, LockHeld
from rotation.records import KeyState, RotationRecord


class InMemoryKeyStore:
    """A :class:`rotation.backends.KeyStore` over dicts: KV v2 semantics for the calls the engine
    makes (versions from 1, check-and-set on every write, version 0 = absent), and the lease
    judged by ``clock`` (epoch seconds)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._data: dict[str, tuple[dict[str, Any], int]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def _read(self, path: str) -> tuple[dict[str, Any] | None, int]:
        with self._lock:
            data, version = self._data.get(path, (None, 0))
            return copy.deepcopy(data), version

    def _write(self, path: str, data: dict[str, Any], cas: int) -> int:
        with self._lock:
            _, version = self._data.get(path, (None, 0))
            if version != cas:
                raise CasConflict(f"cas write {path}: check-and-set lost a race")
            self._data[path] = (copy.deepcopy(data), version + 1)
            return version + 1

    def read_key_state(self, consumer: str) -> KeyState:
        data, version = self._read(f"keys/{consumer}")
        return KeyState.from_dict(data, version)

    def write_key_state(self, consumer: str, state: KeyState) -> KeyState:
        for rec in (state.current, state.previous, state.pending, *state.retired):
            if rec is not None and not rec.value:
                raise EmptyKeyValue(f"refusing to store an empty value for {consumer} serial {rec.serial}")
        return state.evolve(version=self._write(f"keys/{consumer}", state.to_dict(), state.version))

    def read_rotation(self, consumer: str) -> RotationRecord:
        data, version = self._read(f"rotations/{consumer}")
        return RotationRecord.from_dict(data, version)

    def write_rotation(self, consumer: str, rec: RotationRecord) -> RotationRecord:
        return rec.evolve(version=self._write(f"rotations/{consumer}", rec.to_dict(), rec.version))

    def acquire_lease(self, consumer: str, owner: str, ttl_seconds: float,
                      rec: RotationRecord | None = None) -> RotationRecord:
        now = self.clock()
        rec = rec if rec is not None else self.read_rotation(consumer)
        if rec.held_by_other(owner, now):
            raise LockHeld(f"{consumer}: rotation lease held by {rec.owner}")
        try:
            return self.write_rotation(consumer, rec.evolve(owner=owner, lease_expires_at=now + ttl_seconds))
        except CasConflict:
            raise LockHeld(f"{consumer}: another runner took the rotation lease first") from None

    def renew_lease(self, consumer: str, rec: RotationRecord, ttl_seconds: float, **changes) -> RotationRecord:
        return self.write_rotation(consumer, rec.evolve(lease_expires_at=self.clock() + ttl_seconds, **changes))

    def release_lease(self, consumer: str, rec: RotationRecord, **changes) -> RotationRecord:
        return self.write_rotation(consumer, rec.evolve(owner=None, lease_expires_at=0.0, **changes))

    def read_ack(self, consumer: str) -> dict[str, Any] | None:
        return self._read(f"acks/{consumer}")[0]
