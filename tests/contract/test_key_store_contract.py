"""The key store's contract, run against the in-memory fake (``tests/support/fakes.py``) and the
real Vault backend (:class:`rotation.backends.vault.VaultStore` on OpenBao): check-and-set, version
0 for an absent path, no empty values, and the lease. A behaviour the fake gets wrong fails here."""

from __future__ import annotations

import pytest

from rotation.errors import CasConflict, EmptyKeyValue, LockHeld
from rotation.records import KeyRecord, KeyState
from tests.support.fakes import InMemoryKeyStore


def key(serial: int, value: str = "v" * 40) -> KeyRecord:
    return KeyRecord(serial=serial, value=value, rotation_id=f"r{serial}", created_at="2026-12-01T00:00:00Z",
                     key_id=f"k{serial}")


@pytest.fixture(params=["in-memory", "openbao"])
def store(request, tmp_path, monkeypatch):
    if request.param == "in-memory":
        return InMemoryKeyStore()
    from rotation.backends.vault import VaultStore
    from rotation.config import ConsumersFile
    from rotation.settings import Settings

    stack = request.getfixturevalue("worker_stack")
    stack.reset()
    creds = stack.bootstrap(ConsumersFile.model_validate(
        {"version": 1, "usage_plans": {"standard": "p"}, "consumers": [{"name": "billing", "tier": "standard"}]}))
    for k, v in stack.env(creds).items():
        monkeypatch.setenv(k, v)
    return VaultStore(Settings())


def test_an_absent_record_reads_as_version_zero_with_no_labels(store):
    state = store.read_key_state("billing")
    assert state.version == 0 and state.current is None and state.pending is None
    assert store.read_rotation("billing").version == 0


def test_a_write_at_the_version_read_succeeds_and_moves_the_version(store):
    first = store.write_key_state("billing", KeyState(current=key(1)))
    assert first.version == 1
    second = store.write_key_state("billing", first.evolve(previous=first.current, current=key(2)))
    assert second.version == 2
    read = store.read_key_state("billing")
    assert read.version == 2 and read.current.serial == 2 and read.previous.serial == 1


def test_a_write_at_a_stale_version_is_a_cas_conflict_and_changes_nothing(store):
    first = store.write_key_state("billing", KeyState(current=key(1)))
    store.write_key_state("billing", first.evolve(current=key(2)))
    with pytest.raises(CasConflict):
        store.write_key_state("billing", first.evolve(current=key(3)))
    assert store.read_key_state("billing").current.serial == 2


def test_creating_a_record_that_exists_is_a_cas_conflict(store):
    store.write_key_state("billing", KeyState(current=key(1)))
    with pytest.raises(CasConflict):
        store.write_key_state("billing", KeyState(current=key(9)))


def test_an_empty_key_value_is_never_stored(store):
    with pytest.raises(EmptyKeyValue):
        store.write_key_state("billing", KeyState(current=key(1, value="")))
    assert store.read_key_state("billing").version == 0


def test_a_live_lease_is_exclusive_until_released(store):
    mine = store.acquire_lease("billing", "runner-a", 300)
    assert mine.owner == "runner-a"
    with pytest.raises(LockHeld):
        store.acquire_lease("billing", "runner-b", 300)
    store.release_lease("billing", store.read_rotation("billing"))
    assert store.acquire_lease("billing", "runner-b", 300).owner == "runner-b"


def test_a_lease_written_by_another_runner_meanwhile_is_lost_not_overwritten(store):
    stale = store.read_rotation("billing")
    store.acquire_lease("billing", "runner-a", 300)
    with pytest.raises(LockHeld):
        store.acquire_lease("billing", "runner-b", 300, rec=stale)
    assert store.read_rotation("billing").owner == "runner-a"
