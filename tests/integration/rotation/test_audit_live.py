"""`rotation audit` as a real process on the embedded stack (OpenBao + moto): after real rotations,
with an orphan API key, a drifted Vault policy, a drifted IAM role policy, the policy check's JSON,
and a Vault audit log recorded from this test's own denied requests and logins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hvac
import jsonschema
import pytest
import yaml

from rotation.reporting.audit_report import load_schema

ROOT = Path(__file__).resolve().parents[3]
ROLE = "mail-api-rotation-lambda"
IAM_DOC = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["apigateway:GET", "apigateway:POST"], "Resource": "*"}]}


def audit_cli(env, *args, extra_env=None):
    e = {**os.environ, "ROTATION_CONSUMERS_FILE": str(env.tmp / "consumers.yaml"),
         "ROTATION_FILE_TARGET_DIRS": str(env.tmp), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "rotation.cli", "audit", *args], env=e, text=True, cwd=ROOT,
                          capture_output=True, timeout=180, check=False)


@pytest.fixture
def world(env):
    """Rotations, an orphan key, drift on both sides, and a recorded Vault audit log."""
    data = {"version": 1, "usage_plans": dict(env.consumers.usage_plans),
            "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
            "consumers": [{"name": c.name, "tier": c.tier,
                           "targets": [{"type": "file", "path": str(env.tmp / f"{c.name}.key")}]}
                          for c in env.consumers.consumers]}
    (env.tmp / "consumers.yaml").write_text(yaml.safe_dump(data))
    log = Path(env.stack.audit_log)
    offset = log.stat().st_size if log.exists() else 0

    engine = env.engine()
    assert engine.run().exit_code == 0                              # bootstrap: serial 1 everywhere
    assert env.engine().run(only=["billing"], force=["billing"], emergency=["billing"]).exit_code == 0
    assert env.state("billing").current.serial == 2

    api = env.apigw()
    orphan = api.create_api_key(name="secure-mail-api-dev-crm-99", enabled=True, value="x" * 40, tags={
        "managed-by": "secure-mail-api-rotation", "secure-mail-api:stack": "dev", "secure-mail-api:consumer": "crm"})

    root = env.root()
    drifted = root.sys.read_acl_policy("mail-api-consumer-crm")["data"]["policy"] + (
        '\npath "secret/data/mail-api/keys/billing" {\n  capabilities = ["read"]\n}\n')
    root.sys.create_or_update_acl_policy("mail-api-consumer-crm", drifted)
    # what an auditor's token needs to read the policies in place (not in mail-api-auditor today)
    root.sys.create_or_update_acl_policy("audit-policy-reader", 'path "sys/policies/acl" { capabilities = ["list"] }\n'
                                         'path "sys/policies/acl/mail-api-*" { capabilities = ["read"] }\n')
    reader_token = root.auth.token.create(policies=["audit-policy-reader"], ttl="10m")["auth"]["client_token"]

    iam = env.stack.aws_session().client("iam", endpoint_url=env.stack.aws_endpoint)
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    in_place = {**IAM_DOC, "Statement": [{**IAM_DOC["Statement"][0],
                                          "Action": ["apigateway:GET", "apigateway:POST", "apigateway:DELETE"]}]}
    iam.put_role_policy(RoleName=ROLE, PolicyName="rotation", PolicyDocument=json.dumps(in_place))
    (env.tmp / "rotation.json").write_text(json.dumps(IAM_DOC))

    # Vault audit events: crm's app reads billing's key (denied), an unknown role logs in, a bad login
    rid, sid = env.creds.consumer_roles["crm"]
    crm = hvac.Client(url=env.stack.vault_addr)
    crm.auth.approle.login(role_id=rid, secret_id=sid)
    with pytest.raises(hvac.exceptions.Forbidden):
        crm.secrets.kv.v2.create_or_update_secret(path="mail-api/keys/newsletter", secret={"v": "y" * 40},
                                                  mount_point="secret")
    root.auth.approle.create_or_update_approle("ci-bot", token_policies=["default"], token_ttl="5m")
    bot_rid = root.auth.approle.read_role_id("ci-bot")["data"]["role_id"]
    bot_sid = root.auth.approle.generate_secret_id("ci-bot")["data"]["secret_id"]
    hvac.Client(url=env.stack.vault_addr).auth.approle.login(role_id=bot_rid, secret_id=bot_sid)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        hvac.Client(url=env.stack.vault_addr).auth.approle.login(role_id=bot_rid, secret_id="not-the-secret-id")
    with pytest.raises(hvac.exceptions.InvalidRequest):   # an unknown role id: logged with the error in the response
        hvac.Client(url=env.stack.vault_addr).auth.approle.login(role_id="no-such-role-id", secret_id=bot_sid)
    with log.open("rb") as f:
        f.seek(offset)
        (env.tmp / "vault-audit.log").write_bytes(f.read())     # the recorded log: this test's events only

    findings = subprocess.run(
        [sys.executable, "-m", "policies.check", "--json",
         "--program", "tests.unit.policies.test_policy_dev_program:synthetic_violating"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert findings.returncode == 1, findings.stderr
    (env.tmp / "findings.json").write_text(findings.stdout)
    values = [r.value for c in env.consumers.consumers
              for r in (env.state(c.name).current, env.state(c.name).previous) if r]
    return {"orphan": orphan["id"], "reader_token": reader_token, "values": values}


def test_audit_json_and_html_report_rotations_inventory_drift_findings_and_vault_anomalies(env, world):
    html = env.tmp / "report.html"
    r = audit_cli(env, "--output", "json", "--html", str(html), "--expected-policies", "pkg:rotation.vault_policies",
                  "--policy-token-env", "AUDIT_VAULT_TOKEN", "--iam-policy", str(env.tmp / "rotation.json"),
                  "--iam-role", ROLE, "--policy-findings", str(env.tmp / "findings.json"),
                  "--vault-audit-log", str(env.tmp / "vault-audit.log"),
                  extra_env={"AUDIT_VAULT_TOKEN": world["reader_token"]})
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    jsonschema.validate(report, load_schema(), format_checker=jsonschema.FormatChecker())

    by_name = {c["name"]: c for c in report["consumers"]}
    billing = by_name["billing"]
    assert billing["current"]["serial"] == 2 and billing["kv_version"] >= 2
    assert billing["last_rotation"]["outcome"] == "ok"
    assert [h["serial"] for h in billing["history"]] == [1, 2]
    assert billing["acknowledgements"]["targets"] and all(t["ok"] for t in billing["acknowledgements"]["targets"])
    assert billing["traffic"]["current"]["key_id"] == env.state("billing").current.key_id
    assert by_name["crm"]["current"]["serial"] == 1 and not by_name["crm"]["overdue"]

    inv = report["key_inventory"]
    assert [k["key_id"] for k in inv["unknown_to_vault"]] == [world["orphan"]]
    assert inv["missing_in_api_gateway"] == []

    drift = {i["name"]: i["state"] for i in report["policy_drift"]["items"]}
    assert drift["mail-api-consumer-crm"] == "drift"
    assert drift["mail-api-rotator"] == drift["mail-api-auditor"] == drift["mail-api-consumer-billing"] == "match"
    assert drift[f"{ROLE}/rotation"] == "drift"

    assert report["security_policy"]["mandatory"] >= 1

    va = report["vault_audit"]
    assert [(d["path"], d["identity"]) for d in va["denied"]] == [
        ("secret/data/mail-api/keys/newsletter", "mail-api-consumer-crm")]
    assert [d["identity"] for d in va["unexpected_logins"]] == ["ci-bot"]
    assert len(va["failed_logins"]) == 2

    kinds = {f["kind"] for f in report["findings"]}
    assert {"unknown_key", "policy_drift", "security_policy", "vault_denied", "unexpected_login",
            "failed_login"} <= kinds

    page = html.read_text()
    assert page.count("<svg") == 2 and "mail-api-consumer-crm" in page
    assert oct(html.stat().st_mode & 0o777) == "0o600"          # like the rest of what the rotator writes
    for v in world["values"]:
        assert v not in r.stdout and v not in page and v not in r.stderr
    assert "hmac-sha256" not in r.stdout and world["reader_token"] not in r.stdout + page


def test_audit_with_the_rotation_token_reports_policies_unreadable_and_the_table_names_every_consumer(env, world):
    r = audit_cli(env, "--expected-policies", "pkg:rotation.vault_policies")
    assert r.returncode == 0, r.stderr
    assert "billing" in r.stdout and "crm" in r.stdout and "newsletter" in r.stdout
    assert "unreadable" in r.stdout and "sys/policies/acl" in r.stdout
    r = audit_cli(env, "--fail-on", "high")
    assert r.returncode == 1 and "unknown_key" in r.stdout


def test_audit_usage_errors_exit_2_before_reading_anything(env, world):
    bad = env.tmp / "bad.json"
    bad.write_text('{"not": "the check output"}')
    r = audit_cli(env, "--policy-findings", str(bad))
    assert r.returncode == 2 and "--policy-findings" in r.stderr and "policies.check --json" in r.stderr
    r = audit_cli(env, "--iam-policy", str(env.tmp / "rotation.json"))
    assert r.returncode == 2 and "--iam-role" in r.stderr
    r = audit_cli(env, "--expected-policies", str(env.tmp / "nope"))
    assert r.returncode == 2 and "--expected-policies" in r.stderr
    r = audit_cli(env, "--vault-audit-log", str(env.tmp / "nope.log"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = audit_cli(env, "--html", str(env.tmp / "no-dir" / "r.html"))
    assert r.returncode == 2 and "--html" in r.stderr and not (env.tmp / "no-dir").exists()
