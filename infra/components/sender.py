"""Sender: the mail API's Lambda function (code in ``infra/functions/``) and its IAM role.

Realizes docs/security-baseline.md §1.7: python3.11 runtime (Lambda.2), X-Ray (CKV_AWS_50), reserved
concurrency (CKV_AWS_115), DLQ (CKV_AWS_116), environment encrypted with the data CMK and holding
no secrets (CKV_AWS_173/45), JSON logging to a CMK-encrypted log group with retention, and a
least-privilege role: ``policies/iam/sender.json`` (SES send on the identity and configuration
set, the table, the archive prefix, the data key, ``kms:GenerateMac`` on the audit MAC key, whose
ARN is the function's ``AUDIT_MAC_KEY_ID``) plus a runtime statement set for logs,
X-Ray and the DLQ (which sender.json does not carry). With stack config ``codeSigning.enabled``
the package is signed by AWS Signer and the function enforces the code-signing config
(CKV_AWS_272, ``infra/components/signing.py``).

Code: ``dist/mail-handler.zip`` (``make package``: ``infra/functions/*.py`` at the root with every
dependency from ``requirements/mail-handler.lock``, built for :data:`infra.artifacts.LAMBDA_RUNTIME`
on :data:`infra.artifacts.LAMBDA_ARCHITECTURE`), deployed byte for byte; no layer is needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.artifacts import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, MAIL_HANDLER, code_archive
from infra.components._common import (
    assume_role_policy,
    encrypted_log_group,
    json_doc,
    lambda_runtime_statements,
)
from infra.components.signing import CodeSigning
from policies.iam import render_policy

#: Sources of the handler; ``make package`` puts them at the root of dist/mail-handler.zip.
FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"
HANDLER = "send_message.handler"


@dataclass
class SenderArgs:
    """Inputs of :class:`Sender`. Timeout in seconds, memory in MB, retention in days."""

    prefix: str
    data_key_arn: pulumi.Input[str]
    audit_key_arn: pulumi.Input[str]
    audit_mac_key_arn: pulumi.Input[str]
    table_name: pulumi.Input[str]
    table_arn: pulumi.Input[str]
    archive_bucket_arn: pulumi.Input[str]
    dlq_arn: pulumi.Input[str]
    identity_arn: pulumi.Input[str]
    sender_identity: str
    configuration_set_name: pulumi.Input[str]
    configuration_set_arn: pulumi.Input[str]
    reserved_concurrency: int
    timeout_seconds: int
    memory_mb: int
    log_retention_days: int
    layers: list[str] = field(default_factory=list)
    #: When set, the package is signed and the function enforces ``code_signing.config`` (CKV_AWS_272).
    code_signing: CodeSigning | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Access levels (issue 13 part 1): the ACCESS_* environment (``infra.config.access_environment``),
    #: the stack name whose keys count (ACCESS_STACK), the region of the API keys the function reads
    #: (GetApiKey), and the From addresses / display names the role may send with (SES condition keys).
    access_environment: Mapping[str, str] = field(default_factory=dict)
    stack: str = ""
    region: str = ""
    from_addresses: Sequence[str] = ()
    from_display_names: Sequence[str] = ()


class Sender(pulumi.ComponentResource):
    """Lambda ``<prefix>-send-message`` serving ``POST /v1/messages``.

    Attributes: ``function``, ``role``, ``log_group``, ``function_name`` (str).
    """

    def __init__(self, name: str, args: SenderArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:compute:Sender", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.function_name = f"{args.prefix}-send-message"
        self.log_group = encrypted_log_group(
            f"{name}-logs", log_group_name=f"/secure-mail-api/{args.prefix}/send-message",
            kms_key_arn=args.audit_key_arn, retention_days=args.log_retention_days, tags=args.tags, parent=self)
        self.role = aws.iam.Role(
            f"{name}-role", assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
            description="secure-mail-api sender Lambda (least privilege)", tags=dict(args.tags), opts=child)
        if not args.from_addresses or not args.region or not args.stack:
            raise ValueError("SenderArgs needs from_addresses, region and stack (the access levels' senders)")
        # No allowed display name: only the empty one matches (the handler refuses any name too).
        display_names = json.dumps(sorted(args.from_display_names) or [""])
        self.send_policy = aws.iam.RolePolicy(
            f"{name}-send-policy", role=self.role.id,
            policy=pulumi.Output.all(args.identity_arn, args.configuration_set_arn, args.table_arn,
                                     args.archive_bucket_arn, args.data_key_arn, args.audit_mac_key_arn).apply(
                lambda v: json.dumps(render_policy(
                    "sender", ses_identity_arn=v[0], configuration_set_arn=v[1], table_arn=v[2],
                    archive_bucket_arn=v[3], kms_key_arn=v[4], audit_mac_key_arn=v[5],
                    from_addresses=json.dumps(sorted(args.from_addresses)), from_display_names=display_names,
                    region=args.region))),
            opts=child)
        self.runtime_policy = aws.iam.RolePolicy(
            f"{name}-runtime-policy", role=self.role.id,
            policy=json_doc({"Version": "2012-10-17",
                             "Statement": lambda_runtime_statements(self.log_group.arn, args.dlq_arn)}),
            opts=child)
        archive = code_archive(MAIL_HANDLER)
        code = ({"code": archive} if args.code_signing is None
                else args.code_signing.function_code(f"{name}-function", archive, parent=self))
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=self.function_name,
            description="secure-mail-api: POST /v1/messages -> SES v2",
            runtime=LAMBDA_RUNTIME,
            architectures=[LAMBDA_ARCHITECTURE],
            handler=HANDLER,
            **code,
            layers=args.layers or None,
            role=self.role.arn,
            timeout=args.timeout_seconds,
            memory_size=args.memory_mb,
            reserved_concurrent_executions=args.reserved_concurrency,
            tracing_config={"mode": "Active"},
            dead_letter_config={"target_arn": args.dlq_arn},
            kms_key_arn=args.data_key_arn,
            environment={"variables": {
                "TABLE_NAME": args.table_name,
                "CONFIGURATION_SET": args.configuration_set_name,
                "SENDER_IDENTITY": args.sender_identity,
                # A key ARN, not key material: the MACs are computed by KMS (kms:GenerateMac).
                "AUDIT_MAC_KEY_ID": args.audit_mac_key_arn,
                **dict(args.access_environment),
                "ACCESS_STACK": args.stack,
            }},
            logging_config={"log_format": "JSON", "log_group": self.log_group.name,
                            "application_log_level": "INFO", "system_log_level": "WARN"},
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.send_policy, self.runtime_policy]))
        self.register_outputs({"function_arn": self.function.arn, "role_arn": self.role.arn})
