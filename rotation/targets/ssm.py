"""AWS SSM Parameter Store target: the key as a ``SecureString`` parameter encrypted with a KMS key.

Value (JSON): ``{"api_key", "serial", "key_id"}``. ``put_parameter(Type="SecureString",
KeyId=<kms key>, Overwrite=True, Tier="Standard")``; each push makes a new parameter version. The
parameter's ``Description`` carries the delivery's idempotency key (``rotation <id> serial <n>``,
no secret), so a retry of a delivery that already landed is detected with ``DescribeParameters``
(which needs no ``kms:Decrypt``) and writes nothing. Without ``ssm:DescribeParameters`` it simply
writes again (a new parameter version with the same value).

AWS API: https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html and
https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeParameters.html.
The target never raises for an AWS failure: it reports ``ok=False`` with the AWS error code only.
"""

from __future__ import annotations

import json
from typing import Any

from rotation.backends.aws_errors import error_code
from rotation.targets import Delivery, PushResult

__all__ = ["SsmParameterTarget"]


class SsmParameterTarget:
    """Put each new key into SSM parameter ``name`` (e.g. ``/mail-api/billing/api-key``).

    :param client: a boto3 ``ssm`` client.
    :param name: the parameter name (a path starting with ``/`` is recommended for IAM scoping).
    :param kms_key_id: KMS key id/ARN/alias for the SecureString (``None``: the ``aws/ssm`` key).
    :param required: whether promotion waits for this target.
    :param tier: ``Standard`` (default; 4 KB, no charge) or ``Advanced``.
    """

    def __init__(self, client: Any, name: str, *, kms_key_id: str | None = None, required: bool = True,
                 tier: str = "Standard"):
        self.client = client
        self.name = name
        self.kms_key_id = kms_key_id
        self.required = required
        self.tier = tier
        self.target_id = f"ssm:{name}"

    def __repr__(self) -> str:
        return f"SsmParameterTarget(name={self.name!r}, kms_key_id={self.kms_key_id!r})"

    @staticmethod
    def description(delivery: Delivery) -> str:
        return (f"mail API key for {delivery.consumer}: rotation {delivery.rotation_id} serial {delivery.serial} "
                f"key {delivery.key_id} (managed by the rotation job)")[:1024]

    def push(self, delivery: Delivery) -> PushResult:
        desc = self.description(delivery)
        try:
            existing = self.client.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [self.name]}])["Parameters"]
        except Exception:  # noqa: BLE001 - the check is an optimisation; put_parameter decides
            existing = []
        if existing and existing[0].get("Description") == desc:
            return PushResult(self.target_id, True, "already up to date", {"version": existing[0].get("Version")})
        try:
            kwargs: dict[str, Any] = {
                "Name": self.name, "Type": "SecureString", "Overwrite": True, "Tier": self.tier,
                "Description": desc,
                "Value": json.dumps({"api_key": delivery.value, "serial": delivery.serial,
                                     "key_id": delivery.key_id}, separators=(",", ":")),
            }
            if self.kms_key_id:
                kwargs["KeyId"] = self.kms_key_id
            r = self.client.put_parameter(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a target never raises (targets/__init__.py)
            return PushResult(self.target_id, False, f"aws: {error_code(exc)}")
        return PushResult(self.target_id, True, "SecureString written", {"version": r.get("Version")})
