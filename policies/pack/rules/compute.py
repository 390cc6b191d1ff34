"""Lambda rules (the SES v2 sender and the scheduled rotator; docs/security-baseline.md §1.7), plus the
rotator's EventBridge Scheduler schedule.

Sources: Security Hub Lambda controls (https://docs.aws.amazon.com/securityhub/latest/userguide/lambda-controls.html),
checkov 3.3.30, cdk-nag AwsSolutions-L1, @pulumi/aws-compliance-policies ``aws-lambda-*``.
CKV_AWS_117 / Lambda.3 / Lambda.5 (VPC) are optional in the baseline and not enforced.
"""

from __future__ import annotations

import re

from ._base import Finding, get, resource_rule

FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
CODE_SIGNING_CONFIG = "aws:lambda/codeSigningConfig:CodeSigningConfig"
SCHEDULE = "aws:scheduler/schedule:Schedule"
#: Python runtimes Lambda supports (not deprecated) per https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html;
#: the first is the project's (infra.artifacts.LAMBDA_RUNTIME), suggested as the fix.
SUPPORTED_RUNTIMES = ["python3.11", "python3.12", "python3.13", "python3.14"]
_SECRETISH = re.compile(r"(secret|password|passwd|token|private[_-]?key|api[_-]?key|credential)", re.IGNORECASE)


@resource_rule("lambda-permission-restricted", ["Lambda.1", "CKV_AWS_301", "CKV_AWS_364"], PERMISSION,
               "Function permissions name a service principal and constrain it with sourceArn")
def permission_restricted(props, cfg, typ):
    """Lambda.1 / CKV_AWS_301 (not public) / CKV_AWS_364 (service principal constrained): ``principal``
    is not ``*`` and, for a service principal, ``sourceArn`` is set (e.g. ``<execution ARN>/*/POST/v1/messages``)."""
    out = []
    principal = props.get("principal")
    if not principal or principal == "*":
        out.append(Finding("principal", repr(principal), "principal='apigateway.amazonaws.com'"))
    elif str(principal).endswith(".amazonaws.com") and not props.get("sourceArn"):
        out.append(Finding("sourceArn", "unset", "sourceArn=<API execution ARN>/*/POST/v1/messages"))
    return out


@resource_rule("lambda-supported-runtime", ["Lambda.2", "CKV_AWS_363", "AwsSolutions-L1"], FUNCTION,
               "Functions use a supported, current runtime",
               {"allowedRuntimes": ({"type": "array", "items": {"type": "string"}}, SUPPORTED_RUNTIMES)})
def supported_runtime(props, cfg, typ):
    """Lambda.2 / CKV_AWS_363 / AwsSolutions-L1: ``runtime`` in ``allowedRuntimes`` (python3.11 to 3.14)."""
    if props.get("runtime") not in cfg["allowedRuntimes"]:
        return [Finding("runtime", repr(props.get("runtime")), f"runtime={cfg['allowedRuntimes'][0]!r}")]
    return []


@resource_rule("lambda-tracing", ["CKV_AWS_50", "PCP-aws-lambda-function-enable-tracing-config"], FUNCTION,
               "Functions trace with X-Ray (Active)")
def tracing(props, cfg, typ):
    """CKV_AWS_50 / compliance-ready ``aws-lambda-function-enable-tracing-config``: ``tracingConfig.mode=Active``."""
    if get(props, "tracingConfig.mode") != "Active":
        return [Finding("tracingConfig.mode", repr(get(props, "tracingConfig.mode")), "tracingConfig={'mode': 'Active'}")]
    return []


@resource_rule("lambda-reserved-concurrency", ["CKV_AWS_115"], FUNCTION,
               "Functions have a concurrency cap (also caps the SES blast radius)")
def reserved_concurrency(props, cfg, typ):
    """CKV_AWS_115: ``reservedConcurrentExecutions`` > 0 (0 disables the function, -1 is unreserved)."""
    v = props.get("reservedConcurrentExecutions")
    if not isinstance(v, (int, float)) or v <= 0:
        return [Finding("reservedConcurrentExecutions", repr(v), "reservedConcurrentExecutions=<N > 0>")]
    return []


@resource_rule("lambda-dead-letter", ["CKV_AWS_116"], FUNCTION, "Functions have a dead-letter queue for async invokes")
def dead_letter(props, cfg, typ):
    """CKV_AWS_116: ``deadLetterConfig.targetArn`` set (applies to async invokes; API Gateway is sync)."""
    if not get(props, "deadLetterConfig.targetArn"):
        return [Finding("deadLetterConfig.targetArn", "unset", "deadLetterConfig={'target_arn': dlq.arn}")]
    return []


@resource_rule("lambda-environment-encrypted", ["CKV_AWS_173", "CKV_AWS_45"], FUNCTION,
               "Environment variables are encrypted with a CMK and hold no secrets")
def environment_encrypted(props, cfg, typ):
    """CKV_AWS_173: ``kmsKeyArn`` set (CMK for environment variables). CKV_AWS_45: no variable whose
    name looks like a secret (secret, password, token, private key, api key, credential); secrets
    belong in Secrets Manager/SSM SecureString."""
    out = []
    variables = get(props, "environment.variables") or {}
    if variables and not props.get("kmsKeyArn"):
        out.append(Finding("kmsKeyArn", "unset", "kmsKeyArn=<customer-managed key ARN>"))
    for k in variables:
        if _SECRETISH.search(k):
            out.append(Finding(f"environment.variables.{k}", "a secret-looking variable",
                               "read the secret from Secrets Manager/SSM SecureString at run time"))
    return out


@resource_rule("lambda-code-signing", ["CKV_AWS_272"], FUNCTION,
               "Functions enforce code signing (or carry a justified suppression)")
def code_signing(props, cfg, typ):
    """CKV_AWS_272: ``codeSigningConfigArn`` set (aws.signer.SigningProfile + aws.lambda_.CodeSigningConfig
    with ``untrusted_artifact_on_deployment=Enforce``). Heavy: baseline §1.7 asks to justify a
    suppression rather than silently skip it, so suppress through ``suppressions`` with the reason."""
    if not props.get("codeSigningConfigArn"):
        return [Finding("codeSigningConfigArn", "unset",
                        "codeSigningConfigArn=<aws.lambda_.CodeSigningConfig arn> (Enforce), or a justified suppression")]
    return []


@resource_rule("lambda-code-signing-config-enforced", ["CKV_AWS_272"], CODE_SIGNING_CONFIG,
               "Code-signing configs trust at least one Signer profile and Enforce (not Warn) on untrusted code")
def code_signing_config_enforced(props, cfg, typ):
    """CKV_AWS_272 (meaningful only when enforced): ``policies.untrustedArtifactOnDeployment=Enforce``
    (the default ``Warn`` deploys unsigned code with only a CloudWatch metric) and
    ``allowedPublishers.signingProfileVersionArns`` non-empty. Source: Lambda "Configuring code
    signing", https://docs.aws.amazon.com/lambda/latest/dg/configuration-codesigning.html."""
    out = []
    if get(props, "policies.untrustedArtifactOnDeployment") != "Enforce":
        out.append(Finding("policies.untrustedArtifactOnDeployment",
                           repr(get(props, "policies.untrustedArtifactOnDeployment")),
                           "policies={'untrusted_artifact_on_deployment': 'Enforce'}"))
    if not get(props, "allowedPublishers.signingProfileVersionArns"):
        out.append(Finding("allowedPublishers.signingProfileVersionArns", "empty",
                           "allowed_publishers={'signing_profile_version_arns': [profile.version_arn]}"))
    return out


@resource_rule("scheduler-schedule-cmk", ["CKV_AWS_297"], SCHEDULE,
               "EventBridge Scheduler schedules are encrypted with a customer managed key")
def schedule_cmk(props, cfg, typ):
    """CKV_AWS_297: ``kmsKeyArn`` set, so the schedule's target input is encrypted with a CMK rather
    than an AWS owned key. Source: EventBridge Scheduler "Encryption at rest",
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/encryption-rest.html."""
    if not props.get("kmsKeyArn"):
        return [Finding("kmsKeyArn", "unset", "kmsKeyArn=<customer-managed key ARN>")]
    return []


@resource_rule("lambda-logging", ["BASELINE-LAMBDA-LOGGING"], FUNCTION,
               "Functions log JSON to an explicit (encrypted, retained) log group")
def logging_config(props, cfg, typ):
    """docs/security-baseline.md §1.7 "logging": ``loggingConfig.logFormat=JSON`` and ``loggingConfig.logGroup`` set
    (the log group's KMS key and retention are checked by the CloudWatch rules)."""
    out = []
    if get(props, "loggingConfig.logFormat") != "JSON":
        out.append(Finding("loggingConfig.logFormat", repr(get(props, "loggingConfig.logFormat")), "logFormat='JSON'"))
    if not get(props, "loggingConfig.logGroup"):
        out.append(Finding("loggingConfig.logGroup", "unset", "logGroup=<explicit encrypted log group name>"))
    return out
