"""CloudWatch metrics the rotation jobs publish and the infra alarms watch.

These names are a contract between ``rotation/`` (publisher) and ``infra/components/monitoring.py``
(alarms). Both import them from here, so they cannot drift apart.

Namespace ``SecureMailApi/Rotation``; every metric is published with the single dimension
``Stack`` (the settings' ``stack`` name, default ``dev``).

- ``RotationSucceeded`` (Count): one per consumer rotation promoted.
- ``RotationFailed`` (Count): one per consumer rotation that failed or was rolled back.
- ``OldestKeyAgeSeconds`` (Seconds): age of the oldest *current* key across consumers.
- ``KeysOverMaxAge`` (Count): consumers whose current key is older than their ``max_age``.
"""

from __future__ import annotations

import logging
from datetime import datetime

NAMESPACE = "SecureMailApi/Rotation"
DIMENSION_STACK = "Stack"
ROTATION_SUCCEEDED = "RotationSucceeded"
ROTATION_FAILED = "RotationFailed"
OLDEST_KEY_AGE_SECONDS = "OldestKeyAgeSeconds"
KEYS_OVER_MAX_AGE = "KeysOverMaxAge"

log = logging.getLogger(__name__)


def key_age_figures(rows: list[tuple[datetime | None, float]], now: datetime) -> tuple[float, int]:
    """From ``(promoted_at, max_age_seconds)`` per consumer, return (oldest age in seconds,
    number of consumers over their max age). A consumer without a key counts as over."""
    oldest, over = 0.0, 0
    for promoted_at, max_age in rows:
        if promoted_at is None:
            over += 1
            continue
        age = (now - promoted_at).total_seconds()
        oldest = max(oldest, age)
        over += age > max_age
    return oldest, over


def publish(cloudwatch, stack: str, *, succeeded: int, failed: int, oldest_age_seconds: float,
            over_max_age: int) -> bool:
    """PutMetricData the four rotation metrics; return False (and log) on failure, never raise:
    a metrics outage must not fail a rotation."""
    dims = [{"Name": DIMENSION_STACK, "Value": stack}]
    data = [
        {"MetricName": ROTATION_SUCCEEDED, "Value": succeeded, "Unit": "Count", "Dimensions": dims},
        {"MetricName": ROTATION_FAILED, "Value": failed, "Unit": "Count", "Dimensions": dims},
        {"MetricName": OLDEST_KEY_AGE_SECONDS, "Value": oldest_age_seconds, "Unit": "Seconds", "Dimensions": dims},
        {"MetricName": KEYS_OVER_MAX_AGE, "Value": over_max_age, "Unit": "Count", "Dimensions": dims},
    ]
    try:
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data)
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("could not publish rotation metrics: %s", type(exc).__name__)
        return False
