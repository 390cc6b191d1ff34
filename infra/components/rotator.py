"""Rotation: the IAM role the API-key rotation jobs assume, and the optional scheduled rotator.

:class:`RotatorAccess` -- the role for runners outside AWS's compute (the ``schedule`` daemon, cron,
a CronJob). Its permission policy is ``policies/iam/rotator.json`` rendered for this stack: read
API keys and usage plans, create keys only with the tag ``secure-mail-api:stack=<stack>``,
change/delete only keys and usage-plan keys carrying that tag, publish metrics only in
``SecureMailApi/Rotation``, use the data key for push targets, and write exactly the push targets
of the consumers file (``rotationSchedule.consumersFile``; :mod:`rotation.permissions`: named
secret and parameter ARNs, their KMS keys). The trust policy admits only the principals of
``rotationAccess.trust`` (Lambda, IRSA with ``sub``/``aud`` conditions, EKS Pod Identity, IAM
roles); without them, the legacy ``rotatorTrustedPrincipals`` (default: this account's root).

:class:`ScheduledRotator` (stack config ``rotationSchedule.enabled``) -- docs/architecture.md "At
scale": ``rotation.aws_lambda.handler`` as a Lambda function that EventBridge Scheduler invokes,
one stateless run per invocation, coordinated with any other runner only by the CAS leases in
Vault. Realizes docs/security-baseline.md §1.7 like the sender: python3.11, X-Ray active, reserved concurrency
1, DLQ, environment encrypted with the data CMK and holding no secret, JSON logs to a
CMK-encrypted log group with retention, code signing enforced when stack config
``codeSigning.enabled`` (otherwise suppressed with a justification in
``policies/pack/config/dev.json``). The schedule itself is encrypted with the data CMK
(``kms_key_arn``; EventBridge Scheduler "Encryption at rest",
https://docs.aws.amazon.com/scheduler/latest/UserGuide/encryption-rest.html), and the scheduler's
execution role may decrypt with that key only for this schedule
(``kms:EncryptionContext:aws:scheduler:schedule-arn``). Its own role (Lambda-only trust) carries the same
``rotator.json`` policy plus logs, X-Ray, the DLQ and read access to exactly one secret.

Code: ``dist/rotator.zip`` as ``make package`` built it (the ``rotation`` package without
``rotation.dev``, every dependency from ``requirements/rotator.lock``, for
:data:`infra.artifacts.LAMBDA_RUNTIME` on :data:`infra.artifacts.LAMBDA_ARCHITECTURE`); no layer
with dependencies is needed. The consumers file is stack config, not code, so it travels in a layer
of its own (``<prefix>-rotator-consumers``, the file at its repository-relative path under ``/opt``)
and the code stays byte-identical to the artifact whose sha256 and SBOM ``make package`` wrote.

No stored Vault credential by default (``rotationSchedule.vaultAuth``, issue 11 item 2): with
``aws`` the function logs in with Vault's AWS IAM auth (its role's credentials sign an
``sts:GetCallerIdentity`` request; ``VAULT_AUTH_METHOD=aws``, ``VAULT_AWS_ROLE``), the Vault role
bound to the function's role ARN; with ``jwt`` (OpenBao) it presents a JWT that AWS STS
``GetWebIdentityToken`` issues for ``vaultJwtAudience`` (the role may request only that audience,
for at most 300 s). Only the explicit ``approle`` opt-in stores a credential: the AppRole secret id
(secret config ``rotationVaultSecretId``) never leaves Pulumi's secret handling: it is written only
to a Secrets Manager secret encrypted with the data CMK (so the state holds it encrypted, failure
case P4) and the function reads it at run time. The function's environment carries only the
secret's ARN (``ROTATION_VAULT_LOGIN_ARN``), never the value (CKV_AWS_45).

Reaching a private Vault (issue 11 item 3): ``rotationSchedule.vpc`` puts the function in those
subnets and security groups (``vpc_config``) and grants the ENI permissions Lambda needs (those of
the managed policy AWSLambdaVPCAccessExecutionRole; the describe calls take no resource, the
create/delete calls are limited to this account's region); ``rotationSchedule.vaultCaBundle`` (the
private CA's PEM, public data) travels in the consumers layer as ``/opt/vault-ca.pem`` and
``VAULT_CACERT`` names it, so the code stays the built artifact and the bundle is signed with the
layer when code signing is on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.artifacts import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, ROTATOR, code_archive
from infra.components._common import encrypted_log_group, json_doc, lambda_runtime_statements
from infra.components.signing import CodeSigning
from infra.config import IrsaTrust, RoleTrust, RotationScheduleConfig
from policies.iam import render_policy
from rotation.config import load_consumers_file
from rotation.permissions import required_statements

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The engine's Lambda handler (with the AppRole opt-in it reads the secret id from Secrets Manager itself).
HANDLER = "rotation.aws_lambda.handler"
#: Where Lambda extracts layers; the consumers-file layer puts the file at ``/opt/<consumersFile>``.
LAYER_ROOT = "/opt"
TIMEOUT_SECONDS = 300
MEMORY_MB = 512
#: One runner per schedule is enough; the Vault leases make overlapping runs safe anyway.
RESERVED_CONCURRENCY = 1
#: Bounded retries: EventBridge Scheduler retries a failed Invoke call twice within 15 minutes,
#: Lambda does not retry a failed run (the next scheduled run resumes it); then the DLQ.
SCHEDULE_MAX_RETRIES = 2
SCHEDULE_MAX_EVENT_AGE_SECONDS = 900
LAMBDA_ASYNC_MAX_RETRIES = 0
LAMBDA_ASYNC_MAX_EVENT_AGE_SECONDS = 3600
#: EventBridge Scheduler's schedule group; the default group is ``default``.
SCHEDULE_GROUP = "default"
#: Environment variable holding the ARN (not the value) of the secret with the AppRole secret id.
SECRET_ARN_VARIABLE = "ROTATION_VAULT_LOGIN_ARN"
#: The CA bundle's name inside the consumers layer (so ``/opt/vault-ca.pem``).
CA_BUNDLE_NAME = "vault-ca.pem"
#: Lifetime of the STS-issued JWT for ``vaultAuth: jwt`` (the IAM condition caps it).
JWT_DURATION_SECONDS = 300


def vault_login_environment(cfg: RotationScheduleConfig) -> dict[str, str]:
    """The ``rotation.settings`` variables for the function's Vault login (no credential in them)."""
    mount_var = {"aws": "VAULT_AWS_MOUNT", "jwt": "VAULT_JWT_MOUNT", "approle": "VAULT_APPROLE_MOUNT"}[cfg.vault_auth]
    env: dict[str, str] = {"VAULT_AUTH_METHOD": cfg.vault_auth}
    if cfg.vault_auth == "aws":
        env["VAULT_AWS_ROLE"] = cfg.vault_auth_role
        if cfg.vault_aws_server_id:
            env["VAULT_AWS_IAM_SERVER_ID"] = cfg.vault_aws_server_id
    elif cfg.vault_auth == "jwt":
        env["VAULT_JWT_ROLE"] = cfg.vault_auth_role
        env["VAULT_JWT_AWS_AUDIENCE"] = cfg.vault_jwt_audience or ""
    else:
        env["VAULT_ROLE_ID"] = cfg.vault_role_id or ""
    if cfg.vault_auth_mount:
        env[mount_var] = cfg.vault_auth_mount
    if cfg.vault_ca_bundle:
        env["VAULT_CACERT"] = f"{LAYER_ROOT}/{CA_BUNDLE_NAME}"
    return env


def vpc_access_statements(region: str, account_id: pulumi.Input[str]) -> list[dict]:
    """The ENI permissions of AWSLambdaVPCAccessExecutionRole
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#configuration-vpc-permissions):
    Describe* cannot be scoped to a resource; the rest is limited to this account and region."""
    return [
        {"Sid": "DescribeNetworkInterfaces", "Effect": "Allow",
         "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"], "Resource": "*"},
        {"Sid": "ManageFunctionNetworkInterfaces", "Effect": "Allow",
         "Action": ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses"],
         "Resource": pulumi.Output.concat("arn:aws:ec2:", region, ":", account_id, ":*")},
    ]


def rotator_policy(region: str, stack: str, kms_key_arn: pulumi.Input[str], account_id: pulumi.Input[str] = "",
                   consumers_file: str | None = None) -> pulumi.Output[str]:
    """The rotation jobs' least-privilege policy, ``policies/iam/rotator.json`` rendered for this
    stack, plus the push statements the consumers file's targets need (named secret and parameter
    ARNs and their KMS keys; :func:`rotation.permissions.required_statements`): every runner of the
    rotation jobs (people, CI, the scheduled Lambda) gets exactly this."""
    def render(values: list[str]) -> str:
        arn, account = values
        doc = render_policy("rotator", region=region, stack=stack, kms_key_arn=arn)
        if consumers_file:
            consumers = load_consumers_file(REPO_ROOT / consumers_file)
            doc["Statement"] += required_statements(consumers, region, account)
        return json.dumps(doc)

    return pulumi.Output.all(kms_key_arn, account_id).apply(render)


def rotator_trust_policy(account_id: str, principals: Sequence[str], trust: Sequence[object] = ()) -> dict:
    """Trust policy for the rotation role: explicit principals from ``rotationAccess.trust``
    (Lambda for this account, IRSA with ``sub``/``aud`` conditions, EKS Pod Identity, IAM roles);
    without them the legacy ``rotatorTrustedPrincipals`` (or this account's root)."""
    statements: list[dict] = []
    for n, entry in enumerate(trust):
        kind = getattr(entry, "type", None)
        if kind == "lambda":
            statements.append({"Sid": f"LambdaService{n}", "Effect": "Allow",
                               "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole",
                               "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}})
        elif isinstance(entry, IrsaTrust):   # type "irsa"
            issuer = entry.oidc_provider_arn.split(":oidc-provider/", 1)[1]
            statements.append({"Sid": f"KubernetesServiceAccount{n}", "Effect": "Allow",
                               "Principal": {"Federated": entry.oidc_provider_arn},
                               "Action": "sts:AssumeRoleWithWebIdentity",
                               "Condition": {"StringEquals": {
                                   f"{issuer}:sub": f"system:serviceaccount:{entry.namespace}:{entry.service_account}",
                                   f"{issuer}:aud": "sts.amazonaws.com"}}})
        elif kind == "podIdentity":
            statements.append({"Sid": f"EksPodIdentity{n}", "Effect": "Allow",
                               "Principal": {"Service": "pods.eks.amazonaws.com"},
                               "Action": ["sts:AssumeRole", "sts:TagSession"],
                               "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}})
        elif isinstance(entry, RoleTrust):   # type "role"
            statements.append({"Sid": f"IamRole{n}", "Effect": "Allow", "Principal": {"AWS": entry.arn},
                               "Action": "sts:AssumeRole"})
        else:
            raise ValueError(f"rotationAccess.trust.{n}.type: unknown trust type {kind!r}")
    if statements:
        return {"Version": "2012-10-17", "Statement": statements}
    aws_principals = list(principals) or [f"arn:aws:iam::{account_id}:root"]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "RotationRunners", "Effect": "Allow", "Principal": {"AWS": aws_principals},
         "Action": "sts:AssumeRole"},
    ]}


def service_trust_policy(service: str, account_id: str) -> dict:
    """Trust policy for one service principal acting for this account only (confused deputy)."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
    ]}


def consumers_layer_assets(consumers_file: str, root: Path = REPO_ROOT,
                           ca_bundle: str | None = None) -> dict[str, pulumi.asset.Asset | pulumi.asset.Archive]:
    """Content of the consumers-file layer: the file at its repository-relative path (archive path ->
    asset), and the Vault CA bundle as :data:`CA_BUNDLE_NAME` when one is configured."""
    assets: dict[str, pulumi.asset.Asset | pulumi.asset.Archive] = {consumers_file: pulumi.FileAsset(str(root / consumers_file))}
    if ca_bundle:
        assets[CA_BUNDLE_NAME] = pulumi.StringAsset(ca_bundle)
    return assets


@dataclass
class RotatorAccessArgs:
    """Inputs of :class:`RotatorAccess`."""

    prefix: str
    stack: str
    region: str
    account_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    trusted_principals: Sequence[str] = ()
    #: ``rotationAccess.trust`` entries (infra.config TrustEntry); replace ``trusted_principals`` when set.
    trust: Sequence[object] = ()
    #: Consumers file (repository-relative) whose push targets the policy must cover.
    consumers_file: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class RotatorAccess(pulumi.ComponentResource):
    """Rotation role + inline policy. Attributes: ``role``, ``policy``."""

    def __init__(self, name: str, args: RotatorAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:rotation:RotatorAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(
            f"{name}-role", name=f"{args.prefix}-rotator",
            description="secure-mail-api API-key rotation jobs",
            assume_role_policy=pulumi.Output.from_input(args.account_id).apply(
                lambda a: json.dumps(rotator_trust_policy(a, args.trusted_principals, args.trust))),
            max_session_duration=3600, tags=dict(args.tags), opts=child)
        self.policy = aws.iam.RolePolicy(
            f"{name}-policy", role=self.role.id,
            policy=rotator_policy(args.region, args.stack, args.kms_key_arn, args.account_id, args.consumers_file),
            opts=child)
        self.register_outputs({"role_arn": self.role.arn})


@dataclass
class ScheduledRotatorArgs:
    """Inputs of :class:`ScheduledRotator`. ``vault_secret_id`` (AppRole only) must be a secret Output."""

    prefix: str
    stack: str
    region: str
    account_id: pulumi.Input[str]
    schedule: RotationScheduleConfig
    data_key_arn: pulumi.Input[str]
    audit_key_arn: pulumi.Input[str]
    dlq_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    log_retention_days: int
    canary_url: pulumi.Input[str] | None = None
    #: The AppRole secret id (``vaultAuth: approle`` only), a secret Output; ``None`` otherwise.
    vault_secret_id: pulumi.Output[str] | None = None
    #: When set, the package is signed and the function enforces ``code_signing.config`` (CKV_AWS_272).
    code_signing: CodeSigning | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class ScheduledRotator(pulumi.ComponentResource):
    """``<prefix>-rotator`` Lambda + EventBridge Scheduler schedule + Errors alarm.

    Attributes: ``function``, ``function_name`` (str), ``role``, ``rotation_policy``,
    ``runtime_policy``, ``log_group``, ``vault_secret`` and ``vault_secret_version`` (``None`` unless
    ``vaultAuth: approle``), ``consumers_layer``,
    ``invoke_config``, ``schedule``, ``scheduler_role``, ``scheduler_policy``, ``errors_alarm``.
    """

    def __init__(self, name: str, args: ScheduledRotatorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:rotation:ScheduledRotator", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.schedule
        account = pulumi.Output.from_input(args.account_id)
        self.function_name = f"{args.prefix}-rotator"

        # --- AppRole opt-in only: the secret id, only ever a secret Output, encrypted with the data CMK ---
        self.vault_secret: aws.secretsmanager.Secret | None = None
        self.vault_secret_version: aws.secretsmanager.SecretVersion | None = None
        if cfg.vault_auth == "approle":
            if args.vault_secret_id is None:
                raise ValueError("rotationSchedule.vaultAuth approle needs the secret config rotationVaultSecretId")
            self.vault_secret = aws.secretsmanager.Secret(
                f"{name}-vault-secret-id", name=f"{args.prefix}/rotator/vault-approle-secret-id",
                description="Vault AppRole secret id of the scheduled rotator (from secret config rotationVaultSecretId)",
                kms_key_id=args.data_key_arn, recovery_window_in_days=7, tags=dict(args.tags), opts=child)
            secret_id: pulumi.Output[str] = pulumi.Output.secret(args.vault_secret_id)
            self.vault_secret_version = aws.secretsmanager.SecretVersion(
                f"{name}-vault-secret-id-version", secret_id=self.vault_secret.id,
                secret_string=secret_id,
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["secretString"]))

        # --- the function's role: Lambda-only trust, rotator.json + runtime needs -------------------
        self.log_group = encrypted_log_group(
            f"{name}-logs", log_group_name=f"/secure-mail-api/{args.prefix}/rotator",
            kms_key_arn=args.audit_key_arn, retention_days=args.log_retention_days, tags=args.tags, parent=self)
        self.role = aws.iam.Role(
            f"{name}-role", name=f"{args.prefix}-rotator-lambda",
            description="secure-mail-api scheduled rotator Lambda (least privilege)",
            assume_role_policy=account.apply(lambda a: json.dumps(service_trust_policy("lambda.amazonaws.com", a))),
            max_session_duration=3600, tags=dict(args.tags), opts=child)
        self.rotation_policy = aws.iam.RolePolicy(
            f"{name}-rotation-policy", role=self.role.id,
            policy=rotator_policy(args.region, args.stack, args.data_key_arn, args.account_id, cfg.consumers_file),
            opts=child)
        login_statements: list[dict] = []
        kms_services = [f"sqs.{args.region}.amazonaws.com"]
        if self.vault_secret is not None:
            login_statements.append({"Sid": "ReadVaultSecretId", "Effect": "Allow",
                                     "Action": "secretsmanager:GetSecretValue", "Resource": self.vault_secret.arn})
            kms_services.insert(0, f"secretsmanager.{args.region}.amazonaws.com")
        if cfg.vault_auth == "jwt":
            # IAM outbound identity federation: only this audience, only short-lived tokens
            login_statements.append({"Sid": "VaultLoginJwt", "Effect": "Allow", "Action": "sts:GetWebIdentityToken",
                                     "Resource": "*",
                                     "Condition": {"ForAllValues:StringEquals": {
                                                       "sts:IdentityTokenAudience": cfg.vault_jwt_audience},
                                                   "NumericLessThanEquals": {
                                                       "sts:DurationSeconds": JWT_DURATION_SECONDS}}})
        self.runtime_policy = aws.iam.RolePolicy(
            f"{name}-runtime-policy", role=self.role.id,
            policy=json_doc({"Version": "2012-10-17", "Statement": [
                *lambda_runtime_statements(self.log_group.arn, args.dlq_arn),
                *login_statements,
                {"Sid": "DecryptSecretAndQueueWithDataKey" if self.vault_secret is not None
                 else "DecryptQueueWithDataKey", "Effect": "Allow",
                 "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": args.data_key_arn,
                 "Condition": {"StringEquals": {"kms:ViaService": kms_services}}},
                *(vpc_access_statements(args.region, args.account_id) if cfg.vpc is not None else []),
            ]}),
            opts=child)

        # --- the function -------------------------------------------------------------------------
        # an enforcing code-signing config applies to layers too: the consumers layer is signed as well
        layer_archive = pulumi.AssetArchive(consumers_layer_assets(cfg.consumers_file, ca_bundle=cfg.vault_ca_bundle))
        layer_code = ({"code": layer_archive} if args.code_signing is None else dict(zip(
            ("s3_bucket", "s3_key"), args.code_signing.signed_package(f"{name}-consumers", layer_archive, parent=self))))
        self.consumers_layer = aws.lambda_.LayerVersion(
            f"{name}-consumers", layer_name=f"{args.prefix}-rotator-consumers",
            description=f"secure-mail-api: the scheduled rotator's consumers file ({cfg.consumers_file})"
                        + (" and Vault CA bundle" if cfg.vault_ca_bundle else ""),
            **layer_code,
            compatible_runtimes=[LAMBDA_RUNTIME], compatible_architectures=[LAMBDA_ARCHITECTURE], opts=child)
        if cfg.vault_addr is None:   # RotationScheduleConfig requires it when enabled; this guards direct use
            raise ValueError("rotationSchedule.vaultAddr is required for the scheduled rotator")
        environment: dict[str, pulumi.Input[str]] = {
            "VAULT_ADDR": cfg.vault_addr,
            **vault_login_environment(cfg),
            "VAULT_KV_MOUNT": cfg.vault_kv_mount,
            "VAULT_KV_PREFIX": cfg.vault_kv_prefix,
            "ROTATION_STACK": args.stack,
            "ROTATION_CONSUMERS_FILE": f"{LAYER_ROOT}/{cfg.consumers_file}",
            # AWS_REGION is set by Lambda itself (a reserved variable).
        }
        if self.vault_secret is not None:
            environment[SECRET_ARN_VARIABLE] = self.vault_secret.arn
        if args.canary_url is not None:
            environment["ROTATION_CANARY_URL"] = args.canary_url
        archive = code_archive(ROTATOR)
        code = ({"code": archive} if args.code_signing is None
                else args.code_signing.function_code(f"{name}-function", archive, parent=self))
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=self.function_name,
            description=f"secure-mail-api: scheduled API-key rotation ({HANDLER})",
            runtime=LAMBDA_RUNTIME,
            architectures=[LAMBDA_ARCHITECTURE],
            handler=HANDLER,
            **code,
            layers=[self.consumers_layer.arn, *cfg.layers],
            role=self.role.arn,
            timeout=TIMEOUT_SECONDS,
            memory_size=MEMORY_MB,
            reserved_concurrent_executions=RESERVED_CONCURRENCY,
            tracing_config={"mode": "Active"},
            vpc_config=({"subnet_ids": list(cfg.vpc.subnet_ids), "security_group_ids": list(cfg.vpc.security_group_ids)}
                        if cfg.vpc is not None else None),
            dead_letter_config={"target_arn": args.dlq_arn},
            kms_key_arn=args.data_key_arn,
            environment={"variables": environment},
            logging_config={"log_format": "JSON", "log_group": self.log_group.name,
                            "application_log_level": "INFO", "system_log_level": "WARN"},
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[
                self.rotation_policy, self.runtime_policy,
                *([self.vault_secret_version] if self.vault_secret_version is not None else [])]))
        self.invoke_config = aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-invoke-config", function_name=self.function.name,
            maximum_retry_attempts=LAMBDA_ASYNC_MAX_RETRIES,
            maximum_event_age_in_seconds=LAMBDA_ASYNC_MAX_EVENT_AGE_SECONDS, opts=child)

        # --- the schedule and its invoke-only role ------------------------------------------------
        self.scheduler_role = aws.iam.Role(
            f"{name}-scheduler-role", name=f"{args.prefix}-rotator-scheduler",
            description="EventBridge Scheduler: invoke the scheduled rotator only",
            assume_role_policy=account.apply(
                lambda a: json.dumps(service_trust_policy("scheduler.amazonaws.com", a))),
            max_session_duration=3600, tags=dict(args.tags), opts=child)
        schedule_name = f"{args.prefix}-rotation"
        schedule_arn = account.apply(
            lambda a: f"arn:aws:scheduler:{args.region}:{a}:schedule/{SCHEDULE_GROUP}/{schedule_name}")
        self.scheduler_policy = aws.iam.RolePolicy(
            f"{name}-scheduler-policy", role=self.scheduler_role.id,
            policy=json_doc({"Version": "2012-10-17", "Statement": [
                {"Sid": "InvokeRotatorOnly", "Effect": "Allow", "Action": "lambda:InvokeFunction",
                 "Resource": self.function.arn},
                {"Sid": "DeadLetterQueue", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": args.dlq_arn},
                {"Sid": "EncryptDeadLetters", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                 "Resource": args.data_key_arn,
                 "Condition": {"StringEquals": {"kms:ViaService": f"sqs.{args.region}.amazonaws.com"}}},
                {"Sid": "DecryptOwnSchedule", "Effect": "Allow", "Action": "kms:Decrypt",
                 "Resource": args.data_key_arn,
                 "Condition": {"StringEquals": {"kms:EncryptionContext:aws:scheduler:schedule-arn": schedule_arn}}},
            ]}),
            opts=child)
        self.schedule = aws.scheduler.Schedule(
            f"{name}-schedule", name=schedule_name, group_name=SCHEDULE_GROUP,
            description="secure-mail-api: one API-key rotation run",
            kms_key_arn=args.data_key_arn,
            schedule_expression=cfg.schedule_expression, schedule_expression_timezone="UTC",
            flexible_time_window={"mode": "OFF"}, state="ENABLED",
            target={"arn": self.function.arn, "role_arn": self.scheduler_role.arn, "input": json.dumps({}),
                    "retry_policy": {"maximum_retry_attempts": SCHEDULE_MAX_RETRIES,
                                     "maximum_event_age_in_seconds": SCHEDULE_MAX_EVENT_AGE_SECONDS},
                    "dead_letter_config": {"arn": args.dlq_arn}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.scheduler_policy]))

        # --- the handler raises when a consumer failed: alarm on Errors ---------------------------
        self.errors_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-errors", name=f"{args.prefix}-rotator-errors",
            alarm_description="Scheduled rotation run failed (a consumer's rotation failed or the run crashed); "
                              "see the rotator log group and the audit events. "
                              "Runbook: docs/operations.md#alarm-rotator-errors",
            namespace="AWS/Lambda", metric_name="Errors", dimensions={"FunctionName": self.function.name},
            statistic="Sum", period=300, evaluation_periods=1, threshold=0,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn], actions_enabled=True,
            tags=dict(args.tags), opts=child)
        self.register_outputs({"function_arn": self.function.arn, "function_name": self.function.name,
                               "schedule_arn": self.schedule.arn})
