"""`rotation status | plan | run | rotate --output json` as real processes against OpenBao and moto:
one document on stdout that `jq` can read and that validates against its schema, logs as JSON
lines on stderr, the audit trail in its own sink, and no key value anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import pytest

from rotation.reporting.machine import load_schema

from .test_cli_live import cfile  # noqa: F401 - the consumers file fixture


def cli(env, *args, audit: str | None = "file", timeout=120):
    e = {**os.environ, "ROTATION_CONSUMERS_FILE": str(env.tmp / "consumers.yaml")}
    e.pop("ROTATION_AUDIT_LOG", None)
    if audit == "file":
        e["ROTATION_AUDIT_LOG"] = str(env.tmp / "audit.jsonl")
    return subprocess.run([sys.executable, "-m", "rotation.cli", *args], env=e, text=True,
                          capture_output=True, timeout=timeout, check=False)


def document(r, command: str) -> dict:
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout          # one document, one line: `| jq` reads it
    doc = json.loads(lines[0])
    jsonschema.validate(doc, load_schema(command), format_checker=jsonschema.FormatChecker())
    assert doc["command"] == command and doc["schema_version"] == "1.0"
    return doc


def test_every_command_prints_one_schema_valid_document_and_run_changes_state(env, cfile):  # noqa: F811
    r = cli(env, "plan", "--output", "json")
    assert r.returncode == 0, r.stderr
    plan = document(r, "plan")
    assert {c["action"] for c in plan["consumers"]} == {"bootstrap"}
    assert {c["reason"] for c in plan["consumers"]} == {"no_current_key"}
    assert plan["summary"]["rotate"] == 3
    assert {"service": "aws", "operation": "CreateApiKey enabled=true, tags"} in plan["consumers"][0]["calls"]
    assert env.state("billing").version == 0                       # plan changed nothing

    r = cli(env, "run", "--output", "json")
    assert r.returncode == 0, r.stderr
    run = document(r, "run")
    assert run["status"] == "ok" and run["exit_code"] == 0
    assert run["summary"]["by_outcome"] == {"ok": 3}
    assert {o["action"] for o in run["outcomes"]} == {"bootstrap"} and all(o["error"] is None for o in run["outcomes"])

    r = cli(env, "status", "--json")
    assert r.returncode == 0, r.stderr
    status = document(r, "status")
    billing = next(c for c in status["consumers"] if c["name"] == "billing")
    assert billing["state"] == "ok" and billing["reason"] == "not_due"
    assert billing["current"]["serial"] == env.state("billing").current.serial
    assert billing["current"]["fingerprint"] == env.state("billing").current.fingerprint
    assert 29 * 86400 < billing["next_due_in_seconds"] <= 30 * 86400

    r = cli(env, "rotate", "crm", "--output", "json")
    assert r.returncode == 0, r.stderr
    rot = document(r, "rotate")
    assert [(o["consumer"], o["action"], o["outcome"]) for o in rot["outcomes"]] == [("crm", "rotate", "ok")]
    assert rot["outcomes"][0]["serial"] == env.state("crm").current.serial

    r = cli(env, "audit", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    jsonschema.validate(report, load_schema("audit"), format_checker=jsonschema.FormatChecker())
    assert report["summary"]["consumers"] == 3

    # the audit trail went to its own file, each event versioned
    events = [json.loads(line) for line in (env.tmp / "audit.jsonl").read_text().splitlines()]
    assert events and all(e["audit_schema"] == "1.0" for e in events)
    # and no key value reached any output
    values = {env.state(c.name).current.value for c in env.consumers.consumers}
    assert not any(v in r.stdout + r.stderr for v in values)


def test_run_and_rotate_json_work_without_an_audit_file_and_the_trail_goes_to_stderr(env, cfile):  # noqa: F811
    # `rotation rotate crm --json | jq` as pasted: no --audit-to, no ROTATION_AUDIT_LOG
    r = cli(env, "run", "--json", audit=None)
    assert r.returncode == 0, r.stderr
    assert document(r, "run")["summary"]["by_outcome"] == {"ok": 3}
    trail = [json.loads(x) for x in r.stderr.splitlines() if '"audit_schema"' in x]
    assert {e["event"] for e in trail} >= {"create", "promote"} and all(e["audit_schema"] == "1.0" for e in trail)
    r = cli(env, "rotate", "crm", "--json", audit=None)
    assert r.returncode == 0, r.stderr
    assert [o["consumer"] for o in document(r, "rotate")["outcomes"]] == ["crm"]
    assert any('"audit_schema"' in x for x in r.stderr.splitlines())


def test_table_output_keeps_the_audit_trail_off_stdout_by_default(env, cfile):  # noqa: F811
    r = cli(env, "run", audit=None)
    assert r.returncode == 0, r.stderr
    assert not [x for x in r.stdout.splitlines() if x.startswith("{")], r.stdout   # only the table
    assert "3 consumers, 0 failed" in r.stdout
    trail = [json.loads(x) for x in r.stderr.splitlines() if '"audit_schema"' in x]
    assert trail and all(e["audit_schema"] == "1.0" for e in trail)


def test_audit_to_stdout_is_refused_with_json_output_and_changes_nothing(env, cfile):  # noqa: F811
    r = cli(env, "--audit-to", "-", "run", "--json", audit=None)
    assert r.returncode == 2 and "--audit-to -" in r.stderr and r.stdout == ""
    assert env.state("billing").version == 0
    # with the table output, an explicit `--audit-to -` still puts the trail on stdout
    r = cli(env, "--audit-to", "-", "run", audit=None)
    assert r.returncode == 0, r.stderr
    audit_lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert audit_lines and all(e["audit_schema"] == "1.0" for e in audit_lines)


def test_logs_are_json_lines_on_stderr_at_the_chosen_level(env, cfile):  # noqa: F811
    r = cli(env, "--log-level", "debug", "run", "--output", "json")
    assert r.returncode == 0, r.stderr
    document(r, "run")
    lines = r.stderr.splitlines()
    assert lines, "debug logs expected on stderr"
    records = [json.loads(x) for x in lines]                       # every stderr line is JSON
    assert all(x["log_schema"] == "1.0" and "level" in x and "ts" in x for x in records)
    # third-party loggers stay pinned at WARNING even at --log-level debug (rotation/audit.py)
    assert not [x for x in records if x["logger"].startswith(("botocore", "urllib3", "hvac"))
                and x["level"] in ("debug", "info")]
    r = cli(env, "--log-level", "loud", "status")
    assert r.returncode == 2 and "--log-level" in r.stderr


@pytest.mark.parametrize("command", [("status",), ("plan",), ("run",), ("rotate", "billing")])
def test_a_usage_error_prints_nothing_on_stdout_in_json_mode(env, cfile, command):  # noqa: F811
    cfile.write_text(cfile.read_text().replace("secure-mail-api-dev-premium", "no-such-plan"))
    r = cli(env, *command, "--output", "json")
    assert r.returncode == 2 and r.stdout == "" and "usage_plans.premium" in r.stderr


def test_run_writes_prometheus_metrics_with_key_age_confirm_time_and_a_lease_takeover(env, cfile):  # noqa: F811
    import time

    from prometheus_client.parser import text_string_to_metric_families

    from rotation.backends.vault import VaultStore
    # a runner that died holding billing's lease: it ran out an hour ago, so this run takes it over
    VaultStore(env.settings).acquire_lease("billing", "dead-runner:1:0bad", 60, now=time.time() - 3600)
    prom = env.tmp / "rotation.prom"
    r = cli(env, "--metrics-textfile", str(prom), "run", "--json")
    assert r.returncode == 0, r.stderr
    v = {(s.name, tuple(sorted(s.labels.items()))): s.value
         for fam in text_string_to_metric_families(prom.read_text()) for s in fam.samples}
    assert v[("rotation_lease_takeovers_total", (("stack", "dev"),))] == 1
    assert v[("rotation_rotations_total", (("outcome", "ok"), ("stack", "dev")))] == 3
    for name in ("billing", "crm", "newsletter"):
        assert 0 <= v[("rotation_key_age_seconds", (("consumer", name), ("stack", "dev")))] < 3600
        assert v[("rotation_time_to_confirm_seconds", (("consumer", name), ("stack", "dev")))] >= 0
    assert v[("rotation_acknowledgements_pending", (("stack", "dev"),))] == 0
    r = cli(env, "--metrics-textfile", str(prom), "rotate", "crm", "--json")
    assert r.returncode == 0, r.stderr
    v = {(s.name, tuple(sorted(s.labels.items()))): s.value
         for fam in text_string_to_metric_families(prom.read_text()) for s in fam.samples}
    assert v[("rotation_rotations_total", (("outcome", "ok"), ("stack", "dev")))] == 4     # counters continue
    assert v[("rotation_acknowledgements_pending", (("stack", "dev"),))] == 1             # crm's old key in grace


def test_in_lambda_the_handler_emits_the_metrics_as_emf_instead_of_put_metric_data(env, cfile, monkeypatch, capsys):  # noqa: F811
    from rotation import metrics
    from rotation.aws_lambda import handler
    monkeypatch.setenv("ROTATION_CONSUMERS_FILE", str(cfile))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "secure-mail-api-dev-rotator")
    capsys.readouterr()
    assert handler({}, None)["failed"] == 0
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    names = {m["Name"] for d in emf for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {metrics.KEY_AGE_SECONDS, metrics.ROTATIONS, metrics.ROTATION_SUCCEEDED} <= names
    assert {d["Consumer"] for d in emf if "Consumer" in d} == {"billing", "crm", "newsletter"}
    cw = env.stack.aws_session().client("cloudwatch", endpoint_url=env.stack.aws_endpoint)
    assert cw.list_metrics(Namespace=metrics.NAMESPACE)["Metrics"] == []     # no PutMetricData call


def test_the_schedule_daemon_serves_prometheus_metrics_after_its_first_run(env, cfile):  # noqa: F811
    import signal
    import socket
    import time

    import requests
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = {**os.environ, "ROTATION_CONSUMERS_FILE": str(cfile), "ROTATION_AUDIT_LOG": str(env.tmp / "audit.jsonl")}
    proc = subprocess.Popen([sys.executable, "-m", "rotation.cli", "schedule", "--every", "3600", "--jitter", "0",
                             "--metrics-port", str(port)], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline, text = time.monotonic() + 120, ""
        while time.monotonic() < deadline and "rotation_key_age_seconds{" not in text:
            assert proc.poll() is None, proc.communicate()
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        assert 'rotation_rotations_total{outcome="ok",stack="dev"} 3.0' in text, text[-2000:]
        assert 'rotation_key_age_seconds{consumer="billing",stack="dev"}' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
