"""Build the Lambda deployment packages reproducibly: ``make package`` (``python -m scripts.build_lambda``).

Writes, for each artifact of :data:`ARTIFACTS`:

``dist/<name>.zip``
    the function code and every third-party dependency, for the runtime and architecture the Pulumi
    program declares (:mod:`infra.artifacts`: python3.11 / x86_64 -> ``manylinux2014_x86_64``,
    ``cp311`` wheels only, ``pip install --platform ... --only-binary=:all:``), installed from
    ``requirements/<name>.lock`` (exact versions, ``--require-hashes``, ``--no-deps``: nothing that
    is not in the lock can enter). Nothing from the ``[dev]`` extra, ``rotation/dev`` or ``tests/``.
``dist/<name>.cdx.json``
    a CycloneDX 1.6 SBOM of the same lock (``cyclonedx-py requirements``, reproducible mode), with the
    zip's sha256 on the root component.

Reproducible: two builds from the same commit and lock give byte-identical zips. Entries are sorted,
every timestamp is ``SOURCE_DATE_EPOCH`` (default 1980-01-01, the earliest a zip can hold), every
mode 0644 (directories are not stored), no ``__pycache__``/``*.pyc``, no console scripts (``bin/``,
their shebangs name the build machine's interpreter), no ``direct_url.json``/``REQUESTED``, and each
``*.dist-info/RECORD`` is rewritten from the files actually shipped (sorted, sha256). The project's
own code of the rotator goes in as the project's wheel (``pyproject.toml`` decides what ships:
``rotation`` without ``rotation.dev``), built without build isolation by the setuptools pinned in
``requirements/dev.lock``.

boto3/botocore: pinned in both artifacts instead of relying on the copy in the Lambda runtime, which
AWS upgrades without notice; ours is locked, audited (``make audit``) and in the SBOM. It costs about
25 MB unzipped of the 250 MB limit.

Prints, per artifact: sha256, zipped size, unzipped size against Lambda's 250 MB unzipped limit
(https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html). Exit codes: 0 built, 1 a
build step failed (pip's output is shown) or an artifact exceeds the limit, 2 usage error.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from infra.artifacts import (
    ABI,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    MAIL_HANDLER,
    PYTHON_VERSION,
    ROTATOR,
    UNZIPPED_LIMIT_BYTES,
    WHEEL_PLATFORM,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: 1980-01-01T00:00:00Z, the earliest timestamp a zip entry can carry.
ZIP_EPOCH = 315532800
FILE_MODE = 0o644


@dataclass(frozen=True)
class Artifact:
    """One deployment package: its lock file, handler and where its own code comes from."""

    name: str
    lock: str            # repository-relative lock file with hashes
    handler: str         # Lambda handler, module.function
    description: str


ARTIFACTS = (
    Artifact(ROTATOR, "requirements/rotator.lock", "rotation.aws_lambda.handler",
             "scheduled API-key rotator: the rotation package (without rotation.dev) and its [rotator] extra"),
    Artifact(MAIL_HANDLER, "requirements/mail-handler.lock", "send_message.handler",
             "POST /v1/messages handler: infra/functions/*.py and their imports"),
)
#: Mail handler files copied to the zip root: every module and JSON document of infra/functions
#: (its __init__.py and README.md stay out), so a new module is never left behind.
FUNCTIONS_DIR = REPO_ROOT / "infra" / "functions"


def mail_handler_sources() -> list[str]:
    return sorted(p.name for p in FUNCTIONS_DIR.iterdir()
                  if p.suffix in (".py", ".json") and p.name != "__init__.py")


class BuildError(RuntimeError):
    """A build step failed; the message says which and carries the tool's output."""


@dataclass(frozen=True)
class BuildResult:
    name: str
    zip_path: Path
    sbom_path: Path
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    files: int

    @property
    def within_limit(self) -> bool:
        return self.unzipped_bytes <= UNZIPPED_LIMIT_BYTES


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` (https://reproducible-builds.org/specs/source-date-epoch/), clamped to
    the zip format's minimum 1980-01-01; default that minimum. Raises BuildError if not an integer."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return ZIP_EPOCH
    try:
        return max(int(raw), ZIP_EPOCH)
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH must be an integer (seconds since 1970), got {raw!r}") from None


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n"
                         f"{done.stdout[-4000:]}{done.stderr[-4000:]}")


def install_locked(lock: Path, target: Path) -> None:
    """Install exactly the lock's pins, Lambda-platform wheels only, into ``target``."""
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--require-hashes", "--no-deps", "--only-binary=:all:", "--no-compile",
          "--platform", WHEEL_PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
          "--abi", ABI, "--target", str(target), "-r", str(lock)],
         f"installing {lock.name} for {LAMBDA_RUNTIME}/{LAMBDA_ARCHITECTURE}")


def add_project_wheel(target: Path, work: Path, epoch: int) -> None:
    """Build the project's wheel from a clean copy of its sources and unpack it into ``target``.

    The copy keeps stale ``build/``/``*.egg-info`` of the work tree out; ``pyproject.toml``'s package
    selection (no ``rotation.dev``) decides what ships.
    """
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "rotation", src / "rotation",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "dev"))
    wheels = work / "wheels"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--no-build-isolation", "--wheel-dir", str(wheels), str(src)], "building the project wheel", env=env)
    (wheel,) = wheels.glob("secure_mail_api-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)


def add_mail_handler_sources(target: Path) -> None:
    for name in mail_handler_sources():
        shutil.copy2(FUNCTIONS_DIR / name, target / name)


def normalise(target: Path) -> None:
    """Remove what varies between builds or is not needed at run time; rewrite every RECORD."""
    shutil.rmtree(target / "bin", ignore_errors=True)
    for path in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(path)
    for path in list(target.rglob("*.pyc")):
        path.unlink()
    for info in sorted(target.glob("*.dist-info")):
        for volatile in ("direct_url.json", "REQUESTED"):
            (info / volatile).unlink(missing_ok=True)
        (info / "INSTALLER").write_text("pip\n")
        _rewrite_record(target, info)


def _rewrite_record(target: Path, info: Path) -> None:
    record = info / "RECORD"
    listed: list[str] = []
    if record.exists():
        with record.open(newline="") as fh:
            listed = [row[0] for row in csv.reader(fh) if row]
    own = {p.relative_to(target).as_posix() for p in info.rglob("*") if p.is_file()}
    names = sorted(({n for n in listed if (target / n).is_file()} | own) - {f"{info.name}/RECORD"})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for name in names:
        data = (target / name).read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow([f"{info.name}/RECORD", "", ""])
    record.write_text(out.getvalue())


def _files(root: Path) -> Iterable[Path]:
    return sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def write_zip(root: Path, dest: Path, epoch: int) -> tuple[int, int]:
    """Deterministic zip of ``root``: sorted file entries, fixed time and mode. Returns (files, unzipped bytes)."""
    import time

    stamp = time.gmtime(epoch)[:6]
    count = total = 0
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in _files(root):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=stamp)
            info.create_system = 3  # Unix, so external_attr carries the mode
            info.external_attr = (0o100000 | FILE_MODE) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
            count += 1
            total += len(data)
    tmp.replace(dest)
    return count, total


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_sbom(artifact: Artifact, lock: Path, dest: Path, zip_sha256: str, version: str) -> None:
    """CycloneDX JSON of the lock (``cyclonedx-py requirements --output-reproducible``), with the
    root component naming the artifact and carrying the zip's sha256."""
    raw = dest.with_suffix(".raw.json")
    _run([sys.executable, "-m", "cyclonedx_py", "requirements", "--output-reproducible", "--of", "JSON",
          "--sv", "1.6", "-o", str(raw), str(lock)], f"writing the SBOM of {artifact.name}")
    bom = json.loads(raw.read_text())
    raw.unlink()
    root_ref = f"secure-mail-api-{artifact.name}"
    bom.setdefault("metadata", {})["component"] = {
        "type": "application", "bom-ref": root_ref, "name": root_ref, "version": version,
        "description": artifact.description,
        "hashes": [{"alg": "SHA-256", "content": zip_sha256}],
        "properties": [
            {"name": "aws:lambda:runtime", "value": LAMBDA_RUNTIME},
            {"name": "aws:lambda:architecture", "value": LAMBDA_ARCHITECTURE},
            {"name": "aws:lambda:handler", "value": artifact.handler},
            {"name": "secure-mail-api:lock", "value": artifact.lock},
        ],
    }
    refs = sorted(c["bom-ref"] for c in bom.get("components", []) if "bom-ref" in c)
    deps = [d for d in bom.get("dependencies", []) if d.get("ref") != root_ref]
    bom["dependencies"] = [{"ref": root_ref, "dependsOn": refs}, *deps]
    dest.write_text(json.dumps(bom, indent=2, sort_keys=True) + "\n")


def project_version() -> str:
    import tomllib

    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def build(artifact: Artifact, out_dir: Path, work_dir: Path) -> BuildResult:
    """Build one artifact into ``out_dir`` using ``work_dir`` as scratch. Raises BuildError."""
    epoch = source_date_epoch()
    lock = REPO_ROOT / artifact.lock
    if not lock.is_file():
        raise BuildError(f"{artifact.lock} is missing: run `make lock`")
    target = work_dir / artifact.name / "package"
    if target.parent.exists():
        shutil.rmtree(target.parent)
    target.mkdir(parents=True)
    install_locked(lock, target)
    if artifact.name == ROTATOR:
        add_project_wheel(target, target.parent, epoch)
    else:
        add_mail_handler_sources(target)
    normalise(target)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{artifact.name}.zip"
    files, unzipped = write_zip(target, zip_path, epoch)
    digest = sha256_of(zip_path)
    sbom = out_dir / f"{artifact.name}.cdx.json"
    write_sbom(artifact, lock, sbom, digest, project_version())
    return BuildResult(artifact.name, zip_path, sbom, digest, zip_path.stat().st_size, unzipped, files)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def report(results: list[BuildResult]) -> str:
    lines = [(f"Lambda packages for {LAMBDA_RUNTIME}/{LAMBDA_ARCHITECTURE} ({WHEEL_PLATFORM}, {ABI}); "
              f"limit {_mb(UNZIPPED_LIMIT_BYTES)} unzipped:")]
    for r in results:
        pct = 100 * r.unzipped_bytes / UNZIPPED_LIMIT_BYTES
        lines.append(f"  {r.zip_path.name:<18} sha256 {r.sha256}")
        lines.append(f"  {'':<18} zipped {_mb(r.zipped_bytes)} ({r.zipped_bytes} B), unzipped "
                     f"{_mb(r.unzipped_bytes)} ({r.unzipped_bytes} B, {r.files} files) = {pct:.1f}% of the "
                     f"limit{'' if r.within_limit else '  OVER THE LIMIT'}; SBOM {r.sbom_path.name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.build_lambda", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist", help="output directory (default dist/)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch directory (default: a temporary directory, removed afterwards)")
    parser.add_argument("--only", choices=[a.name for a in ARTIFACTS], action="append",
                        help="build only this artifact (repeatable)")
    args = parser.parse_args(argv)
    chosen = [a for a in ARTIFACTS if not args.only or a.name in args.only]
    try:
        with tempfile.TemporaryDirectory(prefix="lambda-build-") as tmp:
            work = args.work or Path(tmp)
            results = [build(a, args.out, work) for a in chosen]
    except BuildError as exc:
        print(f"make package: {exc}", file=sys.stderr)
        return 1
    print(report(results))
    sums = args.out / "SHA256SUMS"
    known = dict(reversed(line.split("  ", 1)) for line in sums.read_text().splitlines()) if sums.exists() else {}
    known.update({r.zip_path.name: r.sha256 for r in results})
    sums.write_text("".join(f"{known[n]}  {n}\n" for n in sorted(known)))
    if not all(r.within_limit for r in results):
        print("make package: an artifact exceeds Lambda's 250 MB unzipped limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
