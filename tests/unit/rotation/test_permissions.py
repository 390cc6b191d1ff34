"""rotation/permissions.py: the grants a consumers file's push targets need, the check of an IAM
policy document against them, and ``rotation plan --iam-policy`` reporting an unwritable target
before any call to Vault or AWS."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from policies.iam import render_policy
from rotation.cli import main
from rotation.config import ConsumersFile, load_consumers_file
from rotation.permissions import missing_grants, required_grants, required_statements

ACCOUNT, REGION = "123456789012", "eu-west-1"
#: settings that load without touching anything (the check runs before any call to Vault or AWS)
ENV = {"AWS_REGION": REGION, "VAULT_ADDR": "https://vault.invalid", "VAULT_TOKEN": "t"}
EXAMPLE = "examples/consumers.lambda.yaml"


def full_policy() -> dict:
    doc = render_policy("rotator", region=REGION, stack="prod", kms_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k")
    doc["Statement"] += required_statements(load_consumers_file(EXAMPLE), REGION, ACCOUNT)
    return doc


def test_the_derived_statements_cover_every_grant_and_name_only_the_targets():
    grants = required_grants(load_consumers_file(EXAMPLE), REGION, ACCOUNT)
    assert missing_grants(full_policy(), grants) == []
    resources = {r for s in required_statements(load_consumers_file(EXAMPLE), REGION, ACCOUNT)
                 for r in s["Resource"]}
    assert resources == {f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:secure-mail-api-prod/consumers/billing-??????",
                         f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/secure-mail-api-prod/consumers/crm/api-key",
                         f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*"}  # the alias: kms:ResourceAliases condition


def test_the_template_alone_misses_every_target_write():
    grants = required_grants(load_consumers_file(EXAMPLE), REGION, ACCOUNT)
    template = render_policy("rotator", region=REGION, stack="prod", kms_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k")
    assert {g.action for g in missing_grants(template, grants)} >= {"secretsmanager:PutSecretValue", "ssm:PutParameter"}


def test_a_deny_or_another_condition_or_another_arn_does_not_count_as_allowed():
    c = ConsumersFile.model_validate({"version": 1, "usage_plans": {"standard": "p"}, "consumers": [
        {"name": "billing", "tier": "standard", "targets": [
            {"type": "ssm", "name": "/a/b", "kms_key_id": "0f0f0f0f-0000-4000-8000-000000000000"}]}]})
    grants = required_grants(c, REGION, ACCOUNT)
    ok = {"Statement": required_statements(c, REGION, ACCOUNT)}
    assert missing_grants(ok, grants) == []
    deny = {"Statement": [*ok["Statement"], {"Effect": "Deny", "Action": "ssm:Put*", "Resource": "*"}]}
    assert [g.action for g in missing_grants(deny, grants)] == ["ssm:PutParameter"]
    other_cond = json.loads(json.dumps(ok))
    for s in other_cond["Statement"]:
        if "Condition" in s:
            s["Condition"] = {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}
    assert {g.action for g in missing_grants(other_cond, grants)} == {"kms:Encrypt", "kms:GenerateDataKey"}
    sibling = {"Statement": [{"Effect": "Allow", "Action": "ssm:PutParameter",
                              "Resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/a/other"}]}
    assert "ssm:PutParameter" in {g.action for g in missing_grants(sibling, grants)}
    wildcard = {"Statement": [{"Effect": "Allow", "Action": "SSM:put*", "Resource": f"arn:aws:ssm:*:{ACCOUNT}:parameter/a/*"}]}
    assert "ssm:PutParameter" not in {g.action for g in missing_grants(wildcard, grants)}


def test_plan_with_a_policy_lacking_a_target_reports_it_and_exits_1_before_any_call(tmp_path):
    lacking = full_policy()
    lacking["Statement"] = [s for s in lacking["Statement"] if not s["Sid"].startswith("PushToSsm")]
    (tmp_path / "p.json").write_text(json.dumps(lacking))
    r = CliRunner().invoke(main, ["--consumers", EXAMPLE, "plan", "--iam-policy", str(tmp_path / "p.json"),
                                  "--account-id", ACCOUNT], env=ENV)
    assert r.exit_code == 1, r.output
    expected = [f"iam: cannot write: crm: ssm:/secure-mail-api-prod/consumers/crm/api-key: missing {action} on "
                f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/secure-mail-api-prod/consumers/crm/api-key"
                for action in ("ssm:PutParameter", "ssm:GetParameterHistory", "ssm:LabelParameterVersion",
                               "ssm:UnlabelParameterVersion")]
    assert [line for line in r.output.splitlines() if line.startswith("iam:")] == expected


@pytest.mark.parametrize(("content", "args", "text"), [
    ("{not json", ["--account-id", ACCOUNT], "cannot be read as a JSON IAM policy"),
    ('{"Version": "2012-10-17"}', ["--account-id", ACCOUNT], "Statement"),
    (json.dumps({"Statement": []}), [], "--account-id: required"),
])
def test_plan_with_an_unusable_policy_or_no_account_is_a_usage_error(tmp_path, content, args, text):
    (tmp_path / "p.json").write_text(content)
    r = CliRunner().invoke(main, ["--consumers", EXAMPLE, "plan", "--iam-policy", str(tmp_path / "p.json"), *args],
                           env=ENV)
    assert r.exit_code == 2 and text in r.output, r.output
