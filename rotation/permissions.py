"""Which AWS actions on which resources a consumers file's push targets need, and whether an IAM
policy document grants them. One derivation, three users: the Pulumi program renders the rotator
role's push statements from it (``infra/components/rotator.py``), ``rotation plan --iam-policy``
reports a target the rotator could not write before a run, and the policy pack flags a rotator
role policy that lacks a target's ARN.

What each target type calls (``rotation/targets``) and so needs:

* ``secretsmanager``: ``PutSecretValue`` (each new key), ``CreateSecret`` + ``TagResource`` (the
  secret is created, tagged, when absent), ``DescribeSecret``; on the secret's ARN. A secret given
  by name matches ``...:secret:<name>-??????`` (Secrets Manager appends six random characters:
  https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html).
* ``ssm``: ``PutParameter``, ``GetParameterHistory``, ``LabelParameterVersion`` (the fence check) and
  ``UnlabelParameterVersion`` (old fence labels removed, so the 100-version limit never blocks a put) on
  ``arn:<partition>:ssm:<region>:<account>:parameter/<name without
  the leading slash>`` (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html).
* a customer KMS key (``kms_key_id``): ``kms:Encrypt`` and ``kms:GenerateDataKey`` only through
  those two services (``kms:ViaService``). A key ARN or id is named directly; an alias cannot be
  an IAM resource for these actions, so it is matched with ``kms:ResourceAliases``
  (https://docs.aws.amazon.com/kms/latest/developerguide/alias-authorization.html). Without
  ``kms_key_id`` the AWS managed keys ``aws/secretsmanager`` / ``aws/ssm`` are used, which need
  no IAM grant.

The check (:func:`missing_grants`) is a deliberately small evaluator of identity policies:
``Allow``/``Deny`` with ``Action``/``Resource`` wildcards (``*``, ``?``; actions case-insensitive).
An ``Allow`` with a ``Condition`` counts only when the condition is exactly the one derived here,
and a ``Deny`` counts only without one; ``NotAction``/``NotResource`` statements are ignored. So it
never reports a target writable that is not; it may report one that a cleverer policy allows.
For the authoritative answer use the IAM policy simulator (``iam:SimulatePrincipalPolicy``).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from rotation.config import ConsumersFile, SecretsManagerTargetSpec, SsmParameterTargetSpec

__all__ = ["Grant", "missing_grants", "required_grants", "required_statements", "sample_resource"]

SECRETSMANAGER_ACTIONS = ("secretsmanager:PutSecretValue", "secretsmanager:CreateSecret",
                          "secretsmanager:TagResource", "secretsmanager:DescribeSecret")
SSM_ACTIONS = ("ssm:PutParameter", "ssm:GetParameterHistory", "ssm:LabelParameterVersion",
               "ssm:UnlabelParameterVersion")
KMS_ACTIONS = ("kms:Encrypt", "kms:GenerateDataKey")
# fullmatch only (``$`` would accept a trailing newline)
_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}")
_SECRET_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}\Z")   # \Z: the very end (``$`` also matches before a final newline)


@dataclass(frozen=True)
class Grant:
    """One permission a target needs: ``action`` on ``resource`` (an IAM resource pattern), under
    ``condition`` (an IAM ``Condition`` block or ``None``). ``target_id`` names the target
    (``secretsmanager:mail-api/billing``), ``consumer`` its consumer."""

    consumer: str
    target_id: str
    action: str
    resource: str
    condition: dict[str, Any] | None = None

    def __hash__(self) -> int:  # condition is a dict
        return hash((self.consumer, self.target_id, self.action, self.resource, repr(self.condition)))


def _via(region: str) -> dict[str, Any]:
    return {"StringEquals": {"kms:ViaService": [f"secretsmanager.{region}.amazonaws.com",
                                                f"ssm.{region}.amazonaws.com"]}}


def secret_arn(secret_id: str, region: str, account: str, partition: str = "aws") -> str:
    """The IAM resource for a secret given by name or ARN (``<name>-??????`` for a name)."""
    if secret_id.startswith("arn:"):
        return secret_id if _SECRET_SUFFIX.search(secret_id) else f"{secret_id}-??????"
    return f"arn:{partition}:secretsmanager:{region}:{account}:secret:{secret_id}-??????"


def parameter_arn(name: str, region: str, account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


def _kms_grants(consumer: str, target_id: str, key: str, region: str, account: str,
                partition: str) -> list[Grant]:
    via = _via(region)
    if key.startswith("arn:") and ":alias/" not in key:
        resource, cond = key, via
    elif _KEY_ID.fullmatch(key):
        resource, cond = f"arn:{partition}:kms:{region}:{account}:key/{key}", via
    else:  # alias/name or an alias ARN
        alias = key.split(":", 5)[5] if key.startswith("arn:") else key
        resource = f"arn:{partition}:kms:{region}:{account}:key/*"
        cond = {**via, "ForAnyValue:StringEquals": {"kms:ResourceAliases": alias}}
    return [Grant(consumer, target_id, a, resource, cond) for a in KMS_ACTIONS]


def required_grants(consumers: ConsumersFile, region: str, account: str, partition: str = "aws") -> list[Grant]:
    """Every :class:`Grant` the consumers file's AWS push targets need, in file order."""
    out: list[Grant] = []
    for c in consumers.consumers:
        for t in c.targets:
            if isinstance(t, SecretsManagerTargetSpec):
                arn = secret_arn(t.secret_id, region, account, partition)
                out += [Grant(c.name, t.target_id, a, arn) for a in SECRETSMANAGER_ACTIONS]
            elif isinstance(t, SsmParameterTargetSpec):
                arn = parameter_arn(t.name, region, account, partition)
                out += [Grant(c.name, t.target_id, a, arn) for a in SSM_ACTIONS]
            else:
                continue
            if t.kms_key_id:
                out += _kms_grants(c.name, t.target_id, t.kms_key_id, region, account, partition)
    return out


def required_statements(consumers: ConsumersFile, region: str, account: str, partition: str = "aws") -> list[dict]:
    """IAM policy statements granting exactly :func:`required_grants`: one per (actions,
    condition) group with its resources sorted; ``[]`` when no target needs AWS."""
    groups: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    by_target: dict[tuple[str, str], set[str]] = {}
    grants = required_grants(consumers, region, account, partition)
    for g in grants:
        by_target.setdefault((g.resource, repr(g.condition)), set()).add(g.action)
    for g in grants:
        actions = tuple(sorted(by_target[(g.resource, repr(g.condition))]))
        entry = groups.setdefault((actions, repr(g.condition)), {"actions": actions, "resources": set(),
                                                                  "condition": g.condition})
        entry["resources"].add(g.resource)
    statements = []
    sids = {"secretsmanager": "PushToSecretsManagerTargets", "ssm": "PushToSsmParameterTargets",
            "kms": "EncryptPushTargetsWithTheirKeys"}
    for n, entry in enumerate(groups.values()):
        service = entry["actions"][0].split(":")[0]
        st: dict[str, Any] = {"Sid": f"{sids[service]}{n}", "Effect": "Allow", "Action": list(entry["actions"]),
                              "Resource": sorted(entry["resources"])}
        if entry["condition"]:
            st["Condition"] = entry["condition"]
        statements.append(st)
    return statements


def sample_resource(resource: str) -> str:
    """A concrete ARN the pattern ``resource`` stands for (``-??????`` -> ``-AbCdEf``;
    a ``key/*`` -> a key id), to test a policy's own patterns against."""
    return resource.replace("-??????", "-AbCdEf").replace("key/*", "key/00000000-0000-0000-0000-000000000000")


def _as_list(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def _matches(patterns: list[str], value: str, *, case: bool) -> bool:
    if not case:
        return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in patterns)
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def missing_grants(policy: dict[str, Any], grants: list[Grant]) -> list[Grant]:
    """The grants ``policy`` (an IAM identity policy document) does not allow (see the module
    docstring for what is evaluated). Raises ``ValueError`` for a document without ``Statement``."""
    if not isinstance(policy, dict) or "Statement" not in policy:
        raise ValueError("Statement: missing; expected an IAM policy document {\"Version\": ..., \"Statement\": [...]}")
    statements = policy["Statement"]
    statements = [statements] if isinstance(statements, dict) else list(statements)
    missing = []
    for g in grants:
        sample = sample_resource(g.resource)
        allowed = denied = False
        for st in statements:
            if "Action" not in st or "Resource" not in st:
                continue
            if not (_matches(_as_list(st["Action"]), g.action, case=False)
                    and _matches(_as_list(st["Resource"]), sample, case=True)):
                continue
            cond = st.get("Condition")
            if st.get("Effect") == "Deny" and not cond:
                denied = True
            elif st.get("Effect") == "Allow" and (not cond or cond == g.condition):
                allowed = True
        if denied or not allowed:
            missing.append(g)
    return missing


def policy_file_report(path: str, consumers: ConsumersFile, region: str, account: str | None,
                       partition: str = "aws") -> list[str]:
    """For ``rotation plan --iam-policy FILE``: one line per target the policy in ``path`` would not
    let the rotator write (``billing: secretsmanager:mail-api/billing: missing
    secretsmanager:PutSecretValue on arn:...``); ``[]`` when every target is writable.

    Raises :class:`~rotation.errors.ConfigError` (exit code 2) for an unreadable file, a document
    that is not a policy, or a target given by name when ``account`` is not known.
    """
    import json
    from pathlib import Path

    from rotation.errors import ConfigError

    try:
        policy = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(str(path), [("(file)", f"cannot be read as a JSON IAM policy ({type(exc).__name__})")]
                          ) from None
    if account is None:
        named = [t.target_id for c in consumers.consumers for t in c.targets
                 if (isinstance(t, SecretsManagerTargetSpec) and not t.secret_id.startswith("arn:"))
                 or isinstance(t, SsmParameterTargetSpec)
                 or ((kms_key_id := getattr(t, "kms_key_id", None)) and not str(kms_key_id).startswith("arn:"))]
        if named:
            raise ConfigError("--account-id", [("--account-id", "required to resolve the ARNs of "
                                                + ", ".join(named) + " (or set AWS_ACCOUNT_ID)")])
        account = "000000000000"
    try:
        missing = missing_grants(policy, required_grants(consumers, region, account, partition))
    except ValueError as exc:
        raise ConfigError(str(path), [("Statement", str(exc).split(": ", 1)[-1])]) from None
    return [f"{g.consumer}: {g.target_id}: missing {g.action} on {g.resource}"
            + (" (with its kms:ViaService condition)" if g.condition else "") for g in missing]
