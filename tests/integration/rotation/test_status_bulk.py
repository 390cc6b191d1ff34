"""``status`` and ``plan`` for a fleet (issue 21, item 3) against the real OpenBao: one LIST of
OpenBao's detailed metadata per record kind answers for every consumer whose status digest is
current; the fallback for servers without that endpoint (HashiCorp Vault), forced here, reads
the records concurrently; a stale digest is never trusted."""

from __future__ import annotations

import threading

from rotation.config import ConsumersFile
from rotation.records import KeyState
from rotation.status_digest import DigestKeyRecord


def fleet(n: int) -> ConsumersFile:
    return ConsumersFile.model_validate({
        "version": 1,
        "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
        "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
        "consumers": [{"name": f"s{i:03d}", "tier": "standard" if i % 2 else "premium"} for i in range(n)],
    })


def count_vault(engine) -> list[str]:
    calls: list[str] = []
    lock = threading.Lock()

    def on_response(resp, *_a, **_kw):
        with lock:
            calls.append(f"{resp.request.method} {resp.request.path_url}")
    engine.vault.client.adapter.session.hooks["response"].append(on_response)
    return calls


def view(rows) -> list[tuple]:
    """What status and plan show of each consumer (no key values)."""
    out = []
    for c, state, journal, d in rows:
        keys = {label: (r.serial, r.key_id, r.fingerprint, r.promoted_at, r.disabled_at)
                for label in ("current", "previous", "pending") if (r := getattr(state, label)) is not None}
        out.append((c.name, keys, [(r.serial, r.disabled_at) for r in state.retired], journal.owner, journal.step,
                    (journal.last_outcome or {}).get("outcome"), bool(journal.emergency_request),
                    d.rotate, d.code, d.revoke, d.delete))
    return out


def test_status_of_a_fleet_is_two_lists_on_openbao_and_matches_the_records(env):
    cf = fleet(6)
    env.engine(consumers=fleet(4)).run()                 # s000..s003 get records; s004, s005 none
    env.engine(consumers=fleet(4)).run(force=["s001"])   # s001: a previous key in its grace period
    e = env.engine(consumers=cf)
    calls = count_vault(e)
    bulk = e.decisions(digests=True)
    assert e.vault.bulk_metadata is True                 # detected: OpenBao has the endpoint
    assert len(calls) == 2 and all(c.startswith("LIST ") and "/detailed-metadata/" in c for c in calls), calls
    assert all(isinstance(state.current, DigestKeyRecord) for _c, state, _j, _d in bulk[:4])
    f = env.engine(consumers=cf)
    f.vault.bulk_metadata = False                        # the fallback, as on HashiCorp Vault
    fcalls = count_vault(f)
    read = f.decisions(digests=True)
    assert len(fcalls) == 2 + 2 * 4                      # two name LISTs, keys + rotation of the 4 with records
    assert view(bulk) == view(read)
    assert [r[3].code for r in bulk] == ["not_due"] * 4 + ["no_current_key"] * 2
    assert bulk[1][1].previous is not None and bulk[1][1].current.serial == 2


def test_plan_with_a_forced_consumer_reads_nothing_more_on_openbao(env):
    cf = fleet(3)
    env.engine(consumers=cf).run()
    e = env.engine(consumers=cf)
    calls = count_vault(e)
    rows = e.decisions(force=["s002"], digests=True)
    assert len(calls) == 2
    assert [r[3].rotate for r in rows] == ["none", "none", "rotate"]


def test_a_digest_older_than_its_record_is_not_trusted(env):
    cf = fleet(2)
    env.engine(consumers=cf).run()
    root = env.root()
    path = "mail-api/keys/s000"
    meta = root.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"]
    data = root.secrets.kv.v2.read_secret_version(path=path, mount_point="secret",
                                                  raise_on_deleted_version=True)["data"]["data"]
    data["current"]["promoted_at"] = "2020-01-01T00:00:00.000+00:00"      # written by hand: digest now stale
    root.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=meta["current_version"],
                                               mount_point="secret")
    e = env.engine(consumers=cf)
    calls = count_vault(e)
    rows = e.decisions(digests=True)
    assert len(calls) == 2 + 1                           # the stale one's key record is read
    assert rows[0][1].current.promoted_at.startswith("2020-01-01")
    assert rows[0][3].code == "max_age_reached"
    assert rows[1][3].code == "not_due"


def test_a_deleted_key_record_is_blocked_on_the_bulk_path_too(env):
    cf = fleet(2)
    env.engine(consumers=cf).run()
    env.root().secrets.kv.v2.delete_latest_version_of_secret(path="mail-api/keys/s001", mount_point="secret")
    rows = env.engine(consumers=cf).decisions(digests=True)
    assert rows[1][3].rotate == "blocked" and "deleted" in rows[1][3].reason
    assert rows[0][3].code == "not_due"


def test_audit_and_fan_out_still_get_the_full_records(env):
    cf = fleet(2)
    env.engine(consumers=cf).run()
    e = env.engine(consumers=cf)
    calls = count_vault(e)
    rows = e.decisions()                                 # not from digests: acks and values included
    assert len(calls) == 2 + 2 * 2
    assert all(r[1].current.value for r in rows)


def test_the_mirror_costs_no_vault_call_per_rotation(env):
    """The digest is written with the label mirror at the lease's release: a forced rotation's
    Vault calls stay where they were (8), and status afterwards needs no record read."""
    cf = fleet(2)
    env.engine(consumers=cf).run()
    e = env.engine(consumers=cf)
    calls = count_vault(e)
    e.run(force=["s000", "s001"])
    assert len(calls) <= 8 * 2, calls
    e = env.engine(consumers=cf)
    calls = count_vault(e)
    rows = e.decisions(digests=True)
    assert len(calls) == 2 and [r[1].current.serial for r in rows] == [2, 2]
    assert all(isinstance(r[1], KeyState) and r[1].current.fingerprint.startswith("sha256:") for r in rows)


def test_a_run_writes_missing_digests_once_so_status_then_reads_no_record(env):
    from rotation.backends.vault import VaultStore
    from rotation.records import KeyRecord, RotationRecord, to_iso, utcnow

    cf = fleet(3)
    store = VaultStore(env.settings)
    for c in cf.consumers:                 # records written before digests existed: labels only
        rec = KeyRecord(serial=1, value="v" * 40, rotation_id="seed", created_at=to_iso(utcnow()),
                        key_id=f"seed-{c.name}", promoted_at=to_iso(env.clock()))
        store.write_key_state(c.name, KeyState(current=rec), mirror_labels=False)
        store.write_rotation(c.name, RotationRecord(step="promoted", rotation_id="seed"))
    e = env.engine(consumers=cf)
    calls = count_vault(e)
    assert [r[3].code for r in e.decisions(digests=True)] == ["not_due"] * 3
    assert len(calls) == 2 + 2 * 3                       # no digest yet: every record is read
    e = env.engine(consumers=cf)
    summary = e.run()
    assert e.vault.refresh_digests([o.consumer for o in summary.outcomes]) == 3
    assert e.vault.refresh_digests([o.consumer for o in summary.outcomes]) == 0
    e = env.engine(consumers=cf)
    assert e.vault.refresh_digests([o.consumer for o in e.run().outcomes]) == 0   # steady state: nothing
    e = env.engine(consumers=cf)
    calls = count_vault(e)
    assert [r[3].code for r in e.decisions(digests=True)] == ["not_due"] * 3
    assert len(calls) == 2
