"""Storage: hardened S3 buckets, the DynamoDB message table and the dead-letter queue.

``SecureBucket`` realizes docs/security-baseline.md §1.3 for one bucket: bucket Block Public Access (S3.8),
ACLs disabled (S3.12), default encryption (S3.17 with a CMK; see below), versioning (S3.14),
lifecycle with abort-incomplete-uploads (S3.13), server access logging (S3.9) and a bucket policy
that denies requests without TLS (S3.5) plus any least-privilege service grants (S3.6).

The server-access-log bucket is the one exception to SSE-KMS: S3 server access logging can only
deliver to a target bucket whose default encryption is SSE-S3 (AES256), so that bucket uses
SSE-S3 and blocks SSE-C. All other buckets use the data or audit CMK.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components._common import deny_insecure_transport, json_doc


@dataclass
class SecureBucketArgs:
    """Inputs of :class:`SecureBucket`.

    ``kms_key_arn`` None means SSE-S3 (only for the access-log target bucket).
    ``policy_statements(bucket_arn)`` returns extra bucket-policy statements (may hold Outputs).
    ``noncurrent_days``: days before noncurrent object versions expire.
    """

    kms_key_arn: pulumi.Input[str] | None
    access_log_bucket: pulumi.Input[str] | None = None
    access_log_prefix: str = ""
    policy_statements: Callable[[pulumi.Output[str]], list[Any]] | None = None
    noncurrent_days: int = 90
    force_destroy: bool = False
    #: S3 Object Lock default retention in days (None: no Object Lock). The bucket is created with
    #: Object Lock enabled and a default retention rule in ``object_lock_mode``; noncurrent versions
    #: expire no earlier than the retention (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html).
    object_lock_days: int | None = None
    object_lock_mode: str = "GOVERNANCE"
    tags: Mapping[str, str] = field(default_factory=dict)


class SecureBucket(pulumi.ComponentResource):
    """One S3 bucket with every baseline §1.3 control attached. Attributes: ``bucket``, ``policy``,
    ``object_lock`` (``aws.s3.BucketObjectLockConfiguration`` or None)."""

    def __init__(self, name: str, args: SecureBucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:storage:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        locked = args.object_lock_days is not None
        if locked and args.object_lock_mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise ValueError("object_lock_mode must be GOVERNANCE or COMPLIANCE")
        self.bucket = aws.s3.Bucket(name, force_destroy=args.force_destroy, tags=dict(args.tags),
                                    object_lock_enabled=True if locked else None, opts=child)
        bpa = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=self.bucket.id, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=self.bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        default: aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgsDict
        if args.kms_key_arn is not None:
            default = {"sse_algorithm": "aws:kms", "kms_master_key_id": args.kms_key_arn}
        else:
            default = {"sse_algorithm": "AES256"}
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": default,
                    "bucket_key_enabled": args.kms_key_arn is not None,
                    "blocked_encryption_types": ["SSE-C"]}],
            opts=child)
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=self.bucket.id, versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=self.bucket.id,
            rules=[{"id": "abort-incomplete-uploads-and-expire-noncurrent", "status": "Enabled", "filter": {},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                    "noncurrent_version_expiration": {"noncurrent_days": max(
                        args.noncurrent_days, (args.object_lock_days or 0) + 1)}}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        self.object_lock: aws.s3.BucketObjectLockConfiguration | None = None
        if locked:
            self.object_lock = aws.s3.BucketObjectLockConfiguration(
                f"{name}-object-lock", bucket=self.bucket.id, object_lock_enabled="Enabled",
                rule={"default_retention": {"mode": args.object_lock_mode, "days": args.object_lock_days}},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        if args.access_log_bucket is not None:
            aws.s3.BucketLogging(
                f"{name}-logging", bucket=self.bucket.id, target_bucket=args.access_log_bucket,
                target_prefix=args.access_log_prefix or f"s3/{name}/", opts=child)
        extra = args.policy_statements(self.bucket.arn) if args.policy_statements else []
        doc = {
            "Version": "2012-10-17",
            "Statement": [
                deny_insecure_transport([self.bucket.arn, self.bucket.arn.apply(lambda a: f"{a}/*")], "s3:*"),
                *extra,
            ],
        }
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=self.bucket.id, policy=json_doc(doc),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[bpa]))
        self.register_outputs({"bucket": self.bucket.bucket, "arn": self.bucket.arn})


@dataclass
class StorageArgs:
    """Inputs of :class:`Storage`: name prefix, data CMK ARN, account id, and tags."""

    prefix: str
    data_key_arn: pulumi.Input[str]
    account_id: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)


class Storage(pulumi.ComponentResource):
    """Access-log bucket, message-archive bucket, DynamoDB message table and the dead-letter queue.

    Attributes: ``access_logs`` / ``archive`` (:class:`SecureBucket`), ``table``
    (``aws.dynamodb.Table``, hash key ``message_id`` (S), TTL attribute ``expires_at``),
    ``dlq`` (``aws.sqs.Queue``) and ``dlq_policy``.
    Controls: S3.1 (account BPA), §1.3 rows, DynamoDB.1/2/6 + CKV_AWS_119, SQS.1/3 + SQS4.
    """

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:storage:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.account_public_access_block = aws.s3.AccountPublicAccessBlock(
            f"{name}-account-public-access-block", block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)

        def log_delivery(bucket_arn: pulumi.Output[str]) -> list[Any]:
            return [{
                "Sid": "AllowS3ServerAccessLogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": bucket_arn.apply(lambda a: f"{a}/s3/*"),
                "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}},
            }]

        self.access_logs = SecureBucket(
            f"{name}-access-logs",
            SecureBucketArgs(kms_key_arn=None, policy_statements=log_delivery, noncurrent_days=30, tags=args.tags),
            opts=child)
        self.archive = SecureBucket(
            f"{name}-archive",
            SecureBucketArgs(kms_key_arn=args.data_key_arn, access_log_bucket=self.access_logs.bucket.id,
                             access_log_prefix="s3/archive/", tags=args.tags),
            opts=child)
        self.table = aws.dynamodb.Table(
            f"{name}-messages",
            name=f"{args.prefix}-messages",
            billing_mode="PAY_PER_REQUEST",
            hash_key="message_id",
            attributes=[{"name": "message_id", "type": "S"}],
            ttl={"attribute_name": "expires_at", "enabled": True},
            point_in_time_recovery={"enabled": True, "recovery_period_in_days": 35},
            server_side_encryption={"enabled": True, "kms_key_arn": args.data_key_arn},
            deletion_protection_enabled=True,
            tags=dict(args.tags),
            opts=child)
        self.dlq = aws.sqs.Queue(
            f"{name}-dlq",
            name=f"{args.prefix}-dlq",
            kms_master_key_id=args.data_key_arn,
            kms_data_key_reuse_period_seconds=300,
            message_retention_seconds=1_209_600,
            tags=dict(args.tags),
            opts=child)
        self.dlq_policy = aws.sqs.QueuePolicy(
            f"{name}-dlq-policy", queue_url=self.dlq.url,
            policy=json_doc({"Version": "2012-10-17",
                             "Statement": [deny_insecure_transport([self.dlq.arn], "sqs:*")]}),
            opts=child)
        self.register_outputs({"archive_bucket": self.archive.bucket.bucket, "table_name": self.table.name,
                               "dlq_arn": self.dlq.arn})
