"""Secrets Manager and SSM Parameter Store targets against the moto server (no boto3 stubs)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config

from rotation.dev.stack import free_port
from rotation.targets import Delivery
from rotation.targets.secretsmanager import SecretsManagerTarget, request_token
from rotation.targets.ssm import SsmParameterTarget

CANARY = "CANARY-aws-" + "q" * 30


def d(serial: int, value: str | None = None, rotation_id: str | None = None, fence: int = 0) -> Delivery:
    return Delivery(consumer="billing", serial=serial, rotation_id=rotation_id or f"rot-{serial}",
                    key_id=f"kid{serial}", value=value or f"{CANARY}-{serial}", fence=fence)


@pytest.fixture(scope="module")
def aws(stack):
    session = stack.aws_session()
    mk = lambda svc: session.client(svc, endpoint_url=stack.aws_endpoint)
    kms_key = mk("kms").create_key(Description="mail API keys")["KeyMetadata"]["KeyId"]
    return mk("secretsmanager"), mk("ssm"), kms_key


def test_request_token_is_deterministic_uuid():
    assert request_token("rot-1", 1) == request_token("rot-1", 1)
    assert request_token("rot-1", 1) != request_token("rot-1", 2) != request_token("rot-2", 1)
    assert len(request_token("rot-1", 1)) == 36


def test_secrets_manager_versions_and_stages(aws):
    sm, _, kms_key = aws
    target = SecretsManagerTarget(sm, "mail-api/billing/sm-1", kms_key_id=kms_key, required=True)
    r1 = target.push(d(1))
    assert r1.ok, r1.detail
    assert r1.extra["version_id"] == request_token("rot-1", 1)
    assert sm.describe_secret(SecretId="mail-api/billing/sm-1")["KmsKeyId"] == kms_key
    r2 = target.push(d(2))
    assert r2.ok, r2.detail
    current = json.loads(sm.get_secret_value(SecretId="mail-api/billing/sm-1")["SecretString"])
    assert current == {"api_key": f"{CANARY}-2", "serial": 2, "key_id": "kid2"}
    previous = json.loads(sm.get_secret_value(SecretId="mail-api/billing/sm-1",
                                              VersionStage="AWSPREVIOUS")["SecretString"])
    assert previous["serial"] == 1
    stages = {v["VersionId"]: v["VersionStages"]
              for v in sm.list_secret_version_ids(SecretId="mail-api/billing/sm-1")["Versions"]}
    assert stages == {request_token("rot-1", 1): ["AWSPREVIOUS"], request_token("rot-2", 2): ["AWSCURRENT"]}


def test_secrets_manager_retry_is_idempotent_and_conflict_reported(aws):
    sm, _, kms_key = aws
    target = SecretsManagerTarget(sm, "mail-api/billing/sm-2", kms_key_id=kms_key)
    assert target.push(d(1)).ok
    assert target.push(d(2)).ok
    again = target.push(d(2))                         # the engine retries the same delivery
    assert again.ok and again.extra["version_id"] == request_token("rot-2", 2)
    assert len(sm.list_secret_version_ids(SecretId="mail-api/billing/sm-2")["Versions"]) == 2
    assert json.loads(sm.get_secret_value(SecretId="mail-api/billing/sm-2")["SecretString"])["serial"] == 2
    clash = target.push(d(2, value="another-value-for-the-same-delivery-xxxx"))
    assert (clash.ok, clash.detail) == (False, "aws: ResourceExistsException")


def test_secrets_manager_redelivering_an_older_key_makes_it_awscurrent_again(aws):
    """A rollback re-delivers the current key under its original ClientRequestToken: AWS ignores a
    put with an existing version id (AWSCURRENT stays put), so the target must move the label back.
    Read back with GetSecretValue AWSCURRENT, as an app does."""
    sm, _, kms_key = aws
    sid = "mail-api/billing/sm-rollback"
    target = SecretsManagerTarget(sm, sid, kms_key_id=kms_key)
    assert target.push(d(1, fence=1)).ok
    assert target.push(d(2, fence=2)).ok              # the rotation's new key
    back = target.push(d(1, fence=3))                 # the rollback (a later fence) gives serial 1 back
    assert back.ok, back.detail
    for read in ({}, {"VersionStage": "AWSCURRENT"}):   # as apps read it: default stage, or named
        current = json.loads(sm.get_secret_value(SecretId=sid, **read)["SecretString"])
        assert current == {"api_key": f"{CANARY}-1", "serial": 1, "key_id": "kid1"}
    stages = {v["VersionId"]: v["VersionStages"] for v in sm.list_secret_version_ids(SecretId=sid)["Versions"]}
    assert stages[back.extra["version_id"]] == ["AWSCURRENT"]
    assert stages[request_token("rot-2", 2)] == ["AWSPREVIOUS"]
    again = target.push(d(1, fence=3))                # a retry of the rollback writes nothing
    assert again.ok and again.extra["version_id"] == back.extra["version_id"]
    assert len(sm.list_secret_version_ids(SecretId=sid)["Versions"]) == len(stages)
    assert json.loads(sm.get_secret_value(SecretId=sid)["SecretString"])["serial"] == 1
    assert target.push(d(3, fence=4)).ok              # the next rotation proceeds as usual
    assert json.loads(sm.get_secret_value(SecretId=sid)["SecretString"])["serial"] == 3


def test_secrets_manager_unreachable_reports_error_code_only(aws):
    sm = boto3.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1").client(
        "secretsmanager", endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1))
    result = SecretsManagerTarget(sm, "x").push(d(1))
    assert result.ok is False and result.detail == "aws: EndpointConnectionError"


def test_ssm_securestring_with_kms_key_and_idempotent_retry(aws):
    _, ssm, kms_key = aws
    name = "/mail-api/billing/api-key"
    target = SsmParameterTarget(ssm, name, kms_key_id=kms_key, required=False)
    assert target.required is False and target.target_id == f"ssm:{name}"
    r1 = target.push(d(1))
    assert r1.ok and r1.extra["version"] == 1
    (meta,) = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
    assert (meta["Type"], meta["KeyId"], meta["Tier"]) == ("SecureString", kms_key, "Standard")
    assert CANARY not in meta["Description"]
    retry = target.push(d(1))
    assert retry.ok and retry.detail == "already up to date"
    assert ssm.get_parameter(Name=name)["Parameter"]["Version"] == 1
    assert target.push(d(2)).ok
    value = json.loads(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    assert value == {"api_key": f"{CANARY}-2", "serial": 2, "key_id": "kid2"}
    history = ssm.get_parameter_history(Name=name)["Parameters"]
    assert [h["Version"] for h in history] == [1, 2]


def test_ssm_failure_reports_error_code_only(aws):
    _, ssm, kms_key = aws
    result = SsmParameterTarget(ssm, "aws/reserved-prefix", kms_key_id=kms_key).push(d(1))
    assert (result.ok, result.detail) == (False, "aws: ValidationException")


def test_targets_never_expose_the_value(aws):
    sm, ssm, kms_key = aws
    results = [SecretsManagerTarget(sm, "mail-api/billing/sm-3", kms_key_id=kms_key).push(d(1)),
               SsmParameterTarget(ssm, "/mail-api/billing/k3", kms_key_id=kms_key).push(d(1)),
               SsmParameterTarget(ssm, "aws/x", kms_key_id=kms_key).push(d(1))]
    text = "\n".join(repr(r) for r in results) + repr(SecretsManagerTarget(sm, "a")) + repr(d(1))
    assert CANARY not in text
