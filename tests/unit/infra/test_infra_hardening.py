"""Remaining hardening (issue 11, item 5): the rotation schedule encrypted with the data CMK
(CKV_AWS_297), the Known Bad Inputs managed rule group on the web ACL (CKV_AWS_192), and Lambda
code signing as a stack option (``codeSigning``; CKV_AWS_272).

``dev_run`` is the dev stack (code signing off, as Pulumi.dev.yaml records); ``signed`` is the dev
stack with ``codeSigning.enabled: true``. Every mock test returns the Output it checks (P5).
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest

from infra.components import signing
from infra.config import PROJECT, ConfigError, dev_stack_config, parse_stack_config
from infra.mocks import run_program
from policies.check import record_infra_program, run_check

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT = "123456789012"
DATA_KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/encryption-data-id"
KEY = f"{PROJECT}:codeSigning"
FUNCTIONS = ("sender-function", "scheduled-rotator-function")
SIGNING_TYPES = ("aws:signer/signingProfile:SigningProfile", "aws:lambda/codeSigningConfig:CodeSigningConfig",
                 "aws:signer/signingJob:SigningJob", "aws:s3/bucketObjectv2:BucketObjectv2")
TRUSTED = f"arn:aws:signer:eu-west-1:{ACCOUNT}:/signing-profiles/layer_publisher/Ab12Cd34Ef"


def _signing_config(**code_signing: object) -> dict[str, str]:
    cfg = dev_stack_config()
    cfg[KEY] = json.dumps({"enabled": True, **code_signing})
    return cfg


def _one(resources, typ: str, name: str):
    found = [r for r in resources if r.typ == typ and r.name == name]
    assert len(found) == 1, (typ, name, [r.name for r in resources if r.typ == typ])
    return found[0]


@pytest.fixture(scope="module")
def signed():
    """The dev stack with code signing enabled (and one extra trusted profile for layers)."""
    return run_program(_signing_config(signatureValidityMonths=60, trustedProfileVersionArns=[TRUSTED]))


# --- EventBridge Scheduler schedule: data CMK (CKV_AWS_297) -------------------------------------

@pulumi.runtime.test
def test_rotation_schedule_is_encrypted_with_the_data_cmk(dev_run, h):
    """The schedule carries ``kmsKeyArn`` = the data CMK (not the AWS owned key), in the explicit
    ``default`` group whose name the execution role's decrypt condition uses."""

    def check(resources):
        sched = _one(resources, "aws:scheduler/schedule:Schedule", "scheduled-rotator-schedule")
        assert sched.inputs["kmsKeyArn"] == DATA_KEY
        assert sched.inputs["groupName"] == "default" and sched.inputs["name"] == "secure-mail-api-dev-rotation"

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_scheduler_role_decrypts_only_its_own_schedule(dev_run, h):
    """The execution role may ``kms:Decrypt`` with the data key only when the encryption context
    names this schedule's ARN (EventBridge Scheduler execution role with a customer managed key)."""

    def check(resources):
        policy = _one(resources, "aws:iam/rolePolicy:RolePolicy", "scheduled-rotator-scheduler-policy")
        (stmt,) = [s for s in h.statements(policy.inputs["policy"]) if s.get("Sid") == "DecryptOwnSchedule"]
        assert stmt == {"Sid": "DecryptOwnSchedule", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": DATA_KEY,
                        "Condition": {"StringEquals": {"kms:EncryptionContext:aws:scheduler:schedule-arn":
                                                       f"arn:aws:scheduler:eu-west-1:{ACCOUNT}:schedule/default/"
                                                       "secure-mail-api-dev-rotation"}}}

    return h.check_recorded(dev_run, check)


# --- WAF: Known Bad Inputs (CKV_AWS_192) --------------------------------------------------------

@pulumi.runtime.test
def test_web_acl_runs_known_bad_inputs_rule_group_in_block_mode(dev_run, h):
    """AWSManagedRulesKnownBadInputsRuleSet (vendor AWS) is on the web ACL, its own actions kept
    (override none) and no rule of it downgraded to count (Log4JRCE_* included)."""

    def check(resources):
        (acl,) = h.of_type(resources, "aws:wafv2/webAcl:WebAcl")
        groups = [r for r in acl.inputs["rules"]
                  if r["statement"].get("managedRuleGroupStatement", {}).get("name")
                  == "AWSManagedRulesKnownBadInputsRuleSet"]
        assert len(groups) == 1, [r["name"] for r in acl.inputs["rules"]]
        (rule,) = groups
        statement = rule["statement"]["managedRuleGroupStatement"]
        assert statement["vendorName"] == "AWS"
        assert rule["overrideAction"] == {"none": {}}
        assert not statement.get("ruleActionOverrides")
        assert rule["visibilityConfig"]["cloudwatchMetricsEnabled"] is True

    return h.check_recorded(dev_run, check)


# --- code signing off (the dev stack) -----------------------------------------------------------

@pulumi.runtime.test
def test_code_signing_off_declares_no_signing_resources(dev_run, h):
    """Pulumi.dev.yaml leaves ``codeSigning.enabled`` false: no Signer/code-signing resources, both
    functions ship their inline package without a code-signing config."""
    assert dev_run.stack.config.code_signing.enabled is False and dev_run.stack.code_signing is None

    def check(resources):
        assert not [r for r in resources if r.typ in SIGNING_TYPES]
        for name in FUNCTIONS:
            fn = _one(resources, "aws:lambda/function:Function", name)
            assert "code" in fn.inputs and not fn.inputs.get("codeSigningConfigArn") and not fn.inputs.get("s3Key")

    return h.check_recorded(dev_run, check)


def test_dev_stack_file_records_why_code_signing_is_off():
    """The dev stack's decision is written next to the key (the pack's suppressions rest on it)."""
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    block = text[:text.index(f"  {KEY}:")].rsplit("\n\n", 1)[-1]
    assert "Enforce applies to" in block and "layers" in block
    suppressions = json.loads((ROOT / "policies/pack/config/dev.json").read_text())["lambda-code-signing"]
    assert set(suppressions["suppressions"]) == set(FUNCTIONS)
    assert all("codeSigning.enabled" in why for why in suppressions["suppressions"].values())


# --- code signing on ----------------------------------------------------------------------------

@pulumi.runtime.test
def test_signing_profile_and_enforcing_config(signed, h):
    """One Signer profile (AWSLambda-SHA384-ECDSA, validity in months, name of [0-9A-Za-z_]) and one
    code-signing config that Enforces and trusts that profile's version plus the configured ones."""
    cs = signed.stack.code_signing
    assert cs is not None

    def check(v):
        version_arn = v[0]
        (profile,) = h.of_type(signed.resources, "aws:signer/signingProfile:SigningProfile")
        assert profile.inputs["platformId"] == signing.PLATFORM_ID == "AWSLambda-SHA384-ECDSA"
        assert profile.inputs["signatureValidityPeriod"] == {"type": "MONTHS", "value": 60}
        assert profile.inputs["name"] == "secure_mail_api_dev_lambda"
        (config,) = h.of_type(signed.resources, "aws:lambda/codeSigningConfig:CodeSigningConfig")
        assert config.inputs["policies"] == {"untrustedArtifactOnDeployment": "Enforce"}
        assert config.inputs["allowedPublishers"] == {"signingProfileVersionArns": [version_arn, TRUSTED]}

    return pulumi.Output.all(cs.profile.version_arn, *h.component_urns(signed)).apply(check)


@pulumi.runtime.test
def test_both_functions_enforce_the_config_and_deploy_signed_objects(signed, h):
    """Each function: ``codeSigningConfigArn`` = the config; code from the signed object the Signer
    job wrote under ``signed/<function>/`` (no inline archive); the job signed exactly the uploaded
    version of ``unsigned/<function>.zip`` in the artifact bucket."""
    cs = signed.stack.code_signing

    def check(v):
        config_arn, bucket_id, profile_name = v[:3]
        for name in FUNCTIONS:
            fn = _one(signed.resources, "aws:lambda/function:Function", name)
            assert fn.inputs["codeSigningConfigArn"] == config_arn
            assert "code" not in fn.inputs
            package = _one(signed.resources, "aws:s3/bucketObjectv2:BucketObjectv2", f"{name}-package")
            assert package.inputs["bucket"] == bucket_id and package.inputs["key"] == f"unsigned/{name}.zip"
            assert isinstance(package.inputs["source"], pulumi.Archive)
            job = _one(signed.resources, "aws:signer/signingJob:SigningJob", f"{name}-signing-job")
            assert job.inputs["profileName"] == profile_name
            assert job.inputs["source"] == {"s3": {"bucket": bucket_id, "key": f"unsigned/{name}.zip",
                                                   "version": f"{name}-package-version"}}
            assert job.inputs["destination"] == {"s3": {"bucket": bucket_id, "prefix": f"signed/{name}/"}}
            assert fn.inputs["s3Bucket"] == bucket_id
            assert fn.inputs["s3Key"] == f"signed/{name}/{name}-signing-job-id.zip"

    return pulumi.Output.all(cs.config.arn, cs.artifacts.bucket.id, cs.profile.name,
                             *h.component_urns(signed)).apply(check)


@pulumi.runtime.test
def test_signed_rotator_deploys_the_built_artifact_and_a_signed_consumers_layer(signed, h):
    """Enforce applies to layers too: with signing on, the function's package is dist/rotator.zip
    and the consumers-file layer is uploaded and signed as well, never deployed unsigned."""
    def check(resources):
        package = _one(resources, "aws:s3/bucketObjectv2:BucketObjectv2", "scheduled-rotator-function-package")
        assert package.inputs["source"].path.endswith("dist/rotator.zip")
        layer_package = _one(resources, "aws:s3/bucketObjectv2:BucketObjectv2", "scheduled-rotator-consumers-package")
        assert "examples/consumers.yaml" in set(layer_package.inputs["source"].assets)
        layer = _one(resources, "aws:lambda/layerVersion:LayerVersion", "scheduled-rotator-consumers")
        assert "code" not in layer.inputs and layer.inputs["s3Key"]

    return h.check_recorded(signed, check)


@pulumi.runtime.test
def test_artifact_bucket_is_a_versioned_cmk_encrypted_secure_bucket(signed, h):
    """Signer needs a versioned source bucket; the packages are encrypted with the data CMK."""

    def check(resources):
        versioning = _one(resources, "aws:s3/bucketVersioning:BucketVersioning", "code-signing-artifacts-versioning")
        assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
        sse = _one(resources, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                   "code-signing-artifacts-sse")
        default = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": DATA_KEY}

    return h.check_recorded(signed, check)


def test_signed_stack_passes_the_pack_without_code_signing_suppressions():
    """With ``codeSigning.enabled`` the whole pack passes on the recorded program with no
    suppression for lambda-code-signing (and the new config/bucket satisfy their rules)."""
    config = json.loads((ROOT / "policies/pack/config/dev.json").read_text())
    config.pop("lambda-code-signing")
    recorded = record_infra_program(_signing_config())
    _, violations = run_check(lambda: recorded, config)
    assert violations == [], [v.message for v in violations]
    assert {"aws:lambda/codeSigningConfig:CodeSigningConfig", "aws:scheduler/schedule:Schedule"} <= {
        r.typ for r in recorded}


def test_unsigned_functions_fail_the_pack_without_the_suppressions():
    """The dev stack's suppressions are load-bearing: dropping them reports both functions."""
    config = json.loads((ROOT / "policies/pack/config/dev.json").read_text())
    config.pop("lambda-code-signing")
    recorded = record_infra_program()
    _, violations = run_check(lambda: recorded, config)
    assert {(v.rule, v.message.split(":")[0]) for v in violations} == {
        ("lambda-code-signing", name) for name in FUNCTIONS}


# --- config -------------------------------------------------------------------------------------

@pytest.mark.parametrize("code_signing,field,text", [
    ({"signatureValidityMonths": 136}, "signatureValidityMonths", "135"),
    ({"signatureValidityMonths": 0}, "signatureValidityMonths", "1"),
    ({"trustedProfileVersionArns": ["arn:aws:iam::123456789012:role/x"]}, "trustedProfileVersionArns",
     "Signer profile version ARN"),
    ({"enabled": True, "unknown": 1}, "unknown", "unknown config key"),
])
def test_bad_code_signing_config_is_refused_naming_the_key(code_signing, field, text):
    cfg = dev_stack_config()
    cfg[KEY] = json.dumps(code_signing)
    with pytest.raises(ConfigError) as err:
        parse_stack_config(cfg)
    line = next((e for e in err.value.errors if e.startswith(f"{KEY}.{field}")), None)
    assert line is not None and text in line, err.value.errors


def test_code_signing_defaults_off_with_the_maximum_validity():
    cfg = dev_stack_config()
    cfg.pop(KEY, None)
    parsed = parse_stack_config(cfg).code_signing
    assert (parsed.enabled, parsed.signature_validity_months, parsed.trusted_profile_version_arns) == (False, 135, [])


def test_profile_name_keeps_to_signer_characters():
    assert signing.profile_name("secure-mail-api-prod") == "secure_mail_api_prod_lambda"
    with pytest.raises(ValueError, match="longer than 64"):
        signing.profile_name("x" * 60)
