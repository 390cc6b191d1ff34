"""What the rotation jobs keep in Vault, as plain data classes (no I/O here).

Two KV v2 secrets per consumer (layout: :mod:`policies.vault`):

* ``<prefix>/keys/<consumer>`` -> :class:`KeyState`: the staging labels ``current``, ``previous``
  and ``pending`` (each a :class:`KeyRecord` holding the key value, its API Gateway key id and a
  serial), plus ``retired`` keys that are disabled and wait for deletion. Promotion moves the
  labels in one check-and-set write.
* ``<prefix>/rotations/<consumer>`` -> :class:`RotationRecord`: the CAS-guarded lease (owner,
  expiry) and the journal of the rotation in flight (its id, the last step completed, the acks of
  its push targets). It never holds a key value.

A :class:`KeyRecord`'s ``repr`` never shows the value (failure case C1).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, overload

from rotation.errors import RotationError

__all__ = ["KEY_VALUE_LENGTH", "KeyRecord", "KeyState", "RotationRecord", "Step", "check_key_record", "fingerprint", "from_iso", "to_iso", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def to_iso(dt: datetime) -> str: ...
@overload
def to_iso(dt: datetime | None) -> str | None: ...
def to_iso(dt: datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds (``2026-01-02T03:04:05.678+00:00``); ``None`` stays ``None``."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds") if dt else None


def from_iso(s: str | None) -> datetime | None:
    """The inverse of :func:`to_iso` (:meth:`datetime.fromisoformat`); ``None`` or ``""`` gives ``None``."""
    return datetime.fromisoformat(s) if s else None


def fingerprint(value: str) -> str:
    """A non-reversible identifier for a secret, safe to log: ``sha256:`` + 12 hex digits."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


class Step(str, Enum):
    """Journal steps, in order. Each is recorded with CAS before the next begins."""

    LOCKED = "locked"
    PENDING_RECORDED = "pending_recorded"   # value written to Vault as `pending`
    KEY_CREATED = "key_created"             # API Gateway key exists, enabled, in the usage plan
    TESTED = "tested"                       # the key is proven to work
    DISTRIBUTED = "distributed"             # every required push target acknowledged
    PROMOTED = "promoted"                   # pending -> current, current -> previous
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


#: API Gateway key values: "an alphanumeric string between 20 and 128 characters"
#: (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-usage-plans.html)
KEY_VALUE_LENGTH = (20, 128)


def check_key_record(d: dict[str, Any]) -> None:
    """Check a key record as read from Vault before it is used: ``serial`` a positive integer,
    ``value`` 20-128 ASCII letters and digits (an API Gateway key value, the rule
    :meth:`rotation.backends.apigateway.ApiGatewayKeys.create_key` applies too), ``rotation_id`` and ``created_at`` non-empty strings, ``created_at``
    / ``promoted_at`` / ``disabled_at`` ISO 8601 timestamps, ``key_id`` / ``key_name`` strings or
    null, ``emergency`` a boolean. Raises ``ValueError("<field>: <problem>")``; the value itself is
    never quoted (it is a secret)."""
    serial = d.get("serial")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise ValueError("serial: must be a positive integer")
    value = d.get("value")
    lo, hi = KEY_VALUE_LENGTH
    if not isinstance(value, str) or not lo <= len(value) <= hi or not (value.isascii() and value.isalnum()):
        raise ValueError(f"value: must be {lo}-{hi} ASCII letters and digits (an API Gateway key value)")
    for name in ("rotation_id", "created_at"):
        if not isinstance(d.get(name), str) or not d[name]:
            raise ValueError(f"{name}: must be a non-empty string")
    for name in ("key_id", "key_name", "promoted_at", "disabled_at"):
        if d.get(name) is not None and not isinstance(d[name], str):
            raise ValueError(f"{name}: must be a string or null")
    for name in ("created_at", "promoted_at", "disabled_at"):
        if d.get(name):
            try:
                datetime.fromisoformat(d[name])
            except ValueError:
                raise ValueError(f"{name}: must be an ISO 8601 timestamp") from None
    if not isinstance(d.get("emergency", False), bool):
        raise ValueError("emergency: must be true or false")  # noqa: TRY004 - one error type for every field


@dataclass(frozen=True)
class KeyRecord:
    """One API key generation. ``value`` is the secret; everything else is safe to log."""

    serial: int
    value: str = field(repr=False)
    rotation_id: str
    created_at: str
    key_id: str | None = None
    key_name: str | None = None
    promoted_at: str | None = None
    disabled_at: str | None = None
    emergency: bool = False   # set with `pending`: the old key is revoked at once on promotion

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> KeyRecord | None:
        """A record read from Vault, checked field by field (:func:`check_key_record`) before
        anything acts on it. Raises ``ValueError`` naming the field (never the value)."""
        if not d:
            return None
        check_key_record(d)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def summary(self) -> dict[str, Any]:
        """The non-secret fields (for custom_metadata, audit events, status output)."""
        d = self.to_dict()
        d.pop("value")
        d["fingerprint"] = self.fingerprint
        return d


@dataclass(frozen=True)
class KeyState:
    """The staging labels of one consumer's key, with the KV v2 version they were read at."""

    current: KeyRecord | None = None
    previous: KeyRecord | None = None
    pending: KeyRecord | None = None
    retired: tuple[KeyRecord, ...] = ()
    version: int = 0  # KV v2 version read; 0 = the path does not exist yet (failure case V2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current.to_dict() if self.current else None,
            "previous": self.previous.to_dict() if self.previous else None,
            "pending": self.pending.to_dict() if self.pending else None,
            "retired": [r.to_dict() for r in self.retired],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, version: int) -> KeyState:
        """The labels as read from Vault. Raises ``ValueError`` naming the label and field of a
        record that fails :func:`check_key_record` (``"pending.serial: must be ..."``)."""
        d = d or {}
        if not isinstance(d, dict) or not isinstance(d.get("retired") or [], list):
            raise ValueError("the key record must be an object whose 'retired' is a list")  # noqa: TRY004

        def rec(label: str, raw: Any) -> KeyRecord | None:
            if raw is not None and not isinstance(raw, dict):
                raise ValueError(f"{label}: must be an object or null")
            try:
                return KeyRecord.from_dict(raw)
            except ValueError as exc:
                raise ValueError(f"{label}.{exc}") from None

        retired = tuple(rec(f"retired.{i}", r) for i, r in enumerate(d.get("retired") or []))
        return cls(current=rec("current", d.get("current")), previous=rec("previous", d.get("previous")),
                   pending=rec("pending", d.get("pending")), retired=tuple(r for r in retired if r),
                   version=version)

    def known_key_ids(self) -> set[str]:
        recs = [self.current, self.previous, self.pending, *self.retired]
        return {r.key_id for r in recs if r and r.key_id}

    def next_serial(self) -> int:
        recs = [self.current, self.previous, self.pending, *self.retired]
        return max([r.serial for r in recs if r] + [0]) + 1

    def labels_summary(self) -> dict[str, str]:
        """custom_metadata mirror (string map, no secrets) for auditors and `status`.

        ``previous_*`` names the key that was current before the current one: the ``previous``
        label while it is in its grace period (``previous_state`` ``grace``), else the newest retired
        key until it is deleted (``revoked``: disabled and detached, e.g. at once after an
        emergency rotation), so the leaked-key runbook finds the old key id in the metadata
        (``bao kv metadata get``; docs/operations.md, "A key leaked")."""
        out: dict[str, str] = {}
        for label in ("current", "previous", "pending"):
            rec = getattr(self, label)
            if rec:
                out[f"{label}_serial"] = str(rec.serial)
                out[f"{label}_key_id"] = rec.key_id or ""
                out[f"{label}_fingerprint"] = rec.fingerprint
        older = [r for r in self.retired if self.current is None or r.serial < self.current.serial]
        if self.previous is not None:
            out["previous_state"] = "revoked" if self.previous.disabled_at else "grace"
        elif older:
            last = max(older, key=lambda r: r.serial)
            out.update(previous_serial=str(last.serial), previous_key_id=last.key_id or "",
                       previous_fingerprint=last.fingerprint, previous_state="revoked")
        if self.current and self.current.promoted_at:
            out["current_promoted_at"] = self.current.promoted_at
        out["retired_count"] = str(len(self.retired))
        return out

    def evolve(self, **changes: Any) -> KeyState:
        return replace(self, **changes)

    def require_pending(self) -> KeyRecord:
        """The ``pending`` record, for the steps of a rotation that wrote it first; raises
        :class:`~rotation.errors.RotationError` if there is none (the record changed under the run)."""
        if self.pending is None:
            raise RotationError("the key record holds no pending key (changed by someone else); "
                                "the next run looks again")
        return self.pending


@dataclass(frozen=True)
class RotationRecord:
    """Lease and journal for one consumer; ``version`` is the KV v2 version it was read at."""

    owner: str | None = None
    lease_expires_at: float = 0.0          # epoch seconds
    rotation_id: str | None = None
    step: str | None = None
    emergency: bool = False
    started_at: str | None = None
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)   # target id -> {"ok", "at", "detail"}
    last_outcome: dict[str, Any] = field(default_factory=dict)
    traffic: dict[str, dict[str, Any]] = field(default_factory=dict)  # key id -> {"count", "since"}
    handled_reports: list[str] = field(default_factory=list)          # fingerprints of unwrap reports seen
    reissue_required: bool = False   # tamper seen: an emergency rotation is owed until one is promoted
    #: a durable emergency request (``rotate --emergency``), written before anything else, even while
    #: another runner holds the lease: ``{"id", "at", "by", "asked_serial"}``. Whoever holds the
    #: lease next carries it out (a key newer than ``asked_serial`` promoted and every key up to
    #: ``asked_serial`` disabled) and clears it in the same write.
    emergency_request: dict[str, Any] = field(default_factory=dict)
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("version")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, version: int) -> RotationRecord:
        d = d or {}
        known = {f.name for f in fields(cls)} - {"version"}
        return cls(**{k: v for k, v in d.items() if k in known}, version=version)

    def held_by_other(self, owner: str, now: float) -> bool:
        """Another owner's lease is live at ``now`` (epoch seconds on the clock every runner
        shares: Vault's, see :class:`rotation.backends.vault.VaultClock`)."""
        return bool(self.owner) and self.owner != owner and self.lease_expires_at > now

    @property
    def asked_serial(self) -> int | None:
        """The serial current when the pending emergency request was made, or None."""
        try:
            return int(self.emergency_request["asked_serial"]) if self.emergency_request else None
        except (KeyError, TypeError, ValueError):
            return 0   # a malformed request still means "rotate": never ignore an emergency

    def evolve(self, **changes) -> RotationRecord:
        return replace(self, **changes)
