"""Run the rotation jobs as an AWS Lambda function, e.g. on an EventBridge Scheduler schedule.

Stateless: every invocation is one ``rotation run``; many invocations (or a Lambda next to a
CronJob) coordinate only through the CAS leases in Vault. Settings come from the function's
environment (:mod:`rotation.settings`; ``ROTATION_CONSUMERS_FILE`` names the consumers file
bundled with the function). Vault auth needs no stored credential by default: ``VAULT_AUTH_METHOD=aws``
(Vault's AWS IAM auth, the function's role credentials sign the login) or ``jwt`` (a JWT from STS
``GetWebIdentityToken``, for OpenBao); see :mod:`rotation.backends.vault_auth`. Only the explicit
AppRole opt-in keeps a secret id, never in the environment (CKV_AWS_45) but in the Secrets Manager
secret whose ARN is ``ROTATION_VAULT_LOGIN_ARN``, read at every invocation (so a re-issued secret id
is picked up at once) and passed to the settings directly, never through the process environment.

Event (all optional): ``{"force": ["crm"], "emergency": ["billing"], "only": ["crm", "billing"]}``.
Returns ``{"consumers": int, "failed": int, "outcomes": [{"consumer", "action", "outcome", "serial"}]}``
and raises :class:`RotationFailed` when a consumer failed, so the invocation counts as an error
for Lambda's ``Errors`` metric and the alarm on it.
"""

from __future__ import annotations

import os
from typing import Any

from rotation.audit import REDACTOR, install_log_redaction
from rotation.config import load_consumers_file
from rotation.errors import RotationError
from rotation.metrics import RunMetrics, emit_emf
from rotation.settings import load_settings
from rotation.wiring import build_engine, collect_run_metrics, publish_run_metrics

__all__ = ["SECRET_ARN_VARIABLE", "RotationFailed", "handler"]


class RotationFailed(RotationError):
    """At least one consumer's rotation failed in this invocation (details in the audit log)."""


def _names(event: dict[str, Any], key: str) -> list[str]:
    value = event.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"event.{key}: must be a list of consumer names")
    return value


SECRET_ARN_VARIABLE = "ROTATION_VAULT_LOGIN_ARN"
_secrets_client = None


def _vault_secret_id() -> dict[str, str]:
    """``{"vault_secret_id": value}`` read from Secrets Manager when ``ROTATION_VAULT_LOGIN_ARN``
    is set (GetSecretValue; needs ``secretsmanager:GetSecretValue`` on that ARN), else ``{}``."""
    global _secrets_client
    arn = os.environ.get(SECRET_ARN_VARIABLE)
    if not arn:
        return {}
    if _secrets_client is None:
        import boto3
        _secrets_client = boto3.client(
            "secretsmanager", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    value = _secrets_client.get_secret_value(SecretId=arn)["SecretString"]
    REDACTOR.register(value)
    return {"vault_secret_id": value}


def handler(event: dict[str, Any] | None, context: Any = None) -> dict[str, Any]:
    """One rotation run; see the module docstring for the event and the result."""
    install_log_redaction()   # before any AWS/Vault call: Lambda's root level may be DEBUG
    event = event or {}
    settings = load_settings(**_vault_secret_id())
    consumers = load_consumers_file(os.environ.get("ROTATION_CONSUMERS_FILE", "consumers.yaml"), settings=settings)
    only = _names(event, "only") or None
    run_metrics = RunMetrics()
    with build_engine(settings, consumers) as engine:   # revokes its Vault login token at the end
        engine.apigw.resolve_usage_plans(consumers.usage_plans)   # a misspelt plan: ConfigError, nothing changed
        engine.audit.listeners.append(run_metrics.listen)
        summary = engine.run(only=only, force=_names(event, "force"), emergency=_names(event, "emergency"))
        samples = collect_run_metrics(engine, summary, run_metrics)
    # CloudWatch Embedded Metric Format on stdout (aws-lambda-powertools): no PutMetricData call;
    # PutMetricData where powertools is not installed or not in Lambda (a local invocation).
    if not (os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and emit_emf(samples, settings.stack)):
        publish_run_metrics(settings, consumers, summary, samples)
    result = {
        "consumers": len(summary.outcomes),
        "failed": len(summary.failed),
        "outcomes": [{"consumer": o.consumer, "action": o.action, "outcome": o.outcome, "serial": o.serial}
                     for o in summary.outcomes],
    }
    if summary.failed:
        raise RotationFailed(REDACTOR.scrub(
            "; ".join(f"{o.consumer}: {o.outcome} ({o.detail[:120]})" for o in summary.failed)))
    return result
