"""KMS key and IAM policy rules: docs/security-baseline.md §1.2 and the IAM rows of §1.7 / §1.13.

Sources: Security Hub KMS controls (https://docs.aws.amazon.com/securityhub/latest/userguide/kms-controls.html),
checkov 3.3.30, cdk-nag AwsSolutions (KMS5, IAM4, IAM5), AWSGuard ``cmk-backing-key-rotation-enabled``,
@pulumi/aws-compliance-policies ``aws-kms-key-*``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._base import Finding, as_list, is_true, parse_doc, public_allows, resource_rule, statements

KEY = "aws:kms/key:Key"
KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
IAM_DOC_TYPES = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ROLE = "aws:iam/role:Role"
_REPO_ROOT = Path(__file__).resolve().parents[3]


@resource_rule("kms-key-rotation",
               ["KMS.4", "CKV_AWS_7", "AwsSolutions-KMS5", "AWSG-cmk-backing-key-rotation-enabled",
                "PCP-aws-kms-key-enable-key-rotation"], KEY,
               "Customer-managed keys rotate automatically, at least yearly",
               {"maxRotationPeriodDays": ({"type": "integer", "minimum": 90, "maximum": 2560}, 365)})
def key_rotation(props, cfg, typ):
    """KMS.4 / CKV_AWS_7 / AwsSolutions-KMS5 / AWSGuard / compliance-ready: ``enableKeyRotation=true``
    and ``rotationPeriodInDays`` (90-2560, default 365) no longer than ``maxRotationPeriodDays``.

    Symmetric encryption keys only (``customerMasterKeySpec`` unset or ``SYMMETRIC_DEFAULT``): KMS
    rotates no other kind automatically, and KMS.4 checks only those
    (https://docs.aws.amazon.com/kms/latest/developerguide/rotating-keys.html)."""
    if (props.get("customerMasterKeySpec") or "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
        return []
    out = []
    if not is_true(props.get("enableKeyRotation")):
        out.append(Finding("enableKeyRotation", repr(props.get("enableKeyRotation")), "enableKeyRotation=true"))
    period = props.get("rotationPeriodInDays")
    if period is not None and float(period) > cfg["maxRotationPeriodDays"]:
        out.append(Finding("rotationPeriodInDays", repr(period), f"rotationPeriodInDays<={cfg['maxRotationPeriodDays']}"))
    return out


@resource_rule("kms-key-deletion-window", ["KMS.3"], KEY,
               "Keys keep the longest deletion window, so an accidental deletion can be cancelled",
               {"minDeletionWindowDays": ({"type": "integer", "minimum": 7, "maximum": 30}, 30)})
def key_deletion_window(props, cfg, typ):
    """KMS.3 (keys not unintentionally scheduled for deletion): ``deletionWindowInDays`` at least
    ``minDeletionWindowDays`` (AWS default 30 when unset). The CIS alarm on DisableKey/ScheduleKeyDeletion
    is checked by ``cloudwatch-cis-metric-filters``."""
    window = props.get("deletionWindowInDays")
    if window is not None and float(window) < cfg["minDeletionWindowDays"]:
        return [Finding("deletionWindowInDays", repr(window), f"deletionWindowInDays={cfg['minDeletionWindowDays']}")]
    return []


@resource_rule("kms-key-policy",
               ["KMS.5", "CKV_AWS_33", "CKV2_AWS_64", "PCP-aws-kms-key-disallow-bypass-policy-lockout-safety-check",
                "PCP-aws-kms-key-missing-description"], [KEY, KEY_POLICY],
               "Keys have an explicit key policy with no public principal, keep the lockout check, and a description")
def key_policy(props, cfg, typ):
    """KMS.5 / CKV_AWS_33 / CKV2_AWS_64: an explicit key ``policy`` with no ``Allow`` to ``*`` without
    a condition; compliance-ready: ``bypassPolicyLockoutSafetyCheck`` not true and a ``description``
    (on ``aws.kms.Key``)."""
    out = []
    doc = parse_doc(props.get("policy"))
    if doc is None:
        out.append(Finding("policy", "unset", "policy=<key policy JSON> (or an aws.kms.KeyPolicy)"))
    for s in public_allows(doc):
        out.append(Finding("policy", f"statement {s.get('Sid', '?')!r} allows Principal '*'",
                           "a specific account/service principal, or a Condition"))
    if is_true(props.get("bypassPolicyLockoutSafetyCheck")):
        out.append(Finding("bypassPolicyLockoutSafetyCheck", "true", "bypassPolicyLockoutSafetyCheck=false"))
    if typ == KEY and not props.get("description"):
        out.append(Finding("description", "unset", "description='<what the key protects>'"))
    return out


@resource_rule("kms-key-enabled", ["CKV_AWS_227"], KEY, "Keys are enabled")
def key_enabled(props, cfg, typ):
    """CKV_AWS_227: ``isEnabled`` not false (default true)."""
    if props.get("isEnabled") is False:
        return [Finding("isEnabled", "false", "isEnabled=true")]
    return []


def _iam_doc(props, typ):
    return parse_doc(props.get(IAM_DOC_TYPES.get(typ, "policy")))


_SENSITIVE = ("kms:decrypt", "kms:reencryptfrom", "kms:*", "ses:sendemail", "ses:sendrawemail", "ses:*")
#: Actions with no resource-level permission (Service Authorization Reference): metrics, X-Ray, the ENI
#: lookups a Lambda in a VPC needs (AWSLambdaVPCAccessExecutionRole), and STS GetWebIdentityToken
#: (scoped by its sts:IdentityTokenAudience condition instead).
_STAR_OK_DEFAULT = ["cloudwatch:PutMetricData", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules", "xray:GetSamplingTargets", "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets", "sts:GetWebIdentityToken"]


@resource_rule("iam-scoped-resources", ["KMS.1", "KMS.2", "BASELINE-LAMBDA-IAM", "AwsSolutions-IAM5"],
               list(IAM_DOC_TYPES),
               "Identity policies scope resources: no kms:Decrypt/ReEncryptFrom or SES send on '*'",
               {"starResourceActions": ({"type": "array", "items": {"type": "string"}}, _STAR_OK_DEFAULT)})
def iam_scoped_resources(props, cfg, typ):
    """KMS.1 / KMS.2 (IAM policies must not allow decryption on all KMS keys), baseline §1.7 IAM row
    (``ses:SendEmail`` on the identity and configuration-set ARNs only) and AwsSolutions-IAM5 (wildcard
    resources): an Allow with ``Resource: "*"`` is accepted only for actions that support no
    resource-level permission (``starResourceActions``: PutMetricData, X-Ray, the VPC ENI lookups,
    STS GetWebIdentityToken)."""
    out = []
    allowed = {a.lower() for a in cfg["starResourceActions"]}
    for s in statements(_iam_doc(props, typ)):
        if s.get("Effect") != "Allow" or "*" not in as_list(s.get("Resource")):
            continue
        actions = [str(a).lower() for a in as_list(s.get("Action"))]
        bad = [a for a in actions if a not in allowed]
        if bad:
            sensitive = [a for a in bad if a in _SENSITIVE]
            out.append(Finding("policy", f"statement {s.get('Sid', '?')!r} allows {', '.join(sensitive or bad)} on '*'",
                               "Resource=<the specific key/identity/table ARNs>"))
    return out


@resource_rule("iam-no-wildcard-actions", ["AwsSolutions-IAM5"], list(IAM_DOC_TYPES),
               "Identity policies name every action: no '*' or 'service:*' actions, no NotAction allows")
def iam_no_wildcard_actions(props, cfg, typ):
    """AwsSolutions-IAM5 (wildcard permissions): no action containing ``*`` and no ``NotAction`` in an
    Allow statement. (parliament checks the repository's JSON templates the same way.)"""
    out = []
    for s in statements(_iam_doc(props, typ)):
        if s.get("Effect") != "Allow":
            continue
        if s.get("NotAction"):
            out.append(Finding("policy", f"statement {s.get('Sid', '?')!r} uses NotAction", "an explicit Action list"))
        wild = [str(a) for a in as_list(s.get("Action")) if "*" in str(a)]
        if wild:
            out.append(Finding("policy", f"statement {s.get('Sid', '?')!r} allows {', '.join(wild)}",
                               "explicit actions (e.g. ses:SendEmail)"))
    return out


@resource_rule("iam-no-aws-managed-policies", ["AwsSolutions-IAM4"], [ROLE_POLICY_ATTACHMENT, ROLE],
               "Roles use inline least-privilege policies, not AWS managed policies",
               {"allowedManagedPolicies": ({"type": "array", "items": {"type": "string"}}, [])})
def iam_no_aws_managed(props, cfg, typ):
    """AwsSolutions-IAM4: no ``arn:aws:iam::aws:policy/...`` attachment (RolePolicyAttachment
    ``policyArn`` or Role ``managedPolicyArns``) unless listed in ``allowedManagedPolicies``."""
    arns = as_list(props.get("policyArn")) + as_list(props.get("managedPolicyArns"))
    bad = [a for a in arns if isinstance(a, str) and a.startswith("arn:aws:iam::aws:policy/")
           and a not in cfg["allowedManagedPolicies"]]
    return [Finding("policyArn", a, "an inline aws.iam.RolePolicy with only the needed actions") for a in bad]


_ROTATOR_MARKER = "CreateTaggedApiKeys"  # a Sid of policies/iam/rotator.json: this document is the rotator's
_ACCOUNT_IN_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")
_APIGW_REGION = re.compile(r"^arn:aws[a-z-]*:apigateway:([a-z0-9-]+)::")


@resource_rule("rotator-policy-covers-push-targets", ["BASELINE-ROTATOR-IAM"], ["aws:iam/rolePolicy:RolePolicy"],
               "The rotator's role policy lets it write every push target of the consumers file",
               {"consumersFile": ({"type": "string"}, "examples/consumers.lambda.yaml"),
                "accountId": ({"type": "string"}, "")})
def rotator_covers_push_targets(props, cfg, typ):
    """Issue 11 item 4 ("a target the rotator could not write is reported before a run"): for a role
    policy rendered from ``policies/iam/rotator.json`` (recognized by its ``CreateTaggedApiKeys``
    statement), every grant :func:`rotation.permissions.required_grants` derives from the consumers
    file (``consumersFile``, repository-relative) must be allowed: the named secret and parameter
    ARNs and their KMS keys. Region: from the policy's API Gateway ARNs; account: ``accountId`` or
    the first account-scoped ARN in the policy."""
    from rotation.config import load_consumers_file
    from rotation.errors import ConfigError as ConsumersError
    from rotation.permissions import missing_grants, required_grants

    doc = _iam_doc(props, typ)
    sts = statements(doc)
    if not any(s.get("Sid") == _ROTATOR_MARKER for s in sts):
        return []
    resources = [str(r) for s in sts for r in as_list(s.get("Resource"))]
    region = next((m.group(1) for r in resources if (m := _APIGW_REGION.match(r))), None)
    account = cfg["accountId"] or next((m.group(1) for r in resources if (m := _ACCOUNT_IN_ARN.match(r))), None)
    if region is None:
        return [Finding("policy", "a rotator policy without API Gateway ARNs", "the rendered policies/iam/rotator.json")]
    try:
        consumers = load_consumers_file(_REPO_ROOT / cfg["consumersFile"])
    except ConsumersError as exc:
        return [Finding("consumersFile", f"unreadable ({len(exc.problems)} problem(s))", "a valid consumers file")]
    missing = missing_grants(doc, required_grants(consumers, region, account or "000000000000"))
    return [Finding("policy", f"missing {g.action} on {g.resource} for {g.target_id} ({g.consumer})",
                    "the statements of rotation.permissions.required_statements (infra renders them)")
            for g in missing]
