"""Issue 19, the smaller findings around the lease, against the real OpenBao and moto servers:
concurrent emergency requests never leave the lease held; a runner frozen before it records its
pending key leaves none once its lease ran out. Stalls are events, lease expiry the shared FakeClock."""

from __future__ import annotations

import threading

from rotation.backends.vault import VaultStore

from .conftest import assert_invariants


def test_emergency_requests_arriving_at_every_release_attempt_never_leave_the_lease_held(env, monkeypatch):
    env.engine().run()
    leaked = env.state("crm").current
    holder = env.engine()
    requester = VaultStore(env.settings)
    real_write = holder.vault.write_rotation
    arrived: list[str] = []

    def requests_race_the_release(consumer, rec):
        # several requesters record an emergency right as the holder releases (each one a write)
        if consumer == "crm" and rec.owner is None and len(arrived) < 4:
            asked = requester.read_key_state("crm").current.serial
            arrived.append(requester.request_emergency("crm", by=f"requester-{len(arrived)}", asked_serial=asked,
                                                       now=env.clock().timestamp())["id"])
        return real_write(consumer, rec)

    monkeypatch.setattr(holder.vault, "write_rotation", requests_race_the_release)
    summary = holder.run(only=["crm"], force=["crm"])
    out = summary.outcomes[0]
    assert len(arrived) >= 3, "precondition: requests raced every release attempt"
    record = VaultStore(env.settings).read_rotation("crm")
    assert record.owner is None, f"the holder ended ({out.outcome}) with its lease still held"
    assert out.outcome in ("ok", "queued") and summary.exit_code in (0, 3), out
    # whatever is still asked is carried out by the next run at once, not after the lease's TTL
    nxt = env.engine().run(only=["crm"]).outcomes[0]
    assert nxt.outcome == "ok", nxt
    assert VaultStore(env.settings).read_rotation("crm").emergency_request == {}
    assert env.apigw().get_api_key(apiKey=leaked.key_id)["enabled"] is False
    assert_invariants(env)


def test_runner_frozen_before_recording_its_pending_key_records_none_after_its_lease_ran_out(env, monkeypatch):
    env.engine().run()
    a = env.engine()
    real_write = a.vault.write_key_state
    frozen, thaw = threading.Event(), threading.Event()

    def freezes_before_the_pending_write(consumer, state, **kw):
        if consumer == "billing" and state.pending is not None and not frozen.is_set():
            frozen.set()                               # after its fence, before the write lands
            assert thaw.wait(60), "the test never thawed the runner"
        return real_write(consumer, state, **kw)

    monkeypatch.setattr(a.vault, "write_key_state", freezes_before_the_pending_write)
    res: dict = {}
    th = threading.Thread(target=lambda: res.setdefault("a", a.run(only=["billing"], force=["billing"])))
    th.start()
    assert frozen.wait(60), "runner A never reached its pending write"
    env.expire_leases()
    b = VaultStore(env.settings)                       # another runner takes the lease over
    b.acquire_lease("billing", "runner-b", 300, b.read_rotation("billing"), now=env.clock().timestamp())
    thaw.set()
    th.join(60)
    assert not th.is_alive()
    out = res["a"].outcomes[0]
    assert out.outcome == "lost_lease" and res["a"].exit_code == 1, out
    st = env.state("billing")
    assert st.pending is None, f"a runner whose lease ran out recorded pending serial {st.pending.serial}"
    assert st.current.serial == 1
    assert '"pending_withdrawn"' in env.audit_text()
    assert_invariants(env)
