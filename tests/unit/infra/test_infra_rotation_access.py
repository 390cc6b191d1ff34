"""The rotation role's trust (stack config ``rotationAccess.trust``: explicit principals) and its
push permissions derived from the consumers file (``rotationSchedule.consumersFile``;
rotation/permissions.py). Every mock test returns the Output it checks (P5)."""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.config import PROJECT, ConfigError, dev_stack_config, parse_stack_config
from infra.mocks import run_program
from rotation.config import load_consumers_file
from rotation.permissions import missing_grants, required_grants

ACCOUNT = "123456789012"
OIDC = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
TRUST = [{"type": "lambda"},
         {"type": "irsa", "oidcProviderArn": OIDC, "namespace": "mail-api", "serviceAccount": "mail-api-rotator"},
         {"type": "podIdentity"},
         {"type": "role", "arn": f"arn:aws:iam::{ACCOUNT}:role/ci-rotation"}]


def _cfg(trust: list | None = None, consumers_file: str = "examples/consumers.lambda.yaml") -> dict[str, str]:
    cfg = dev_stack_config()
    schedule = json.loads(cfg[f"{PROJECT}:rotationSchedule"])
    schedule["consumersFile"] = consumers_file
    cfg[f"{PROJECT}:rotationSchedule"] = json.dumps(schedule)
    if trust is not None:
        cfg[f"{PROJECT}:rotationAccess"] = json.dumps({"trust": trust})
    return cfg


def _one(resources, typ, name):
    return next(r for r in resources if r.typ == typ and r.name == name)


@pulumi.runtime.test
def test_trust_names_each_configured_principal_with_its_conditions(h):
    run = run_program(_cfg(TRUST))

    def check(resources):
        trust = h.policy(_one(resources, "aws:iam/role:Role", "rotator-role").inputs["assumeRolePolicy"])
        lam, irsa, pod, role = trust["Statement"]
        assert lam["Principal"] == {"Service": "lambda.amazonaws.com"} and lam["Action"] == "sts:AssumeRole"
        assert lam["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
        issuer = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
        assert irsa["Principal"] == {"Federated": OIDC} and irsa["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert irsa["Condition"] == {"StringEquals": {
            f"{issuer}:sub": "system:serviceaccount:mail-api:mail-api-rotator", f"{issuer}:aud": "sts.amazonaws.com"}}
        assert pod["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert pod["Action"] == ["sts:AssumeRole", "sts:TagSession"]
        assert role["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:role/ci-rotation"}
        assert not any(f":{ACCOUNT}:root" in json.dumps(s) for s in trust["Statement"])

    return h.check_recorded(run, check)


@pulumi.runtime.test
def test_both_rotator_policies_let_it_write_exactly_the_consumers_file_targets(h):
    run = run_program(_cfg())
    grants = required_grants(load_consumers_file("examples/consumers.lambda.yaml"), "eu-west-1", ACCOUNT)
    assert {g.action for g in grants} >= {"secretsmanager:PutSecretValue", "ssm:PutParameter", "kms:Encrypt"}

    def check(resources):
        for name in ("rotator-policy", "scheduled-rotator-rotation-policy"):
            doc = h.policy(_one(resources, "aws:iam/rolePolicy:RolePolicy", name).inputs["policy"])
            assert missing_grants(doc, grants) == [], name
            resources_named = json.dumps(doc)
            assert f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:secure-mail-api-prod/consumers/billing-??????" \
                in resources_named
            assert f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/secure-mail-api-prod/consumers/crm/api-key" \
                in resources_named

    return h.check_recorded(run, check)


@pytest.mark.parametrize(("entry", "key", "text"), [
    ({"type": "role", "arn": "ci-rotation"}, "rotationAccess.trust.0.role.arn", "must be an IAM role ARN"),
    ({"type": "irsa", "oidcProviderArn": "oidc.eks.eu-west-1.amazonaws.com/id/X", "namespace": "m",
      "serviceAccount": "r"}, "rotationAccess.trust.0.irsa.oidcProviderArn", "aws eks describe-cluster"),
    ({"type": "irsa", "oidcProviderArn": OIDC, "namespace": "Bad_NS", "serviceAccount": "r"},
     "rotationAccess.trust.0.irsa.namespace", "pattern"),
    ({"type": "github"}, "rotationAccess.trust.0", "lambda"),
])
def test_a_bad_trust_entry_fails_at_config_load_naming_the_key_and_the_fix(entry, key, text):
    with pytest.raises(ConfigError) as err:
        parse_stack_config(_cfg([entry]))
    assert any(e.startswith(f"{PROJECT}:{key}") and text in e for e in err.value.errors), err.value.errors
