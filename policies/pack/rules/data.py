"""DynamoDB, SQS and SNS rules: docs/security-baseline.md §1.4-1.6.

Sources: Security Hub DynamoDB/SQS/SNS controls (https://docs.aws.amazon.com/securityhub/latest/userguide/
{dynamodb,sqs,sns}-controls.html), checkov 3.3.30, cdk-nag AwsSolutions (DDB3, SQS2-4, SNS3), AWSGuard
``dynamodb-table-encryption-enabled``.
"""

from __future__ import annotations

from ._base import (
    Finding,
    denies_insecure_transport,
    get,
    is_true,
    links,
    of_type,
    parse_doc,
    public_allows,
    refers,
    resource_rule,
    stack_rule,
)

TABLE = "aws:dynamodb/table:Table"
QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
FUNCTION = "aws:lambda/function:Function"


@resource_rule("dynamodb-point-in-time-recovery", ["DynamoDB.2", "CKV_AWS_28", "AwsSolutions-DDB3"], TABLE,
               "Tables have point-in-time recovery")
def ddb_pitr(props, cfg, typ):
    """DynamoDB.2 / CKV_AWS_28 / AwsSolutions-DDB3: ``pointInTimeRecovery.enabled=true``."""
    if not is_true(get(props, "pointInTimeRecovery.enabled")):
        return [Finding("pointInTimeRecovery.enabled", repr(get(props, "pointInTimeRecovery.enabled")),
                        "pointInTimeRecovery={'enabled': True, 'recovery_period_in_days': 35}")]
    return []


@resource_rule("dynamodb-encryption-cmk", ["CKV_AWS_119", "AWSG-dynamodb-table-encryption-enabled"], TABLE,
               "Tables are encrypted with a customer-managed KMS key")
def ddb_cmk(props, cfg, typ):
    """CKV_AWS_119 / AWSGuard: ``serverSideEncryption.enabled=true`` with ``kmsKeyArn`` (a CMK)."""
    if not is_true(get(props, "serverSideEncryption.enabled")) or not get(props, "serverSideEncryption.kmsKeyArn"):
        return [Finding("serverSideEncryption", repr(props.get("serverSideEncryption")),
                        "serverSideEncryption={'enabled': True, 'kms_key_arn': key.arn}")]
    return []


@resource_rule("dynamodb-deletion-protection", ["DynamoDB.6"], TABLE, "Tables have deletion protection")
def ddb_deletion_protection(props, cfg, typ):
    """DynamoDB.6 (FSBP): ``deletionProtectionEnabled=true``."""
    if not is_true(props.get("deletionProtectionEnabled")):
        return [Finding("deletionProtectionEnabled", repr(props.get("deletionProtectionEnabled")),
                        "deletionProtectionEnabled=true")]
    return []


@resource_rule("dynamodb-on-demand", ["DynamoDB.1", "CKV2_AWS_16"], TABLE, "Tables scale with demand (on-demand)")
def ddb_on_demand(props, cfg, typ):
    """DynamoDB.1 / CKV2_AWS_16: ``billingMode=PAY_PER_REQUEST`` (on-demand passes DynamoDB.1; provisioned
    tables would need auto scaling, which this pack does not model)."""
    if props.get("billingMode") != "PAY_PER_REQUEST":
        return [Finding("billingMode", repr(props.get("billingMode")), "billingMode='PAY_PER_REQUEST'")]
    return []


@resource_rule("sqs-queue-cmk", ["SQS.1", "CKV_AWS_27", "CKV2_AWS_73", "AwsSolutions-SQS2"], QUEUE,
               "Queues are encrypted with a customer-managed KMS key (not alias/aws/sqs, not SQS-managed SSE)")
def sqs_cmk(props, cfg, typ):
    """SQS.1 / CKV_AWS_27 / CKV2_AWS_73 / AwsSolutions-SQS2: ``kmsMasterKeyId`` is a CMK (not
    ``alias/aws/sqs``) and ``sqsManagedSseEnabled`` is not also set."""
    key = props.get("kmsMasterKeyId")
    out = []
    if not key or key == "alias/aws/sqs":
        out.append(Finding("kmsMasterKeyId", repr(key), "kmsMasterKeyId=<customer-managed key ARN>"))
    if is_true(props.get("sqsManagedSseEnabled")):
        out.append(Finding("sqsManagedSseEnabled", "true", "sqsManagedSseEnabled unset (use the CMK)"))
    return out


def _dlq_targets(resources):
    """Queues used as a dead-letter target by another queue or by a Lambda function."""
    queues = of_type(resources, QUEUE)
    out = set()
    for q in queues:
        for src in queues:
            redrive = parse_doc(src.props.get("redrivePolicy")) or {}
            if src is not q and redrive.get("deadLetterTargetArn") and refers(redrive["deadLetterTargetArn"], q):
                out.add(q.urn)
        for fn in of_type(resources, FUNCTION):
            if links(fn, "deadLetterConfig.targetArn", q) or links(fn, "deadLetterConfig", q):
                out.add(q.urn)
    return out


@stack_rule("sqs-queue-dead-letter", ["AwsSolutions-SQS3"],
            "Work queues redrive to a dead-letter queue; DLQs keep messages for 14 days", types=[QUEUE])
def sqs_dlq(resources, cfg):
    """AwsSolutions-SQS3: every queue that is not itself a dead-letter target has a ``redrivePolicy``
    with ``deadLetterTargetArn`` and ``maxReceiveCount``; a DLQ keeps messages the maximum
    ``messageRetentionSeconds=1209600`` (baseline §1.5)."""
    dlqs = _dlq_targets(resources)
    for q in of_type(resources, QUEUE):
        if q.urn in dlqs:
            if float(q.props.get("messageRetentionSeconds") or 0) < 1209600:
                yield Finding("messageRetentionSeconds", repr(q.props.get("messageRetentionSeconds")),
                              "messageRetentionSeconds=1209600 on the dead-letter queue", q)
            continue
        redrive = parse_doc(q.props.get("redrivePolicy")) or {}
        if not redrive.get("deadLetterTargetArn") or not redrive.get("maxReceiveCount"):
            yield Finding("redrivePolicy", repr(q.props.get("redrivePolicy")),
                          "redrivePolicy={'deadLetterTargetArn': dlq.arn, 'maxReceiveCount': 5}", q)


@resource_rule("sqs-queue-policy-not-public", ["SQS.3", "CKV_AWS_168", "CKV_AWS_387", "CKV_AWS_72"], QUEUE_POLICY,
               "Queue policies grant nothing to '*' without a condition")
def sqs_policy_not_public(props, cfg, typ):
    """SQS.3 / CKV_AWS_168 / CKV_AWS_387 / CKV_AWS_72: no Allow to Principal ``*`` without a Condition;
    service principals carry ``aws:SourceArn``."""
    return [Finding("policy", f"statement {s.get('Sid', '?')!r} allows Principal '*'",
                    "a service principal with aws:SourceArn") for s in public_allows(parse_doc(props.get("policy")))]


def _tls_policy_rule(resources, res_type, pol_type, prop, what):
    pols = of_type(resources, pol_type)
    for r in of_type(resources, res_type):
        mine = [p for p in pols if links(p, prop, r)]
        if not any(denies_insecure_transport(parse_doc(p.props.get("policy"))) for p in mine):
            yield Finding(what, "missing a Deny on aws:SecureTransport=false" if mine else "missing",
                          f"{what} with a Deny statement, Principal '*', Condition Bool aws:SecureTransport 'false'", r)


@stack_rule("sqs-queue-tls-only", ["AwsSolutions-SQS4"], "Every queue's policy denies requests without TLS",
            types=[QUEUE, QUEUE_POLICY])
def sqs_tls_only(resources, cfg):
    """AwsSolutions-SQS4: each queue has a ``QueuePolicy`` (``queueUrl``) denying ``aws:SecureTransport`` false."""
    yield from _tls_policy_rule(resources, QUEUE, QUEUE_POLICY, "queueUrl", "QueuePolicy")


@resource_rule("sns-topic-cmk", ["SNS.1", "CKV_AWS_26"], TOPIC,
               "Topics are encrypted with a customer-managed KMS key and sign messages with SHA256")
def sns_cmk(props, cfg, typ):
    """SNS.1 / CKV_AWS_26: ``kmsMasterKeyId`` is a CMK (``alias/aws/sns`` cannot be used by CloudWatch
    alarms or SES, SNS developer guide); baseline §1.6 also sets ``signatureVersion=2``."""
    out = []
    key = props.get("kmsMasterKeyId")
    if not key or key == "alias/aws/sns":
        out.append(Finding("kmsMasterKeyId", repr(key), "kmsMasterKeyId=<customer-managed key ARN>"))
    if props.get("signatureVersion") is not None and float(props.get("signatureVersion")) != 2:
        out.append(Finding("signatureVersion", repr(props.get("signatureVersion")), "signatureVersion=2"))
    return out


@resource_rule("sns-topic-policy-not-public", ["SNS.4", "CKV_AWS_169", "CKV_AWS_385"], TOPIC_POLICY,
               "Topic policies grant nothing to '*' without a condition")
def sns_policy_not_public(props, cfg, typ):
    """SNS.4 / CKV_AWS_169 / CKV_AWS_385: no Allow to Principal ``*`` without a Condition (principals
    ``cloudwatch.amazonaws.com``/``ses.amazonaws.com`` with ``aws:SourceAccount``)."""
    return [Finding("policy", f"statement {s.get('Sid', '?')!r} allows Principal '*'",
                    "a service principal with aws:SourceAccount") for s in public_allows(parse_doc(props.get("policy")))]


@stack_rule("sns-topic-tls-only", ["AwsSolutions-SNS3"], "Every topic's policy denies publishing without TLS",
            types=[TOPIC, TOPIC_POLICY])
def sns_tls_only(resources, cfg):
    """AwsSolutions-SNS3: each topic has a ``TopicPolicy`` (``arn``) denying ``aws:SecureTransport`` false."""
    yield from _tls_policy_rule(resources, TOPIC, TOPIC_POLICY, "arn", "TopicPolicy")
