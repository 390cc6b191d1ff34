"""The status digest: what ``rotation status`` and ``rotation plan`` need of one consumer's two
records (its key record without any key value, and its rotation record without acknowledgements,
traffic counters or handled reports), kept in the key record's KV v2 ``custom_metadata`` next to
the label mirror, so that one ``LIST <mount>/detailed-metadata/<prefix>/keys`` answers for the
whole fleet on servers that have that endpoint (OpenBao; see docs/vault-layout.md).

Each digest names the KV versions it was made from (``status_keys_version``,
``status_rotation_version``); a reader trusts it only when those are still the records' current
versions (from the same listing), and otherwise reads the records themselves. So a stale or
missing digest costs reads, never a wrong answer.

``custom_metadata`` holds at most 64 keys of at most 128 bytes and values of at most 512 bytes
(https://openbao.org/api-docs/secret/kv/kv-v2/#create-update-metadata): the digest is compact
JSON cut into ``status_digest_<n>`` values of :data:`CHUNK` characters; a digest that does not fit
is left out (the reader then reads the records).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rotation.records import KeyRecord, KeyState, RotationRecord

__all__ = ["CHUNK", "DigestKeyRecord", "decode", "encode"]

CHUNK = 500
_MAX_KEYS = 64
KEYS_VERSION = "status_keys_version"
ROTATION_VERSION = "status_rotation_version"
_PART = "status_digest_"
#: rotation record fields the planner and the status outputs read
_JOURNAL_FIELDS = ("owner", "lease_expires_at", "rotation_id", "step", "emergency", "started_at", "last_outcome",
                   "reissue_required", "emergency_request")


@dataclass(frozen=True)
class DigestKeyRecord(KeyRecord):
    """A key record rebuilt from a digest: no value (``value`` is empty); the fingerprint is the
    one recorded when the digest was written. Never written back (an empty value is refused)."""

    recorded_fingerprint: str = ""

    @property
    def fingerprint(self) -> str:
        return self.recorded_fingerprint


def _key(rec: KeyRecord | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {k: v for k, v in rec.summary().items() if v not in (None, False, "")}


def encode(state: KeyState, journal: RotationRecord | None) -> dict[str, str]:
    """The digest entries for ``custom_metadata`` (strings only), or ``{}`` when it does not fit
    beside ``reserved`` other entries. ``journal``: the rotation record at its current version
    (``None``: none exists)."""
    doc: dict[str, Any] = {"k": {"current": _key(state.current), "previous": _key(state.previous),
                                 "pending": _key(state.pending), "retired": [_key(r) for r in state.retired]}}
    out = {KEYS_VERSION: str(state.version)}
    if journal is not None and journal.version:
        j = journal.to_dict()
        doc["j"] = {f: j[f] for f in _JOURNAL_FIELDS if j.get(f)}
        out[ROTATION_VERSION] = str(journal.version)
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
    parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)]
    if len(parts) > _MAX_KEYS - 20:      # room for the label mirror (at most 14 entries)
        return {}
    out.update({f"{_PART}{i}": p for i, p in enumerate(parts)})
    return out


def _record(d: dict[str, Any] | None) -> KeyRecord | None:
    if not d:
        return None
    d = dict(d)
    fp = d.pop("fingerprint", "")
    known = {"serial", "rotation_id", "created_at", "key_id", "key_name", "promoted_at", "disabled_at", "emergency"}
    return DigestKeyRecord(value="", recorded_fingerprint=fp, **{k: v for k, v in d.items() if k in known})


def decode(custom_metadata: dict[str, Any] | None, keys_version: int,
           rotation_version: int) -> tuple[KeyState | None, RotationRecord | None]:
    """Rebuild ``(KeyState, RotationRecord)`` from a digest if it is current: the key state when
    the digest was made from ``keys_version`` (the key record's current version), the rotation
    record when it was made from ``rotation_version`` (0: there is no rotation record, so an
    empty one). Either is ``None`` when the digest cannot vouch for it (read the record)."""
    meta = custom_metadata or {}
    parts = sorted((int(k[len(_PART):]), v) for k, v in meta.items()
                   if k.startswith(_PART) and k[len(_PART):].isdigit())
    if not parts or [i for i, _ in parts] != list(range(len(parts))):
        return None, None
    try:
        doc = json.loads("".join(v for _, v in parts))
        k = doc["k"]
        state = None
        if meta.get(KEYS_VERSION) == str(keys_version) and keys_version > 0:
            retired = tuple(r for r in (_record(x) for x in k.get("retired") or []) if r is not None)
            state = KeyState(current=_record(k.get("current")), previous=_record(k.get("previous")),
                             pending=_record(k.get("pending")), retired=retired, version=keys_version)
        journal = None
        if rotation_version == 0:
            journal = RotationRecord()
        elif meta.get(ROTATION_VERSION) == str(rotation_version) and "j" in doc:
            journal = RotationRecord.from_dict(doc["j"], rotation_version)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None
    return state, journal
