"""``python -m rotation.dev up``: self-contained by default (its own consumers file, local targets
only, everything written under its directory) and the commands it prints run as pasted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULT_", "ROTATION_", "BAO_"))}


def _start_up(directory: Path) -> tuple[subprocess.Popen, list[str]]:
    """Start ``dev up --dir DIRECTORY``; return the process and its output up to the printed commands."""
    proc = subprocess.Popen([sys.executable, "-m", "rotation.dev", "up", "--dir", str(directory)], env=_base_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=directory.parent)
    lines: list[str] = []
    while not lines or "--dry-run)" not in lines[-1]:
        line = proc.stdout.readline()
        assert line, "dev up exited early: " + proc.stderr.read()
        lines.append(line.rstrip("\n"))
    return proc, lines


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dev_up_uses_its_own_consumers_file_with_local_targets_and_its_printed_commands_run_as_pasted(tmp_path):
    directory = tmp_path / "dev-stack"
    proc, lines = _start_up(directory)
    try:
        env = dict(line.removeprefix("export ").split("=", 1)
                   for line in (directory / "env").read_text().splitlines() if line)
        consumers = Path(env["ROTATION_CONSUMERS_FILE"])
        assert consumers == directory.resolve() / "consumers.yaml"
        targets = [t for c in yaml.safe_load(consumers.read_text())["consumers"] for t in c.get("targets", [])]
        assert targets and {t["type"] for t in targets} == {"file"}           # no webhook: no host to call
        assert all(Path(t["path"]).is_relative_to(directory.resolve()) for t in targets)
        assert env["ROTATION_FILE_TARGET_DIRS"] == str((directory / "keys").resolve())
        assert env["ROTATION_AUDIT_LOG"] == str((directory / "audit.jsonl").resolve())
        for f in ("env", "admin.env", "billing.env", "crm.env", "newsletter.env"):
            assert oct((directory / f).stat().st_mode & 0o777) == "0o600"

        block = lines[next(i for i, x in enumerate(lines) if x.startswith("next, in another shell")) + 1:]
        commands = [x.strip() for x in block if x.startswith("  ")]
        assert any(c.endswith(" run") for c in commands) and any("vault setup" in c for c in commands)
        script = "set -eu -o pipefail\n" + "\n".join(commands) + "\n"
        r = subprocess.run(["bash", "-c", script], env=_base_env(), capture_output=True, text=True, timeout=600,
                           check=False, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "3 consumers, 0 failed" in r.stdout
        assert '"command": "rotate"' in r.stdout                         # the JSON document, pretty-printed
        assert "dry run: 0 create, 0 update" in r.stdout                  # the shipped Vault setup is this stack's
        assert '"audit_schema"' not in r.stdout + r.stderr                # the trail went to its own file
        assert '"event": "promote"' in (directory / "audit.jsonl").read_text()
        key = directory / "keys" / "crm.key"
        assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
        written = {p for p in tmp_path.rglob("*") if p.is_file()}
        assert all(p.is_relative_to(directory) for p in written), written   # nothing written beside it
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_dev_up_with_an_invalid_consumers_file_exits_2_naming_the_field_and_starts_nothing(tmp_path):
    bad = tmp_path / "consumers.yaml"
    bad.write_text("version: 1\nconsumers: [{name: billing, tier: gold}]\n")
    r = subprocess.run([sys.executable, "-m", "rotation.dev", "up", "--dir", str(tmp_path / "d"),
                        "--consumers-file", str(bad)], env=_base_env(), capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 2, r.stderr
    assert "usage_plans: is required" in r.stderr and r.stdout == ""
    assert not (tmp_path / "d" / "env").exists()
