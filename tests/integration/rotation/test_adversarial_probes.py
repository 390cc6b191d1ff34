"""Adversarial probes that the engine currently survives (kept as regression tests)."""

from __future__ import annotations

import threading

import pytest

from rotation.errors import AwsError

from .conftest import assert_invariants


class Crash(BaseException):
    pass


def test_slow_verifier_longer_than_lease_never_double_promotes(env):
    env.engine().run()
    calls = {"n": 0}
    entered, release = threading.Event(), threading.Event()

    def slow(c, k):
        calls["n"] += 1
        if calls["n"] == 1:                  # runner A's test step stalls until the test says so
            entered.set()
            assert release.wait(60), "the test never released the verifier"

    a = env.engine(verifiers=[slow], lease_ttl_seconds=60)
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("a", a.run(only=["billing"], force=["billing"])))
    th.start()
    assert entered.wait(60), "runner A never reached its test step"
    env.expire_leases()                      # A's lease runs out on the shared clock
    outb = env.engine().run(only=["billing"]).outcomes[0]
    release.set()
    th.join(60)
    assert not th.is_alive()
    assert outb.outcome == "ok" and res["a"].outcomes[0].outcome == "lost_lease"
    st = env.state("billing")
    assert st.current.serial == 2 and st.previous.serial == 1 and st.pending is None
    assert_invariants(env)


def test_crash_during_rollback_then_resume(env, monkeypatch):
    """Resuming the rollback detaches a key already out of its plan: moto answers HTTP 500 there
    (AWS 404), and detach counts it as done after reading the plan's keys back (issue 12, item 20)."""
    from rotation.errors import VerificationFailed
    env.engine().run()

    def fail(c, k):
        raise VerificationFailed("canary 403")

    e = env.engine(verifiers=[fail], verify_timeout_seconds=0.3, lease_ttl_seconds=1)

    def boom(kid):
        raise AwsError("DeleteApiKey: AWS answered InternalFailure (HTTP 500)")
    monkeypatch.setattr(e.apigw, "delete_key", boom)
    out = e.run(only=["crm"], force=["crm"]).outcomes[0]
    assert out.outcome == "failed"
    assert_invariants(env)
    env.expire_leases()
    out = env.engine().run(only=["crm"]).outcomes[0]
    assert out.outcome == "rolled_back", out
    st = env.state("crm")
    assert st.pending is None and st.current.serial == 1
    assert_invariants(env)


@pytest.mark.parametrize("first,second", [("api_key_created", "tested"), ("key_created", "distributed"),
                                          ("pending_recorded", "promoted")])
def test_double_crash_resume(env, first, second):
    env.engine().run()

    def crash_at(step):
        def h(c, s):
            if c == "billing" and s == step:
                raise Crash(s)
        return h
    with pytest.raises(Crash):
        env.engine(after_step=crash_at(first), lease_ttl_seconds=1).run(only=["billing"], force=["billing"])
    assert_invariants(env)
    env.expire_leases()
    with pytest.raises(Crash):
        env.engine(after_step=crash_at(second), lease_ttl_seconds=1).run(only=["billing"])
    assert_invariants(env)
    env.expire_leases()
    env.engine().run(only=["billing"])
    st = env.state("billing")
    assert st.current.serial == 2 and st.pending is None and st.previous.serial == 1
    assert_invariants(env)


def test_emergency_while_previous_in_grace_revokes_both_old_keys(env):
    env.engine().run()
    k1 = env.state("crm").current
    env.engine().run(only=["crm"], force=["crm"])
    k2 = env.state("crm").current
    out = env.engine().run(only=["crm"], emergency=["crm"]).outcomes[0]
    assert out.outcome == "ok"
    api = env.apigw()
    assert api.get_api_key(apiKey=k1.key_id)["enabled"] is False
    assert api.get_api_key(apiKey=k2.key_id)["enabled"] is False
    assert_invariants(env)
