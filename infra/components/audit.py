"""Audit: a multi-region CloudTrail trail with log file validation, its bucket and log group.

Realizes docs/security-baseline.md §1.8: CloudTrail.1 (multi-region, all management events, logging on),
CloudTrail.2 (SSE-KMS with the audit CMK), CloudTrail.4 (log file validation), CloudTrail.5
(CloudWatch Logs integration, which the CIS metric filters in ``monitoring`` read), and
CloudTrail.6/7 (bucket not public, bucket access logging, via :class:`SecureBucket`) and
CKV_AWS_252 (log-file delivery notifications to a dedicated CMK-encrypted SNS topic). The trail's
log group is CMK-encrypted with retention (CloudWatch.16).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components._common import (
    assume_role_policy,
    encrypted_log_group,
    json_doc,
    service_publish_topic_policy,
)
from infra.components.storage import SecureBucket, SecureBucketArgs


@dataclass
class AuditArgs:
    """Inputs of :class:`Audit`: account id, region, audit CMK, access-log bucket id, retention (days)."""

    prefix: str
    region: str
    account_id: pulumi.Input[str]
    audit_key_arn: pulumi.Input[str]
    access_log_bucket: pulumi.Input[str]
    log_retention_days: int
    tags: Mapping[str, str] = field(default_factory=dict)


class Audit(pulumi.ComponentResource):
    """CloudTrail trail + bucket + CloudWatch Logs group.

    Attributes: ``trail``, ``bucket`` (:class:`SecureBucket`), ``log_group``, ``trail_name``.
    """

    def __init__(self, name: str, args: AuditArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:audit:Audit", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.trail_name = f"{args.prefix}-trail"
        trail_arn = pulumi.Output.from_input(args.account_id).apply(
            lambda a: f"arn:aws:cloudtrail:{args.region}:{a}:trail/{self.trail_name}")

        def cloudtrail_statements(bucket_arn: pulumi.Output[str]) -> list[Any]:
            return [
                {"Sid": "AWSCloudTrailAclCheck", "Effect": "Allow",
                 "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:GetBucketAcl",
                 "Resource": bucket_arn, "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}},
                {"Sid": "AWSCloudTrailWrite", "Effect": "Allow",
                 "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:PutObject",
                 "Resource": pulumi.Output.all(bucket_arn, args.account_id).apply(
                     lambda v: f"{v[0]}/AWSLogs/{v[1]}/*"),
                 "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}},
            ]

        self.bucket = SecureBucket(
            f"{name}-trail-bucket",
            SecureBucketArgs(kms_key_arn=args.audit_key_arn, access_log_bucket=args.access_log_bucket,
                             access_log_prefix="s3/cloudtrail/", policy_statements=cloudtrail_statements,
                             noncurrent_days=365, tags=args.tags),
            opts=child)
        self.log_group = encrypted_log_group(
            f"{name}-trail-logs", log_group_name=f"/secure-mail-api/{args.prefix}/cloudtrail",
            kms_key_arn=args.audit_key_arn, retention_days=args.log_retention_days, tags=args.tags, parent=self)
        role = aws.iam.Role(
            f"{name}-trail-logs-role", assume_role_policy=assume_role_policy("cloudtrail.amazonaws.com"),
            description="CloudTrail -> CloudWatch Logs delivery", tags=dict(args.tags), opts=child)
        role_policy = aws.iam.RolePolicy(
            f"{name}-trail-logs-policy", role=role.id,
            policy=json_doc({"Version": "2012-10-17", "Statement": [{
                "Sid": "DeliverToTrailLogGroup", "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": self.log_group.arn.apply(lambda a: f"{a}:log-stream:*")}]}),
            opts=child)
        # Log-file delivery notifications (CKV_AWS_252) go to their own CMK-encrypted topic, not
        # to the alarm topic: one message per delivered file is not an alarm.
        self.notifications = aws.sns.Topic(
            f"{name}-trail-notifications", name=f"{args.prefix}-cloudtrail-deliveries",
            kms_master_key_id=args.audit_key_arn, signature_version=2, tags=dict(args.tags), opts=child)
        notifications_policy = aws.sns.TopicPolicy(
            f"{name}-trail-notifications-policy", arn=self.notifications.arn,
            policy=service_publish_topic_policy(self.notifications.arn, sid="AllowCloudTrailPublish",
                                                service="cloudtrail.amazonaws.com", account_id=args.account_id,
                                                source_arn=trail_arn),
            opts=child)
        self.trail = aws.cloudtrail.Trail(
            f"{name}-trail",
            name=self.trail_name,
            s3_bucket_name=self.bucket.bucket.id,
            kms_key_id=args.audit_key_arn,
            is_multi_region_trail=True,
            include_global_service_events=True,
            enable_logging=True,
            enable_log_file_validation=True,
            event_selectors=[{"read_write_type": "All", "include_management_events": True}],
            cloud_watch_logs_group_arn=self.log_group.arn.apply(lambda a: f"{a}:*"),
            cloud_watch_logs_role_arn=role.arn,
            sns_topic_name=self.notifications.name,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.bucket.policy, role_policy,
                                                                notifications_policy]))
        self.register_outputs({"trail_arn": self.trail.arn, "log_group_name": self.log_group.name})


#: Filter of the sender's log group that selects the handler's request records (one per request).
REQUEST_RECORD_FILTER = '{ $.message = "request record" }'
#: S3 prefixes of the archive: records by delivery date, and Firehose's failed deliveries.
ARCHIVE_PREFIX = "records/!{timestamp:yyyy/MM/dd}/"
ARCHIVE_ERROR_PREFIX = "delivery-errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"


@dataclass
class RequestArchiveArgs:
    """Inputs of :class:`RequestArchive`: the log groups to archive (name -> filter pattern), the
    audit CMK, Object Lock retention (days, GOVERNANCE mode) and Firehose buffering (seconds)."""

    prefix: str
    region: str
    account_id: pulumi.Input[str]
    audit_key_arn: pulumi.Input[str]
    access_log_bucket: pulumi.Input[str]
    log_groups: Mapping[str, tuple[pulumi.Input[str], str]]
    retention_days: int
    buffer_interval_seconds: int = 300
    tags: Mapping[str, str] = field(default_factory=dict)


class RequestArchive(pulumi.ComponentResource):
    """Every request on the record, kept complete (issue 13 part 2; docs/operations.md "Request
    records and their archive").

    CloudWatch Logs subscription filters send the API access log and the handler's request records
    to a Firehose delivery stream (server-side encrypted with the audit CMK), which decompresses the
    CloudWatch Logs envelopes, extracts the log events and writes them, GZIP-compressed and
    SSE-KMS-encrypted, to a :class:`SecureBucket` with versioning and S3 Object Lock in GOVERNANCE
    mode (default retention ``retention_days``): no object version can be deleted or overwritten
    before its retention ends, except by a principal granted ``s3:BypassGovernanceRetention``.

    Attributes: ``bucket`` (:class:`SecureBucket`), ``stream``, ``firehose_role``, ``logs_role``,
    ``subscriptions`` (dict key -> ``aws.cloudwatch.LogSubscriptionFilter``).
    """

    def __init__(self, name: str, args: RequestArchiveArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:audit:RequestArchive", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        self.bucket = SecureBucket(
            f"{name}-bucket",
            SecureBucketArgs(kms_key_arn=args.audit_key_arn, access_log_bucket=args.access_log_bucket,
                             access_log_prefix="s3/request-archive/", object_lock_days=args.retention_days,
                             object_lock_mode="GOVERNANCE", noncurrent_days=args.retention_days + 1,
                             tags={**tags, "secure-mail-api:purpose": "request-archive"}),
            opts=child)
        stream_name = f"{args.prefix}-request-records"
        stream_arn = pulumi.Output.from_input(args.account_id).apply(
            lambda a: f"arn:aws:firehose:{args.region}:{a}:deliverystream/{stream_name}")
        self.firehose_role = aws.iam.Role(
            f"{name}-firehose-role", assume_role_policy=json_doc({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "firehose.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": args.account_id}}}]}),
            description="Firehose -> request archive bucket", tags=tags, opts=child)
        firehose_policy = aws.iam.RolePolicy(
            f"{name}-firehose-policy", role=self.firehose_role.id,
            policy=json_doc({"Version": "2012-10-17", "Statement": [
                {"Sid": "WriteArchive", "Effect": "Allow",
                 "Action": ["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:ListBucket",
                            "s3:ListBucketMultipartUploads", "s3:PutObject"],
                 "Resource": [self.bucket.bucket.arn, self.bucket.bucket.arn.apply(lambda a: f"{a}/*")]},
                {"Sid": "EncryptArchive", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                 "Resource": [args.audit_key_arn],
                 "Condition": {"StringEquals": {"kms:ViaService": f"s3.{args.region}.amazonaws.com"}}},
            ]}),
            opts=child)
        self.stream = aws.kinesis.FirehoseDeliveryStream(
            f"{name}-stream",
            name=stream_name,
            destination="extended_s3",
            server_side_encryption={"enabled": True, "key_type": "CUSTOMER_MANAGED_CMK",
                                    "key_arn": args.audit_key_arn},
            extended_s3_configuration={
                "role_arn": self.firehose_role.arn,
                "bucket_arn": self.bucket.bucket.arn,
                "prefix": ARCHIVE_PREFIX,
                "error_output_prefix": ARCHIVE_ERROR_PREFIX,
                "buffering_interval": args.buffer_interval_seconds,
                "buffering_size": 5,
                "compression_format": "GZIP",
                "kms_key_arn": args.audit_key_arn,
                "processing_configuration": {"enabled": True, "processors": [
                    {"type": "Decompression",
                     "parameters": [{"parameter_name": "CompressionFormat", "parameter_value": "GZIP"}]},
                    {"type": "CloudWatchLogProcessing",
                     "parameters": [{"parameter_name": "DataMessageExtraction", "parameter_value": "true"}]},
                ]},
            },
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[firehose_policy]))
        self.logs_role = aws.iam.Role(
            f"{name}-logs-role", assume_role_policy=json_doc({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "logs.amazonaws.com"}, "Action": "sts:AssumeRole",
                    "Condition": {"StringLike": {"aws:SourceArn": pulumi.Output.from_input(args.account_id).apply(
                        lambda a: f"arn:aws:logs:{args.region}:{a}:*")}}}]}),
            description="CloudWatch Logs subscription -> request records stream", tags=tags, opts=child)
        logs_policy = aws.iam.RolePolicy(
            f"{name}-logs-policy", role=self.logs_role.id,
            policy=json_doc({"Version": "2012-10-17", "Statement": [
                {"Sid": "PutRecords", "Effect": "Allow", "Action": ["firehose:PutRecord", "firehose:PutRecordBatch"],
                 "Resource": [stream_arn]}]}),
            opts=child)
        self.subscriptions: dict[str, aws.cloudwatch.LogSubscriptionFilter] = {}
        for key, (log_group_name, pattern) in args.log_groups.items():
            self.subscriptions[key] = aws.cloudwatch.LogSubscriptionFilter(
                f"{name}-{key}", name=f"{args.prefix}-archive-{key}", log_group=log_group_name,
                filter_pattern=pattern, destination_arn=self.stream.arn, role_arn=self.logs_role.arn,
                distribution="ByLogStream",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[logs_policy]))
        self.register_outputs({"bucket": self.bucket.bucket.bucket, "stream_arn": self.stream.arn})
