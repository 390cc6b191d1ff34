"""Adversarial tests against the rotation engine: each was a confirmed break of an invariant from
docs/architecture.md ("Invariants, tested under crashes and races"), found by a review that set
out to break the engine, and is now a regression test of its fix."""

from __future__ import annotations

import threading

import pytest

from rotation.audit import REDACTOR
from rotation.targets import PushResult

from .conftest import assert_invariants


class Crash(BaseException):
    """The process dying: not an Exception, so nothing in the engine catches it."""


def _enabled_values(env) -> set[str]:
    return {k["value"] for k in env.apigw().get_api_keys(includeValues=True)["items"] if k["enabled"]}


class Holder:
    """A push target that remembers the key it holds (like a sidecar file)."""

    def __init__(self, target_id, *, required=True, fail_serials=(), hold_first=False):
        self.target_id, self.required = target_id, required
        self.fail_serials = set(fail_serials)
        self.hold_first = hold_first
        self.entered = threading.Event()     # the held first push has started
        self.release = threading.Event()     # the test lets it finish
        self.value = None
        self.serial = None
        self.calls = 0
        self._busy = False

    def push(self, d):
        self.calls += 1
        if self._busy:
            return PushResult(self.target_id, False, "409 another delivery in progress")
        if d.serial in self.fail_serials:
            return PushResult(self.target_id, False, "HTTP 503")
        if self.hold_first and self.calls == 1:
            self._busy = True
            self.entered.set()
            assert self.release.wait(60), "the test never released the held push"
            self._busy = False
        self.value, self.serial = d.value, d.serial
        return PushResult(self.target_id, True, "ok")


def test_emergency_request_is_silently_downgraded_when_a_normal_rotation_is_pending(env):
    """A normal rotation crashed after 'tested' (pending key in flight). The key leaks and the
    operator asks for an emergency rotation. decide() returns 'resume' (emergency ignored), the
    journal has emergency=False, so the leaked key stays enabled for the full grace period.
    Breaks: emergency = old key revoked at once (architecture step 6)."""
    env.engine().run()
    leaked = env.state("billing").current

    def crash(c, s):
        if c == "billing" and s == "tested":
            raise Crash(s)

    with pytest.raises(Crash):
        env.engine(after_step=crash, lease_ttl_seconds=1).run(only=["billing"], force=["billing"])
    env.expire_leases()
    out = env.engine().run(only=["billing"], emergency=["billing"]).outcomes[0]
    assert out.outcome == "ok", out
    assert env.state("billing").current.serial == 2
    assert_invariants(env)
    assert env.apigw().get_api_key(apiKey=leaked.key_id)["enabled"] is False, \
        "emergency rotation left the leaked key enabled (grace period applied)"


def test_rollback_deletes_new_key_although_restoring_a_target_failed(env):
    """A required target fails -> rollback. Target 'sidecar' took the new key (serial 2); pushing
    the current key back to it fails (transient 503). The rollback ignores that result and
    disables + deletes key 2 anyway: the sidecar now holds a key the API rejects.
    Breaks: every consumer can always read a key the API accepts."""
    env.engine().run()
    sidecar = Holder("sidecar", fail_serials=())
    bad = Holder("bad", fail_serials={2})

    class FlakyOnRestore(Holder):
        def push(self, d):
            if d.serial == 1:
                return PushResult(self.target_id, False, "HTTP 503")
            return super().push(d)

    sidecar = FlakyOnRestore("sidecar")
    out = env.engine(targets_for=lambda c: [sidecar, bad]).run(only=["crm"], force=["crm"]).outcomes[0]
    assert out.outcome == "failed" and "rollback of serial 2 waits" in out.detail   # fixed: rollback waits
    assert env.state("crm").pending.serial == 2 and env.state("crm").current.serial == 1
    assert sidecar.serial == 2
    held_ok = sidecar.value in _enabled_values(env)  # bool: never print key values
    assert held_ok, \
        "rollback deleted the key the sidecar holds although restoring it failed"
    # once the sidecar takes the current key back, the next run completes the rollback
    sidecar.push = lambda d: Holder.push(sidecar, d)
    out = env.engine(targets_for=lambda c: [sidecar, bad]).run(only=["crm"]).outcomes[0]
    assert out.outcome == "rolled_back", out
    assert sidecar.serial == 1 and sidecar.value in _enabled_values(env)
    assert env.state("crm").pending is None
    assert_invariants(env)


def test_soft_deleted_vault_secret_makes_engine_destroy_the_live_api_key(env):
    """An operator soft-deletes the latest version of keys/<consumer> (recoverable with
    `kv undelete`). read returns data=None with version>0, KeyState is empty, the orphan sweep
    treats every key of the consumer as unknown and deletes the live key at once (no grace), then
    bootstraps a new serial 1. Consumers holding the old value get 403 immediately, and the value
    is gone from API Gateway. Breaks: consumers can always read an accepted key / no key lost."""
    env.engine().run()
    live = env.state("crm").current
    s = env.settings
    env.root().secrets.kv.v2.delete_latest_version_of_secret(
        path=f"{s.vault_kv_prefix}/keys/crm", mount_point=s.vault_kv_mount)
    env.engine().run(only=["crm"])
    api = env.apigw()
    try:
        k = api.get_api_key(apiKey=live.key_id)
    except api.exceptions.NotFoundException:
        k = None
    assert k is not None and k["enabled"], \
        "engine deleted the live API key because the Vault version was soft-deleted"


def test_lease_lost_during_slow_push_then_takeover_rollback_strands_target(env):
    """Runner A's push to a target takes longer than the lease TTL. Runner B takes over the
    stale lease, its push to the same target fails (409 busy), so B rolls back: it only restores
    targets *journaled* as acked, and A's ack was never journaled, so B deletes key 2 without
    restoring the target. A's push then completes: the target holds a deleted key.
    Breaks: every consumer can always read a key the API accepts."""
    env.engine().run()
    t = Holder("sidecar", hold_first=True)
    a = env.engine(targets_for=lambda c: [t], lease_ttl_seconds=60)
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("a", a.run(only=["crm"], force=["crm"])))
    th.start()
    assert t.entered.wait(60), "runner A never reached its push"
    env.expire_leases()              # A is inside the slow push and its lease ran out (shared clock)
    b = env.engine(targets_for=lambda c: [t])
    outb = b.run(only=["crm"]).outcomes[0]
    t.release.set()
    th.join(60)
    assert not th.is_alive()
    assert outb.outcome in ("failed", "rolled_back"), outb
    assert res["a"].outcomes[0].outcome == "lost_lease", res["a"].outcomes[0]
    held_ok = t.value in _enabled_values(env)
    assert held_ok, "target stranded with a key that was deleted by the rollback"
    if outb.outcome == "failed":                 # rollback waited for the busy target: finish it
        outc = env.engine(targets_for=lambda c: [t]).run(only=["crm"]).outcomes[0]
        assert outc.outcome in ("rolled_back", "ok"), outc
        assert t.value in _enabled_values(env)
    assert_invariants(env)


def test_current_key_value_leaks_in_error_text_when_restore_push_raises(env, monkeypatch):
    """Fresh process (the redactor knows no values yet). A rollback pushes the *current* key back
    to targets, but only the pending value is registered with REDACTOR. A target that raises with
    the value in its message (as requests' InvalidHeader does for a bad header value) puts the
    current key into the outcome detail and the audit log.
    Breaks: no secret value ever logged / in exception text."""
    env.engine().run()
    monkeypatch.setattr(REDACTOR, "_secrets", set())  # as in a new process
    current = env.state("crm").current.value

    class Raising:
        target_id, required = "hdr", True

        def push(self, d):
            if d.serial == 1:
                raise ValueError(f"Invalid leading whitespace in header value x-api-key: {d.value!r}")
            return PushResult(self.target_id, True, "ok")

    bad = Holder("bad", fail_serials={2})
    summary = env.engine(targets_for=lambda c: [Raising(), bad]).run(only=["crm"], force=["crm"])
    detail = summary.outcomes[0].detail
    text = env.audit_text()
    leaked = current in detail or current in text
    assert not leaked, "current key value in outcome detail / audit log"


def test_emergency_flag_lost_when_crash_between_pending_write_and_journal(env, monkeypatch):
    """Emergency rotation: pending is written to Vault, then the process dies before the first
    journal write that records the rotation (its id and emergency=True; since the fleet work it
    goes with the test step's write). The resumed run must still know it is an emergency (the
    flag lives on the pending record) and revoke the leaked key at once."""
    env.engine().run()
    leaked = env.state("newsletter").current
    e = env.engine(lease_ttl_seconds=1)
    real = e.vault.renew_lease

    def die(consumer, rec, ttl, **changes):
        if "rotation_id" in changes:
            raise Crash("killed")
        return real(consumer, rec, ttl, **changes)

    monkeypatch.setattr(e.vault, "renew_lease", die)
    with pytest.raises(Crash):
        e.run(only=["newsletter"], emergency=["newsletter"])
    env.expire_leases()
    out = env.engine().run(only=["newsletter"]).outcomes[0]
    assert out.outcome == "ok" and env.state("newsletter").current.serial == 2
    assert env.apigw().get_api_key(apiKey=leaked.key_id)["enabled"] is False, \
        "resumed emergency rotation kept the leaked key enabled"
