"""Helpers shared by the components: policy-document builders and encrypted log groups."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

TAG_STACK = "secure-mail-api:stack"


def json_doc(doc: Any) -> pulumi.Output[str]:
    """Serialize a policy document that may contain Outputs at any depth to a JSON Output[str]."""
    return pulumi.Output.from_input(doc).apply(lambda d: json.dumps(d, sort_keys=True))


def deny_insecure_transport(resources: list[Any], action: str | list[str] = "*") -> dict[str, Any]:
    """Statement denying every request made without TLS (``aws:SecureTransport`` false).

    Source: S3.5 / AwsSolutions-S10, AwsSolutions-SQS4, AwsSolutions-SNS3 (docs/security-baseline.md §1.3, 1.5, 1.6).
    """
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": resources,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def service_publish_topic_policy(topic_arn: pulumi.Input[str], *, sid: str, service: str,
                                 account_id: pulumi.Input[str],
                                 source_arn: pulumi.Input[str] | None = None) -> pulumi.Output[str]:
    """SNS topic policy: only ``service`` acting for this account (and, if given, for
    ``source_arn``) may publish, and only over TLS. SNS.4 / CKV_AWS_169 (no public or
    cross-account publisher; ``aws:SourceAccount`` against the confused deputy) and
    AwsSolutions-SNS3 (deny ``aws:SecureTransport=false``)."""
    condition: dict[str, Any] = {"aws:SourceAccount": account_id}
    if source_arn is not None:
        condition = {"aws:SourceArn": source_arn, **condition}
    return json_doc({"Version": "2012-10-17", "Statement": [
        {"Sid": sid, "Effect": "Allow", "Principal": {"Service": service}, "Action": "sns:Publish",
         "Resource": topic_arn, "Condition": {"StringEquals": condition}},
        deny_insecure_transport([topic_arn], "sns:Publish"),
    ]})


def lambda_runtime_statements(log_group_arn: pulumi.Output[str], dlq_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """IAM statements every function here needs at run time: write its own log group (baseline
    1.7 logging), send X-Ray traces (CKV_AWS_50; X-Ray has no resource-level permissions, hence
    ``*``), and send to its dead-letter queue (CKV_AWS_116)."""
    return [
        {"Sid": "WriteOwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": log_group_arn.apply(lambda a: f"{a}:*")},
        {"Sid": "XRayTraces", "Effect": "Allow",
         "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"},
        {"Sid": "DeadLetterQueue", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": dlq_arn},
    ]


def encrypted_log_group(
    name: str,
    *,
    log_group_name: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str],
    retention_days: int,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> aws.cloudwatch.LogGroup:
    """A CloudWatch Logs group encrypted with a CMK and with retention (CloudWatch.16, CKV_AWS_158)."""
    return aws.cloudwatch.LogGroup(
        name,
        name=log_group_name,
        kms_key_id=kms_key_arn,
        retention_in_days=retention_days,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service principal assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


StatementsFn = Callable[[pulumi.Output[str]], list[Any]]
