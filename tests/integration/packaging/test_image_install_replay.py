"""The rotator image's build stage, replayed for real (no image can be built here: the base image
cannot be pulled): its ENV, WORKDIR, COPY and RUN instructions run in order under a temporary
directory standing for the image's ``/``, with this machine's Python 3.11 standing for the base
image's and the package index the image build would use. What it leaves in ``/opt/venv`` must be
exactly requirements/rotator.lock plus the project's wheel, with every requirement met, and the
``rotation`` entry point must run from it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from scripts import verify_install
from tests.unit.deploy.test_dockerfile import stages

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO_ROOT / "deploy/docker/Dockerfile"
#: the base interpreter (not this virtualenv's), as the image's ``python`` is a plain CPython 3.11
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def _under(root: Path, text: str) -> str:
    """Image paths (``/opt/...``, ``/src``, ``/tmp/...``) rewritten under ``root``; ``python`` -> base."""
    text = re.sub(r"(?<![\w./-])/(opt|src|tmp)(?=[/\s]|$)", lambda m: f"{root}/{m.group(1)}", text)
    return re.sub(r"(?<![\w./-])python(?=\s)", shlex.quote(BASE_PYTHON), text)


def replay_build_stage(root: Path) -> None:
    """Run the build stage's instructions under ``root``; AssertionError naming the failed step."""
    build, *_ = stages(DOCKERFILE.read_text())
    env = {"PATH": os.environ["PATH"], "HOME": str(root / "home")}
    for key in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_INDEX_URL", "UV_INDEX_URL"):
        if key in os.environ:
            env[key] = os.environ[key]
    cwd = root
    for word, rest in build:
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif word == "WORKDIR":
            cwd = Path(_under(root, rest))
            cwd.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, dest = rest.split()
            target = cwd / dest
            for source in sources:
                src = REPO_ROOT / source
                out = target / src.name if dest.endswith("/") else target
                if src.is_dir():
                    shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, out)
        elif word == "RUN":
            command = _under(root, rest)
            done = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=900, check=False)
            assert done.returncode == 0, f"RUN {rest}\nexit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


@pytest.mark.slow
def test_image_build_stage_installs_exactly_the_rotator_lock_and_the_project(tmp_path):
    root = tmp_path / "image"
    (root / "home").mkdir(parents=True)
    replay_build_stage(root)
    venv = root / "opt" / "venv"
    (site_packages,) = (venv / "lib").glob("python3.*/site-packages")
    problems = verify_install.check(REPO_ROOT / "requirements/rotator.lock", allow=["secure-mail-api"],
                                    site_packages=site_packages)
    assert problems == []
    installed = verify_install.installed(site_packages)
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert installed["secure-mail-api"].version == version
    assert not {"pip", "setuptools", "wheel", "uv"} & set(installed), "the runtime venv has no package tools"
    done = subprocess.run([str(venv / "bin" / "rotation"), "--version"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and version in done.stdout, done.stdout + done.stderr
