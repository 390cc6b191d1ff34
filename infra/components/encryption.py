"""Customer-managed KMS keys for the stack (docs/security-baseline.md §1.2: KMS.3, KMS.4, KMS.5, service grants).

Two encryption keys and one HMAC key:

- ``data``: S3 archive bucket, DynamoDB table, SQS queues, the Lambda environment, and the SES
  feedback SNS topic (grants ``ses.amazonaws.com`` and ``sns.amazonaws.com``).
- ``audit``: CloudWatch Logs groups, the CloudTrail trail and bucket, and the alarm SNS topic
  (grants ``logs.<region>.amazonaws.com``, ``cloudtrail.amazonaws.com`` and
  ``cloudwatch.amazonaws.com`` so alarms can publish to the CMK-encrypted topic).
- ``audit-mac``: an ``HMAC_256`` key (``GENERATE_VERIFY_MAC``) for the keyed MACs of recipients
  and source IP in the audit table (the sender Lambda's ``AUDIT_MAC_KEY_ID``). The key material
  never leaves KMS. KMS rotates only symmetric encryption keys automatically, so this key has no
  automatic rotation (https://docs.aws.amazon.com/kms/latest/developerguide/rotating-keys.html;
  Security Hub KMS.4 covers symmetric encryption keys only). Its policy is the admin statement:
  use is granted by IAM (``kms:GenerateMac`` in ``policies/iam/sender.json``).

Every key policy starts with the admin statement ``KeyAdministration`` (account root, ``kms:*``)
so the key can never be locked out (failure case P3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components._common import json_doc

ADMIN_SID = "KeyAdministration"
SERVICE_GRANTS = ("logs", "cloudtrail", "cloudwatch", "ses", "sns")
MAC_KEY_SPEC = "HMAC_256"


def key_policy(
    account_id: str, region: str, services: Sequence[str], partition: str = "aws"
) -> dict[str, Any]:
    """Return a KMS key policy document (a dict) for ``services``.

    ``services`` is a subset of :data:`SERVICE_GRANTS`. The first statement is always the admin
    statement (Sid :data:`ADMIN_SID`): the account root principal with ``kms:*``, which delegates
    key use to IAM policies and keeps the key administrable (KMS.5; failure case P3). Service
    statements are scoped by encryption context or ``aws:SourceAccount`` so no other account
    can use the grant. Raises ``ValueError`` for an unknown service.
    """
    unknown = set(services) - set(SERVICE_GRANTS)
    if unknown:
        raise ValueError(f"unknown KMS service grant(s) {sorted(unknown)}; allowed: {SERVICE_GRANTS}")
    root = f"arn:{partition}:iam::{account_id}:root"
    source_account = {"StringEquals": {"aws:SourceAccount": account_id}}
    statements: list[dict[str, Any]] = [
        {"Sid": ADMIN_SID, "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"}
    ]
    if "logs" in services:
        statements.append({
            "Sid": "AllowCloudWatchLogs",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:log-group:*"}},
        })
    if "cloudtrail" in services:
        statements.append({
            "Sid": "AllowCloudTrailEncrypt",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:GenerateDataKey*",
            "Resource": "*",
            "Condition": {
                "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": f"arn:{partition}:cloudtrail:*:{account_id}:trail/*"},
                **source_account,
            },
        })
        statements.append({
            "Sid": "AllowCloudTrailToEncryptedSns",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringLike": {"kms:EncryptionContext:aws:sns:topicArn": f"arn:{partition}:sns:{region}:{account_id}:*"},
                          **source_account},
        })
        statements.append({
            "Sid": "AllowCloudTrailDescribe",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
            "Condition": source_account,
        })
    for svc, sid in (("cloudwatch", "AllowCloudWatchAlarmsToEncryptedSns"),
                     ("ses", "AllowSesToEncryptedSns"),
                     ("sns", "AllowSnsToEncryptedSqs")):
        if svc in services:
            statements.append({
                "Sid": sid,
                "Effect": "Allow",
                "Principal": {"Service": f"{svc}.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": source_account,
            })
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass
class EncryptionArgs:
    """Inputs of :class:`Encryption`: the account id (from ``aws.get_caller_identity``), region, name prefix."""

    account_id: pulumi.Input[str]
    region: str
    prefix: str
    partition: str = "aws"
    tags: Mapping[str, str] = field(default_factory=dict)


class Encryption(pulumi.ComponentResource):
    """KMS keys with rotation (365 days), a 30-day deletion window and explicit key policies.

    Attributes: ``data_key``, ``audit_key``, ``audit_mac_key`` (``aws.kms.Key``), ``data_key_policy``,
    ``audit_key_policy``, ``audit_mac_key_policy`` (``Output[str]`` JSON). Controls: KMS.3, KMS.4
    (encryption keys), KMS.5, CKV_AWS_7/33/227.
    """

    def __init__(self, name: str, args: EncryptionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:security:Encryption", name, None, opts)
        self.data_key_policy = json_doc(pulumi.Output.from_input(args.account_id).apply(
            lambda acct: key_policy(acct, args.region, ("ses", "sns"), args.partition)))
        self.audit_key_policy = json_doc(pulumi.Output.from_input(args.account_id).apply(
            lambda acct: key_policy(acct, args.region, ("logs", "cloudtrail", "cloudwatch"), args.partition)))
        self.data_key = self._key(name, "data", args, self.data_key_policy,
                                  "Data at rest: S3 archive, DynamoDB, SQS, Lambda env, SES feedback SNS")
        self.audit_key = self._key(name, "audit", args, self.audit_key_policy,
                                   "Audit and alerting: CloudWatch Logs, CloudTrail, alarm SNS topic")
        self.audit_mac_key_policy = json_doc(pulumi.Output.from_input(args.account_id).apply(
            lambda acct: key_policy(acct, args.region, (), args.partition)))
        self.audit_mac_key = aws.kms.Key(
            f"{name}-audit-mac",
            description=f"{args.prefix} Audit MACs: HMAC-SHA-256 of recipients and source IP in the audit table",
            customer_master_key_spec=MAC_KEY_SPEC,
            key_usage="GENERATE_VERIFY_MAC",
            enable_key_rotation=False,  # not supported for HMAC keys (see the module docstring)
            deletion_window_in_days=30,
            is_enabled=True,
            bypass_policy_lockout_safety_check=False,
            policy=self.audit_mac_key_policy,
            tags={**args.tags},
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(f"{name}-audit-mac-alias", name=f"alias/{args.prefix}-audit-mac",
                      target_key_id=self.audit_mac_key.key_id, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"data_key_arn": self.data_key.arn, "audit_key_arn": self.audit_key.arn,
                               "audit_mac_key_arn": self.audit_mac_key.arn})

    def _key(self, name: str, role: str, args: EncryptionArgs, policy: pulumi.Output[str], description: str):
        key = aws.kms.Key(
            f"{name}-{role}",
            description=f"{args.prefix} {description}",
            enable_key_rotation=True,
            rotation_period_in_days=365,
            deletion_window_in_days=30,
            is_enabled=True,
            bypass_policy_lockout_safety_check=False,
            policy=policy,
            tags={**args.tags},
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(f"{name}-{role}-alias", name=f"alias/{args.prefix}-{role}", target_key_id=key.key_id,
                      opts=pulumi.ResourceOptions(parent=self))
        return key
