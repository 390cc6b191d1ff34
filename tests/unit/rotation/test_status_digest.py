"""The status digest (rotation/status_digest.py): what status reads instead of the records, trusted
only at the versions it was made from, never holding a key value."""

from __future__ import annotations

from rotation.records import KeyRecord, KeyState, RotationRecord
from rotation.status_digest import CHUNK, decode, encode


def rec(serial: int, **kw) -> KeyRecord:
    return KeyRecord(serial=serial, value=f"secret-value-{serial}-" + "x" * 30, rotation_id=f"r{serial}",
                     created_at="2026-12-01T00:00:00.000+00:00", key_id=f"kid{serial}", **kw)


STATE = KeyState(current=rec(3, promoted_at="2026-12-02T00:00:00.000+00:00"), previous=rec(2),
                 retired=(rec(1, disabled_at="2026-12-01T12:00:00.000+00:00"),), version=7)
JOURNAL = RotationRecord(owner=None, step="promoted", rotation_id="r3",
                         last_outcome={"outcome": "ok", "action": "rotate", "at": "2026-12-02T00:00:01.000+00:00"},
                         acks={"file:/x": {"ok": True}}, emergency_request={"id": "e1", "asked_serial": 3}, version=4)


def test_a_current_digest_gives_back_what_status_reads_and_no_key_value():
    meta = encode(STATE, JOURNAL)
    assert all(isinstance(v, str) and len(v) <= 512 for v in meta.values())
    assert not any("secret-value" in v for v in meta.values())
    state, journal = decode(meta, 7, 4)
    assert state is not None and journal is not None
    for label in ("current", "previous"):
        a, b = getattr(state, label), getattr(STATE, label)
        assert (a.serial, a.key_id, a.fingerprint, a.promoted_at, a.created_at) == (
            b.serial, b.key_id, b.fingerprint, b.promoted_at, b.created_at)
        assert a.value == ""
    assert [(r.serial, r.disabled_at) for r in state.retired] == [(1, "2026-12-01T12:00:00.000+00:00")]
    assert (journal.step, journal.last_outcome, journal.emergency_request, journal.version) == (
        "promoted", JOURNAL.last_outcome, JOURNAL.emergency_request, 4)
    assert journal.acks == {}                    # not carried: status does not read it


def test_a_digest_is_not_trusted_once_either_record_moved_on():
    meta = encode(STATE, JOURNAL)
    assert decode(meta, 8, 4)[0] is None         # the key record was written since
    assert decode(meta, 7, 5)[1] is None         # the rotation record was written since
    assert decode(meta, 7, 5)[0] is not None
    assert decode(meta, 7, 0)[1] == RotationRecord()   # no rotation record at all


def test_a_missing_or_torn_digest_is_not_trusted():
    meta = encode(STATE, JOURNAL)
    assert decode({}, 7, 4) == (None, None)
    torn = {k: v for k, v in meta.items() if k != "status_digest_0"}
    assert decode(torn, 7, 4) == (None, None)
    garbled = {**meta, "status_digest_0": "{not json" + "x" * (CHUNK - 9)}
    assert decode(garbled, 7, 4) == (None, None)


def test_a_digest_too_large_for_custom_metadata_is_left_out():
    many = tuple(rec(i, disabled_at="2026-12-01T12:00:00.000+00:00") for i in range(1, 400))
    assert encode(STATE.evolve(retired=many), JOURNAL) == {}
