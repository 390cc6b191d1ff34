"""The Pulumi program body: read the stack config once, wire the components, export outputs.

``main()`` is importable so tests and ``infra.mocks.record_program`` can run it more than once
with different config; ``infra/__main__.py`` only calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra import outputs as out
from infra.artifacts import MAIL_HANDLER, ROTATOR, check_artifacts
from infra.components._common import TAG_STACK
from infra.components.api import Api, ApiArgs
from infra.components.audit import REQUEST_RECORD_FILTER, Audit, AuditArgs, RequestArchive, RequestArchiveArgs
from infra.components.dashboard import Dashboard, DashboardArgs
from infra.components.email import Email, EmailArgs
from infra.components.encryption import Encryption, EncryptionArgs
from infra.components.fanout import FanOut, FanOutArgs
from infra.components.monitoring import Monitoring, MonitoringArgs
from infra.components.oauth import OAuth, OAuthArgs
from infra.components.rotator import RotatorAccess, RotatorAccessArgs, ScheduledRotator, ScheduledRotatorArgs
from infra.components.sender import Sender, SenderArgs
from infra.components.signing import CodeSigning, CodeSigningArgs
from infra.components.storage import Storage, StorageArgs
from infra.components.waf import Waf, WafArgs
from infra.config import StackConfig, access_environment, load_stack_config


@dataclass
class MailApiStack:
    """Handles on every component of one program run, plus the exported outputs (name -> Output)."""

    config: StackConfig
    encryption: Encryption
    storage: Storage
    audit: Audit
    email: Email
    sender: Sender
    api: Api
    waf: Waf
    monitoring: Monitoring
    rotator: RotatorAccess
    request_archive: RequestArchive | None = None
    oauth: OAuth | None = None
    code_signing: CodeSigning | None = None
    scheduled_rotator: ScheduledRotator | None = None
    dashboard: Dashboard | None = None
    fanout: FanOut | None = None
    exports: dict[str, pulumi.Output] = field(default_factory=dict)


def _dkim_tokens(attrs) -> list[str]:
    """DKIM tokens of the SES identity (publish ``<token>._domainkey.<domain>`` CNAME records)."""
    if attrs is None:
        return []
    tokens = attrs.get("tokens") if isinstance(attrs, dict) else getattr(attrs, "tokens", None)
    return list(tokens or [])


def main(config: StackConfig | None = None, *, require_artifacts: bool = False) -> MailApiStack:
    """Declare the whole stack. Raises ``infra.config.ConfigError`` before any resource on bad config.

    ``require_artifacts`` (``pulumi up``/``preview`` through ``infra/__main__.py``): raise
    ``infra.artifacts.ArtifactMissing``, naming ``make package``, before any resource when a Lambda
    package the stack deploys is not in ``dist/``. The mock runs leave it off and never read the files.
    """
    cfg = config if config is not None else load_stack_config()
    if require_artifacts:
        check_artifacts([MAIL_HANDLER, *([ROTATOR] if cfg.rotation_schedule.enabled else [])])
    tags = {**cfg.tags, "project": "secure-mail-api", TAG_STACK: cfg.stack}
    account_id = aws.get_caller_identity_output().account_id

    encryption = Encryption("encryption", EncryptionArgs(account_id=account_id, region=cfg.region,
                                                         prefix=cfg.prefix, tags=tags))
    storage = Storage("storage", StorageArgs(prefix=cfg.prefix, data_key_arn=encryption.data_key.arn,
                                             account_id=account_id, tags=tags))
    audit = Audit("audit", AuditArgs(prefix=cfg.prefix, region=cfg.region, account_id=account_id,
                                     audit_key_arn=encryption.audit_key.arn,
                                     access_log_bucket=storage.access_logs.bucket.id,
                                     log_retention_days=cfg.log_retention_days, tags=tags))
    email = Email("email", EmailArgs(prefix=cfg.prefix, sender_domain=cfg.sender_domain,
                                     mail_from_domain=cfg.mail_from_domain,
                                     configuration_set_name=cfg.configuration_set_name,
                                     data_key_arn=encryption.data_key.arn, dlq_arn=storage.dlq.arn,
                                     account_id=account_id, tags=tags))
    code_signing = None
    if cfg.code_signing.enabled:
        code_signing = CodeSigning("code-signing", CodeSigningArgs(
            prefix=cfg.prefix, data_key_arn=encryption.data_key.arn,
            access_log_bucket=storage.access_logs.bucket.id,
            signature_validity_months=cfg.code_signing.signature_validity_months,
            trusted_profile_version_arns=list(cfg.code_signing.trusted_profile_version_arns), tags=tags))
    sender = Sender("sender", SenderArgs(
        prefix=cfg.prefix, data_key_arn=encryption.data_key.arn, audit_key_arn=encryption.audit_key.arn,
        audit_mac_key_arn=encryption.audit_mac_key.arn, table_name=storage.table.name, table_arn=storage.table.arn, archive_bucket_arn=storage.archive.bucket.arn,
        dlq_arn=storage.dlq.arn, identity_arn=email.identity.arn, sender_identity=cfg.sender_domain,
        configuration_set_name=email.configuration_set.configuration_set_name,
        configuration_set_arn=email.configuration_set.arn, reserved_concurrency=cfg.lambda_reserved_concurrency,
        timeout_seconds=cfg.lambda_timeout_seconds, memory_mb=cfg.lambda_memory_mb,
        log_retention_days=cfg.log_retention_days, layers=list(cfg.lambda_layers), code_signing=code_signing,
        tags=tags, access_environment=access_environment(cfg), stack=cfg.stack, region=cfg.region,
        from_addresses=cfg.allowed_from_addresses, from_display_names=cfg.allowed_display_names))
    oauth = None
    if cfg.cognito.enabled:
        oauth = OAuth("oauth", OAuthArgs(prefix=cfg.prefix, region=cfg.region,
                                         domain_prefix=cfg.cognito.domain_prefix or "",
                                         access_token_minutes=cfg.cognito.access_token_minutes,
                                         scopes=sorted(cfg.oauth_scopes), tags=tags))
    api = Api("api", ApiArgs(
        prefix=cfg.prefix, stack=cfg.stack, region=cfg.region, account_id=account_id, api_domain=cfg.api_domain,
        certificate_arn=cfg.certificate_arn, tls_policy=cfg.tls_policy, stage_name=cfg.stage_name,
        function_name=sender.function.name, function_invoke_arn=sender.function.invoke_arn,
        audit_key_arn=encryption.audit_key.arn, log_retention_days=cfg.log_retention_days,
        usage_plans=cfg.usage_plans, integration_timeout_ms=cfg.integration_timeout_ms,
        user_pool_arn=oauth.user_pool.arn if oauth else None,
        authorization_scopes=oauth.scopes if oauth else (), tags=tags))
    request_archive = RequestArchive("request-archive", RequestArchiveArgs(
        prefix=cfg.prefix, region=cfg.region, account_id=account_id, audit_key_arn=encryption.audit_key.arn,
        access_log_bucket=storage.access_logs.bucket.id,
        log_groups={"api-access": (api.access_log_group.name, ""),
                    "request-records": (sender.log_group.name, REQUEST_RECORD_FILTER)},
        retention_days=cfg.log_archive.retention_days,
        buffer_interval_seconds=cfg.log_archive.buffer_interval_seconds, tags=tags))
    waf = Waf("waf", WafArgs(prefix=cfg.prefix, stage_arn=api.stage.arn, waf=cfg.waf,
                             audit_key_arn=encryption.audit_key.arn, log_retention_days=cfg.log_retention_days,
                             tags=tags))
    monitoring = Monitoring("monitoring", MonitoringArgs(
        prefix=cfg.prefix, stack=cfg.stack, region=cfg.region, account_id=account_id,
        audit_key_arn=encryption.audit_key.arn, alarm_email=str(cfg.alarm_email),
        rest_api_name=api.rest_api.name, stage_name=cfg.stage_name, web_acl_name=waf.acl_name,
        waf_blocked_threshold=cfg.waf.blocked_requests_alarm_threshold, function_name=sender.function_name,
        function_timeout_seconds=cfg.lambda_timeout_seconds, reserved_concurrency=cfg.lambda_reserved_concurrency,
        dlq_name=storage.dlq.name, feedback_queue_name=email.feedback_queue.name,
        queue_age_sla_seconds=cfg.queue_age_sla_seconds, feedback_topic_name=email.feedback_topic.name,
        configuration_set_name=cfg.configuration_set_name, trail_log_group_name=audit.log_group.name,
        rotation_max_key_age_days=cfg.rotation_max_key_age_days, rotation_silence_hours=cfg.rotation_silence_hours,
        tags=tags, access_log_group_name=api.access_log_group.name, sender_log_group_name=sender.log_group.name,
        consumers=cfg.consumers, alerting=cfg.alerting))
    dashboard = Dashboard("dashboard", DashboardArgs(
        prefix=cfg.prefix, stack=cfg.stack, region=cfg.region, rest_api_name=api.rest_api.name,
        stage_name=cfg.stage_name, web_acl_name=waf.acl_name, alarm_arns=[a.arn for a in monitoring.alarms.values()]))
    rotator = RotatorAccess("rotator", RotatorAccessArgs(
        prefix=cfg.prefix, stack=cfg.stack, region=cfg.region, account_id=account_id,
        kms_key_arn=encryption.data_key.arn, trusted_principals=cfg.rotator_trusted_principals,
        trust=cfg.rotation_access.trust, consumers_file=cfg.rotation_schedule.consumers_file, tags=tags))
    scheduled_rotator = None
    if cfg.rotation_schedule.enabled:
        # AppRole opt-in only: the secret id is read only as a secret Output (P4), whether or not it
        # was stored with --secret; the config validator guarantees it is set exactly then.
        secret_id = (pulumi.Output.secret(cfg.rotation_vault_secret_id.get_secret_value())
                     if cfg.rotation_vault_secret_id is not None else None)
        scheduled_rotator = ScheduledRotator("scheduled-rotator", ScheduledRotatorArgs(
            prefix=cfg.prefix, stack=cfg.stack, region=cfg.region, account_id=account_id,
            schedule=cfg.rotation_schedule, vault_secret_id=secret_id, data_key_arn=encryption.data_key.arn,
            audit_key_arn=encryption.audit_key.arn, dlq_arn=storage.dlq.arn, alarm_topic_arn=monitoring.topic.arn,
            log_retention_days=cfg.log_retention_days, canary_url=api.base_url.apply(lambda u: f"{u}/v1/messages"),
            code_signing=code_signing, tags=tags))
    fanout = FanOut("rotation-fanout", FanOutArgs(
        prefix=cfg.prefix, region=cfg.region, account_id=account_id, rotator=scheduled_rotator,
        schedule_expression=cfg.rotation_schedule.schedule_expression, data_key_arn=encryption.data_key.arn,
        alarm_topic_arn=monitoring.topic.arn, tags=tags)) \
        if scheduled_rotator is not None and cfg.rotation_schedule.fanout else None

    exports: dict[str, pulumi.Output] = {
        out.API_URL: api.base_url,
        out.USAGE_PLAN_IDS: pulumi.Output.from_input({t: p.id for t, p in api.usage_plans.items()}),
        out.KMS_KEY_ARN: encryption.data_key.arn,
        out.AUDIT_KMS_KEY_ARN: encryption.audit_key.arn,
        out.ALARM_TOPIC_ARN: monitoring.topic.arn,
        out.ARCHIVE_BUCKET: storage.archive.bucket.bucket,
        out.REQUEST_ARCHIVE_BUCKET: request_archive.bucket.bucket.bucket,
        out.TABLE_NAME: storage.table.name,
        out.ROTATOR_ROLE_ARN: rotator.role.arn,
        out.REST_API_ID: api.rest_api.id,
        out.STAGE_NAME: api.stage.stage_name,
        out.DOMAIN_TARGET: api.domain_name.regional_domain_name,
        out.DKIM_TOKENS: email.identity.dkim_signing_attributes.apply(_dkim_tokens),
    }
    if oauth is not None:
        exports[out.TOKEN_URL] = oauth.token_url
        exports[out.OAUTH_CLIENT_ID] = oauth.client.id
    if scheduled_rotator is not None:
        exports[out.ROTATOR_FUNCTION_NAME] = scheduled_rotator.function.name
    for key, value in exports.items():
        pulumi.export(key, value)
    return MailApiStack(config=cfg, encryption=encryption, storage=storage, audit=audit, email=email,
                        sender=sender, api=api, waf=waf, monitoring=monitoring, rotator=rotator, oauth=oauth,
                        request_archive=request_archive, code_signing=code_signing,
                        scheduled_rotator=scheduled_rotator, dashboard=dashboard, fanout=fanout, exports=exports)
