"""Issue 12 (independent security review), rotation items: time the runner does not own, Vault
state it did not expect, durable emergency requests, token hygiene, fencing, rollback on stale
state, deferred outcomes. Real OpenBao and moto; lease expiry driven by the shared FakeClock;
slow steps wait on events the test controls."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest

from rotation import records
from rotation.backends.vault import VaultStore
from rotation.errors import VaultError
from rotation.settings import Settings

from .conftest import assert_invariants


class Crash(BaseException):
    """The process dying: not an Exception, so nothing in the engine catches it."""


def _enabled(env, key_id) -> bool:
    return env.apigw().get_api_key(apiKey=key_id)["enabled"]


@pytest.fixture
def skew(monkeypatch):
    """Skew this host's wall clock (time.time and datetime.now as the rotation code reads it)."""
    def apply(seconds: float) -> None:
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + seconds)

        class Skewed(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) + timedelta(seconds=seconds)
        monkeypatch.setattr(records, "datetime", Skewed)
    return apply


# -- 11. time the runner does not own -------------------------------------------------------------
def test_live_lease_is_not_taken_over_by_a_runner_whose_clock_is_400s_ahead(env, skew):
    env.engine(clock=None).run()

    def crash(c, s):
        if c == "billing" and s == "tested":
            raise Crash(s)

    with pytest.raises(Crash):
        env.engine(clock=None, after_step=crash).run(only=["billing"], force=["billing"])  # 300 s lease
    skew(400)
    out = env.engine(clock=None).run(only=["billing"]).outcomes[0]
    assert out.outcome == "locked", out
    assert env.state("billing").current.serial == 1


def test_stale_lease_is_taken_over_by_a_runner_whose_clock_is_400s_behind(env, skew):
    env.engine(clock=None).run()
    store = VaultStore(env.settings)
    rec = store.read_rotation("billing")
    store.write_rotation("billing", rec.evolve(owner="crashed-runner", lease_expires_at=store.now() - 30))
    skew(-400)
    out = env.engine(clock=None).run(only=["billing"], force=["billing"]).outcomes[0]
    assert out.outcome == "ok", out
    assert env.state("billing").current.serial == 2


def test_grace_period_is_judged_on_vaults_clock_not_a_runner_clock_2h_ahead(env, skew):
    env.engine(clock=None).run()
    env.engine(clock=None).run(only=["crm"], force=["crm"])
    old = env.state("crm").previous
    skew(2 * 3600)
    env.engine(clock=None).run()
    assert _enabled(env, old.key_id), "a runner whose clock is 2 h ahead revoked a key inside its grace period"
    assert env.state("crm").previous.disabled_at is None


# -- 13. Vault state you did not expect ----------------------------------------------------------
def _destroy_latest(env, kind, consumer):
    s, root = env.settings, env.root()
    path = f"{s.vault_kv_prefix}/{kind}/{consumer}"
    v = root.secrets.kv.v2.read_secret_metadata(path=path, mount_point=s.vault_kv_mount)["data"]["current_version"]
    root.secrets.kv.v2.destroy_secret_versions(path=path, versions=[v], mount_point=s.vault_kv_mount)


def test_deleted_or_destroyed_key_record_is_blocked_never_never_set_up(env):
    env.engine().run()
    s = env.settings
    env.root().secrets.kv.v2.delete_latest_version_of_secret(path=f"{s.vault_kv_prefix}/keys/crm",
                                                            mount_point=s.vault_kv_mount)
    _destroy_latest(env, "keys", "billing")
    d = {c.name: d for c, _s, _j, d in env.engine().decisions()}
    assert d["crm"].rotate == "blocked" and "deleted" in d["crm"].reason and "undelete" in d["crm"].reason
    assert d["billing"].rotate == "blocked" and "destroyed" in d["billing"].reason
    assert d["newsletter"].rotate == "none"
    summary = env.engine().run()
    out = {o.consumer: o for o in summary.outcomes}
    assert out["billing"].outcome == "failed" and summary.exit_code == 1
    assert [k for k in env.apigw().get_api_keys()["items"] if k["name"].endswith("billing-2")] == []


def test_emergency_on_a_destroyed_rotation_record_fails_loudly(env):
    env.engine().run()
    leaked = env.state("crm").current
    _destroy_latest(env, "rotations", "crm")
    summary = env.engine().run(only=["crm"], emergency=["crm"])
    out = summary.outcomes[0]
    assert out.outcome == "failed" and "destroyed" in out.detail, out
    assert summary.exit_code == 1
    assert _enabled(env, leaked.key_id)      # nothing half-done: a human restores the record


# -- 14. emergency requests are durable ----------------------------------------------------------
def test_emergency_request_survives_a_crash_and_the_next_plain_run_carries_it_out(env):
    env.engine().run()
    leaked = env.state("newsletter").current

    def die(c, s):
        if s == "emergency_requested":
            raise Crash(s)

    with pytest.raises(Crash):
        env.engine(after_step=die).run(only=["newsletter"], emergency=["newsletter"])
    out = env.engine().run().outcomes
    nl = next(o for o in out if o.consumer == "newsletter")
    assert nl.outcome == "ok" and nl.action == "emergency", nl
    assert env.state("newsletter").current.serial == 2
    assert not _enabled(env, leaked.key_id), "the recorded emergency request was lost"
    assert VaultStore(env.settings).read_rotation("newsletter").emergency_request == {}
    assert_invariants(env)


def test_emergency_request_while_another_runner_holds_the_lease_is_queued_and_carried_out(env):
    env.engine().run()
    leaked = env.state("crm").current
    entered, release = threading.Event(), threading.Event()

    class Held:
        target_id, required = "held", True

        def push(self, d):
            from rotation.targets import PushResult
            if not entered.is_set():
                entered.set()
                assert release.wait(60)
            return PushResult(self.target_id, True, "ok")

    a = env.engine(targets_for=lambda c: [Held()])
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("a", a.run(only=["crm"], force=["crm"])))
    th.start()
    assert entered.wait(60), "runner A never reached its push"
    summary = env.engine().run(only=["crm"], emergency=["crm"])
    assert summary.outcomes[0].outcome == "queued", summary.outcomes[0]
    assert summary.exit_code == 3
    release.set()
    th.join(60)
    assert not th.is_alive()
    assert res["a"].outcomes[0].outcome == "ok", res["a"].outcomes[0]
    assert not _enabled(env, leaked.key_id), "the lease holder never carried out the queued emergency"
    assert VaultStore(env.settings).read_rotation("crm").emergency_request == {}
    assert_invariants(env)


# -- 18. fencing ---------------------------------------------------------------------------------
def test_runner_that_stalls_past_its_lease_never_pushes_a_revoked_key(env, monkeypatch):
    env.engine().run()
    a = env.engine()
    stalled, release = threading.Event(), threading.Event()

    def stall(consumer, step):
        # the "tested" journal write (a CAS renewal of the lease) is the last write before the
        # push: the process stalls right after it
        if (consumer, step) == ("billing", "tested") and not stalled.is_set():
            stalled.set()
            assert release.wait(60)

    a.after_step = stall
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("a", a.run(only=["billing"], force=["billing"])))
    th.start()
    assert stalled.wait(60), "runner A never reached its push"
    env.expire_leases()
    assert env.engine().run(only=["billing"]).outcomes[0].outcome == "ok"          # B finishes serial 2
    assert env.engine().run(only=["billing"], emergency=["billing"]).outcomes[0].outcome == "ok"  # 2 revoked
    release.set()
    th.join(60)
    assert not th.is_alive()
    out = res["a"].outcomes[0]
    assert out.outcome == "lost_lease" and res["a"].exit_code != 0, out
    import json
    held = json.loads((env.tmp / "billing.key").read_text())
    assert held["serial"] == 3, "a runner that lost its lease pushed its (revoked) key"
    assert_invariants(env)


# -- 19. rollback on stale state -----------------------------------------------------------------
def test_rollback_after_a_write_whose_answer_was_lost_completes_and_releases_the_lease(env, monkeypatch):
    env.engine().run()
    e = env.engine()
    real = e.vault.renew_lease
    failed = []

    def lost_answer(consumer, rec, ttl, **kw):
        new = real(consumer, rec, ttl, **kw)
        if kw.get("step") == "tested" and not failed:   # the first journal write after creating the key
            failed.append(1)
            raise VaultError("cas write: cannot reach Vault (ConnectionError)")   # applied, answer lost
        return new

    monkeypatch.setattr(e.vault, "renew_lease", lost_answer)
    summary = e.run(only=["crm"], force=["crm"])
    out = summary.outcomes[0]
    assert out.outcome == "rolled_back", out
    assert summary.exit_code == 1
    st = env.state("crm")
    assert st.pending is None and st.current.serial == 1
    assert VaultStore(env.settings).read_rotation("crm").owner is None, "the lease was not released"
    assert [k for k in env.apigw().get_api_keys()["items"] if k["name"].endswith("crm-2")] == []
    assert_invariants(env)


# -- 22. a skipped consumer is not a success -----------------------------------------------------
def test_a_consumer_skipped_because_its_lease_is_held_exits_3(env):
    env.engine().run()

    def crash(c, s):
        if s == "key_created":
            raise Crash(s)

    with pytest.raises(Crash):
        env.engine(after_step=crash).run(only=["billing"], force=["billing"])
    summary = env.engine().run()
    assert {o.consumer: o.outcome for o in summary.outcomes}["billing"] == "locked"
    assert summary.exit_code == 3
    env.expire_leases()
    assert env.engine().run().exit_code == 0


# -- 16, 21. token hygiene and lifetime ----------------------------------------------------------
def test_login_token_is_revoked_at_close_but_a_supplied_token_is_not(env):
    store = VaultStore(env.settings)           # AppRole login
    token = store.client.token
    assert env.root().auth.token.lookup(token)["data"]["id"] == token
    store.close()
    import hvac.exceptions
    with pytest.raises(hvac.exceptions.VaultError):    # Forbidden / InvalidRequest: the token is gone
        env.root().auth.token.lookup(token)
    supplied = env.root().auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    VaultStore(Settings(VAULT_AUTH_METHOD="token", VAULT_TOKEN=supplied)).close()
    assert env.root().auth.token.lookup(supplied)["data"]["id"] == supplied


def test_login_token_is_renewed_on_a_timer_while_no_vault_call_happens(env, monkeypatch):
    from rotation.dev.stack import bootstrap_vault
    creds = bootstrap_vault(env.root(), env.consumers, rotator_token_ttl="6s")
    monkeypatch.setenv("VAULT_ROLE_ID", creds.rotator_role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", creds.rotator_secret_id)
    store = VaultStore(Settings())
    first = store.client.token
    store.start_renewal()
    try:
        with store.renewed:                    # wait for events, with a generous deadline
            assert store.renewed.wait_for(lambda: store.renewals >= 3, timeout=120)
        assert store.client.token == first     # renewed, not logged in again
        assert env.root().auth.token.lookup(first)["data"]["ttl"] > 0
    finally:
        store.close()


def test_cached_key_client_stops_serving_a_destroyed_version(env):
    from rotation.client.errors import KeyUnavailable
    from rotation.client.keys import AppRoleAuth, KeyClient
    env.engine().run()
    role_id, secret_id = env.creds.consumer_roles["crm"]
    client = KeyClient(env.stack.vault_addr, "crm", auth=AppRoleAuth(role_id, secret_id),
                       mount=env.settings.vault_kv_mount, prefix=env.settings.vault_kv_prefix, refresh_interval=60.0)
    assert client.current_key().serial == 1
    assert client.wait_for_refresh(30)       # the first read's ack write is done: no refresh in flight
    _destroy_latest(env, "keys", "crm")
    client._snap = (client._snap[0], 0.0)   # the refresh interval has passed (no sleeping)
    assert client.current_key().serial == 1  # stale-while-revalidate: served while it checks Vault
    assert client.wait_for_refresh(30)
    with pytest.raises(KeyUnavailable, match="destroyed"):
        client.current_key()
