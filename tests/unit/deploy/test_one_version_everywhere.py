"""One source for the version: pyproject.toml's ``[project] version``. The installed package
metadata (``rotation --version``), the image tag in the kustomization and every manifest, and every
``secure-mail-api-rotator:<tag>`` a document or comment tells a user to build or run must agree."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata

import yaml

from ._paths import KUBERNETES, ROOT

IMAGE_TAG = re.compile(r"secure-mail-api-rotator:([0-9][0-9A-Za-z.+-]*)")


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_installed_metadata_is_the_pyproject_version():
    assert metadata.version("secure-mail-api") == _version()


def test_kustomization_image_tag_is_the_pyproject_version():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    (image,) = [i for i in kustomization["images"] if i["name"] == "secure-mail-api-rotator"]
    assert image["newTag"] == _version()


def test_every_image_reference_in_the_repository_carries_the_pyproject_version():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = {}
    for name in files.split():
        if name == "CHANGELOG.md" or name.startswith("tests/"):
            continue  # the changelog names past versions on purpose
        path = ROOT / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for match in IMAGE_TAG.finditer(text):
            found.setdefault(match.group(1), []).append(name)
    assert found, "no image reference found: the pattern or the files moved"
    assert set(found) == {_version()}, found
    # the manifests themselves are among them, not only prose
    assert any(n.startswith("deploy/kubernetes/") for n in found[_version()])
