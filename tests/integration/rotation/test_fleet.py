"""Rotation at fleet scale against the real servers: consumers in parallel under a bounded pool,
each isolated; the fewest Vault and AWS calls per rotation; a worker killed mid-rotation while
the others run; status/plan reads that skip absent records."""

from __future__ import annotations

import collections
import threading

import pytest

from rotation.config import ConsumersFile
from rotation.errors import VerificationFailed


class Crash(BaseException):
    """Stands for a worker dying: not an Exception, so nothing in the engine catches it."""


def fleet(env, n: int) -> ConsumersFile:
    """``n`` consumers (f000...) without push targets, on the stack's usage plans."""
    return ConsumersFile.model_validate({
        "version": 1,
        "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
        "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
        "consumers": [{"name": f"f{i:03d}", "tier": "standard" if i % 2 else "premium"} for i in range(n)],
    })


class Counting:
    """Counts Vault HTTP requests and AWS operations an engine makes."""

    def __init__(self, engine):
        self.vault = 0
        self.aws: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

        def on_response(resp, *_a, **_kw):
            with self._lock:
                self.vault += 1
        engine.vault.client.adapter.session.hooks["response"].append(on_response)

        def before_send(event_name: str = "", **_kw):
            with self._lock:
                self.aws[event_name.rsplit(".", 1)[-1]] += 1
        engine.apigw.client.meta.events.register("before-send.apigateway", before_send)


def test_one_consumer_failing_never_stops_the_others_in_a_parallel_run(env):
    cf = fleet(env, 6)
    env.engine(consumers=cf, workers=3).run()

    def canary(c, key):
        if c.name == "f002":
            raise VerificationFailed("f002: the gateway refuses the key")

    out = env.engine(consumers=cf, workers=3, verifiers=[canary]).run(force=[c.name for c in cf.consumers])
    by = {o.consumer: o for o in out.outcomes}
    assert [o.consumer for o in out.outcomes] == [c.name for c in cf.consumers]   # the file's order
    assert by["f002"].outcome == "rolled_back" and out.exit_code == 1
    for name in by.keys() - {"f002"}:
        assert by[name].outcome == "ok" and env.state(name).current.serial == 2, by[name]
    assert env.state("f002").current.serial == 1 and env.state("f002").pending is None


def test_no_more_consumers_work_at_once_than_workers(env):
    cf = fleet(env, 8)
    env.engine(consumers=cf, workers=2).run()
    busy, peak, lock = [0], [0], threading.Lock()
    entered = threading.Event()

    class Slow:
        target_id, required, type = "slow", True, "file"

        def push(self, d):
            from rotation.targets import PushResult
            with lock:
                busy[0] += 1
                peak[0] = max(peak[0], busy[0])
            entered.wait(0.2)            # overlap if the pool let it (never a correctness wait)
            with lock:
                busy[0] -= 1
            return PushResult(self.target_id, True, "ok")

    out = env.engine(consumers=cf, workers=2, targets_for=lambda c: [Slow()]).run(
        force=[c.name for c in cf.consumers])
    assert all(o.outcome == "ok" for o in out.outcomes), out.outcomes
    assert 1 <= peak[0] <= 2


def test_a_waiting_verification_frees_its_worker_for_other_consumers(env):
    """One worker: a consumer whose canary is not answered yet (propagation) must not hold the
    only worker: another consumer's canary runs while it waits."""
    cf = fleet(env, 2)
    env.engine(consumers=cf, workers=1).run()
    first_refused = threading.Event()
    seen = []

    def canary(c, key):
        seen.append(c.name)
        if c.name == "f000" and not first_refused.is_set():
            first_refused.set()
            raise VerificationFailed("not honoured yet")
        if c.name == "f000":
            assert "f001" in seen       # f001 was verified while f000 waited

    e = env.engine(consumers=cf, workers=1, verifiers=[canary], verify_timeout_seconds=60)
    e.max_in_flight = 2
    out = e.run(force=["f000", "f001"])
    assert [o.outcome for o in out.outcomes] == ["ok", "ok"], out.outcomes


def test_forced_rotation_makes_at_most_8_vault_calls_and_only_unavoidable_aws_calls(env):
    cf = fleet(env, 4)
    env.engine(consumers=cf).run()
    e = env.engine(consumers=cf, workers=2)
    n = Counting(e)
    out = e.run(force=[c.name for c in cf.consumers])
    assert all(o.outcome == "ok" for o in out.outcomes), out.outcomes
    assert n.vault <= 8 * 4, n.vault                       # was 17 per forced rotation
    per_run = {"GetApiKeys": 1, "GetUsagePlans": 2}        # the orphan-sweep listing, two tiers' plan ids
    assert dict(n.aws) == {"CreateApiKey": 4, "CreateUsagePlanKey": 4, **per_run}, n.aws
    # the revoke pass (previous keys past their grace): disable and detach, nothing else
    env.clock.advance(hours=2)
    e = env.engine(consumers=cf, workers=2)
    n = Counting(e)
    e.run()
    assert dict(n.aws) == {"UpdateApiKey": 4, "DeleteUsagePlanKey": 4, **per_run}, n.aws
    assert n.vault <= 6 * 4, n.vault                       # was 8 per revoke


def test_a_worker_killed_mid_rotation_leaves_the_others_done_and_its_rotation_resumable(env):
    cf = fleet(env, 6)
    env.engine(consumers=cf, workers=3).run()

    def kill(consumer, step):
        if consumer == "f003" and step == "api_key_created":
            raise Crash(step)

    with pytest.raises(Crash):
        env.engine(consumers=cf, workers=3, after_step=kill, lease_ttl_seconds=5).run(
            force=[c.name for c in cf.consumers])
    for c in cf.consumers:
        st = env.state(c.name)
        if c.name == "f003":
            assert st.pending is not None and st.current.serial == 1
        else:
            assert st.pending is None and st.current.serial == 2, c.name
    assert env.engine(consumers=cf).run(only=["f003"]).outcomes[0].outcome == "locked"   # its lease holds
    env.expire_leases()
    out = env.engine(consumers=cf, workers=3).run().outcomes
    assert {o.consumer: o.outcome for o in out}["f003"] == "ok"
    assert env.state("f003").current.serial == 2 and env.state("f003").pending is None
    names = [k["name"] for k in env.apigw().get_api_keys()["items"] if "-f003-" in k["name"]]
    assert sorted(names) == ["secure-mail-api-dev-f003-1", "secure-mail-api-dev-f003-2"]


def test_status_reads_skip_consumers_without_records_and_read_the_rest_once(env):
    cf = fleet(env, 6)
    env.engine(consumers=fleet(env, 3)).run()      # f000..f002 get records; f003..f005 have none
    e = env.engine(consumers=cf, workers=2)
    e.vault.bulk_metadata = False          # the read path of servers without detailed metadata (Vault)
    n = Counting(e)
    rows = e.decisions()
    assert [r[3].rotate for r in rows] == ["none"] * 3 + ["bootstrap"] * 3
    assert n.vault == 2 + 2 * 3            # two LISTs, then keys + rotation for the 3 with records
