"""The run's metrics come from the records the run already read (issue 21, item 2): after a run,
collecting them reads no key record and no rotation record again, only the acks the run did not
read, and the figures equal those computed from fresh reads."""

from __future__ import annotations

import threading

from rotation.config import ConsumersFile
from rotation.wiring import collect_run_metrics


def fleet(n: int) -> ConsumersFile:
    return ConsumersFile.model_validate({
        "version": 1,
        "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
        "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
        "consumers": [{"name": f"m{i:03d}", "tier": "standard" if i % 2 else "premium"} for i in range(n)],
    })


def paths(engine) -> list[str]:
    seen: list[str] = []
    lock = threading.Lock()

    def on_response(resp, *_a, **_kw):
        with lock:
            seen.append(f"{resp.request.method} {resp.request.path_url.split('?')[0]}")
    engine.vault.client.adapter.session.hooks["response"].append(on_response)
    return seen


def test_run_metrics_read_only_the_acks_the_run_did_not_read(env):
    cf = fleet(4)
    env.engine(consumers=cf).run()
    env.root().secrets.kv.v2.create_or_update_secret(     # only m001's app has acked (serial 1)
        path="mail-api/acks/m001", secret={"serial": 1, "key_id": "x"}, cas=0, mount_point="secret")
    e = env.engine(consumers=cf)
    summary = e.run(force=["m000"])
    calls = paths(e)
    samples = collect_run_metrics(e, summary)
    # one LIST of the acks, then m001's ack: no key record, no rotation record read again
    assert calls == ["LIST /v1/secret/metadata/mail-api/acks", "GET /v1/secret/data/mail-api/acks/m001"], calls
    fresh = env.engine(consumers=cf)
    fresh.vault.seen = None                                  # type: ignore[assignment]  # the old way: read all
    expected = collect_run_metrics(fresh, summary)

    def figures(ss):
        return sorted((s.metric.name, tuple(sorted(s.labels.items())), s.value) for s in ss
                      if "age" not in s.metric.name.lower() and "unack" not in s.metric.name.lower())
    assert figures(samples) == figures(expected)
