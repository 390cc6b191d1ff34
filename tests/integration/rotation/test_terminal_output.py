"""Issue 20, item 2: strings from outside reach the operator's terminal inert. An API key tagged as
ours whose name (in AWS, here moto) holds ANSI sequences, a carriage return, a newline and a
forged "findings: 0 high" line; a Vault record holding the same; a file path holding them: the
real CLI (a separate process) shows them escaped, never acting on them, while its JSON output keeps
the exact value. The table output is what a person at a terminal would see."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from .test_audit_live import ROOT, audit_cli

FORGED = "\x1b[2K\r\x1b[1Afindings: 0 high, 0 medium, 0 low\n\u202ehgih 0\x07\x9b2J"
#: what a terminal acts on: ESC, CR, BEL, the C1 CSI, the bidi override, and a line break inside a field
ACTIVE = ("\x1b", "\r", "\x07", "\x9b", "\u202e")


def _consumers_yaml(env) -> None:
    data = {"version": 1, "usage_plans": dict(env.consumers.usage_plans),
            "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
            "consumers": [{"name": c.name, "tier": c.tier,
                           "targets": [{"type": "file", "path": str(env.tmp / f"{c.name}.key")}]}
                          for c in env.consumers.consumers]}
    (env.tmp / "consumers.yaml").write_text(yaml.safe_dump(data))


def _assert_inert(text: str) -> None:
    for ch in ACTIVE:
        assert ch not in text, f"{ch!r} reached the terminal"


def test_an_api_key_name_with_terminal_controls_is_shown_escaped_by_rotation_audit(env):
    _consumers_yaml(env)
    assert env.engine().run().exit_code == 0
    env.apigw().create_api_key(name="secure-mail-api-dev-crm-7" + FORGED, enabled=True, value="z" * 40, tags={
        "managed-by": "secure-mail-api-rotation", "secure-mail-api:stack": "dev", "secure-mail-api:consumer": "crm"})

    table = audit_cli(env)
    assert table.returncode == 0, table.stderr
    _assert_inert(table.stdout)
    findings = [line for line in table.stdout.splitlines() if line.startswith("findings:")]
    assert len(findings) == 1 and findings[0].startswith("findings: 1 high"), table.stdout   # no forged line
    unknown = [line for line in table.stdout.splitlines() if "unknown_key" in line]
    assert len(unknown) == 1
    assert "\\x1b[2K\\r\\x1b[1Afindings: 0 high" in unknown[0] and "\\u202e" in unknown[0]   # visible, escaped

    doc = audit_cli(env, "--json")
    assert doc.returncode == 0, doc.stderr
    names = [k["name"] for k in json.loads(doc.stdout)["key_inventory"]["unknown_to_vault"]]
    assert names == ["secure-mail-api-dev-crm-7" + FORGED]          # JSON keeps the exact value


def test_a_vault_record_with_terminal_controls_is_shown_escaped_by_rotation_status(env):
    _consumers_yaml(env)
    assert env.engine().run().exit_code == 0
    root = env.root()
    path = "mail-api/rotations/crm"
    r = root.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    data = r["data"]["data"]
    data["last_outcome"] = {**(data.get("last_outcome") or {}), "outcome": "ok" + FORGED}
    root.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=r["data"]["metadata"]["version"],
                                               mount_point="secret")
    e = {**os.environ, "ROTATION_CONSUMERS_FILE": str(env.tmp / "consumers.yaml"),
         "ROTATION_FILE_TARGET_DIRS": str(env.tmp)}
    out = subprocess.run([sys.executable, "-m", "rotation.cli", "status"], env=e, text=True, cwd=ROOT,
                         capture_output=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    _assert_inert(out.stdout)
    assert len(out.stdout.splitlines()) == 1 + len(env.consumers.consumers)     # header + one line each
    assert "ok\\x1b[2K\\r" in out.stdout


def test_a_file_path_with_terminal_controls_is_shown_escaped_in_the_error(tmp_path):
    bad = tmp_path / ("consumers\x1b[2K\r\u202e.yaml")
    out = subprocess.run([sys.executable, "-m", "rotation.cli", "--consumers", str(bad), "status"],
                         env={**{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ROTATION_"))},
                              "VAULT_TOKEN": "t" * 20},
                         text=True, cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    _assert_inert(out.stderr)
    assert "consumers\\x1b[2K\\r\\u202e.yaml" in out.stderr
