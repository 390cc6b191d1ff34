"""The per-consumer health metrics the rotation alarms read: the names the Pulumi program alarms
on are the names the rotation jobs publish, and each figure follows its definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from infra.components.monitoring import ROTATION_CONSUMER_METRICS
from rotation.metrics import METRICS, consumer_health

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def figures(**kw) -> dict[str, float]:
    args = {"promoted_at": NOW - timedelta(hours=2), "current_serial": 3, "acked_serial": 3,
            "rolling_back_since": None, "max_age_seconds": 86400.0, "now": NOW, **kw}
    samples = consumer_health("billing", **args)
    assert all(s.labels == {"consumer": "billing"} for s in samples)
    return {s.metric.name: s.value for s in samples}


def test_every_metric_an_alarm_reads_is_one_the_rotation_jobs_publish():
    published = {m.name for m in METRICS if m.labels == ("consumer",)}
    assert set(ROTATION_CONSUMER_METRICS) <= published


def test_a_healthy_acknowledged_key_reports_zeros():
    assert figures() == {"KeyOverMaxAge": 0.0, "UnacknowledgedKeyAgeSeconds": 0.0, "RollingBackAgeSeconds": 0.0}


def test_a_key_older_than_its_max_age_or_missing_is_over():
    assert figures(promoted_at=NOW - timedelta(days=2))["KeyOverMaxAge"] == 1.0
    assert figures(promoted_at=None, current_serial=None)["KeyOverMaxAge"] == 1.0


def test_an_unacknowledged_key_reports_its_age_until_the_app_acks_its_serial():
    assert figures(acked_serial=2)["UnacknowledgedKeyAgeSeconds"] == 7200.0
    assert figures(acked_serial=None)["UnacknowledgedKeyAgeSeconds"] == 7200.0
    assert figures(acked_serial=4)["UnacknowledgedKeyAgeSeconds"] == 0.0


def test_a_rotation_rolling_back_reports_how_long():
    assert figures(rolling_back_since=NOW - timedelta(minutes=30))["RollingBackAgeSeconds"] == 1800.0
