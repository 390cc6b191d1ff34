"""Paths and tool lookup shared by the deploy tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUBERNETES = DEPLOY / "kubernetes"


def tool(name: str) -> str:
    """Path of a console tool installed with the ``dev`` extra (next to this interpreter first).

    Raises ``AssertionError`` naming the fix when it is missing: a lint test that cannot run the
    linter must fail, not pass or skip."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run `make install` (it comes with the dev extra)"
    return found
