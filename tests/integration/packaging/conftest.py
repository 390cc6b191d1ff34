"""Build the Lambda packages once per session into a temporary directory (downloads the locked
wheels from the package index; pip's cache makes later builds local)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from scripts import build_lambda

#: pip's cache of the real HOME, read before tests/conftest.py points HOME at a per-test directory, so
#: rebuilds inside a test reuse the wheels already downloaded.
PIP_CACHE_DIR = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")


@pytest.fixture(autouse=True)
def _shared_pip_cache(monkeypatch):
    monkeypatch.setenv("PIP_CACHE_DIR", PIP_CACHE_DIR)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, build_lambda.BuildResult]:
    """name -> BuildResult of one `make package` equivalent (out and work dirs in a session tmp dir)."""
    root = tmp_path_factory.mktemp("package")
    return {a.name: build_lambda.build(a, root / "dist", root / "work") for a in build_lambda.ARTIFACTS}


@pytest.fixture(scope="session")
def unzipped(built, tmp_path_factory) -> dict[str, Path]:
    """name -> directory holding the artifact's zip extracted, nothing else."""
    root = tmp_path_factory.mktemp("unzipped")
    out = {}
    for name, result in built.items():
        with zipfile.ZipFile(result.zip_path) as zf:
            zf.extractall(root / name)
        out[name] = root / name
    return out
