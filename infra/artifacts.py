"""The Lambda deployment packages the program deploys, and the platform they are built for.

``make package`` (``scripts/build_lambda.py``) builds them into ``dist/`` from the lock files in
``requirements/``; the Pulumi program deploys them as they are (``pulumi.FileArchive`` on a
``.zip`` passes the file through unchanged, so the function's ``CodeSha256`` is the base64 of the
sha256 that ``make package`` prints). No layer with third-party code is needed.

Both functions run on :data:`LAMBDA_RUNTIME` / :data:`LAMBDA_ARCHITECTURE`; the build reads the
same constants to pick the wheels (:data:`WHEEL_PLATFORM`, ``cp311``), so what is deployed and
what is built cannot drift apart. python3.11 runs on Amazon Linux 2 (glibc 2.26), hence
manylinux2014 (glibc 2.17) wheels; it is a supported runtime until its deprecation date in
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html (Security Hub Lambda.2).

Public API::

    LAMBDA_RUNTIME, LAMBDA_ARCHITECTURE, PYTHON_VERSION, WHEEL_PLATFORM, ABI
    ROTATOR, MAIL_HANDLER                  artifact names: dist/<name>.zip
    ARTIFACTS_DIR                          <repository>/dist
    UNZIPPED_LIMIT_BYTES                   Lambda's 250 MB limit on the unzipped package (with layers)
    ArtifactMissing(FileNotFoundError)     a required artifact is not built; the message names `make package`
    artifact_path(name, artifacts_dir=None) -> pathlib.Path
    check_artifacts(names, artifacts_dir=None)        raises ArtifactMissing
    code_archive(name, artifacts_dir=None) -> pulumi.FileArchive
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ABI",
    "ARTIFACTS_DIR",
    "LAMBDA_ARCHITECTURE",
    "LAMBDA_RUNTIME",
    "MAIL_HANDLER",
    "PYTHON_VERSION",
    "ROTATOR",
    "UNZIPPED_LIMIT_BYTES",
    "WHEEL_PLATFORM",
    "ArtifactMissing",
    "artifact_path",
    "check_artifacts",
    "code_archive",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "dist"

#: The Lambda runtime of both functions. Its Python minor version must be the one that builds and
#: tests the artifacts (CPython 3.11 here), so the import test runs the real interpreter.
LAMBDA_RUNTIME = "python3.11"
#: Instruction set of both functions (``architectures`` of aws.lambda_.Function).
LAMBDA_ARCHITECTURE = "x86_64"
PYTHON_VERSION = "3.11"
ABI = "cp311"
#: pip ``--platform`` for LAMBDA_ARCHITECTURE on the python3.11 runtime (Amazon Linux 2, glibc 2.26).
WHEEL_PLATFORM = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}[LAMBDA_ARCHITECTURE]

#: dist/rotator.zip: rotation.aws_lambda.handler (the rotation package without rotation.dev + [rotator]).
ROTATOR = "rotator"
#: dist/mail-handler.zip: send_message.handler (infra/functions/*.py at the root + their imports).
MAIL_HANDLER = "mail-handler"

#: "Deployment package size: 250 MB (unzipped)", function code and all layers together:
#: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


class ArtifactMissing(FileNotFoundError):
    """A deployment package the program deploys has not been built."""


def artifact_path(name: str, artifacts_dir: Path | None = None) -> Path:
    """``<artifacts_dir or dist/>/<name>.zip``; ``name`` is :data:`ROTATOR` or :data:`MAIL_HANDLER`."""
    if name not in (ROTATOR, MAIL_HANDLER):
        raise ValueError(f"unknown artifact {name!r}: expected {ROTATOR!r} or {MAIL_HANDLER!r}")
    return (artifacts_dir or ARTIFACTS_DIR) / f"{name}.zip"


def check_artifacts(names: list[str], artifacts_dir: Path | None = None) -> None:
    """Raise :class:`ArtifactMissing` (naming ``make package`` and every missing file) unless each
    ``dist/<name>.zip`` of ``names`` exists. The program calls it under ``pulumi up``/``preview``
    before declaring any resource; the offline mock runs (tests, ``make policy-check``) skip it and
    never read the files."""
    missing = [artifact_path(n, artifacts_dir) for n in names if not artifact_path(n, artifacts_dir).is_file()]
    if missing:
        raise ArtifactMissing(
            f"Lambda package(s) missing: {', '.join(str(p) for p in missing)}. Run `make package` in "
            f"{REPO_ROOT} first (it builds dist/{ROTATOR}.zip and dist/{MAIL_HANDLER}.zip from requirements/*.lock)")


def code_archive(name: str, artifacts_dir: Path | None = None):
    """``pulumi.FileArchive`` of ``dist/<name>.zip``. The path is absolute (like every path the
    program reads), so the directory ``pulumi`` runs the program in does not matter; a ``.zip`` path
    is uploaded unchanged."""
    import pulumi

    return pulumi.FileArchive(str(artifact_path(name, artifacts_dir)))
