"""The rotation metrics: one definition (:data:`METRICS`) feeding CloudWatch and Prometheus.

These names are a contract between ``rotation/`` (publisher), ``infra/components/monitoring.py``
(alarms), ``infra/components/dashboard.py`` (the CloudWatch dashboard) and
``docs/grafana/rotation-dashboard.json`` (the Grafana dashboard). All of them read them from here,
so they cannot drift apart (tests/unit/rotation/test_metrics.py checks the Grafana JSON).

CloudWatch: namespace ``SecureMailApi/Rotation``, dimension ``Stack`` (the settings' ``stack``)
plus the metric's own labels (``Consumer``, ``Outcome``); published with PutMetricData by the CLI
and the daemon (:func:`publish`), as Embedded Metric Format through aws-lambda-powertools in Lambda
(:func:`emit_emf`, https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
Prometheus (prometheus-client): the same metrics with a ``stack`` label and snake_case names, as a
node-exporter textfile for a CronJob (:func:`write_textfile`) or an HTTP endpoint for the
``schedule`` daemon (:class:`PrometheusExporter`).

===============================  ===================================================  ==========================
CloudWatch (unit; labels)        Prometheus                                           meaning
===============================  ===================================================  ==========================
RotationSucceeded (Count)        rotation_succeeded_total                             rotations promoted
RotationFailed (Count)           rotation_failed_total                                consumers failed / rolled back
OldestKeyAgeSeconds (Seconds)    rotation_oldest_key_age_seconds                      oldest current key
KeysOverMaxAge (Count)           rotation_keys_over_max_age                           consumers past max_age
KeyAgeSeconds (Seconds; C)       rotation_key_age_seconds{consumer}                   age of each current key
Rotations (Count; O)             rotation_rotations_total{outcome}                    rotation attempts by outcome
TimeToConfirmSeconds (Seconds;C) rotation_time_to_confirm_seconds{consumer}           new key created -> promoted
AcknowledgementsPending (Count)  rotation_acknowledgements_pending                    old key still enabled, awaiting
                                                                                      the consumer's ack or grace end
LeaseTakeovers (Count)           rotation_lease_takeovers_total                       stale leases taken over
===============================  ===================================================  ==========================

A metrics outage never fails a rotation: every publisher logs and returns False.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

NAMESPACE = "SecureMailApi/Rotation"
DIMENSION_STACK = "Stack"
ROTATION_SUCCEEDED = "RotationSucceeded"
ROTATION_FAILED = "RotationFailed"
OLDEST_KEY_AGE_SECONDS = "OldestKeyAgeSeconds"
KEYS_OVER_MAX_AGE = "KeysOverMaxAge"
KEY_AGE_SECONDS = "KeyAgeSeconds"
ROTATIONS = "Rotations"
TIME_TO_CONFIRM_SECONDS = "TimeToConfirmSeconds"
ACKNOWLEDGEMENTS_PENDING = "AcknowledgementsPending"
LEASE_TAKEOVERS = "LeaseTakeovers"
# per consumer, read by the alarms of infra/components/monitoring.py (ROTATION_CONSUMER_METRICS)
KEY_OVER_MAX_AGE = "KeyOverMaxAge"
UNACKNOWLEDGED_KEY_AGE_SECONDS = "UnacknowledgedKeyAgeSeconds"
ROLLING_BACK_AGE_SECONDS = "RollingBackAgeSeconds"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """One metric: its CloudWatch ``name`` and ``unit``, its Prometheus name and type
    (``gauge`` | ``counter``: a counter's CloudWatch value is this run's increment), its labels
    (``consumer``, ``outcome``; CloudWatch dimensions ``Consumer``, ``Outcome``) and help text."""

    name: str
    prometheus: str
    kind: str
    unit: str
    labels: tuple[str, ...]
    help: str


METRICS: tuple[Metric, ...] = (
    Metric(ROTATION_SUCCEEDED, "rotation_succeeded_total", "counter", "Count", (),
           "Consumer rotations promoted (bootstrap, rotate, emergency, resume)."),
    Metric(ROTATION_FAILED, "rotation_failed_total", "counter", "Count", (),
           "Consumers whose run failed, was rolled back or lost its lease."),
    Metric(OLDEST_KEY_AGE_SECONDS, "rotation_oldest_key_age_seconds", "gauge", "Seconds", (),
           "Age of the oldest current key across consumers."),
    Metric(KEYS_OVER_MAX_AGE, "rotation_keys_over_max_age", "gauge", "Count", (),
           "Consumers whose current key is older than their max_age (or missing)."),
    Metric(KEY_AGE_SECONDS, "rotation_key_age_seconds", "gauge", "Seconds", ("consumer",),
           "Age of each consumer's current key (since promotion)."),
    Metric(ROTATIONS, "rotation_rotations_total", "counter", "Count", ("outcome",),
           "Rotation attempts by outcome (ok, failed, rolled_back, lost_lease, locked, queued)."),
    Metric(TIME_TO_CONFIRM_SECONDS, "rotation_time_to_confirm_seconds", "gauge", "Seconds", ("consumer",),
           "From the new key recorded as pending to its promotion (tested and distributed), latest rotation."),
    Metric(ACKNOWLEDGEMENTS_PENDING, "rotation_acknowledgements_pending", "gauge", "Count", (),
           "Consumers whose previous key is still enabled: waiting for their acknowledgement or the grace end."),
    Metric(LEASE_TAKEOVERS, "rotation_lease_takeovers_total", "counter", "Count", (),
           "Stale rotation leases taken over from a runner that stopped."),
    Metric(KEY_OVER_MAX_AGE, "rotation_key_over_max_age", "gauge", "Count", ("consumer",),
           "1 when the consumer's current key is older than its max_age (or missing), else 0."),
    Metric(UNACKNOWLEDGED_KEY_AGE_SECONDS, "rotation_unacknowledged_key_age_seconds", "gauge", "Seconds",
           ("consumer",), "Seconds since the current key was promoted while the app has not acknowledged it; "
                          "0 once acknowledged."),
    Metric(ROLLING_BACK_AGE_SECONDS, "rotation_rolling_back_age_seconds", "gauge", "Seconds", ("consumer",),
           "Seconds since the rotation that is rolling back started; 0 when none is."),
)
BY_NAME = {m.name: m for m in METRICS}
_ROTATING = ("bootstrap", "rotate", "emergency", "resume")


@dataclass
class Sample:
    metric: Metric
    value: float
    labels: dict[str, str] = field(default_factory=dict)


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


class RunMetrics:
    """Collects what only the audit trail knows during a run: time to confirm and lease takeovers.
    Add :meth:`listen` to ``AuditLog.listeners`` before the run."""

    def __init__(self) -> None:
        self.confirm_seconds: dict[str, float] = {}
        self.takeovers = 0
        self._created: dict[str, datetime] = {}

    def listen(self, event: dict[str, Any]) -> None:
        name, outcome, rid = event.get("event"), event.get("outcome"), event.get("rotation_id")
        ts = _parse(event.get("ts"))
        if name == "create" and outcome == "pending_recorded" and rid and ts:
            self._created[rid] = ts
        elif name == "promote" and outcome == "ok" and rid in self._created and ts:
            self.confirm_seconds[str(event.get("consumer"))] = max(0.0, (ts - self._created.pop(rid)).total_seconds())
        elif name == "lock" and outcome == "ok" and event.get("taken_over_from"):
            self.takeovers += 1


def _parse(ts: Any) -> datetime | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts)
    except ValueError:
        return None


def snapshot(*, outcomes, max_age_seconds: dict[str, float], now: datetime, run: RunMetrics | None = None,
             acks_pending: int | None = None) -> list[Sample]:
    """The samples of one run. ``outcomes``: the run's ``ConsumerOutcome`` list; ``max_age_seconds``
    per consumer; ``now`` the shared clock; ``acks_pending`` (``None``: not measured, not emitted)."""
    from rotation.engine.runner import FAILED_OUTCOMES
    run = run or RunMetrics()
    rows, ages = [], []
    for o in outcomes:
        promoted = _parse(o.current_promoted_at)
        rows.append((promoted, max_age_seconds.get(o.consumer, 0)))
        if promoted is not None:
            ages.append(Sample(BY_NAME[KEY_AGE_SECONDS], max(0.0, (now - promoted).total_seconds()),
                               {"consumer": o.consumer}))
    oldest, over = key_age_figures(rows, now)
    ok = sum(1 for o in outcomes if o.outcome == "ok" and o.action in _ROTATING)
    failed = sum(1 for o in outcomes if o.outcome in FAILED_OUTCOMES)
    by_outcome = Counter(o.outcome for o in outcomes if o.action in (*_ROTATING, "error"))
    out = [Sample(BY_NAME[ROTATION_SUCCEEDED], ok), Sample(BY_NAME[ROTATION_FAILED], failed),
           Sample(BY_NAME[OLDEST_KEY_AGE_SECONDS], oldest), Sample(BY_NAME[KEYS_OVER_MAX_AGE], over), *ages,
           *(Sample(BY_NAME[ROTATIONS], n, {"outcome": k}) for k, n in sorted(by_outcome.items())),
           *(Sample(BY_NAME[TIME_TO_CONFIRM_SECONDS], s, {"consumer": c}) for c, s in sorted(run.confirm_seconds.items())),
           Sample(BY_NAME[LEASE_TAKEOVERS], run.takeovers)]
    if acks_pending is not None:
        out.append(Sample(BY_NAME[ACKNOWLEDGEMENTS_PENDING], acks_pending))
    return out


def consumer_health(consumer: str, *, promoted_at: datetime | None, current_serial: int | None,
                    acked_serial: int | None, rolling_back_since: datetime | None, max_age_seconds: float,
                    now: datetime) -> list[Sample]:
    """The per-consumer health samples the alarms read: key over its max age (0/1), seconds the
    current key has gone unacknowledged (0 once the app's ack names its serial or a newer one), and
    seconds a rotation has been rolling back (0 when none is). All times on the shared clock."""
    labels = {"consumer": consumer}
    age = None if promoted_at is None else max(0.0, (now - promoted_at).total_seconds())
    over = age is None or age > max_age_seconds
    unacked = 0.0
    if age is not None and current_serial is not None and (acked_serial is None or acked_serial < current_serial):
        unacked = age
    rolling = 0.0 if rolling_back_since is None else max(0.0, (now - rolling_back_since).total_seconds())
    return [Sample(BY_NAME[KEY_OVER_MAX_AGE], float(over), labels),
            Sample(BY_NAME[UNACKNOWLEDGED_KEY_AGE_SECONDS], unacked, labels),
            Sample(BY_NAME[ROLLING_BACK_AGE_SECONDS], rolling, labels)]


def _dims(stack: str, s: Sample) -> list[dict[str, str]]:
    return [{"Name": DIMENSION_STACK, "Value": stack},
            *({"Name": k.capitalize(), "Value": v} for k, v in sorted(s.labels.items()))]


def put_metric_data_batches(samples: list[Sample], stack: str) -> list[list[dict[str, Any]]]:
    """PutMetricData ``MetricData`` lists (at most 1000 datums per call, the API's limit)."""
    data = [{"MetricName": s.metric.name, "Value": float(s.value), "Unit": s.metric.unit,
             "Dimensions": _dims(stack, s)} for s in samples]
    return [data[i:i + 1000] for i in range(0, len(data), 1000)]


def publish(cloudwatch, stack: str, samples: list[Sample] | None = None, **legacy: float) -> bool:
    """PutMetricData the samples; return False (and log) on failure, never raise: a metrics outage
    must not fail a rotation. (``succeeded=``, ``failed=``, ``oldest_age_seconds=``,
    ``over_max_age=`` without ``samples``: the four original figures only.)"""
    if samples is None:
        samples = [Sample(BY_NAME[ROTATION_SUCCEEDED], legacy["succeeded"]),
                   Sample(BY_NAME[ROTATION_FAILED], legacy["failed"]),
                   Sample(BY_NAME[OLDEST_KEY_AGE_SECONDS], legacy["oldest_age_seconds"]),
                   Sample(BY_NAME[KEYS_OVER_MAX_AGE], legacy["over_max_age"])]
    try:
        for batch in put_metric_data_batches(samples, stack):
            cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=batch)
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("could not publish rotation metrics: %s", type(exc).__name__)
        return False


def emit_emf(samples: list[Sample], stack: str) -> bool:
    """Print the samples as CloudWatch Embedded Metric Format through aws-lambda-powertools
    (``single_metric``: one EMF object per distinct dimension set), for the Lambda handler: the
    Lambda log agent turns them into metrics, no PutMetricData call. False when powertools is missing."""
    try:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric
    except ModuleNotFoundError:
        return False
    try:
        for s in samples:
            with single_metric(name=s.metric.name, unit=getattr(MetricUnit, s.metric.unit), value=float(s.value),
                               namespace=NAMESPACE, default_dimensions={DIMENSION_STACK: stack}) as m:
                for k, v in sorted(s.labels.items()):
                    m.add_dimension(name=k.capitalize(), value=v)
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("could not emit rotation metrics (EMF): %s", type(exc).__name__)
        return False


# -- Prometheus --------------------------------------------------------------------------------
def _families(samples: list[Sample], stack: str, previous: dict[tuple[str, tuple], float] | None = None):
    """prometheus-client metric families; counters add this run's increments to ``previous``."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    previous = previous or {}
    fams = {}
    for m in METRICS:
        labels = ["stack", *m.labels]
        base = m.prometheus.removesuffix("_total")
        fams[m.name] = (CounterMetricFamily(base, m.help, labels=labels) if m.kind == "counter"
                        else GaugeMetricFamily(m.prometheus, m.help, labels=labels))
    seen: set[tuple[str, tuple]] = set()
    for s in samples:
        values = [stack, *(s.labels.get(k, "") for k in s.metric.labels)]
        key = (s.metric.prometheus, tuple(values))
        value = float(s.value) + (previous.get(key, 0.0) if s.metric.kind == "counter" else 0.0)
        seen.add(key)
        fams[s.metric.name].add_metric(values, value)
    for (name, label_values), value in previous.items():       # counters not touched this run keep their value
        counter = next((m for m in METRICS if m.prometheus == name and m.kind == "counter"), None)
        if counter is not None and (name, label_values) not in seen:
            fams[counter.name].add_metric(list(label_values), value)
    return list(fams.values())


def _read_counters(path: Path) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families
    out: dict[tuple[str, tuple], float] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    counters = {m.prometheus: m for m in METRICS if m.kind == "counter"}
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                m = counters.get(s.name)
                if m is not None:
                    out[(s.name, tuple(s.labels.get(k, "") for k in ("stack", *m.labels)))] = s.value
    except ValueError:
        log.warning("metrics textfile %s is not in the Prometheus text format: counters restart", path)
    return out


class _Collector:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def write_textfile(samples: list[Sample], stack: str, path: str | Path) -> bool:
    """Write the samples to ``path`` in the Prometheus text format, atomically (for node-exporter's
    textfile collector, https://github.com/prometheus/node_exporter#textfile-collector). Counters
    continue from the values already in the file, so one process per run still yields counters."""
    from prometheus_client import CollectorRegistry, generate_latest
    path = Path(path)
    try:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(_families(samples, stack, _read_counters(path))))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(generate_latest(registry))
        os.chmod(tmp, 0o644)   # metrics, no secret: the exporter runs as another user
        os.replace(tmp, path)
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the metrics textfile %s: %s", path, type(exc).__name__)
        return False


class PrometheusExporter:
    """An HTTP ``/metrics`` endpoint for the ``schedule`` daemon (prometheus-client's WSGI app on
    its ``ThreadingWSGIServer``, as ``start_http_server`` builds it), serving the latest run's
    gauges and counters accumulated over runs.

    A scraper or any other peer cannot pin it (:mod:`rotation.client.bounded_server`): each
    connection gets ``connection_timeout`` seconds in all, at most ``max_connections`` are served
    at once, and one beyond that is answered 503. ``port`` 0 picks a free port
    (``self.server.server_address``). Raises ``OSError`` when the address cannot be bound."""

    def __init__(self, port: int, addr: str = "127.0.0.1", *, connection_timeout: float = 10.0,
                 max_connections: int = 8):
        import socket
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        from prometheus_client import CollectorRegistry, make_wsgi_app
        from prometheus_client.exposition import ThreadingWSGIServer

        from rotation.client.bounded_server import bounded

        class _Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = _Collector([])
        self.registry.register(self._collector)
        self._counters: dict[tuple[str, tuple], float] = {}
        server_class = bounded(ThreadingWSGIServer, connection_timeout=connection_timeout,
                               max_connections=max_connections)
        server_class.address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.server = make_server(addr, port, make_wsgi_app(self.registry), server_class, handler_class=_Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics-endpoint", daemon=True)
        self.thread.start()

    def update(self, samples: list[Sample], stack: str) -> None:
        families = _families(samples, stack, self._counters)
        for fam in families:
            if fam.type == "counter":
                for s in fam.samples:
                    if s.name.endswith("_total"):
                        m = next(m for m in METRICS if m.prometheus == s.name)
                        self._counters[(s.name, tuple(s.labels.get(k, "") for k in ("stack", *m.labels)))] = s.value
        self._collector.families = families

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
