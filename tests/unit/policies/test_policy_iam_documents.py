"""The IAM policy documents of ``policies/iam``: parliament reports no finding on any of them,
nothing is a wildcard action, every resource is scoped, and the placeholder contracts that
``infra/`` relies on stay exactly as they are."""

from __future__ import annotations

import json

import pytest
from parliament import analyze_policy_string

from policies.iam import POLICY_NAMES, placeholders, render_policy

ACCT = "123456789012"
VALUES = {
    "rotator": {"region": "eu-west-1", "stack": "dev", "kms_key_arn": f"arn:aws:kms:eu-west-1:{ACCT}:key/1234abcd"},
    "sender": {"ses_identity_arn": f"arn:aws:ses:eu-west-1:{ACCT}:identity/mail.example.com",
               "configuration_set_arn": f"arn:aws:ses:eu-west-1:{ACCT}:configuration-set/secure-mail-api-dev",
               "table_arn": f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/secure-mail-api-dev-messages",
               "archive_bucket_arn": "arn:aws:s3:::secure-mail-api-dev-archive",
               "kms_key_arn": f"arn:aws:kms:eu-west-1:{ACCT}:key/1234abcd",
               "audit_mac_key_arn": f"arn:aws:kms:eu-west-1:{ACCT}:key/5678efab",
               "from_addresses": json.dumps(["billing@mail.example.com", "no-reply@mail.example.com"]),
               "from_display_names": json.dumps(["Example Billing"]), "region": "eu-west-1"},
}

#: Documented, narrowly scoped parliament ignores: (document, finding id, action) -> reason.
#: Empty today: parliament 1.6.4 does not flag cloudwatch:PutMetricData on "*" (the action has no
#: resource-level permissions, so "*" is AWS's only option). Add an entry here, never a global switch.
IGNORES: dict[tuple[str, str, str], str] = {}


def findings(name: str) -> set[str]:
    policy = analyze_policy_string(json.dumps(render_policy(name, **VALUES[name])), include_community_auditors=True)
    out = set()
    for f in policy.findings:
        actions = (f.location or {}).get("actions") or [""]
        if not any((name, f.issue, a) in IGNORES for a in actions):
            out.add(f.issue)
    return out


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_parliament_reports_no_findings(name):
    assert findings(name) == set()


def test_parliament_is_actually_checking():
    """Guard against a vacuous pass: the same call flags a star resource and a bad action."""
    bad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
        {"Effect": "Allow", "Action": "ses:SendMail", "Resource": VALUES["sender"]["ses_identity_arn"]}]}
    issues = {f.issue for f in analyze_policy_string(json.dumps(bad), include_community_auditors=True).findings}
    assert {"RESOURCE_STAR", "UNKNOWN_ACTION"} <= issues


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_no_wildcard_actions_and_scoped_resources(name):
    for s in render_policy(name, **VALUES[name])["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions), s["Sid"]
        assert "NotAction" not in s and "NotResource" not in s
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        if "*" in resources:
            assert actions == ["cloudwatch:PutMetricData"] and s["Condition"], s["Sid"]


def test_placeholder_contracts_used_by_infra():
    assert placeholders("rotator") == {"region", "stack", "kms_key_arn"}
    assert placeholders("sender") == {"ses_identity_arn", "configuration_set_arn", "table_arn",
                                      "archive_bucket_arn", "kms_key_arn", "audit_mac_key_arn",
                                      "from_addresses", "from_display_names", "region"}


def test_sender_sends_only_from_the_identity_and_configuration_set():
    doc = render_policy("sender", **VALUES["sender"])
    ses = [s for s in doc["Statement"] if any(a.startswith("ses:") for a in s["Action"])]
    assert [s["Action"] for s in ses] == [["ses:SendEmail"]]
    assert set(ses[0]["Resource"]) == {VALUES["sender"]["ses_identity_arn"], VALUES["sender"]["configuration_set_arn"]}


def test_sender_may_send_only_as_the_allowed_addresses_and_display_names():
    """Issue 13 part 1, second line of defence: the SES condition keys ses:FromAddress (exact) and
    ses:FromDisplayName (when the message has one) limit the role to the access levels' senders."""
    doc = render_policy("sender", **VALUES["sender"])
    (ses,) = [s for s in doc["Statement"] if s["Action"] == ["ses:SendEmail"]]
    assert ses["Condition"]["StringEquals"]["ses:FromAddress"] == [
        "billing@mail.example.com", "no-reply@mail.example.com"]
    assert ses["Condition"]["StringLikeIfExists"]["ses:FromDisplayName"] == ["Example Billing"]
    (read,) = [s for s in doc["Statement"] if s["Sid"] == "ReadCallerKeyTags"]
    assert read["Action"] == ["apigateway:GET"] and read["Resource"] == ["arn:aws:apigateway:eu-west-1::/apikeys/*"]


def test_rotator_mutations_are_tag_scoped_and_kms_only_via_push_target_services():
    doc = render_policy("rotator", **VALUES["rotator"])
    for s in doc["Statement"]:
        if any(a in ("apigateway:POST", "apigateway:PATCH", "apigateway:DELETE") for a in s["Action"]):
            cond = s["Condition"]["StringEquals"]
            assert cond.get("aws:ResourceTag/secure-mail-api:stack") == "dev" or \
                cond.get("aws:RequestTag/secure-mail-api:stack") == "dev", s["Sid"]
        if any(a.startswith("kms:") for a in s["Action"]):
            assert s["Resource"] == [VALUES["rotator"]["kms_key_arn"]]
            assert set(s["Condition"]["StringEquals"]["kms:ViaService"]) == {
                "secretsmanager.eu-west-1.amazonaws.com", "ssm.eu-west-1.amazonaws.com"}


def test_infra_renders_these_same_files():
    """infra/ loads the templates through policies.iam.render_policy (no copy that could drift)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[3] / "infra" / "components"
    assert 'render_policy("rotator"' in (root / "rotator.py").read_text()
    assert 'render_policy(\n                    "sender"' in (root / "sender.py").read_text() or \
        'render_policy("sender"' in (root / "sender.py").read_text()
