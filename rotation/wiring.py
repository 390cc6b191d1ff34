"""Wiring: settings + consumers file -> Vault store, API Gateway provider, targets, engine.

The CLI, the scheduler daemon and the Lambda entry point all build their engine here, so they
behave the same way.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import boto3

from rotation.audit import AuditLog
from rotation.backends.apigateway import ApiGatewayKeys
from rotation.backends.traffic import ApiGatewayUsage, QuotaCarrier, UsageEndpointTraffic
from rotation.backends.vault import VaultStore
from rotation.config import (
    Consumer,
    ConsumersFile,
    FileTarget,
    SecretsManagerTargetSpec,
    SsmParameterTargetSpec,
    WebhookTarget,
)
from rotation.engine.runner import Engine, RunSummary
from rotation.errors import RotationError
from rotation.metrics import RunMetrics, Sample, consumer_health, publish, snapshot
from rotation.records import KeyState, RotationRecord, from_iso, utcnow
from rotation.settings import Settings
from rotation.targets import PushTarget
from rotation.targets.file import AtomicFileTarget
from rotation.targets.webhook import SignedWebhookTarget

__all__ = ["build_engine", "collect_run_metrics", "publish_run_metrics"]

log = logging.getLogger(__name__)


def _aws_client(service: str, settings: Settings):
    from botocore.config import Config
    return boto3.session.Session(region_name=settings.aws_region).client(
        service, endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region,
        config=Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}))


def make_targets(c: Consumer, vault: VaultStore, settings: Settings) -> list[PushTarget]:
    """Build consumer ``c``'s push targets from its specs in the consumers file."""
    from rotation.targets.secretsmanager import SecretsManagerTarget
    from rotation.targets.ssm import SsmParameterTarget

    out: list[PushTarget] = []
    for spec in c.targets:
        if isinstance(spec, FileTarget):
            out.append(AtomicFileTarget(spec, allowed_dirs=settings.file_target_dirs))
        elif isinstance(spec, WebhookTarget):
            out.append(SignedWebhookTarget(spec, vault, deadline_seconds=settings.push_timeout_seconds,
                                           allow_loopback=settings.webhook_allow_loopback,
                                           allow_private=settings.webhook_allow_private))
        elif isinstance(spec, SecretsManagerTargetSpec):
            out.append(SecretsManagerTarget(_aws_client("secretsmanager", settings), spec.secret_id,
                                            kms_key_id=spec.kms_key_id, required=spec.required))
        elif isinstance(spec, SsmParameterTargetSpec):
            out.append(SsmParameterTarget(_aws_client("ssm", settings), spec.name, kms_key_id=spec.kms_key_id,
                                          required=spec.required))
    return out


def build_engine(settings: Settings, consumers: ConsumersFile, *, audit: AuditLog | None = None,
                 check_mount: bool = True, **engine_kwargs) -> Engine:
    """Log in to Vault, check the KV mount (refuses KV v1), and build the engine. The Vault
    token is renewed on a background timer from here on; ``engine.close()`` (or ``with engine:``)
    stops it and revokes a token obtained by login.

    Raises :class:`~rotation.errors.VaultError` / :class:`~rotation.errors.UnsupportedMount`.
    """
    vault = VaultStore(settings)
    try:
        if check_mount:
            for warning in vault.check_mount():
                log.warning("%s", warning)
    except BaseException:
        vault.close()
        raise
    vault.start_renewal()
    _size_pools(vault, settings.workers)
    apigw = ApiGatewayKeys(settings)
    audit = audit or AuditLog(settings.audit_log)
    engine_kwargs.setdefault("targets_for", lambda c: make_targets(c, vault, settings))
    if settings.traffic_url:
        token = settings.traffic_token.get_secret_value() if settings.traffic_token else None
        engine_kwargs.setdefault("traffic", UsageEndpointTraffic(settings.traffic_url, token=token))
    engine_kwargs.setdefault("traffic", ApiGatewayUsage(apigw.client))   # through the rate limiter
    engine_kwargs.setdefault("quota", QuotaCarrier(apigw.client))
    if settings.canary_url:
        from rotation.verifiers.canary import CanaryVerifier
        engine_kwargs["verifiers"] = [*engine_kwargs.get("verifiers", ()), CanaryVerifier(settings.canary_url)]
    engine_kwargs.setdefault("workers", settings.workers)
    return Engine(consumers, vault, apigw, audit, lease_ttl_seconds=settings.lease_ttl_seconds,
                  verify_timeout_seconds=settings.verify_timeout_seconds, **engine_kwargs)


def _size_pools(vault: VaultStore, workers: int) -> None:
    """Give Vault's HTTP session two pooled connections per worker, at least 16 (requests keeps
    10 by default): status/plan read with ``max(2 * workers, 16)`` threads, run with ``workers``."""
    from requests.adapters import HTTPAdapter

    session = vault.client.adapter.session
    for prefix in ("https://", "http://"):
        session.mount(prefix, HTTPAdapter(pool_connections=4, pool_maxsize=max(16, workers * 2)))


def collect_run_metrics(engine: Engine, summary: RunSummary, run: RunMetrics | None = None) -> list[Sample]:
    """The run's metric samples (:mod:`rotation.metrics`), while ``engine`` is still open.

    The key record and rotation record of each consumer are the ones the run itself read or wrote
    last (:meth:`~rotation.backends.vault.VaultStore.seen`): no read again. What the run did not
    read (the app's ack, for consumers with a current key and an ack record, after one LIST of
    ``<prefix>/acks``; a record of a consumer that failed before reading it) is read
    concurrently, at most ``max(2 * workers, 16)`` at a time. A failed
    read leaves acknowledgements pending and the health figures out rather than failing the run.
    """
    now = engine.clock()
    max_age = {c.name: c.max_age.total_seconds() for c in engine.consumers.consumers}
    seen = getattr(engine.vault, "seen", None)
    lister = getattr(engine.vault, "list_records", None)
    have_acks: set[str] | None = None      # None: unknown, read every ack needed

    def one(consumer: str) -> tuple[KeyState, RotationRecord, dict | None]:
        state, record, ack, ack_read = seen(consumer) if seen is not None else (None, None, None, False)
        state = state if state is not None else engine.vault.read_key_state(consumer)
        record = record if record is not None else engine.vault.read_rotation(consumer)
        if state.current is not None and not ack_read and (have_acks is None or consumer in have_acks):
            ack = engine.vault.read_ack(consumer)
        return state, record, ack

    names = [o.consumer for o in summary.outcomes]
    pending = 0
    measured = True
    health: list[Sample] = []
    try:
        if lister is not None and names:
            have_acks = lister("acks")      # one LIST: an app that never acked costs no read
        if len(names) > 1:
            with ThreadPoolExecutor(max_workers=min(len(names), max(2 * engine.workers, 16)),
                                    thread_name_prefix="rotation-metrics") as pool:
                got = list(pool.map(one, names))
        else:
            got = [one(n) for n in names]
        count = 0
        for consumer, (state, record, ack) in zip(names, got, strict=True):
            count += state.previous is not None and state.previous.disabled_at is None
            ack = ack or {}
            current = state.current
            health += consumer_health(
                consumer, promoted_at=from_iso(current.promoted_at) if current else None,
                current_serial=current.serial if current else None,
                acked_serial=ack.get("serial") if isinstance(ack.get("serial"), int) else None,
                rolling_back_since=from_iso(record.started_at) if record.step == "rolling_back" else None,
                max_age_seconds=max_age.get(consumer, 0), now=now)
        pending = count
    except RotationError as exc:
        log.warning("acknowledgements pending and consumer health not measured: %s", type(exc).__name__)
        measured, health = False, []
    return [*snapshot(outcomes=summary.outcomes, max_age_seconds=max_age, now=now, run=run,
                      acks_pending=pending if measured else None), *health]


def publish_run_metrics(settings: Settings, consumers: ConsumersFile, summary: RunSummary,
                        samples: list[Sample] | None = None) -> bool:
    """Publish the run's rotation metrics to CloudWatch with PutMetricData (:mod:`rotation.metrics`);
    ``samples`` from :func:`collect_run_metrics`, else the figures the summary alone gives."""
    if samples is None:
        max_age = {c.name: c.max_age.total_seconds() for c in consumers.consumers}
        samples = snapshot(outcomes=summary.outcomes, max_age_seconds=max_age, now=utcnow())
    cw = boto3.session.Session(region_name=settings.aws_region).client(
        "cloudwatch", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
    return publish(cw, settings.stack, samples)
