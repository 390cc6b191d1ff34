"""Every rule of the pack: the compliant stack passes the whole pack, and for every rule a violating
variant is caught by exactly that rule (assertions on sets of finding ids, parliament style)."""

from __future__ import annotations

import json

import pytest
from policy_golden import _bucket, drop, find, golden

from policies.pack.evaluate import evaluate
from policies.pack.rules import RULES


def ids(resources, config=None):
    return {v.rule for v in evaluate(resources, config)}


def test_the_compliant_stack_passes_the_whole_pack():
    assert evaluate(golden()) == []


def _set(name, path, value):
    def mutate(res):
        cur = find(res, name)
        *parents, last = path.split(".")
        for p in parents:
            cur = cur[int(p)] if p.isdigit() else cur.setdefault(p, {})
        cur[last] = value
        return res
    return mutate


def _del(name):
    return lambda res: drop(res, name)


def _policy(name, doc):
    return _set(name, "policy", json.dumps(doc))


def _waf_rules(fn):
    def mutate(res):
        acl = find(res, "acl")
        acl["rules"] = fn(acl["rules"])
        return res
    return mutate


PUBLIC = {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}
LAMBDA_CONSUMERS = {"rotator-policy-covers-push-targets": {"consumersFile": "examples/consumers.lambda.yaml"}}  # the default


def _rotator_policy(with_push: bool):
    """A rotator role policy (policies/iam/rotator.json) with or without the statements the Lambda
    example consumers file's targets need (rotation/permissions.py)."""
    from policies.iam import render_policy
    from rotation.config import load_consumers_file
    from rotation.permissions import required_statements

    doc = render_policy("rotator", region="eu-west-1", stack="prod",
                        kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k")
    if with_push:
        doc["Statement"] += required_statements(load_consumers_file("examples/consumers.lambda.yaml"),
                                                "eu-west-1", "123456789012")
    return lambda res: res + [("aws:iam/rolePolicy:RolePolicy", "rotator-policy",
                               {"role": "r", "policy": json.dumps(doc)})]
STAR_DECRYPT = {"Statement": [{"Sid": "K", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]}

#: (rule, id, mutation) -> that rule, and only it, reports
VIOLATIONS = [
    ("apigateway-domain-name-tls-policy", "domain-tls-1-2", _set("domain", "securityPolicy", "TLS_1_2")),
    ("apigateway-domain-name-tls-policy", "domain-no-access-mode", _set("domain", "endpointAccessMode", None)),
    ("apigateway-rest-api-tls-policy", "api-tls-1-0", _set("api", "securityPolicy", "TLS_1_0")),
    ("apigateway-rest-api-execute-api-disabled", "execute-api-on", _set("api", "disableExecuteApiEndpoint", False)),
    ("apigateway-endpoint-type", "edge-endpoint", _set("api", "endpointConfiguration.types", "EDGE")),
    ("apigateway-execution-logging", "logging-off", _set("settings", "settings.loggingLevel", "OFF")),
    ("apigateway-stage-method-settings", "no-method-settings", _del("settings")),
    ("apigateway-no-data-trace", "data-trace", _set("settings", "settings.dataTraceEnabled", True)),
    ("apigateway-stage-access-logging", "no-access-log", _set("stage", "accessLogSettings", None)),
    ("apigateway-stage-xray", "no-xray", _set("stage", "xrayTracingEnabled", False)),
    ("apigateway-stage-client-certificate", "no-client-cert", _set("stage", "clientCertificateId", None)),
    ("apigateway-cache-encrypted", "cache-on", _set("stage", "cacheClusterEnabled", True)),
    ("apigateway-cache-encrypted", "cache-unencrypted", _set("settings", "settings.cachingEnabled", True)),
    ("apigateway-stage-waf", "no-waf-association", _del("waf-assoc")),
    ("apigateway-method-authorization", "auth-none", _set("post", "authorization", "NONE")),
    ("apigateway-method-authorization", "cognito-no-scopes", _set("post", "authorizationScopes", [])),
    ("apigateway-method-authorization", "no-api-key", _set("post", "apiKeyRequired", False)),
    ("apigateway-request-validation", "no-validator", _set("post", "requestValidatorId", None)),
    ("apigateway-request-validation", "validator-body-off", _set("rv", "validateRequestBody", False)),
    ("apigateway-usage-plan-limits", "no-throttle", _set("plan-standard", "throttleSettings", None)),
    ("apigateway-usage-plan-limits", "key-source-authorizer", _set("api", "apiKeySource", "AUTHORIZER")),
    ("apigateway-cognito-authorizer", "lambda-authorizer", _set("auth", "type", "TOKEN")),
    ("apigateway-deployment-triggers", "no-triggers", _set("dep", "triggers", None)),
    ("lambda-permission-restricted", "public-permission", _set("fn-invoke", "principal", "*")),
    ("lambda-permission-restricted", "no-source-arn", _set("fn-invoke", "sourceArn", None)),
    ("lambda-supported-runtime", "old-runtime", _set("fn", "runtime", "python3.9")),
    ("lambda-tracing", "passthrough", _set("fn", "tracingConfig.mode", "PassThrough")),
    ("lambda-reserved-concurrency", "unreserved", _set("fn", "reservedConcurrentExecutions", -1.0)),
    ("lambda-dead-letter", "no-dlq", _set("fn", "deadLetterConfig", None)),
    ("lambda-environment-encrypted", "no-env-key", _set("fn", "kmsKeyArn", None)),
    ("lambda-environment-encrypted", "secret-in-env", _set("fn", "environment.variables.SMTP_PASSWORD", "x")),
    ("lambda-code-signing", "no-code-signing", _set("fn", "codeSigningConfigArn", None)),
    ("lambda-code-signing-config-enforced", "warn-only",
     _set("csc", "policies.untrustedArtifactOnDeployment", "Warn")),
    ("lambda-code-signing-config-enforced", "no-publishers",
     _set("csc", "allowedPublishers.signingProfileVersionArns", [])),
    ("scheduler-schedule-cmk", "aws-owned-key", _set("schedule", "kmsKeyArn", None)),
    ("lambda-logging", "text-logs", _set("fn", "loggingConfig.logFormat", "Text")),
    ("dynamodb-point-in-time-recovery", "no-pitr", _set("table", "pointInTimeRecovery.enabled", False)),
    ("dynamodb-encryption-cmk", "aws-owned-key", _set("table", "serverSideEncryption", None)),
    ("dynamodb-deletion-protection", "no-deletion-protection", _set("table", "deletionProtectionEnabled", False)),
    ("dynamodb-on-demand", "provisioned", _set("table", "billingMode", "PROVISIONED")),
    ("sqs-queue-cmk", "aws-managed-key", _set("work", "kmsMasterKeyId", "alias/aws/sqs")),
    ("sqs-queue-dead-letter", "no-redrive", _set("work", "redrivePolicy", None)),
    ("sqs-queue-dead-letter", "short-dlq-retention", _set("dlq", "messageRetentionSeconds", 345600.0)),
    ("sqs-queue-policy-not-public", "public-queue", _policy("work-policy", {"Statement": [PUBLIC, {
        "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})),
    ("sqs-queue-tls-only", "queue-without-tls-deny", _policy("dlq-policy", {"Statement": []})),
    ("sns-topic-cmk", "topic-aws-key", _set("alarms", "kmsMasterKeyId", "alias/aws/sns")),
    ("sns-topic-policy-not-public", "public-topic", _policy("alarms-policy", {"Statement": [PUBLIC, {
        "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})),
    ("sns-topic-tls-only", "topic-without-policy", _del("alarms-policy")),
    ("cognito-client-credentials-only", "code-flow", _set("client", "allowedOauthFlows", ["code"])),
    ("cognito-deletion-protection", "pool-unprotected", _set("pool", "deletionProtection", "INACTIVE")),
    ("cognito-password-policy", "short-password", _set("pool", "passwordPolicy.minimumLength", 6.0)),
    ("cognito-mfa", "self-signup-without-mfa", _set("pool", "adminCreateUserConfig.allowAdminCreateUserOnly", False)),
    ("cognito-threat-protection", "essentials-tier", _set("pool", "userPoolTier", "ESSENTIALS")),
    ("cognito-no-unauthenticated-identities", "guest-access", _set("ids", "allowUnauthenticatedIdentities", True)),
    ("ses-configuration-set-tls", "optional-tls", _set("cs", "deliveryOptions.tlsPolicy", "OPTIONAL")),
    ("ses-feedback-events", "no-bounce-events", _set("cs-feedback", "eventDestination.matchingEventTypes", ["REJECT"])),
    ("ses-identity-dkim", "dkim-1024", _set("identity", "dkimSigningAttributes.nextSigningKeyLength", "RSA_1024_BIT")),
    ("kms-key-rotation", "no-rotation", _set("data-key", "enableKeyRotation", False)),
    ("kms-key-deletion-window", "short-window", _set("data-key", "deletionWindowInDays", 7.0)),
    ("kms-key-policy", "public-key-policy", _policy("data-key", {"Statement": [PUBLIC]})),
    ("kms-key-policy", "lockout-bypass", _set("data-key", "bypassPolicyLockoutSafetyCheck", True)),
    ("kms-key-enabled", "disabled-key", _set("data-key", "isEnabled", False)),
    ("iam-scoped-resources", "decrypt-any-key", _policy("fn-policy", STAR_DECRYPT)),
    ("iam-no-wildcard-actions", "ses-star", _policy("fn-policy", {"Statement": [
        {"Sid": "S", "Effect": "Allow", "Action": "ses:*", "Resource": "arn:aws:ses:x:identity/d"}]})),
    ("rotator-policy-covers-push-targets", "no-push-statements", _rotator_policy(False)),
    ("iam-no-aws-managed-policies", "managed-policy", lambda res: res + [(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "attach",
        {"role": "r", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"})]),
    ("cloudtrail-multi-region", "single-region", _set("trail", "isMultiRegionTrail", False)),
    ("cloudtrail-multi-region", "no-trail", _del("trail")),
    ("cloudtrail-encrypted", "trail-sse-s3", _set("trail", "kmsKeyId", None)),
    ("cloudtrail-log-file-validation", "no-validation", _set("trail", "enableLogFileValidation", False)),
    ("cloudtrail-cloudwatch-logs", "no-stream-wildcard",
     _set("trail", "cloudWatchLogsGroupArn", "arn:aws:logs:eu-west-1:1:log-group:trail")),
    ("cloudtrail-sns-topic", "no-sns", _set("trail", "snsTopicName", None)),
    ("cloudwatch-log-group-retention", "30-days", _set("fn-logs", "retentionInDays", 30.0)),
    ("cloudwatch-log-group-kms", "unencrypted-logs", _set("fn-logs", "kmsKeyId", None)),
    ("cloudwatch-alarm-actions", "silent-alarm", _set("alarm-Errors", "alarmActions", [])),
    ("cloudwatch-cis-metric-filters", "no-kms-filter", _del("cis-kms")),
    ("cloudwatch-cis-metric-filters", "filter-without-alarm", _del("cis-root-alarm")),
    ("cloudwatch-recommended-alarms", "no-dlq-alarm", _del("alarm-ApproximateNumberOfMessagesVisible")),
    ("cloudwatch-recommended-alarms", "lax-bounce-alarm", _set("alarm-Reputation.BounceRate", "threshold", 0.1)),
    ("s3-account-public-access-block", "no-account-bpa", _del("account-bpa")),
    ("s3-bucket-public-access-block", "no-bucket-bpa", _del("archive-bpa")),
    ("s3-bucket-public-access-block", "bpa-flag-off", _set("archive-bpa", "restrictPublicBuckets", False)),
    ("s3-bucket-sse-kms", "sse-s3", _set("archive-sse", "rules.0.applyServerSideEncryptionByDefault",
                                        {"sseAlgorithm": "AES256"})),
    ("s3-bucket-sse-kms", "no-sse", _del("archive-sse")),
    ("s3-bucket-tls-only", "bucket-without-tls-deny", _policy("archive-policy", {"Statement": []})),
    ("s3-bucket-policy-not-public", "public-bucket", _policy("archive-policy", {"Statement": [PUBLIC, {
        "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})),
    ("s3-bucket-ownership-enforced", "acls-enabled", _set("archive-own", "rule.objectOwnership", "ObjectWriter")),
    ("s3-bucket-access-logging", "no-access-logs",
     lambda res: res + [r for r in _bucket("extra") if not r[1].endswith("-logging")]),
    ("s3-bucket-lifecycle", "no-abort-uploads", _set("archive-lc", "rules.0.abortIncompleteMultipartUpload", None)),
    ("s3-bucket-versioning", "suspended", _set("archive-ver", "versioningConfiguration.status", "Suspended")),
    ("s3-archive-object-lock", "archive-not-locked", _set("records", "objectLockEnabled", False)),
    ("s3-archive-object-lock", "archive-no-retention", _del("records-lock")),
    ("s3-archive-object-lock", "archive-short-retention", _set("records-lock", "rule.defaultRetention.days", 30.0)),
    ("s3-archive-object-lock", "archive-no-mode", _set("records-lock", "rule.defaultRetention.mode", "NONE")),
    ("cloudwatch-alarm-runbook", "alarm-without-runbook", _set("alarm-5XXError", "alarmDescription", "API 5XX")),
    ("firehose-encrypted-cmk", "firehose-unencrypted", _set("records-stream", "serverSideEncryption.enabled", False)),
    ("firehose-encrypted-cmk", "firehose-aws-owned-key",
     _set("records-stream", "serverSideEncryption.keyType", "AWS_OWNED_CMK")),
    ("firehose-encrypted-cmk", "firehose-objects-unencrypted", _set("records-stream", "extendedS3Configuration.kmsKeyArn", None)),
    ("waf-web-acl-rules-have-actions", "rule-without-action", _waf_rules(
        lambda rules: [{**rules[0], "action": None}] + rules[1:] + [dict(rules[0], name="rate-ip-2")])),
    ("waf-metrics", "no-metrics", _set("acl", "visibilityConfig.cloudwatchMetricsEnabled", False)),
    ("waf-logging", "no-waf-logging", _del("waf-logging")),
    ("waf-logging", "api-key-not-redacted", _set("waf-logging", "redactedFields",
                                                 [{"singleHeader": {"name": "authorization"}}])),
    ("waf-log4j-protection", "log4j-count", _waf_rules(lambda rules: [
        {**r, "statement": {"managedRuleGroupStatement": {**r["statement"]["managedRuleGroupStatement"],
                                                          "ruleActionOverrides": [{"name": "Log4JRCE_BODY",
                                                                                   "actionToUse": {"count": {}}}]}}}
        if r["name"] == "AWSManagedRulesKnownBadInputsRuleSet" else r for r in rules])),
    ("waf-rate-limit-per-ip", "no-ip-rule", _waf_rules(lambda rules: rules[1:])),
    ("waf-rate-limit-per-api-key", "no-key-rule", _waf_rules(lambda rules: rules[:1] + rules[2:])),
    ("waf-managed-rule-groups", "no-ip-reputation", _waf_rules(
        lambda rules: [r for r in rules if r["name"] != "AWSManagedRulesAmazonIpReputationList"])),
]


@pytest.mark.parametrize("rule,mutate", [(r, m) for r, _, m in VIOLATIONS], ids=[f"{r}--{i}" for r, i, _ in VIOLATIONS])
def test_each_violating_variant_is_caught_by_its_rule_only(rule, mutate):
    assert ids(mutate(golden())) == {rule}


def test_a_rotator_policy_lacking_a_push_target_is_flagged_naming_the_target_and_a_full_one_passes():
    lacking = evaluate(_rotator_policy(False)(golden()), LAMBDA_CONSUMERS)
    assert {v.rule for v in lacking} == {"rotator-policy-covers-push-targets"}
    text = " ".join(str(v) for v in lacking)
    assert "secretsmanager:PutSecretValue" in text and "secure-mail-api-prod/consumers/billing" in text
    assert "ssm:PutParameter" in text
    assert evaluate(_rotator_policy(True)(golden()), LAMBDA_CONSUMERS) == []


def test_every_rule_has_a_violating_variant():
    assert set(RULES) - {r for r, _, _ in VIOLATIONS} == set()


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_lets_the_compliant_stack_through(rule):
    assert evaluate(golden(), rules=[rule]) == []


def test_key_rotation_rule_exempts_only_non_symmetric_keys():
    """KMS rotates only symmetric encryption keys, and KMS.4 checks only those: an HMAC key without
    rotation passes, a symmetric key without rotation is still caught."""
    hmac_key = _set("data-key", "customerMasterKeySpec", "HMAC_256")(golden())
    hmac_key = _set("data-key", "enableKeyRotation", False)(hmac_key)
    assert "kms-key-rotation" not in ids(hmac_key)
    symmetric = _set("data-key", "customerMasterKeySpec", "SYMMETRIC_DEFAULT")(golden())
    symmetric = _set("data-key", "enableKeyRotation", False)(symmetric)
    assert "kms-key-rotation" in ids(symmetric)
