"""Every install path installs exactly a lock and resolves nothing, so a package released after the
lock can neither change nor break an install: ``make install`` (Makefile), the Lambda artifacts
(scripts/build_lambda.py) and the rotator image (deploy/docker/Dockerfile).

The rule (:func:`why_it_may_resolve`) is checked against every install command those three files
run, and against commands that do resolve, so that it cannot pass vacuously. The environment the
suite itself runs in (``make install``'s) is compared with requirements/dev.lock by
``scripts.verify_install``; tests/integration/packaging replays the image's install steps for real.
"""

from __future__ import annotations

import re
import shlex
import sys
import zipfile
from pathlib import Path

import pytest

from scripts import build_lambda, verify_install
from tests.unit.deploy.test_dockerfile import instructions, stages

REPO_ROOT = Path(__file__).resolve().parents[3]
LOCK = re.compile(r"^requirements/[a-z-]+\.lock$")
#: a local thing to install: the checkout (``.``), a path, or a built wheel file (glob allowed)
LOCAL = re.compile(r"^(\.|/\S+|\S+\.whl)$")


def why_it_may_resolve(argv: list[str]) -> str | None:
    """None when ``argv`` installs only hashed lock pins or local paths without their dependencies;
    otherwise the reason it may resolve something from an index. Commands that install nothing
    (``pip check``, ``uv pip check``) pass."""
    words = [w for w in argv if w not in ("--quiet", "-q")]
    if "pip" not in words:
        return None
    verb = words[words.index("pip") + 1] if words.index("pip") + 1 < len(words) else ""
    if verb in ("check", "uninstall", "--version"):
        return None
    requirements = [words[i + 1] for i, w in enumerate(words) if w == "-r"]
    positional = []
    skip_next = {"-r", "--python", "--platform", "--implementation", "--python-version", "--abi", "--target",
                 "--wheel-dir", "-w", "-e"}
    i = words.index("pip") + 2
    while i < len(words):
        word = words[i]
        if word in skip_next:
            if word == "-e":
                positional.append(words[i + 1])
            i += 2
            continue
        if not word.startswith("-"):
            positional.append(word)
        i += 1
    if verb == "sync":  # uv pip sync FILE...: the environment becomes exactly the files given
        files = requirements + positional
        if "--require-hashes" not in words or not files or not all(LOCK.match(f) for f in files):
            return "uv pip sync without --require-hashes and a requirements/*.lock"
        return None
    if verb not in ("install", "wheel"):
        return f"unknown pip verb {verb!r}"
    if "--no-deps" not in words:
        return "no --no-deps: the installer resolves dependencies"
    if verb == "wheel" and "--no-build-isolation" not in words:
        return "pip wheel with build isolation resolves the build backend"
    if requirements and ("--require-hashes" not in words or not all(LOCK.match(r) for r in requirements)):
        return "-r without --require-hashes on a requirements/*.lock"
    for target in positional:
        if not LOCAL.match(target):
            return f"{target!r} is a name or an extra, not a lock or a local path"
    if not requirements and not positional:
        return "installs nothing that can be recognised"
    return None


def _makefile_install_commands() -> list[list[str]]:
    text = (REPO_ROOT / "Makefile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.startswith("\t")]
    return [shlex.split(line.replace("$(BIN)/", ".venv/bin/").replace("$(PY)", "python3"))
            for line in lines if re.search(r"\bpip\b", line)]


def _dockerfile_install_commands() -> list[list[str]]:
    text = (REPO_ROOT / "deploy/docker/Dockerfile").read_text()
    commands = []
    for word, rest in instructions(text):
        if word == "RUN":
            commands += [shlex.split(part) for part in rest.split("&&") if re.search(r"\bpip\b", part)]
    return commands


def _build_lambda_install_commands(monkeypatch, tmp_path) -> list[list[str]]:
    """The pip commands scripts/build_lambda.py runs, captured at its one subprocess helper."""
    seen: list[list[str]] = []

    def record(cmd, what, cwd=None, env=None):
        seen.append(list(cmd))
        if "wheel" in cmd:  # add_project_wheel unpacks the wheel it built: give it one
            wheels = Path(cmd[cmd.index("--wheel-dir") + 1])
            wheels.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheels / "secure_mail_api-0-py3-none-any.whl", "w"):
                pass

    monkeypatch.setattr(build_lambda, "_run", record)
    build_lambda.install_locked(REPO_ROOT / "requirements/rotator.lock", tmp_path / "target")
    (tmp_path / "work").mkdir()
    build_lambda.add_project_wheel(tmp_path / "target", tmp_path / "work", 315532800)
    # the lock is passed as an absolute path; the rule reads it as the repository-relative one
    return [[str(Path(w).relative_to(REPO_ROOT)) if w.startswith(str(REPO_ROOT / "requirements")) else w
             for w in cmd] for cmd in seen]


def test_make_install_installs_only_hashed_locks_without_resolving():
    commands = _makefile_install_commands()
    assert any("sync" in c for c in commands) and any("bootstrap.lock" in " ".join(c) for c in commands)
    assert {c[-1] for c in commands if "sync" in c} == {"requirements/dev.lock"}
    for cmd in commands:
        assert why_it_may_resolve(cmd) is None, (why_it_may_resolve(cmd), cmd)


def test_image_install_steps_use_the_hashed_rotator_lock_without_resolving():
    commands = _dockerfile_install_commands()
    joined = [" ".join(c) for c in commands]
    assert any("sync" in j and "--require-hashes requirements/rotator.lock" in j for j in joined), joined
    assert any("--no-deps --require-hashes -r requirements/bootstrap.lock" in j for j in joined), joined
    for cmd in commands:
        assert why_it_may_resolve(cmd) is None, (why_it_may_resolve(cmd), cmd)
    build, *_ = stages((REPO_ROOT / "deploy/docker/Dockerfile").read_text())
    copied = " ".join(rest for word, rest in build if word == "COPY")
    assert "requirements/rotator.lock" in copied and "requirements/bootstrap.lock" in copied


def test_lambda_artifact_install_steps_use_hashed_locks_without_resolving(monkeypatch, tmp_path):
    commands = _build_lambda_install_commands(monkeypatch, tmp_path)
    assert len(commands) == 2, commands
    for cmd in commands:
        assert why_it_may_resolve(cmd) is None, (why_it_may_resolve(cmd), cmd)


@pytest.mark.parametrize("command", [
    "pip install --no-cache-dir '.[rotator]'",
    "pip install --require-hashes -r requirements/dev.lock",
    "pip install --no-deps -r requirements/dev.lock",
    "pip install --no-deps --require-hashes -r requirements.txt",
    "pip install --no-deps requests==2.32.0",
    "pip wheel --no-deps --wheel-dir /tmp/w .",
    "uv pip sync requirements/dev.lock",
    "uv pip install -r requirements/dev.lock",
    "pip install --no-deps",
])
def test_the_rule_flags_commands_that_resolve(command):
    """Not vacuous: each of these lets an index decide what gets installed."""
    assert why_it_may_resolve(shlex.split(command)) is not None


def test_bootstrap_lock_pins_the_installer_and_backend_that_the_dev_lock_pins():
    """The venv's pip installs uv and setuptools from bootstrap.lock; uv then syncs dev.lock, which
    must hold the very same versions or the sync would swap the installer under itself."""
    boot = {name: version for name, version, _ in verify_install.read_lock(REPO_ROOT / "requirements/bootstrap.lock")}
    dev = {name: version for name, version, marker in verify_install.read_lock(REPO_ROOT / "requirements/dev.lock")}
    assert set(boot) == {"uv", "setuptools"}
    assert {name: dev[name] for name in boot} == boot


def test_the_suite_runs_in_an_environment_that_holds_exactly_the_dev_lock():
    """What `make install` left is the lock: every pin at its version, nothing else but the project."""
    if not (REPO_ROOT / ".venv").exists() or Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve():
        pytest.fail(f"run the suite with `make test` (its .venv), not {sys.prefix}")
    assert verify_install.check(REPO_ROOT / "requirements/dev.lock", allow=["secure-mail-api"]) == []


def test_verify_install_reports_a_missing_a_wrong_and_an_unpinned_distribution(tmp_path):
    lock = tmp_path / "some.lock"
    lock.write_text(
        "pytest==0.0.1 \\\n    --hash=sha256:00\n"
        "not-installed-anywhere==1.0 \\\n    --hash=sha256:00\n"
        "never-here==2.0 ; python_full_version < '3.0' \\\n    --hash=sha256:00\n"
    )
    problems = verify_install.check(lock)
    assert any(p.startswith("wrong version: pytest") for p in problems), problems
    assert "missing: not-installed-anywhere==1.0 (pinned in some.lock, not installed)" in problems
    assert not any("never-here" in p for p in problems), "a pin whose marker does not hold is not expected"
    assert any(p.startswith("not in the lock: hvac==") for p in problems), problems
    assert verify_install.main([str(lock)]) == 1


def test_verify_install_refuses_a_lock_line_that_is_not_an_exact_pin(tmp_path, capsys):
    lock = tmp_path / "loose.lock"
    lock.write_text("requests>=2\n")
    assert verify_install.main([str(lock)]) == 2
    assert "loose.lock:1: not a `name==version` pin" in capsys.readouterr().err
