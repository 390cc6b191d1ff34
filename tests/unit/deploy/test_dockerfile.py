"""The rotator image (deploy/docker/Dockerfile): hadolint finds nothing, the base is pinned by
digest, the build is multi-stage, the runtime stage runs as a numeric non-root user without
Python package tools, and its entrypoint, default command and consumers-file path are the real
CLI's. No image is built here (no registry access); the checks read the Dockerfile."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess

import pytest
import yaml

from rotation.cli import main as rotation_cli

from ._paths import DOCKERFILE, DOCKERIGNORE, KUBERNETES, ROOT, tool

DIGEST_PIN = re.compile(r"^python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$")


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs of a Dockerfile: comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a stage starts at FROM)."""
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def _hadolint(path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "style", "--format", "json",
                           str(path)], capture_output=True, text=True, timeout=120, check=False)


def test_hadolint_reports_no_finding_at_any_level():
    proc = _hadolint(DOCKERFILE)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


def test_hadolint_really_lints(tmp_path):
    """The lint test is not vacuous: the same invocation fails on an unpinned, root, cached pip image."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11\nRUN pip install requests\nUSER root\n")
    proc = _hadolint(bad)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert proc.returncode != 0 and {"DL3013", "DL3042", "DL3002"} <= codes


def test_every_stage_uses_the_digest_pinned_python_base(dockerfile):
    args = {}
    for word, rest in instructions(dockerfile):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    froms = [rest for word, rest in instructions(dockerfile) if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    for line in froms:
        image = line.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert DIGEST_PIN.match(image), image
    assert "python:3.11-slim-bookworm" in dockerfile and re.search(r"Renovate|Dependabot", dockerfile)


def test_runtime_stage_is_non_root_without_package_tools(dockerfile):
    *_, runtime = stages(dockerfile)
    assert runtime[0][1].split()[-1] == "runtime"
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    assert not re.search(r"\b(apt-get|apt|apk|dnf|yum)\s+(install|add)\b", runs)
    assert not re.search(r"\bpip3?\s+install\b", runs)
    assert re.search(r"pip uninstall --yes pip setuptools wheel", runs)
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 10000 and (not gid or gid.isdigit())
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], "only the built virtualenv enters the runtime stage"


def test_build_stage_installs_the_rotator_lock_into_a_venv_without_package_tools(dockerfile):
    """The rotator extra comes from its hashed lock (tests/unit/supply_chain checks that nothing is
    resolved); /opt/venv is made without pip, and the installer lives in a venv the image drops."""
    build, *_ = stages(dockerfile)
    runs = " ".join(rest for word, rest in build if word == "RUN")
    assert "uv pip sync --python /opt/venv/bin/python --require-hashes requirements/rotator.lock" in runs
    assert "python -m venv --without-pip /opt/venv" in runs
    assert "/opt/venv/bin/pip" not in runs and "--no-cache-dir" in runs


def test_entrypoint_and_command_are_real_cli_commands(dockerfile):
    ins = instructions(dockerfile)
    (entrypoint,) = [json.loads(rest) for word, rest in ins if word == "ENTRYPOINT"]
    (cmd,) = [json.loads(rest) for word, rest in ins if word == "CMD"]
    assert entrypoint == ["rotation"]
    assert cmd[0] in rotation_cli.commands and cmd == ["run"]
    assert {"run", "plan", "status", "schedule"} <= set(rotation_cli.commands)


def test_consumers_file_env_matches_the_cli_and_the_kubernetes_mount(dockerfile):
    """ROTATION_CONSUMERS_FILE is the CLI's envvar; the image default is where the CronJob mounts it."""
    option = next(p for p in rotation_cli.params if p.name == "consumers_path")
    assert option.envvar == "ROTATION_CONSUMERS_FILE"
    env = " ".join(rest for word, rest in instructions(dockerfile) if word == "ENV")
    path = re.search(r"ROTATION_CONSUMERS_FILE=(\S+)", env).group(1)
    cronjob = yaml.safe_load((KUBERNETES / "cronjob.yaml").read_text())
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "consumers")
    assert path == f"{mount['mountPath']}/consumers.yaml"


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = rel.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:i]), pat) or fnmatch.fnmatch(parts[i - 1], pat.removeprefix("**/"))
               for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_build_context_allow_list_holds_what_the_image_copies(dockerfile):
    """Every COPY source of the build stage exists and is not excluded by .dockerignore; tests,
    the virtualenv and git metadata are excluded; pyproject's readme is part of the context."""
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    build, *_ = stages(dockerfile)
    sources = [s for word, rest in build if word == "COPY" for s in rest.split()[:-1] if not s.startswith("--")]
    assert {"pyproject.toml", "README.md", "rotation", "requirements/rotator.lock"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not _ignored(src, patterns), src
    assert not _ignored("rotation/cli.py", patterns)
    for excluded in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "rotation/__pycache__/cli.cpython-311.pyc"):
        assert _ignored(excluded, patterns), excluded
