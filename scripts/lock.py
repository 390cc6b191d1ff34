"""Compile the lock files with hashes: ``make lock`` (``python -m scripts.lock``).

=============================  ==========================================  ===============================
lock                           from                                        platform
=============================  ==========================================  ===============================
requirements/dev.lock          pyproject.toml ``[dev]`` (everything,       universal (markers), Python 3.11
                               tests, tools, the build backend)
requirements/rotator.lock      pyproject.toml base + ``[rotator]``         the Lambda platform
requirements/mail-handler.lock requirements/mail-handler.in                the Lambda platform
requirements/bootstrap.lock    requirements/bootstrap.in (the installer    universal (markers), Python 3.11
                               uv and the build backend, as in dev.lock)
=============================  ==========================================  ===============================

The Lambda platform is the one the Pulumi program declares (:mod:`infra.artifacts`: python3.11 on
x86_64 -> ``x86_64-manylinux2014``). ``uv pip compile`` keeps the versions already in a lock unless
``--upgrade`` is given (``make lock-upgrade``); ``--check`` (``make lock-check``) compiles into a
temporary directory and exits 1 when a committed lock differs (a dependency changed in pyproject.toml
or mail-handler.in without ``make lock``). Needs the package index (PyPI); exit 1 with uv's message
when it cannot be reached.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.artifacts import LAMBDA_ARCHITECTURE, PYTHON_VERSION

REPO_ROOT = Path(__file__).resolve().parent.parent
#: uv's --python-platform for the Lambda architecture (manylinux2014, as infra.artifacts.WHEEL_PLATFORM).
UV_PLATFORM = {"x86_64": "x86_64-manylinux2014", "arm64": "aarch64-manylinux2014"}[LAMBDA_ARCHITECTURE]

#: lock file -> (source, extra args)
LOCKS: dict[str, tuple[str, list[str]]] = {
    "requirements/dev.lock": ("pyproject.toml", ["--universal", "--extra", "dev"]),
    "requirements/rotator.lock": ("pyproject.toml", ["--python-platform", UV_PLATFORM, "--extra", "rotator"]),
    "requirements/mail-handler.lock": ("requirements/mail-handler.in", ["--python-platform", UV_PLATFORM]),
    "requirements/bootstrap.lock": ("requirements/bootstrap.in", ["--universal"]),
}


def compile_lock(lock: str, out: Path, upgrade: bool) -> None:
    source, extra = LOCKS[lock]
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    # Relative paths and no --custom-compile-command: the header records the real, repeatable command,
    # which the update bot (renovate.json, pip-compile manager) reads to recompile the lock.
    target = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
    cmd = [uv, "pip", "compile", "--quiet", "--generate-hashes", "--python-version", PYTHON_VERSION,
           *extra, "-o", str(target), source]
    if upgrade:
        cmd.append("--upgrade")
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"make lock: {lock}: uv pip compile failed (exit {done.returncode}):\n{done.stderr}")


def _body(text: str) -> list[str]:
    """The lock without its header comment (which names the output path)."""
    lines = text.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.lock", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--upgrade", action="store_true", help="move every pin to the newest allowed version")
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed lock is out of date")
    args = parser.parse_args(argv)
    if not args.check:
        for lock in LOCKS:
            compile_lock(lock, REPO_ROOT / lock, args.upgrade)
            print(f"wrote {lock}")
        return 0
    stale = []
    with tempfile.TemporaryDirectory(prefix="lock-check-") as tmp:
        for lock in LOCKS:
            fresh = Path(tmp) / Path(lock).name
            shutil.copy2(REPO_ROOT / lock, fresh)  # keep its pins: only a changed input may move them
            compile_lock(lock, fresh, upgrade=False)
            if _body(fresh.read_text()) != _body((REPO_ROOT / lock).read_text()):
                stale.append(lock)
    for lock in stale:
        print(f"{lock} is out of date with {LOCKS[lock][0]}: run `make lock` and commit it", file=sys.stderr)
    if not stale:
        print("lock files are up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
