"""The `rotation` CLI as a real process against real OpenBao and moto: exit codes, a SIGKILL
mid-rotation, planted canaries, and `plan` changing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rotation.backends.vault import VaultStore

from .conftest import assert_invariants

ROOT = Path(__file__).resolve().parents[3]


def cli(env, *args, extra_env=None, timeout=120):
    e = {**os.environ, "ROTATION_CONSUMERS_FILE": str(env.tmp / "consumers.yaml"),
         "ROTATION_AUDIT_LOG": str(env.tmp / "audit.jsonl"), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "rotation.cli", *args], env=e, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.fixture
def cfile(env, monkeypatch):
    import yaml
    monkeypatch.setenv("ROTATION_FILE_TARGET_DIRS", str(env.tmp))   # the file targets below live there
    data = {"version": 1,
            "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
            "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
            "consumers": [{"name": c.name, "tier": c.tier,
                           "targets": [{"type": "file", "path": str(env.tmp / f"{c.name}.key")}]}
                          for c in env.consumers.consumers]}
    (env.tmp / "consumers.yaml").write_text(yaml.safe_dump(data))
    return env.tmp / "consumers.yaml"


def test_run_status_plan_and_exit_codes(env, cfile):
    r = cli(env, "plan")
    assert r.returncode == 0 and "bootstrap" in r.stdout and "CreateApiKey" in r.stdout
    assert env.state("billing").version == 0                      # plan changed nothing
    assert env.apigw().get_api_keys()["items"] == []
    r = cli(env, "run")
    assert r.returncode == 0, r.stderr
    assert "3 consumers, 0 failed" in r.stdout
    r = cli(env, "status")
    assert r.returncode == 0 and "billing" in r.stdout and "29d" in r.stdout
    r = cli(env, "rotate", "nobody")
    assert r.returncode == 2 and "unknown consumer" in r.stderr
    # a usage plan that does not exist is a configuration error: exit 2 before any side effect
    bad = cfile.read_text().replace("secure-mail-api-dev-premium", "no-such-plan")
    cfile.write_text(bad)
    before = env.state("billing")
    for args in (("plan",), ("run",), ("rotate", "billing")):
        r = cli(env, *args)
        assert r.returncode == 2 and "usage_plans.premium:" in r.stderr, (args, r.stderr)
    assert env.state("billing") == before


def test_sigkill_mid_rotation_then_run_again_completes(env, cfile):
    assert cli(env, "run").returncode == 0
    before = env.state("billing").current
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.stalling_rotation", "key_created",
                             "rotate", "billing"],
                            env={**os.environ, "ROTATION_CONSUMERS_FILE": str(cfile), "ROTATION_LEASE_TTL": "600"},
                            cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    def key_minted() -> bool:     # the pending key exists in API Gateway (its id reaches Vault at promote)
        pending = env.state("billing").pending
        return pending is not None and any(
            k["name"] == pending.key_name for k in env.apigw().get_api_keys()["items"])

    while not key_minted():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    st = env.state("billing")
    assert st.pending is not None and st.current == before     # killed mid-rotation
    assert_invariants(env)
    r = cli(env, "run")
    assert "billing: resume locked" in r.stdout                 # lease still live: not stolen
    assert r.returncode == 3                                    # a skipped consumer is not a success
    # the dead runner's lease runs out (written as expired, rather than sleeping 600 s)
    store = VaultStore(env.settings)
    store.write_rotation("billing", store.read_rotation("billing").evolve(lease_expires_at=0.0))
    r = cli(env, "run")
    assert r.returncode == 0 and "billing: resume ok serial=2" in r.stdout, r.stdout + r.stderr
    st = env.state("billing")
    assert st.pending is None and st.current.serial == 2 and st.previous.serial == 1
    assert_invariants(env)


def test_canary_secrets_never_appear_in_output_logs_audit_or_errors(env, cfile, caplog):
    canary_token = "hvs.CANARYTOKEN0123456789abcdef"
    # 1. a bad setting holding a secret: the error names the variable, never the value
    r = cli(env, "run", extra_env={"VAULT_AUTH_METHOD": "token", "VAULT_TOKEN": canary_token,
                                    "VAULT_ADDR": "http://vault.example.com:8200"})
    assert r.returncode == 2 and "VAULT_ADDR" in r.stderr
    assert canary_token not in r.stdout + r.stderr
    # 2. a wrong token: a Vault error, still no token in the output
    r = cli(env, "status", extra_env={"VAULT_AUTH_METHOD": "token", "VAULT_TOKEN": canary_token})
    assert r.returncode == 1 and canary_token not in r.stdout + r.stderr
    # 3. real key values: every value Vault holds is absent from all output, the audit log and errors
    outputs = [cli(env, "-v", "run"), cli(env, "-v", "rotate", "crm", "--emergency"), cli(env, "-v", "status", "--json"),
               cli(env, "-v", "plan")]
    cfile.write_text(cfile.read_text().replace("secure-mail-api-dev-premium", "no-such-plan"))
    outputs.append(cli(env, "-v", "rotate", "billing"))
    root = env.root()
    values = []
    for c in env.consumers.consumers:
        for v in root.secrets.kv.v2.read_secret_metadata(path=f"mail-api/keys/{c.name}")["data"]["versions"]:
            data = root.secrets.kv.v2.read_secret_version(path=f"mail-api/keys/{c.name}", version=int(v),
                                                        raise_on_deleted_version=True)["data"]["data"]
            values += [r["value"] for r in [data.get("current"), data.get("previous"), data.get("pending"),
                                            *data.get("retired", [])] if r]
    assert len(set(values)) >= 4
    text = "".join(o.stdout + o.stderr for o in outputs) + env.audit_text() + caplog.text
    assert env.audit_text().count("\n") > 10
    for v in set(values):
        assert v not in text
    # the audit log carries fingerprints instead
    assert "sha256:" in env.audit_text()
    # OpenBao's own audit device logs HMACs, not values
    audit = env.stack.audit_log.read_text()
    assert audit and all(v not in audit for v in set(values))


def test_repr_of_records_and_settings_hide_secrets(env):
    from rotation.records import KeyRecord
    rec = KeyRecord(serial=1, value="CANARYVALUE1234567890abcdefghij", rotation_id="r", created_at="t")
    assert "CANARYVALUE" not in repr(rec)
    assert "CANARYVALUE" not in repr(env.settings.model_copy(update={"vault_secret_id": None}))
    assert env.creds.rotator_secret_id not in repr(env.settings)
    assert env.creds.rotator_secret_id not in repr(env.creds)


def test_schedule_daemon_runs_then_stops_gracefully_on_sigterm(env, cfile):
    hb = env.tmp / "heartbeat.json"
    proc = subprocess.Popen([sys.executable, "-m", "rotation.cli", "schedule", "--every", "10", "--jitter", "0",
                             "--heartbeat-file", str(hb)],
                            env={**os.environ, "ROTATION_CONSUMERS_FILE": str(cfile)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not hb.exists() or json.loads(hb.read_text())["runs"] < 1:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after 1 runs, 0 failed" in out
    assert env.state("newsletter").current.serial == 1


def test_wrong_vault_token_fails_cleanly(env, cfile):
    r = cli(env, "status", extra_env={"VAULT_AUTH_METHOD": "token", "VAULT_TOKEN": "s.not-a-real-token"})
    assert r.returncode == 1 and "permission denied" in r.stderr and "Traceback" not in r.stderr


def test_run_publishes_rotation_metrics_to_cloudwatch(env, cfile):
    from rotation import metrics
    assert cli(env, "run").returncode == 0
    cw = env.stack.aws_session().client("cloudwatch", endpoint_url=env.stack.aws_endpoint)
    names = {m["MetricName"] for m in cw.list_metrics(Namespace=metrics.NAMESPACE)["Metrics"]}
    assert names == {metrics.ROTATION_SUCCEEDED, metrics.ROTATION_FAILED, metrics.OLDEST_KEY_AGE_SECONDS,
                     metrics.KEYS_OVER_MAX_AGE, metrics.KEY_AGE_SECONDS, metrics.ROTATIONS,
                     metrics.TIME_TO_CONFIRM_SECONDS, metrics.ACKNOWLEDGEMENTS_PENDING, metrics.LEASE_TAKEOVERS,
                     metrics.KEY_OVER_MAX_AGE, metrics.UNACKNOWLEDGED_KEY_AGE_SECONDS, metrics.ROLLING_BACK_AGE_SECONDS}
    per_consumer = cw.list_metrics(Namespace=metrics.NAMESPACE, MetricName=metrics.KEY_AGE_SECONDS)["Metrics"]
    assert {d["Value"] for m in per_consumer for d in m["Dimensions"] if d["Name"] == "Consumer"} == {
        "billing", "crm", "newsletter"}
    import datetime as dt
    now = dt.datetime.now(dt.UTC)
    stats = cw.get_metric_statistics(Namespace=metrics.NAMESPACE, MetricName=metrics.ROTATION_SUCCEEDED,
                                     Dimensions=[{"Name": "Stack", "Value": "dev"}], StartTime=now - dt.timedelta(hours=1),
                                     EndTime=now + dt.timedelta(minutes=5), Period=3600, Statistics=["Sum"])
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 3      # three first keys


def test_lambda_handler_runs_one_rotation_and_fails_the_invocation_on_a_failed_consumer(env, cfile, monkeypatch):
    from rotation.aws_lambda import RotationFailed, handler
    from rotation.errors import ConfigError
    monkeypatch.setenv("ROTATION_CONSUMERS_FILE", str(cfile))
    result = handler({}, None)
    assert result["consumers"] == 3 and result["failed"] == 0
    assert {o["outcome"] for o in result["outcomes"]} == {"ok"}
    result = handler({"force": ["crm"], "only": ["crm"]}, None)
    assert result["outcomes"] == [{"consumer": "crm", "action": "rotate", "outcome": "ok", "serial": 2}]
    good = cfile.read_text()
    cfile.write_text(good.replace("secure-mail-api-dev-premium", "no-such-plan"))
    with pytest.raises(ConfigError, match="usage_plans.premium"):       # before any side effect
        handler({"force": ["billing"], "only": ["billing"]}, None)
    assert env.state("billing").current.serial == 1 and env.state("billing").pending is None
    (env.tmp / "blocked").write_text("a file where the target wants a directory")
    cfile.write_text(good.replace(str(env.tmp / "billing.key"), str(env.tmp / "blocked" / "billing.key")))
    with pytest.raises(RotationFailed, match="billing"):
        handler({"force": ["billing"], "only": ["billing"]}, None)
    with pytest.raises(ValueError, match="event.force"):
        handler({"force": "billing"}, None)


def test_lambda_reads_the_approle_secret_id_from_secrets_manager_never_the_environment(env, cfile, monkeypatch):
    """The scheduled rotator's environment holds only the secret's ARN (CKV_AWS_45)."""
    from rotation import aws_lambda
    sm = env.stack.aws_session().client("secretsmanager", endpoint_url=env.stack.aws_endpoint)
    arn = sm.create_secret(Name="rotator/vault-secret-id", SecretString=env.creds.rotator_secret_id)["ARN"]
    monkeypatch.setattr(aws_lambda, "_secrets_client", None)
    monkeypatch.setenv("ROTATION_CONSUMERS_FILE", str(cfile))
    monkeypatch.setenv(aws_lambda.SECRET_ARN_VARIABLE, arn)
    monkeypatch.delenv("VAULT_SECRET_ID")
    assert aws_lambda.handler({}, None)["failed"] == 0
    assert "VAULT_SECRET_ID" not in os.environ
    sm.put_secret_value(SecretId=arn, SecretString="not-the-secret-id")   # a re-issued id is read at once
    from rotation.errors import VaultError
    with pytest.raises(VaultError, match=r"login (auth/)?approle"):
        aws_lambda.handler({}, None)


def test_status_says_revoke_due_instead_of_a_negative_time_once_the_grace_period_has_passed(env, cfile):
    env.clock.advance(hours=-3)                        # the rotations happened 3 h ago (grace_period is 1 h)
    assert env.engine().run().exit_code == 0
    assert env.engine().run(only=["billing"], force=["billing"]).exit_code == 0
    r = cli(env, "status")
    assert r.returncode == 0, r.stderr
    billing = next(line for line in r.stdout.splitlines() if line.startswith("billing"))
    assert "1 (revoke due: next run)" in billing and "revoke in -" not in r.stdout, r.stdout
