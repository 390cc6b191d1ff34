"""The rotation engine against a real OpenBao and a real moto server (no mocks)."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from rotation.errors import VerificationFailed
from rotation.settings import Settings
from rotation.targets import PushResult

from .conftest import assert_invariants


def _file_key(env, consumer):
    return json.loads((env.tmp / f"{consumer}.key").read_text())


def test_first_rotation_gives_every_consumer_a_working_key(env):
    summary = env.engine().run()
    assert [o.outcome for o in summary.outcomes] == ["ok", "ok", "ok"]
    assert {o.action for o in summary.outcomes} == {"bootstrap"}
    for c in env.consumers.consumers:
        st = env.state(c.name)
        assert st.current.serial == 1 and st.pending is None and st.previous is None
        assert len(st.current.value) == 40 and st.current.value.isalnum()
        pushed = _file_key(env, c.name)
        assert pushed["api_key"] == st.current.value and pushed["serial"] == 1
        assert stat.S_IMODE(os.stat(env.tmp / f"{c.name}.key").st_mode) == 0o600
    # unique per consumer
    assert len({env.state(c.name).current.value for c in env.consumers.consumers}) == 3
    assert_invariants(env)
    assert summary.exit_code == 0


def test_rotation_keeps_old_key_for_grace_then_revokes_then_deletes(env):
    env.engine().run()
    old = env.state("billing").current
    out = env.engine().run(only=["billing"], force=["billing"])
    assert out.outcomes[0].outcome == "ok" and out.outcomes[0].serial == 2
    st = env.state("billing")
    assert st.current.serial == 2 and st.previous.serial == 1
    api = env.apigw()
    assert api.get_api_key(apiKey=old.key_id)["enabled"] is True  # grace: old key still works
    assert_invariants(env)

    env.clock.advance(minutes=30)           # inside the 1h grace: nothing revoked
    env.engine().run()
    assert api.get_api_key(apiKey=old.key_id)["enabled"] is True

    env.clock.advance(minutes=31)           # grace over: disabled and detached
    summary = env.engine().run()
    assert next(o for o in summary.outcomes if o.consumer == "billing").action == "revoke"
    assert api.get_api_key(apiKey=old.key_id)["enabled"] is False
    assert env.creds.usage_plan_ids["premium"] not in {
        p["id"] for p in api.get_usage_plans(keyId=old.key_id)["items"]}
    st = env.state("billing")
    assert st.previous is None and [r.serial for r in st.retired] == [1]

    env.clock.advance(days=1, seconds=1)    # retention over: deleted
    env.engine().run()
    with pytest.raises(api.exceptions.NotFoundException):
        api.get_api_key(apiKey=old.key_id)
    assert env.state("billing").retired == ()
    assert_invariants(env)


def test_normal_rotation_waits_while_previous_key_is_in_grace(env):
    env.engine().run()
    env.engine().run(only=["crm"], force=["crm"])
    out = env.engine().run(only=["crm"], force=["crm"]).outcomes[0]
    assert out.outcome == "waiting" and "grace" in out.detail
    assert env.state("crm").current.serial == 2


def test_emergency_rotation_revokes_old_key_at_once(env):
    env.engine().run()
    old = env.state("crm").current
    out = env.engine().run(only=["crm"], emergency=["crm"]).outcomes[0]
    assert (out.action, out.outcome) == ("emergency", "ok")
    api = env.apigw()
    assert api.get_api_key(apiKey=old.key_id)["enabled"] is False
    st = env.state("crm")
    assert st.current.serial == 2 and st.previous is None and st.retired[0].disabled_at
    assert_invariants(env)


def test_failed_test_step_rolls_back_and_leaves_current_untouched(env):
    env.engine().run()
    before = env.state("billing")

    def failing_canary(consumer, key):
        raise VerificationFailed("canary call answered 403")

    summary = env.engine(verifiers=[failing_canary], verify_timeout_seconds=0.5).run(
        only=["billing"], force=["billing"])
    out = summary.outcomes[0]
    assert out.outcome == "rolled_back" and summary.exit_code == 1
    after = env.state("billing")
    assert after.current == before.current and after.pending is None
    names = [k["name"] for k in env.apigw().get_api_keys()["items"]]
    assert "secure-mail-api-dev-billing-2" not in names   # new key deleted
    assert _file_key(env, "billing")["serial"] == 1       # never pushed
    events = [json.loads(line) for line in env.audit_text().splitlines()]
    assert any(e["event"] == "rollback" and e["consumer"] == "billing" for e in events)
    assert_invariants(env)


def test_failed_required_push_rolls_back_and_restores_targets_that_took_the_new_key(env):
    env.engine().run()
    delivered = []

    class Flaky:
        def __init__(self, target_id, ok):
            self.target_id, self.required, self.ok = target_id, True, ok

        def push(self, d):
            delivered.append((self.target_id, d.serial))
            ok = self.ok or d.serial == 1          # "bad" refuses only the new key
            return PushResult(self.target_id, ok, "ok" if ok else "HTTP 500")

    targets = [Flaky("good", True), Flaky("bad", False)]
    out = env.engine(targets_for=lambda c: targets).run(only=["crm"], force=["crm"]).outcomes[0]
    assert out.outcome == "rolled_back" and "bad" in out.detail
    # every target gets the current key back, since any of them may hold the new one
    assert delivered == [("good", 2), ("bad", 2), ("good", 1), ("bad", 1)]
    assert env.state("crm").current.serial == 1
    assert_invariants(env)


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the engine catches it."""


@pytest.mark.parametrize("boundary", ["pending_recorded", "api_key_created", "key_created", "tested",
                                      "distributed", "promoted"])
def test_resume_after_crash_at_each_step_boundary(env, boundary):
    env.engine().run()

    def crash(consumer, step):
        if consumer == "billing" and step == boundary:
            raise Crash(step)

    with pytest.raises(Crash):
        env.engine(after_step=crash, lease_ttl_seconds=2).run(only=["billing"], force=["billing"])
    assert_invariants(env)  # even mid-crash: the current key works, no unknown enabled key
    # a fresh runner (another owner) never steals a live lease, and takes over a stale one
    done = boundary == "promoted"  # the rotation was complete: nothing left to resume
    locked = env.engine().run(only=["billing"]).outcomes[0]
    assert locked.outcome == ("skipped" if done else "locked"), locked
    env.expire_leases()             # the lease runs out on the shared clock
    out = env.engine().run(only=["billing"]).outcomes[0]
    if done or locked.outcome == "ok":      # finished already (or by the runner that took over)
        assert out.outcome == "skipped", out
    else:
        assert out.outcome == "ok", out
    st = env.state("billing")
    assert st.pending is None and st.current.serial == 2 and st.previous.serial == 1
    assert _file_key(env, "billing")["serial"] == 2
    keys = [k for k in env.apigw().get_api_keys()["items"] if k["name"].startswith("secure-mail-api-dev-billing-")]
    assert sorted(k["name"] for k in keys) == ["secure-mail-api-dev-billing-1", "secure-mail-api-dev-billing-2"]
    assert_invariants(env)


@pytest.mark.parametrize("mode", ["due", "forced"])
def test_two_runners_at_once_rotate_each_consumer_exactly_once(env, mode):
    names = [c.name for c in env.consumers.consumers]
    env.engine().run()                      # serial 1 everywhere
    env.clock.advance(days=31)              # all due (max_age 30d)
    results = []
    engines = [env.engine(), env.engine()]

    def go(e):
        results.append(e.run(force=names if mode == "forced" else ()))

    threads = [threading.Thread(target=go, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name in names:
        st = env.state(name)
        assert st.current.serial == 2 and st.pending is None and st.previous.serial == 1
    rotated = [o for r in results for o in r.outcomes if o.outcome == "ok" and o.action != "none"]
    assert sorted(o.consumer for o in rotated) == sorted(names)  # exactly one runner rotated each
    assert len(env.apigw().get_api_keys()["items"]) == 2 * len(names)
    assert_invariants(env)


def test_lost_lease_mid_rotation_never_clobbers_or_revokes(env):
    env.engine().run()
    from rotation.backends.vault import VaultStore
    thief = VaultStore(env.settings)

    def steal(consumer, step):
        if step == "key_created":
            rec = thief.read_rotation(consumer)
            thief.write_rotation(consumer, rec.evolve(owner="someone-else", lease_expires_at=rec.lease_expires_at + 600))

    before = env.state("billing")
    out = env.engine(after_step=steal).run(only=["billing"], force=["billing"]).outcomes[0]
    assert out.outcome == "lost_lease"
    after = env.state("billing")
    assert after.current == before.current          # not promoted by the runner that lost the lease
    assert after.pending is not None                # left for the lease holder to resume
    assert env.apigw().get_api_key(apiKey=before.current.key_id)["enabled"] is True


def test_orphan_key_unknown_to_vault_is_removed(env):
    env.engine().run()
    api = env.apigw()
    orphan = api.create_api_key(name="secure-mail-api-dev-crm-9", value="Orphan" + "x" * 30, enabled=True,
                                tags={"managed-by": "secure-mail-api-rotation", "secure-mail-api:stack": "dev",
                                      "secure-mail-api:consumer": "crm"})["id"]
    stranger = api.create_api_key(name="hand-made", value="Stranger" + "y" * 30, enabled=True)["id"]
    env.engine().run()
    with pytest.raises(api.exceptions.NotFoundException):
        api.get_api_key(apiKey=orphan)
    assert api.get_api_key(apiKey=stranger)["enabled"] is True  # not ours: left alone
    assert '"orphan"' in env.audit_text()


def test_kv_v1_mount_is_refused(env):
    from rotation.backends.vault import VaultStore
    from rotation.errors import UnsupportedMount
    env.root().sys.enable_secrets_engine("kv", path="kvone", options={"version": "1"})
    env.root().sys.create_or_update_policy("kvone-rotator", 'path "kvone/*" { capabilities = ["read", "create", "update"] }')
    token = env.root().auth.token.create(policies=["kvone-rotator"])["auth"]["client_token"]
    settings = Settings(VAULT_KV_MOUNT="kvone", VAULT_AUTH_METHOD="token", VAULT_TOKEN=token)
    with pytest.raises(UnsupportedMount, match="KV version 2"):
        VaultStore(settings).check_mount()
    assert VaultStore(env.settings).check_mount() == []  # secret/ is v2 with cas_required


def test_cas_conflict_is_a_lost_race_not_an_overwrite(env):
    from rotation.backends.vault import VaultStore
    from rotation.errors import CasConflict
    env.engine().run()
    a, b = VaultStore(env.settings), VaultStore(env.settings)
    sa, sb = a.read_key_state("billing"), b.read_key_state("billing")
    a.write_key_state("billing", sa.evolve(retired=()))
    with pytest.raises(CasConflict):
        b.write_key_state("billing", sb.evolve(previous=None))
    assert a.read_key_state("billing").version == sa.version + 1


def test_first_write_to_a_new_path_uses_cas_zero(env):
    from rotation.backends.vault import VaultStore
    store = VaultStore(env.settings)
    rec = store.read_rotation("brand-new")
    assert rec.version == 0
    assert store.write_rotation("brand-new", rec).version == 1


def test_relogin_after_token_expiry(env, monkeypatch):
    from rotation.backends.vault import VaultStore
    from rotation.dev.stack import bootstrap_vault
    creds = bootstrap_vault(env.root(), env.consumers, rotator_token_ttl="3s")
    monkeypatch.setenv("VAULT_ROLE_ID", creds.rotator_role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", creds.rotator_secret_id)
    store = VaultStore(Settings())
    first = store.client.token
    import time
    time.sleep(3.5)
    store._token_expires_at = None      # as if the expiry were unknown: the 403 path must recover
    assert store.read_key_state("billing").version == 0
    assert store.client.token != first   # logged in again once
    # and the proactive path: renew-self/login before expiry
    store._refresh_ttl()
    store._token_expires_at = time.monotonic() + 0.5
    before = store.client.token
    store.ensure_token()
    assert store.read_rotation("billing").version == 0
    assert store.client.token  # still valid
    assert before is not None


def test_secretsmanager_and_ssm_targets_from_the_consumers_file(env):
    from rotation.config import ConsumersFile
    kms = env.stack.aws_session().client("kms", endpoint_url=env.stack.aws_endpoint).create_key()["KeyMetadata"]["Arn"]
    cf = ConsumersFile.model_validate({
        "version": 1, "usage_plans": {"standard": "secure-mail-api-dev-standard"},
        "consumers": [{"name": "crm", "tier": "standard", "targets": [
            {"type": "secretsmanager", "secret_id": "mail-api/crm", "kms_key_id": kms},
            {"type": "ssm", "name": "/mail-api/crm/api-key", "kms_key_id": kms}]}]})
    assert env.engine(consumers=cf).run().outcomes[0].outcome == "ok"
    value = env.state("crm").current.value
    session = env.stack.aws_session()
    sm = session.client("secretsmanager", endpoint_url=env.stack.aws_endpoint)
    assert json.loads(sm.get_secret_value(SecretId="mail-api/crm")["SecretString"])["api_key"] == value
    ssm = session.client("ssm", endpoint_url=env.stack.aws_endpoint)
    p = ssm.get_parameter(Name="/mail-api/crm/api-key", WithDecryption=True)["Parameter"]
    assert p["Type"] == "SecureString" and value in p["Value"]
