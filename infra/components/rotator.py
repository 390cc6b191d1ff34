"""Rotator access: the IAM role the API-key rotation jobs assume (least privilege).

The permission policy is ``policies/iam/rotator.json`` rendered for this stack: read API keys and
usage plans, create keys only with the tag ``secure-mail-api:stack=<stack>``, change/delete only
keys and usage-plan keys carrying that tag, publish metrics only in ``SecureMailApi/Rotation``,
and use the data key for push targets. The trust policy admits only the configured principals
(default: this account's root, i.e. IAM principals of the account that are allowed
``sts:AssumeRole`` on it) and Lambda (for the EventBridge-scheduled runner).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from policies.iam import render_policy


def rotator_trust_policy(account_id: str, principals: Sequence[str]) -> dict:
    """Trust policy for the rotation role: the given principals (or the account root) + Lambda."""
    aws_principals = list(principals) or [f"arn:aws:iam::{account_id}:root"]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "RotationRunners", "Effect": "Allow", "Principal": {"AWS": aws_principals},
         "Action": "sts:AssumeRole"},
        {"Sid": "ScheduledRotationLambda", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
         "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
    ]}


@dataclass
class RotatorAccessArgs:
    """Inputs of :class:`RotatorAccess`."""

    prefix: str
    stack: str
    region: str
    account_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    trusted_principals: Sequence[str] = ()
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
                lambda a: json.dumps(rotator_trust_policy(a, args.trusted_principals))),
            max_session_duration=3600, tags=dict(args.tags), opts=child)
        self.policy = aws.iam.RolePolicy(
            f"{name}-policy", role=self.role.id,
            policy=pulumi.Output.from_input(args.kms_key_arn).apply(
                lambda arn: json.dumps(render_policy("rotator", region=args.region, stack=args.stack,
                                                     kms_key_arn=arn))),
            opts=child)
        self.register_outputs({"role_arn": self.role.arn})
