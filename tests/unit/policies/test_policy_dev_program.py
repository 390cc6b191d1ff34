"""The recorded dev program (``infra/`` under mocks, ``Pulumi.dev.yaml``) against the whole pack,
and the offline checker ``python -m policies.check``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from policies.check import format_report, main, record_infra_program, run_check
from policies.iam import render_policy
from policies.pack.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[3]
DEV_CONFIG = ROOT / "policies" / "pack" / "config" / "dev.json"
EXPECTED_TYPES = {
    "aws:apigateway/restApi:RestApi", "aws:apigateway/stage:Stage", "aws:apigateway/domainName:DomainName",
    "aws:apigateway/methodSettings:MethodSettings", "aws:apigateway/method:Method", "aws:apigateway/usagePlan:UsagePlan",
    "aws:wafv2/webAcl:WebAcl", "aws:wafv2/webAclAssociation:WebAclAssociation", "aws:kms/key:Key",
    "aws:s3/bucket:Bucket", "aws:dynamodb/table:Table", "aws:sqs/queue:Queue", "aws:sns/topic:Topic",
    "aws:lambda/function:Function", "aws:cloudtrail/trail:Trail", "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:iam/rolePolicy:RolePolicy",
}


@pytest.fixture(scope="module")
def recorded():
    return record_infra_program()


def test_the_recording_is_complete_before_it_is_checked(recorded):
    """A recording inspected too early is empty and would pass vacuously."""
    assert len(recorded) > 50
    assert EXPECTED_TYPES <= {r.typ for r in recorded}


def test_the_pack_sees_the_links_of_the_recording(recorded):
    """Dropping a companion resource from the real recording is caught: links resolve offline."""
    aws = [r for r in recorded if not r.typ.startswith("secure-mail-api:")]
    without_bpa = [r for r in aws if r.typ != "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"]
    without_assoc = [r for r in aws if r.typ != "aws:wafv2/webAclAssociation:WebAclAssociation"]
    assert {v.rule for v in evaluate(without_bpa, rules=["s3-bucket-public-access-block"])} == {
        "s3-bucket-public-access-block"}
    assert {v.rule for v in evaluate(without_assoc, rules=["apigateway-stage-waf"])} == {"apigateway-stage-waf"}


def test_infra_attaches_the_rendered_iam_templates(recorded):
    """The program's role policies are exactly the repository's templates (no drift possible)."""
    docs = [json.loads(r.inputs["policy"]) for r in recorded if r.typ == "aws:iam/rolePolicy:RolePolicy"]
    sids = {tuple(s.get("Sid") for s in d["Statement"]) for d in docs}
    for name, values in (("rotator", {"region": "r", "stack": "s", "kms_key_arn": "k"}),
                         ("sender", {**{k: "x" for k in ("ses_identity_arn", "configuration_set_arn", "table_arn",
                                                         "archive_bucket_arn", "kms_key_arn",
                                                         "audit_mac_key_arn", "region")},
                                     "from_addresses": '["x"]', "from_display_names": '["x"]'})):
        assert tuple(s["Sid"] for s in render_policy(name, **values)["Statement"]) in sids, name


def test_the_recorded_dev_program_passes_the_whole_pack(recorded):
    config = json.loads(DEV_CONFIG.read_text())
    resources, violations = run_check(lambda: recorded, config)
    assert violations == [], format_report(resources, violations)


def test_policy_check_cli_exit_codes(tmp_path, capsys):
    assert main(["--list"]) == 0
    assert "apigateway-domain-name-tls-policy" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"no-such-rule": "advisory"}))
    assert main(["--config", str(bad)]) == 2
    assert main(["--no-such-flag"]) == 2
    assert main(["--program", "not-a-spec"]) == 2


def synthetic_compliant():
    sys.path.insert(0, str(Path(__file__).parent))
    from policy_golden import golden
    return golden()


def synthetic_violating():
    res = synthetic_compliant()
    for typ, _, props in res:
        if typ == "aws:apigateway/domainName:DomainName":
            props["securityPolicy"] = "TLS_1_2"
    return res


def test_policy_check_on_any_record_program_shaped_function(capsys):
    assert main(["--program", f"{__name__}:synthetic_compliant"]) == 0
    assert main(["--program", f"{__name__}:synthetic_violating"]) == 1
    out = capsys.readouterr().out
    assert "[APIGateway.11]" in out and "domain: securityPolicy is 'TLS_1_2'" in out


def test_policy_check_on_the_dev_program_as_a_subprocess(recorded):
    """What ``make policy-check`` runs: it exits 1 exactly when the in-process check finds violations."""
    proc = subprocess.run([sys.executable, "-m", "policies.check", "--config", str(DEV_CONFIG)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    _, violations = run_check(lambda: recorded, json.loads(DEV_CONFIG.read_text()))
    assert "checked " in proc.stdout, proc.stderr
    assert proc.returncode == (1 if violations else 0), proc.stdout + proc.stderr
    for v in violations:
        assert v.message in proc.stdout


def test_policy_check_json_output_lists_each_violation_with_its_controls_and_keeps_the_exit_code(capsys):
    """``--json`` (read by ``rotation audit --policy-findings``): one object, format policies.check/v1."""
    assert main(["--program", f"{__name__}:synthetic_violating", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "policies.check/v1" and data["mandatory"] >= 1 and data["resources"] > 0
    hit = [v for v in data["violations"] if "APIGateway.11" in v["controls"]]
    assert hit and hit[0]["level"] == "mandatory" and "TLS_1_2" in hit[0]["message"]
    assert main(["--program", f"{__name__}:synthetic_compliant", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mandatory"] == 0
