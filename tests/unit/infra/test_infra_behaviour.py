"""Program-level behaviour: deployment triggers (P1), in-place web ACL updates (P2), secrets (P4),
the canary for P5, stack outputs, and the mocks recorder other packages rely on.

Tests that need a second config run the program again with ``infra.mocks.run_program``; runs are
sequential and each installs fresh mocks, so the session's ``dev_run`` stays valid.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pulumi
import pulumi_aws as aws
import pytest

from infra import outputs as out
from infra.config import DEV_SECRET_STANDINS, PROJECT, dev_stack_config
from infra.mocks import RecordingMocks, record_program, run_program


def _cfg(**overrides: object) -> dict[str, str]:
    cfg = dev_stack_config()
    for key, value in overrides.items():
        cfg[f"secure-mail-api:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return cfg


def _trigger(run) -> pulumi.Output:
    return run.stack.api.deployment.triggers.apply(lambda t: t["redeployment"])


# --- P1: a method or integration change redeploys the stage -------------------------------

@pulumi.runtime.test
def test_p1_integration_change_changes_deployment_trigger(dev_run):
    """P1: changing the integration (timeout) gives a new Deployment trigger; program run twice."""
    other = run_program(_cfg(integrationTimeoutMs=20000))
    return pulumi.Output.all(_trigger(dev_run), _trigger(other)).apply(lambda v: _assert(v[0] != v[1]))


@pulumi.runtime.test
def test_p1_method_change_changes_deployment_trigger(dev_run, no_cognito_run):
    """P1: changing the method (authorization COGNITO_USER_POOLS -> NONE) gives a new trigger."""
    return pulumi.Output.all(_trigger(dev_run), _trigger(no_cognito_run)).apply(lambda v: _assert(v[0] != v[1]))


@pulumi.runtime.test
def test_p1_trigger_is_stable_when_the_api_does_not_change(dev_run):
    """No spurious redeploys: same config, or a change outside the API (alarm e-mail, WAF limits),
    keeps the trigger, so the trigger hashes the API spec and nothing else."""
    same = run_program()
    unrelated = run_program(_cfg(alarmEmail="oncall@example.com", waf={"ipRateLimit": 500}))
    return pulumi.Output.all(_trigger(dev_run), _trigger(same), _trigger(unrelated)).apply(
        lambda v: _assert(v[0] == v[1] == v[2] and re.fullmatch(r"[0-9a-f]{64}", v[0])))


# --- P2: a WAF rule change is an in-place update -----------------------------------------

def test_p2_web_acl_rule_change_is_in_place_update(monkeypatch):
    """P2: with different rules, the web ACL keeps its URN, name and scope (the arguments that force
    a replacement), and it is declared without replace_on_changes / delete_before_replace /
    replace_with, so Pulumi plans an update and the stage association stays."""
    captured: list[pulumi.ResourceOptions | None] = []
    original = aws.wafv2.WebAcl.__init__

    def spy(self, resource_name, *args, **kwargs):
        captured.append(kwargs.get("opts"))
        original(self, resource_name, *args, **kwargs)

    monkeypatch.setattr(aws.wafv2.WebAcl, "__init__", spy)
    first = run_program()
    second = run_program(_cfg(waf={"ipRateLimit": 2000, "apiKeyRateLimit": 5000, "allowLargeBodies": False}))
    (a,) = [r for r in first.resources if r.typ == "aws:wafv2/webAcl:WebAcl"]
    (b,) = [r for r in second.resources if r.typ == "aws:wafv2/webAcl:WebAcl"]
    assert a.inputs["rules"] != b.inputs["rules"]  # the rules did change
    assert a.urn == b.urn
    for replace_key in ("name", "scope", "namePrefix", "region"):
        assert a.inputs.get(replace_key) == b.inputs.get(replace_key)
    assert len(captured) == 2
    for opts in captured:
        assert opts is not None
        assert not opts.replace_on_changes and not opts.delete_before_replace
        assert not getattr(opts, "replace_with", None) and not getattr(opts, "replacement_trigger", None)
    (assoc_a,) = [r for r in first.resources if r.typ == "aws:wafv2/webAclAssociation:WebAclAssociation"]
    (assoc_b,) = [r for r in second.resources if r.typ == "aws:wafv2/webAclAssociation:WebAclAssociation"]
    assert assoc_a.inputs == assoc_b.inputs and assoc_a.urn == assoc_b.urn


# --- P4: no plain-text secret --------------------------------------------------------------

SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),            # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY"),
    re.compile(r"\bhvs\.[A-Za-z0-9_-]{20,}"),   # Vault/OpenBao service token
    re.compile(r"mock-client-secret"),          # the Cognito client secret the mocks return
]


@pulumi.runtime.test
def test_p4_no_plain_text_secret_in_recorded_resources_or_outputs(dev_run, h):
    """P4: no API key or usage-plan key resource, no secret-looking value in any input, the Lambda
    environment holds only names, and no stack output carries the client secret or is a secret.
    The dev stack's scheduled rotator logs in with AWS IAM auth, so the program stores no secret
    value at all (the AppRole opt-in's secret id: test_infra_rotator.test_secret_id_never_in_plain_text)."""
    planted = DEV_SECRET_STANDINS[f"{PROJECT}:rotationVaultSecretId"]

    def check(resources):
        assert not [r for r in resources if r.typ in ("aws:apigateway/apiKey:ApiKey",
                                                      "aws:apigateway/usagePlanKey:UsagePlanKey",
                                                      "aws:ssm/parameter:Parameter")]
        assert not [r for r in resources if r.typ == "aws:secretsmanager/secretVersion:SecretVersion"]
        for r in resources:
            for s in h.plain_strings(r.inputs, skip_secrets=False):
                assert not any(p.search(s) for p in SECRET_PATTERNS), (r.typ, r.name)
            assert not any(planted in s for s in h.plain_strings(r.inputs)), (r.typ, r.name)
        assert planted not in json.dumps(dev_run.exports, default=str)
        for value in dev_run.exports.values():
            for s in h.plain_strings(value, skip_secrets=False):
                assert not any(p.search(s) for p in SECRET_PATTERNS)
        assert not dev_run.secret_exports

    return h.check_recorded(dev_run, check)


def test_p4_cognito_client_secret_is_marked_secret_and_never_exported(monkeypatch):
    """P4: the app client is declared with additional_secret_outputs=["clientSecret"] (the mock
    monitor does not apply that option, so the declaration itself is checked), and no stack output
    carries the secret."""
    captured: list[pulumi.ResourceOptions | None] = []
    original = aws.cognito.UserPoolClient.__init__

    def spy(self, resource_name, *args, **kwargs):
        captured.append(kwargs.get("opts"))
        original(self, resource_name, *args, **kwargs)

    monkeypatch.setattr(aws.cognito.UserPoolClient, "__init__", spy)
    run = run_program()
    assert len(captured) == 1 and "clientSecret" in (captured[0].additional_secret_outputs or [])
    assert out.OAUTH_CLIENT_ID in run.exports
    assert "mock-client-secret" not in json.dumps(run.exports)


def test_p4_secret_config_is_refused_not_copied_to_state():
    """P4: apart from rotationVaultSecretId, this program reads config as plain values; any other key
    stored as a secret would be copied in plain text into resource inputs, so it is refused
    (naming the key) before any resource exists."""
    from infra.config import ConfigError

    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as err:
        run_program(dev_stack_config(), secret_keys=["secure-mail-api:alarmEmail"], mocks=mocks)
    assert "secure-mail-api:alarmEmail" in str(err.value)
    assert "platform-alerts@example.com" not in str(err.value)
    assert mocks.resources == []


# --- P5 canary -----------------------------------------------------------------------------

def test_p5_canary_wrong_expectation_fails(dev_run, h):
    """P5 canary: a planted wrong expectation inside apply makes the mock test FAIL, for a
    resource Output and for the recorded-resources check, so these tests really assert."""

    @pulumi.runtime.test
    def wrong_rotation():
        return dev_run.stack.encryption.data_key.enable_key_rotation.apply(lambda v: _assert(v is False))

    @pulumi.runtime.test
    def wrong_recording():
        return h.check_recorded(dev_run, lambda rs: _assert(not [r for r in rs if r.typ == "aws:kms/key:Key"]))

    with pytest.raises(AssertionError):
        wrong_rotation()
    with pytest.raises(AssertionError):
        wrong_recording()


# --- outputs and the recorder ----------------------------------------------------------------

def test_stack_outputs_use_shared_names(dev_run):
    """Outputs: API base URL, usage plan ids by tier, KMS key ARN, alarm topic ARN, archive bucket,
    table name, rotation role ARN (+ extras), keyed by the constants in infra.outputs."""
    e = dev_run.exports
    required = (out.API_URL, out.USAGE_PLAN_IDS, out.KMS_KEY_ARN, out.ALARM_TOPIC_ARN, out.ARCHIVE_BUCKET,
                out.TABLE_NAME, out.ROTATOR_ROLE_ARN)
    assert set(required) <= set(e) <= set(out.ALL)
    assert e[out.API_URL] == "https://mail-api.dev.example.com"
    assert set(e[out.USAGE_PLAN_IDS]) == {"free", "standard", "premium"}
    assert e[out.KMS_KEY_ARN].startswith("arn:aws:kms:")
    assert e[out.TABLE_NAME] == "secure-mail-api-dev-messages"


def test_record_program_returns_every_resource_and_is_repeatable():
    """record_program(): complete (every resource has its URN), has a KMS key, runs twice per process."""
    first = record_program()
    second = record_program()
    assert first and len(first) == len(second)
    assert any(r.typ == "aws:kms/key:Key" for r in first)
    assert all(r.urn and r.urn.endswith(f"::{r.name}") for r in first)
    key = next(r for r in first if r.typ == "aws:kms/key:Key" and "customerMasterKeySpec" not in r.inputs)
    assert key.inputs["enableKeyRotation"] is True and key.inputs["rotationPeriodInDays"] == 365.0


def test_record_program_in_a_plain_python_process():
    """record_program() works outside pytest (the policy pack's `make policy-check` path)."""
    code = ("from infra.mocks import record_program; rs = record_program(); "
            "print(len(rs), sum(r.typ == 'aws:kms/key:Key' for r in rs))")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    total, keys = map(int, done.stdout.split()[-2:])
    assert total > 100 and keys == 3  # data, audit, audit-mac


def _assert(condition: bool) -> None:
    assert condition


def test_program_runs_in_preview_mode_without_mock_only_shortcuts():
    """`pulumi preview` leaves provider outputs unknown; the program must still declare every
    resource (no apply-time resource creation, no reliance on mock-resolved values)."""
    full = run_program()
    preview = run_program(preview=True)
    assert sorted((r.typ, r.name) for r in preview.resources) == sorted((r.typ, r.name) for r in full.resources)


def test_main_module_is_thin():
    """infra/__main__.py only imports infra.program.main and calls it (Pulumi.yaml main: infra/),
    requiring the built Lambda packages as `pulumi up` must."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[3] / "infra" / "__main__.py").read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert len(body) == 2
    assert isinstance(body[0], ast.ImportFrom) and body[0].module == "infra.program"
    assert isinstance(body[1], ast.Expr) and ast.unparse(body[1]) == "main(require_artifacts=True)"


def test_every_resource_is_parented_by_a_component(dev_run):
    """Style contract: one ComponentResource per concern parents its children, so every AWS
    resource's URN carries a secure-mail-api component type in its parent chain."""
    components = {r.typ for r in dev_run.resources if r.typ.startswith("secure-mail-api:")}
    assert {"secure-mail-api:security:Encryption", "secure-mail-api:storage:Storage", "secure-mail-api:api:Api",
            "secure-mail-api:security:Waf", "secure-mail-api:monitoring:Monitoring", "secure-mail-api:audit:Audit",
            "secure-mail-api:email:Email", "secure-mail-api:compute:Sender", "secure-mail-api:auth:OAuth",
            "secure-mail-api:rotation:RotatorAccess"} <= components
    for r in dev_run.resources:
        if r.typ.startswith("aws:"):
            parent_chain = r.urn.split("::")[2]
            assert parent_chain.startswith("secure-mail-api:") and "$" in parent_chain, r.urn
