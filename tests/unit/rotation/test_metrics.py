"""The one metric set (rotation/metrics.py) and its three outlets: PutMetricData batches, CloudWatch
EMF through aws-lambda-powertools, Prometheus (textfile with counters that continue across runs,
and the daemon's HTTP endpoint); plus the Grafana dashboard in docs/ only naming emitted metrics."""

from __future__ import annotations

import io
import json
import re
import urllib.request
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from rotation import metrics as rm
from rotation.engine.runner import ConsumerOutcome

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


def _iso(dt):
    return dt.isoformat()


def _outcomes():
    return [ConsumerOutcome("billing", "rotate", "ok", current_promoted_at=_iso(NOW - timedelta(seconds=30))),
            ConsumerOutcome("crm", "rotate", "rolled_back", "VerificationFailed: x",
                            current_promoted_at=_iso(NOW - timedelta(days=40))),
            ConsumerOutcome("newsletter", "none", "skipped", current_promoted_at=_iso(NOW - timedelta(days=2))),
            ConsumerOutcome("fresh", "bootstrap", "locked")]


def _run_metrics():
    run = rm.RunMetrics()
    t0 = NOW - timedelta(seconds=40)
    run.listen({"event": "lock", "outcome": "ok", "consumer": "billing", "taken_over_from": "host:1:dead"})
    run.listen({"event": "lock", "outcome": "ok", "consumer": "crm"})
    run.listen({"event": "create", "outcome": "pending_recorded", "consumer": "billing", "rotation_id": "r1",
                "ts": _iso(t0)})
    run.listen({"event": "promote", "outcome": "ok", "consumer": "billing", "rotation_id": "r1",
                "ts": _iso(t0 + timedelta(seconds=7.5))})
    run.listen({"event": "promote", "outcome": "ok", "consumer": "crm", "rotation_id": "unknown", "ts": "bad"})
    return run


def _samples():
    return rm.snapshot(outcomes=_outcomes(), max_age_seconds={"billing": 86400 * 30, "crm": 86400 * 30,
                                                              "newsletter": 86400 * 30, "fresh": 86400},
                       now=NOW, run=_run_metrics(), acks_pending=2)


def _by(samples):
    return {(s.metric.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def test_the_snapshot_holds_key_age_per_consumer_outcomes_confirm_time_takeovers_and_acks():
    v = _by(_samples())
    assert v[(rm.KEY_AGE_SECONDS, (("consumer", "billing"),))] == 30
    assert v[(rm.KEY_AGE_SECONDS, (("consumer", "crm"),))] == 40 * 86400
    assert (rm.KEY_AGE_SECONDS, (("consumer", "fresh"),)) not in v            # no key: no age
    assert v[(rm.KEYS_OVER_MAX_AGE, ())] == 2                                   # crm over, fresh has none
    assert v[(rm.OLDEST_KEY_AGE_SECONDS, ())] == 40 * 86400
    assert v[(rm.ROTATIONS, (("outcome", "ok"),))] == 1 and v[(rm.ROTATIONS, (("outcome", "rolled_back"),))] == 1
    assert v[(rm.ROTATIONS, (("outcome", "locked"),))] == 1
    assert v[(rm.ROTATION_SUCCEEDED, ())] == 1 and v[(rm.ROTATION_FAILED, ())] == 1
    assert v[(rm.TIME_TO_CONFIRM_SECONDS, (("consumer", "billing"),))] == 7.5
    assert v[(rm.LEASE_TAKEOVERS, ())] == 1 and v[(rm.ACKNOWLEDGEMENTS_PENDING, ())] == 2


def test_every_sample_is_a_defined_metric_and_names_follow_each_backend_convention():
    assert {s.metric for s in _samples()} <= set(rm.METRICS)
    for m in rm.METRICS:
        assert re.fullmatch(r"[A-Z][A-Za-z]+", m.name) and m.unit in ("Count", "Seconds")
        assert re.fullmatch(r"rotation_[a-z_]+", m.prometheus)
        assert m.prometheus.endswith("_total") == (m.kind == "counter")
        assert (m.unit == "Seconds") == m.prometheus.endswith("_seconds")


def test_put_metric_data_batches_carry_stack_and_label_dimensions_and_respect_the_1000_limit():
    many = [rm.Sample(rm.BY_NAME[rm.KEY_AGE_SECONDS], 1.0, {"consumer": f"c{i}"}) for i in range(2500)]
    batches = rm.put_metric_data_batches(many, "prod")
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert batches[0][0]["Dimensions"] == [{"Name": "Stack", "Value": "prod"}, {"Name": "Consumer", "Value": "c0"}]


def test_emf_output_is_one_embedded_metric_object_per_sample_with_its_dimensions():
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert rm.emit_emf(_samples(), "prod")
    docs = [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
    assert len(docs) == len(_samples())
    age = next(d for d in docs if rm.KEY_AGE_SECONDS in d and d.get("Consumer") == "billing")
    directive = age["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == rm.NAMESPACE and age["Stack"] == "prod" and age[rm.KEY_AGE_SECONDS] in (30.0, [30.0])
    assert sorted(directive["Dimensions"][0]) == ["Consumer", "Stack"]
    assert directive["Metrics"][0]["Unit"] == "Seconds"


def _parse(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_textfile_counters_continue_across_runs_and_gauges_take_the_latest_value(tmp_path):
    path = tmp_path / "rotation.prom"
    assert rm.write_textfile(_samples(), "prod", path)
    assert rm.write_textfile(_samples()[:4], "prod", path)     # a second run: only the first four figures
    v = _parse(path.read_text())
    assert v[("rotation_succeeded_total", (("stack", "prod"),))] == 2
    assert v[("rotation_rotations_total", (("outcome", "ok"), ("stack", "prod")))] == 1   # kept from run 1
    assert v[("rotation_oldest_key_age_seconds", (("stack", "prod"),))] == 40 * 86400
    assert ("rotation_key_age_seconds", (("consumer", "billing"), ("stack", "prod"))) not in v   # gauges: latest run
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_a_garbled_textfile_restarts_the_counters_instead_of_failing(tmp_path):
    path = tmp_path / "rotation.prom"
    path.write_text("this is not { prometheus\n")
    assert rm.write_textfile(_samples(), "prod", path)
    assert _parse(path.read_text())[("rotation_succeeded_total", (("stack", "prod"),))] == 1


def test_the_daemon_endpoint_serves_the_metrics_and_accumulates_counters():
    exporter = rm.PrometheusExporter(0, "127.0.0.1")
    try:
        port = exporter.server.server_address[1]
        exporter.update(_samples(), "dev")
        exporter.update(_samples(), "dev")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        v = _parse(text)
        assert v[("rotation_succeeded_total", (("stack", "dev"),))] == 2
        assert v[("rotation_key_age_seconds", (("consumer", "billing"), ("stack", "dev")))] == 30
    finally:
        exporter.close()


def test_a_publisher_that_fails_returns_false_and_never_raises():
    class Broken:
        def put_metric_data(self, **kw):
            raise ConnectionError("down")
    assert rm.publish(Broken(), "dev", _samples()) is False
