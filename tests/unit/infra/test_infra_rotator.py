"""The optional scheduled rotator (stack config ``rotationSchedule``): docs/architecture.md "At scale".

EventBridge Scheduler -> Lambda (``rotation.aws_lambda.handler`` through the package's entry
module) -> alarm on Errors; docs/security-baseline.md §1.7 for the function. The dev stack
(Pulumi.dev.yaml) enables it with the default Vault login, AWS IAM auth, in a VPC, so ``dev_run`` is
the "enabled" run and declares no stored Vault credential (issue 11 items 2 and 3). AppRole is an
explicit opt-in (``approle_run``): P4 for its secret id (secret config ``rotationVaultSecretId``,
planted stand-in). Every mock test returns the Output it checks (P5).
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime.rpc import is_rpc_secret

from infra import outputs as out
from infra.artifacts import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, REPO_ROOT, ROTATOR, artifact_path
from infra.components import rotator as rot
from infra.config import (
    DEV_SECRET_STANDINS,
    PROJECT,
    SECRET_KEYS,
    ConfigError,
    dev_stack_config,
    parse_stack_config,
)
from infra.mocks import RecordingMocks, run_program
from policies.iam import render_policy

SECRET_KEY = f"{PROJECT}:rotationVaultSecretId"
SCHEDULE_KEY = f"{PROJECT}:rotationSchedule"
ROLE_ID = "4f2c8e1a-6b3d-4d9e-8a7f-1c5b2e9d0a63"
PLANTED = DEV_SECRET_STANDINS[SECRET_KEY]
ACCOUNT = "123456789012"
DATA_KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/encryption-data-id"
AUDIT_KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/encryption-audit-id"
DLQ = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:storage-dlq"
SCHEDULED_TYPES = ("aws:lambda/function:Function", "aws:scheduler/schedule:Schedule",
                   "aws:secretsmanager/secret:Secret", "aws:secretsmanager/secretVersion:SecretVersion")


def _schedule(**changes: object) -> dict:
    base = json.loads(dev_stack_config()[SCHEDULE_KEY])
    base.update(changes)
    return base


def _approle(**changes: object) -> dict:
    base = _schedule(**{"vaultAuth": "approle", "vaultRoleId": ROLE_ID, **changes})
    base.pop("vaultAwsServerId", None)
    return base


def _cfg(schedule: dict | None, secret: str | None = None) -> dict[str, str]:
    cfg = dev_stack_config()
    cfg.pop(SECRET_KEY, None)
    cfg.pop(SCHEDULE_KEY, None)
    if schedule is not None:
        cfg[SCHEDULE_KEY] = json.dumps(schedule)
    if secret is not None:
        cfg[SECRET_KEY] = secret
    return cfg


@pytest.fixture(scope="module")
def approle_run():
    """The dev stack with the AppRole opt-in (vaultAuth approle + the planted secret id)."""
    return run_program(_cfg(_approle(), secret=PLANTED))


def _one(resources, typ: str, name: str):
    found = [r for r in resources if r.typ == typ and r.name == name]
    assert len(found) == 1, (typ, name, [r.name for r in resources if r.typ == typ])
    return found[0]


# --- off by default ---------------------------------------------------------------------------

@pulumi.runtime.test
def test_disabled_by_default_declares_nothing(h):
    """Without rotationSchedule (and without the secret) no function, schedule or secret exists."""
    assert parse_stack_config(_cfg(None, secret=None)).rotation_schedule.enabled is False
    run = run_program(_cfg(None, secret=None))
    assert run.stack.scheduled_rotator is None
    assert out.ROTATOR_FUNCTION_NAME not in run.exports

    def check(resources):
        functions = [r.name for r in resources if r.typ == "aws:lambda/function:Function"]
        assert functions == ["sender-function"]
        assert not [r for r in resources if r.typ in SCHEDULED_TYPES[1:]]
        assert not [r for r in resources if r.typ == "secure-mail-api:rotation:ScheduledRotator"]

    return h.check_recorded(run, check)


def test_explicitly_disabled_needs_no_vault_settings():
    cfg = parse_stack_config(_cfg({"enabled": False}, secret=None))
    assert cfg.rotation_schedule.enabled is False and cfg.rotation_schedule.schedule_expression == "rate(1 hour)"


# --- the function (docs/security-baseline.md §1.7) ------------------------------------------------------------

@pulumi.runtime.test
def test_function_meets_the_lambda_baseline(dev_run, h):
    """python3.11, X-Ray active, reserved concurrency 1, DLQ, env encrypted with the data CMK,
    JSON logs to a CMK-encrypted log group with retention, timeout 300 s, the consumers-file layer,
    the dedicated role; the entry module that calls rotation.aws_lambda.handler."""
    sr = dev_run.stack.scheduled_rotator
    assert sr is not None

    def check(v):
        role_arn, lg_name, layer_arn = v[:3]
        fn = _one(dev_run.resources, "aws:lambda/function:Function", "scheduled-rotator-function")
        i = fn.inputs
        assert i["name"] == "secure-mail-api-dev-rotator"
        assert i["runtime"] == "python3.11" and i["handler"] == rot.HANDLER == "rotation.aws_lambda.handler"
        assert i["architectures"] == ["x86_64"]
        assert i["tracingConfig"] == {"mode": "Active"}
        assert i["reservedConcurrentExecutions"] == 1
        assert i["deadLetterConfig"] == {"targetArn": DLQ}
        assert i["kmsKeyArn"] == DATA_KEY
        assert i["timeout"] == 300
        assert i["layers"] == [layer_arn]
        assert i["role"] == role_arn
        assert i["loggingConfig"] == {"logFormat": "JSON", "logGroup": lg_name, "applicationLogLevel": "INFO",
                                      "systemLogLevel": "WARN"}
        lg = _one(dev_run.resources, "aws:cloudwatch/logGroup:LogGroup", "scheduled-rotator-logs")
        assert lg.inputs["kmsKeyId"] == AUDIT_KEY and lg.inputs["retentionInDays"] == 365
        assert lg.inputs["name"] == lg_name == "/secure-mail-api/secure-mail-api-dev/rotator"
        cfg = _one(dev_run.resources, "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
                   "scheduled-rotator-invoke-config")
        assert cfg.inputs["maximumRetryAttempts"] == 0 and cfg.inputs["maximumEventAgeInSeconds"] == 3600
        assert dev_run.exports[out.ROTATOR_FUNCTION_NAME] == "secure-mail-api-dev-rotator"

    return pulumi.Output.all(sr.role.arn, sr.log_group.name, sr.consumers_layer.arn,
                             *h.component_urns(dev_run)).apply(check)


@pulumi.runtime.test
def test_function_logs_in_with_aws_iam_auth_and_holds_no_vault_credential(dev_run, h):
    """Default vaultAuth aws: the env names the AWS auth role (bound in Vault to this function's role
    ARN) and the signed server-id header, the consumers file under /opt; no secret id, no token, no
    secret ARN, and no Secrets Manager secret at all."""
    def check(resources):
        fn = _one(resources, "aws:lambda/function:Function", "scheduled-rotator-function")
        env = fn.inputs["environment"]["variables"]
        assert env == {
            "VAULT_ADDR": "https://vault.example.com:8200",
            "VAULT_AUTH_METHOD": "aws",
            "VAULT_AWS_ROLE": "mail-api-rotator",
            "VAULT_AWS_IAM_SERVER_ID": "vault.example.com",
            "VAULT_KV_MOUNT": "secret",
            "VAULT_KV_PREFIX": "mail-api",
            "ROTATION_STACK": "dev",
            "ROTATION_CONSUMERS_FILE": "/opt/examples/consumers.yaml",
            "ROTATION_CANARY_URL": "https://mail-api.dev.example.com/v1/messages",
        }
        assert "AWS_REGION" not in env  # reserved: Lambda sets it
        assert not [r for r in resources if r.typ.startswith("aws:secretsmanager/")]
        assert dev_run.stack.scheduled_rotator.vault_secret is None
        role = _one(resources, "aws:iam/role:Role", "scheduled-rotator-role")
        assert role.inputs["name"] == "secure-mail-api-dev-rotator-lambda"   # the ARN Vault's role is bound to
        # the settings the function will load accept exactly this environment
        from rotation.settings import load_settings
        settings = load_settings(**{k: v for k, v in env.items() if k.startswith("VAULT_")
                                    and k not in ("VAULT_ADDR",)} | {"vault_addr": env["VAULT_ADDR"]})
        assert settings.vault_auth_method == "aws" and settings.vault_aws_role == "mail-api-rotator"

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_approle_opt_in_environment_holds_only_the_secret_arn(approle_run, h):
    """vaultAuth approle: the env has the role id and only the ARN of the secret holding the secret id."""
    sr = approle_run.stack.scheduled_rotator

    def check(v):
        secret_arn = v[0]
        fn = _one(approle_run.resources, "aws:lambda/function:Function", "scheduled-rotator-function")
        env = fn.inputs["environment"]["variables"]
        assert env["VAULT_AUTH_METHOD"] == "approle" and env["VAULT_ROLE_ID"] == ROLE_ID
        assert env[rot.SECRET_ARN_VARIABLE] == secret_arn
        assert not any(k in env for k in ("VAULT_SECRET_ID", "VAULT_TOKEN", "VAULT_AWS_ROLE"))

    return pulumi.Output.all(sr.vault_secret.arn, *h.component_urns(approle_run)).apply(check)


@pulumi.runtime.test
def test_jwt_login_may_request_only_its_audience_for_short_lived_tokens(h):
    """vaultAuth jwt (OpenBao): the env names the JWT role and audience; the role may call
    sts:GetWebIdentityToken only for that audience and for at most 300 s; no secret is declared."""
    schedule = _schedule(vaultAuth="jwt", vaultJwtAudience="https://vault.example.com")
    schedule.pop("vaultAwsServerId")
    run = run_program(_cfg(schedule))

    def check(resources):
        env = _one(resources, "aws:lambda/function:Function", "scheduled-rotator-function").inputs[
            "environment"]["variables"]
        assert env["VAULT_AUTH_METHOD"] == "jwt" and env["VAULT_JWT_ROLE"] == "mail-api-rotator"
        assert env["VAULT_JWT_AWS_AUDIENCE"] == "https://vault.example.com"
        runtime = _one(resources, "aws:iam/rolePolicy:RolePolicy", "scheduled-rotator-runtime-policy")
        st = {s["Sid"]: s for s in h.statements(runtime.inputs["policy"])}
        assert st["VaultLoginJwt"]["Action"] == "sts:GetWebIdentityToken"
        assert st["VaultLoginJwt"]["Condition"] == {
            "ForAllValues:StringEquals": {"sts:IdentityTokenAudience": "https://vault.example.com"},
            "NumericLessThanEquals": {"sts:DurationSeconds": 300}}
        assert not [r for r in resources if r.typ.startswith("aws:secretsmanager/")]

    return h.check_recorded(run, check)


@pulumi.runtime.test
def test_function_runs_in_the_configured_vpc_with_eni_permissions(dev_run, h):
    """rotationSchedule.vpc: vpc_config with those subnets and groups, and the ENI permissions of
    AWSLambdaVPCAccessExecutionRole (describe on '*', the rest limited to this account and region)."""
    def check(resources):
        fn = _one(resources, "aws:lambda/function:Function", "scheduled-rotator-function")
        assert fn.inputs["vpcConfig"] == {"subnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"],
                                          "securityGroupIds": ["sg-0a1b2c3d4e5f60718"]}
        runtime = _one(resources, "aws:iam/rolePolicy:RolePolicy", "scheduled-rotator-runtime-policy")
        st = {s["Sid"]: s for s in h.statements(runtime.inputs["policy"])}
        assert st["DescribeNetworkInterfaces"]["Resource"] == "*"
        assert set(st["DescribeNetworkInterfaces"]["Action"]) == {"ec2:DescribeNetworkInterfaces",
                                                                   "ec2:DescribeSubnets"}
        assert st["ManageFunctionNetworkInterfaces"]["Resource"] == f"arn:aws:ec2:eu-west-1:{ACCOUNT}:*"
        assert "ec2:CreateNetworkInterface" in st["ManageFunctionNetworkInterfaces"]["Action"]

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_without_vpc_the_function_has_no_vpc_config_nor_eni_permissions(h):
    run = run_program(_cfg({k: v for k, v in _schedule().items() if k != "vpc"}))

    def check(resources):
        fn = _one(resources, "aws:lambda/function:Function", "scheduled-rotator-function")
        assert not fn.inputs.get("vpcConfig")
        runtime = _one(resources, "aws:iam/rolePolicy:RolePolicy", "scheduled-rotator-runtime-policy")
        assert "ec2:" not in json.dumps(runtime.inputs["policy"])

    return h.check_recorded(run, check)


CA_PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2FuYXJ5LWNhLW5vdC1hLXJlYWwtY2VydA==\n"
          "-----END CERTIFICATE-----")


@pulumi.runtime.test
def test_vault_ca_bundle_ships_in_the_consumers_layer_and_vault_cacert_names_it(h):
    run = run_program(_cfg(_schedule(vaultCaBundle=CA_PEM)))

    def check(resources):
        layer = _one(resources, "aws:lambda/layerVersion:LayerVersion", "scheduled-rotator-consumers")
        assets = layer.inputs["code"].assets
        assert set(assets) == {"examples/consumers.yaml", rot.CA_BUNDLE_NAME}
        assert assets[rot.CA_BUNDLE_NAME].text == CA_PEM + "\n"
        env = _one(resources, "aws:lambda/function:Function", "scheduled-rotator-function").inputs[
            "environment"]["variables"]
        assert env["VAULT_CACERT"] == "/opt/vault-ca.pem"

    return h.check_recorded(run, check)


@pulumi.runtime.test
def test_code_is_the_built_rotator_artifact_and_consumers_file_is_its_own_layer(dev_run, h):
    """The code is dist/rotator.zip exactly as `make package` built it (a FileArchive on the .zip, so it
    is uploaded unchanged); the consumers file, stack config rather than code, is the only file of a
    layer for the same runtime and architecture, and the environment points at it under /opt."""
    def check(resources):
        fn = _one(resources, "aws:lambda/function:Function", "scheduled-rotator-function")
        code = fn.inputs["code"]
        assert isinstance(code, pulumi.FileArchive)
        assert Path(code.path) == artifact_path(ROTATOR) == REPO_ROOT / "dist" / "rotator.zip"
        layer = _one(resources, "aws:lambda/layerVersion:LayerVersion", "scheduled-rotator-consumers")
        assert layer.inputs["layerName"] == "secure-mail-api-dev-rotator-consumers"
        assert set(layer.inputs["code"].assets) == {"examples/consumers.yaml"}
        assert layer.inputs["compatibleRuntimes"] == [LAMBDA_RUNTIME] == [fn.inputs["runtime"]]
        assert layer.inputs["compatibleArchitectures"] == [LAMBDA_ARCHITECTURE] == fn.inputs["architectures"]
        assert fn.inputs["environment"]["variables"]["ROTATION_CONSUMERS_FILE"] == "/opt/examples/consumers.yaml"

    return h.check_recorded(dev_run, check)


def test_extra_layers_leave_room_for_the_consumers_layer():
    """Lambda allows 5 layers per function; one is the consumers file, so at most 4 extra."""
    arn = "arn:aws:lambda:eu-west-1:123456789012:layer:extra:1"
    parse_stack_config(_cfg(_schedule(layers=[arn] * 4)))
    with pytest.raises(ConfigError) as err:
        parse_stack_config(_cfg(_schedule(layers=[arn] * 5)))
    assert any(e.startswith(f"{SCHEDULE_KEY}.layers") for e in err.value.errors)


@pulumi.runtime.test
def test_function_role_is_lambda_only_with_rotator_policy(dev_run, h):
    """The function's role: Lambda from this account only; policies/iam/rotator.json exactly; runtime
    statements scoped to its log group, the DLQ, the data key via SQS and the VPC's ENIs; no secret
    (AWS IAM auth needs none; the AppRole opt-in's one secret: test_approle_role_reads_exactly_one_secret)."""
    sr = dev_run.stack.scheduled_rotator

    def check(v):
        lg_arn = v[0]
        role = _one(dev_run.resources, "aws:iam/role:Role", "scheduled-rotator-role")
        trust = h.statements(role.inputs["assumeRolePolicy"])
        assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                          "Action": "sts:AssumeRole",
                          "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]
        rotation = _one(dev_run.resources, "aws:iam/rolePolicy:RolePolicy", "scheduled-rotator-rotation-policy")
        assert h.policy(rotation.inputs["policy"]) == render_policy("rotator", region="eu-west-1", stack="dev",
                                                                    kms_key_arn=DATA_KEY)
        runtime = _one(dev_run.resources, "aws:iam/rolePolicy:RolePolicy", "scheduled-rotator-runtime-policy")
        st = {s["Sid"]: s for s in h.statements(runtime.inputs["policy"])}
        assert set(st) == {"WriteOwnLogGroup", "XRayTraces", "DeadLetterQueue", "DecryptQueueWithDataKey",
                           "DescribeNetworkInterfaces", "ManageFunctionNetworkInterfaces"}
        assert st["WriteOwnLogGroup"]["Resource"] == f"{lg_arn}:*"
        assert st["DeadLetterQueue"] == {"Sid": "DeadLetterQueue", "Effect": "Allow", "Action": "sqs:SendMessage",
                                         "Resource": DLQ}
        kms = st["DecryptQueueWithDataKey"]
        assert kms["Resource"] == DATA_KEY
        assert kms["Condition"]["StringEquals"]["kms:ViaService"] == ["sqs.eu-west-1.amazonaws.com"]
        # the shared runner role does not get the secret
        shared = _one(dev_run.resources, "aws:iam/rolePolicy:RolePolicy", "rotator-policy")
        assert "secretsmanager:GetSecretValue" not in shared.inputs["policy"]

    return pulumi.Output.all(sr.log_group.arn, *h.component_urns(dev_run)).apply(check)


@pulumi.runtime.test
def test_approle_role_reads_exactly_one_secret(approle_run, h):
    sr = approle_run.stack.scheduled_rotator

    def check(v):
        secret_arn = v[0]
        runtime = _one(approle_run.resources, "aws:iam/rolePolicy:RolePolicy", "scheduled-rotator-runtime-policy")
        st = {s["Sid"]: s for s in h.statements(runtime.inputs["policy"])}
        assert st["ReadVaultSecretId"]["Action"] == "secretsmanager:GetSecretValue"
        assert st["ReadVaultSecretId"]["Resource"] == secret_arn
        assert st["DecryptSecretAndQueueWithDataKey"]["Condition"]["StringEquals"]["kms:ViaService"] == [
            "secretsmanager.eu-west-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com"]
        shared = _one(approle_run.resources, "aws:iam/rolePolicy:RolePolicy", "rotator-policy")
        assert "secretsmanager:GetSecretValue" not in shared.inputs["policy"]

    return pulumi.Output.all(sr.vault_secret.arn, *h.component_urns(approle_run)).apply(check)


# --- the schedule -------------------------------------------------------------------------------

@pulumi.runtime.test
def test_schedule_targets_the_function_with_bounded_retries_and_dlq(dev_run, h):
    sr = dev_run.stack.scheduled_rotator

    def check(v):
        fn_arn, role_arn = v[:2]
        sched = _one(dev_run.resources, "aws:scheduler/schedule:Schedule", "scheduled-rotator-schedule")
        i = sched.inputs
        assert i["scheduleExpression"] == "rate(1 hour)" and i["scheduleExpressionTimezone"] == "UTC"
        assert i["flexibleTimeWindow"] == {"mode": "OFF"} and i["state"] == "ENABLED"
        t = i["target"]
        assert t["arn"] == fn_arn and t["roleArn"] == role_arn and json.loads(t["input"]) == {}
        assert t["retryPolicy"] == {"maximumRetryAttempts": 2, "maximumEventAgeInSeconds": 900}
        assert t["deadLetterConfig"] == {"arn": DLQ}

    return pulumi.Output.all(sr.function.arn, sr.scheduler_role.arn, *h.component_urns(dev_run)).apply(check)


@pulumi.runtime.test
def test_schedule_role_can_only_invoke_that_function(dev_run, h):
    """Scheduler from this account only; the one Lambda permission is InvokeFunction on exactly the
    rotator's ARN; the rest is delivering dead letters to the DLQ (SendMessage + the data key via SQS)
    and decrypting this one schedule (the data key, encryption context = the schedule's ARN)."""
    sr = dev_run.stack.scheduled_rotator

    def check(v):
        fn_arn = v[0]
        role = _one(dev_run.resources, "aws:iam/role:Role", "scheduled-rotator-scheduler-role")
        assert h.statements(role.inputs["assumeRolePolicy"]) == [
            {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole",
             "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]
        policies = [r for r in dev_run.resources if r.typ == "aws:iam/rolePolicy:RolePolicy"
                    and r.name.startswith("scheduled-rotator-scheduler")]
        assert len(policies) == 1
        statements = h.statements(policies[0].inputs["policy"])
        assert all(s["Effect"] == "Allow" for s in statements)
        actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        assert actions == {"lambda:InvokeFunction", "sqs:SendMessage", "kms:Decrypt", "kms:GenerateDataKey"}
        (invoke,) = [s for s in statements if "lambda:InvokeFunction" in str(s["Action"])]
        assert invoke["Action"] == "lambda:InvokeFunction" and invoke["Resource"] == fn_arn
        (sqs,) = [s for s in statements if s["Action"] == "sqs:SendMessage"]
        assert sqs["Resource"] == DLQ
        kms = {s["Sid"]: s for s in statements if "kms:Decrypt" in s["Action"]}
        assert set(kms) == {"EncryptDeadLetters", "DecryptOwnSchedule"}
        assert {s["Resource"] for s in kms.values()} == {DATA_KEY}
        assert kms["EncryptDeadLetters"]["Condition"] == {
            "StringEquals": {"kms:ViaService": "sqs.eu-west-1.amazonaws.com"}}
        assert kms["DecryptOwnSchedule"]["Action"] == "kms:Decrypt"
        assert kms["DecryptOwnSchedule"]["Condition"] == {"StringEquals": {
            "kms:EncryptionContext:aws:scheduler:schedule-arn":
                f"arn:aws:scheduler:eu-west-1:{ACCOUNT}:schedule/default/secure-mail-api-dev-rotation"}}
        assert not any("*" in json.dumps(s.get("Resource")) for s in statements)

    return pulumi.Output.all(sr.function.arn, *h.component_urns(dev_run)).apply(check)


# --- the alarm ----------------------------------------------------------------------------------

@pulumi.runtime.test
def test_errors_alarm_notifies_the_alarm_topic(dev_run, h):
    topic = dev_run.stack.monitoring.topic

    def check(v):
        topic_arn = v[0]
        alarm = _one(dev_run.resources, "aws:cloudwatch/metricAlarm:MetricAlarm", "scheduled-rotator-errors")
        i = alarm.inputs
        assert (i["namespace"], i["metricName"], i["statistic"]) == ("AWS/Lambda", "Errors", "Sum")
        assert i["dimensions"] == {"FunctionName": "secure-mail-api-dev-rotator"}
        assert i["comparisonOperator"] == "GreaterThanThreshold" and i["threshold"] == 0
        assert i["treatMissingData"] == "notBreaching"
        assert i["alarmActions"] == [topic_arn] and i["okActions"] == [topic_arn] and i["actionsEnabled"] is True

    return pulumi.Output.all(topic.arn, *h.component_urns(dev_run)).apply(check)


# --- P4: the AppRole secret id ------------------------------------------------------------------

@pulumi.runtime.test
def test_secret_id_never_in_plain_text(approle_run, h):
    """The planted secret id reaches exactly one input, SecretVersion.secretString, as a Pulumi
    secret (encrypted in the state); no other input, env variable or output holds it."""

    def check(resources):
        holders = [r for r in resources if PLANTED in json.dumps(r.inputs, default=str)]
        assert [(r.typ, r.name) for r in holders] == [
            ("aws:secretsmanager/secretVersion:SecretVersion", "scheduled-rotator-vault-secret-id-version")]
        assert is_rpc_secret(holders[0].inputs["secretString"])
        for r in resources:
            assert not any(PLANTED in s for s in h.plain_strings(r.inputs)), (r.typ, r.name)
        secret = _one(resources, "aws:secretsmanager/secret:Secret", "scheduled-rotator-vault-secret-id")
        assert secret.inputs["kmsKeyId"] == DATA_KEY
        assert PLANTED not in json.dumps(approle_run.exports, default=str)
        assert not approle_run.secret_exports

    return h.check_recorded(approle_run, check)


def test_secret_version_declares_secret_outputs(monkeypatch):
    """The mock monitor does not apply additional_secret_outputs, so the declaration is checked."""
    import pulumi_aws as aws

    captured = []
    original = aws.secretsmanager.SecretVersion.__init__

    def spy(self, resource_name, *args, **kwargs):
        captured.append(kwargs)
        original(self, resource_name, *args, **kwargs)

    monkeypatch.setattr(aws.secretsmanager.SecretVersion, "__init__", spy)
    run_program(_cfg(_approle(), secret=PLANTED))
    assert len(captured) == 1
    assert "secretString" in captured[0]["opts"].additional_secret_outputs
    assert isinstance(captured[0]["secret_string"], pulumi.Output)


def test_secret_id_is_the_only_allowed_secret_config_and_is_stored_encrypted():
    """rotationVaultSecretId is the one key allowed as secret config (accepted when marked secret),
    only for the AppRole opt-in; Pulumi.dev.yaml, which logs in with AWS IAM auth, holds none."""
    import yaml

    from infra.config import DEV_STACK_FILE

    assert {SECRET_KEY} == SECRET_KEYS
    raw = yaml.safe_load(DEV_STACK_FILE.read_text())["config"]
    assert SECRET_KEY not in raw and SECRET_KEY not in dev_stack_config()
    cfg = parse_stack_config(_cfg(_approle(), secret=PLANTED), secret_keys=[SECRET_KEY])
    assert cfg.rotation_vault_secret_id.get_secret_value() == PLANTED
    assert PLANTED not in repr(cfg) and PLANTED not in str(cfg.model_dump())


def test_a_stored_secret_id_without_the_approle_opt_in_is_refused():
    """No stored Vault credential unless AppRole is asked for: a leftover secret is an error naming the fix."""
    with pytest.raises(ConfigError) as err:
        parse_stack_config(_cfg(_schedule(), secret=PLANTED), secret_keys=[SECRET_KEY])
    assert any(e.startswith(f"{SECRET_KEY}: ") and "pulumi config rm rotationVaultSecretId" in e
               for e in err.value.errors), err.value.errors
    assert PLANTED not in str(err.value)


# --- bad config, refused before any resource, naming the key ---------------------------------------

BAD = [
    (_schedule(vaultAddr=None), SCHEDULE_KEY, "vaultAddr is required"),
    (_approle(vaultRoleId=None), SCHEDULE_KEY, "vaultRoleId is required"),
    (_schedule(vaultRoleId=ROLE_ID), SCHEDULE_KEY, "vaultRoleId is for vaultAuth: approle only"),
    (_schedule(vaultAuth="ldap"), f"{SCHEDULE_KEY}.vaultAuth", "'aws'"),
    (_schedule(vaultAuth="jwt"), SCHEDULE_KEY, "vaultJwtAudience is required"),
    (_schedule(vaultAuthRole="bad role/x"), f"{SCHEDULE_KEY}.vaultAuthRole", "pattern"),
    (_schedule(vpc={"subnetIds": ["10.0.0.0/24"], "securityGroupIds": ["sg-0a1b2c3d4e5f60718"]}),
     f"{SCHEDULE_KEY}.vpc.subnetIds", "subnet id"),
    (_schedule(vpc={"subnetIds": ["subnet-0a1b2c3d4e5f60718"], "securityGroupIds": ["default"]}),
     f"{SCHEDULE_KEY}.vpc.securityGroupIds", "security group id"),
    (_schedule(vpc={"subnetIds": []}), f"{SCHEDULE_KEY}.vpc.subnetIds", "at least 1"),
    (_schedule(vaultCaBundle="/etc/ssl/vault-ca.pem"), f"{SCHEDULE_KEY}.vaultCaBundle", "PEM CA certificate"),
    (_schedule(vaultAddr="http://vault.example.com:8200"), f"{SCHEDULE_KEY}.vaultAddr", "https://"),
    (_schedule(vaultAddr="vault.example.com"), f"{SCHEDULE_KEY}.vaultAddr", "https://"),
    (_schedule(scheduleExpression="every hour"), f"{SCHEDULE_KEY}.scheduleExpression", "rate("),
    (_schedule(scheduleExpression="rate(1 hours)"), f"{SCHEDULE_KEY}.scheduleExpression", "rate("),
    (_schedule(scheduleExpression="rate(0 minutes)"), f"{SCHEDULE_KEY}.scheduleExpression", "rate("),
    (_schedule(scheduleExpression="cron(0 * * * *)"), f"{SCHEDULE_KEY}.scheduleExpression", "cron("),
    (_schedule(scheduleExpression="at(2030-01-01T00:00:00)"), f"{SCHEDULE_KEY}.scheduleExpression", "rate("),
    (_schedule(consumersFile="../secrets.yaml"), f"{SCHEDULE_KEY}.consumersFile", "relative"),
    (_schedule(consumersFile="/etc/consumers.yaml"), f"{SCHEDULE_KEY}.consumersFile", "relative"),
    (_schedule(consumersFile="examples/missing.yaml"), SCHEDULE_KEY, "does not exist"),
    (_schedule(layers=["not-an-arn"]), f"{SCHEDULE_KEY}.layers", "layer ARN"),
    (_schedule(unknownKey=1), f"{SCHEDULE_KEY}.unknownKey", "unknown config key"),
]


@pytest.mark.parametrize(("schedule", "key", "text"), BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_bad_schedule_config_is_refused_naming_the_key(schedule, key, text):
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as err:
        run_program(_cfg({k: v for k, v in schedule.items() if v is not None}), mocks=mocks)
    assert any(e.startswith(f"{key}: ") and text in e for e in err.value.errors), err.value.errors
    assert PLANTED not in str(err.value)
    assert mocks.resources == []


def test_approle_without_the_secret_id_is_refused():
    with pytest.raises(ConfigError) as err:
        parse_stack_config(_cfg(_approle(), secret=None))
    assert any(e.startswith(f"{SECRET_KEY}: ") and "--secret" in e for e in err.value.errors), err.value.errors


def test_bad_config_never_echoes_the_secret_id():
    with pytest.raises(ConfigError) as err:
        parse_stack_config(_cfg(_approle(vaultAddr="http://vault"), secret=PLANTED), secret_keys=[SECRET_KEY])
    assert PLANTED not in str(err.value)


@pytest.mark.parametrize("expression", ["rate(1 minute)", "rate(15 minutes)", "rate(1 day)", "rate(12 hours)",
                                        "cron(0 3 * * ? *)", "cron(15 10 ? * MON-FRI *)"])
def test_good_schedule_expressions(expression):
    cfg = parse_stack_config(_cfg(_schedule(scheduleExpression=expression)))
    assert cfg.rotation_schedule.schedule_expression == expression
