"""Check that an environment holds exactly a lock: ``python -m scripts.verify_install LOCK [--allow NAME]``.

Every install path (``make install``, the Lambda artifacts, the container image) installs a hashed
lock without resolving anything (``pip install --no-deps --require-hashes`` or ``uv pip sync
--require-hashes``). This is the proof afterwards, run with the environment's own interpreter:

- every pin of the lock whose environment marker (PEP 508) holds here is installed, at that version;
- nothing else is installed, apart from the names given with ``--allow`` (the project itself);
- the installed distributions' own requirements are met (``pip check``'s rule: a wrong or missing
  dependency is a failure, even when both sides are in the lock).

Prints one line per problem and exits 1 when there is any, 0 with a one-line summary otherwise;
exit 2 for a lock file that cannot be read. Uses only the standard library and ``packaging``.
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

#: one pin of a uv/pip-compile lock: ``name==version`` (optionally ``[extras]`` and ``; marker``),
#: continued by `` \`` lines of hashes.
_PIN = re.compile(r"^(?P<req>[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?==[^\s;\\]+(?:\s*;\s*[^\\]+)?)")


def read_lock(path: Path) -> list[tuple[str, Version, Marker | None]]:
    """The pins of a lock file as (canonical name, version, marker or None), in file order; a universal
    lock may pin one name several times under exclusive markers.

    Raises ValueError naming the line when a pin is not ``name==version``.
    """
    pins: list[tuple[str, Version, Marker | None]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line or line[0] in " #-":
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not a `name==version` pin: {line.strip()[:80]!r}")
        try:
            req = Requirement(match["req"].strip())
        except InvalidRequirement as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        (spec,) = req.specifier
        pins.append((canonicalize_name(req.name), Version(spec.version), req.marker))
    return pins


def installed(site_packages: Path | None = None) -> dict[str, metadata.Distribution]:
    """Canonical name -> distribution, for every distribution installed in this environment's
    site-packages (not whatever else is on ``sys.path``: ``pkg_resources`` adds setuptools' vendored
    copies there), or in ``site_packages`` (another environment of the same Python version)."""
    paths = [str(site_packages)] if site_packages else sorted({sysconfig.get_path("purelib"),
                                                                sysconfig.get_path("platlib")})
    dists = metadata.distributions(path=paths)
    found: dict[str, metadata.Distribution] = {}
    for dist in dists:
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


def unmet_requirements(dists: dict[str, metadata.Distribution], names: Iterable[str]) -> list[str]:
    """``pip check``'s rule for the named distributions of ``dists``: each of their requirements whose
    marker holds (extras not requested are skipped) is installed at a version the specifier allows."""
    versions = {name: Version(dist.version) for name, dist in dists.items()}
    problems = []
    for name in sorted(names):
        for text in dists[name].requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = versions.get(canonicalize_name(req.name))
            if have is None:
                problems.append(f"{name} requires {req}, which is not installed")
            elif not req.specifier.contains(have, prereleases=True):
                problems.append(f"{name} requires {req}, but {have} is installed")
    return problems


def check(lock: Path, allow: Iterable[str] = (), site_packages: Path | None = None) -> list[str]:
    """Every difference between this environment (or the one whose ``site_packages`` is given) and
    ``lock``, as one line each; empty when they are equal. Raises OSError/ValueError for a lock that
    cannot be read."""
    allowed = {canonicalize_name(name) for name in allow}
    wanted = {name: version for name, version, marker in read_lock(lock)
              if marker is None or marker.evaluate()}
    dists = installed(site_packages)
    have = {name: Version(dist.version) for name, dist in dists.items()}
    problems = []
    for name, version in sorted(wanted.items()):
        if name not in have:
            problems.append(f"missing: {name}=={version} (pinned in {lock.name}, not installed)")
        elif have[name] != version:
            problems.append(f"wrong version: {name} {have[name]} installed, {lock.name} pins {version}")
    for name in sorted(set(have) - set(wanted) - allowed):
        problems.append(f"not in the lock: {name}=={have[name]} is installed but {lock.name} does not pin it")
    problems += unmet_requirements(dists, (name for name in have if name in wanted or name in allowed))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.verify_install", description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path, help="the lock file the environment must hold, e.g. requirements/dev.lock")
    parser.add_argument("--allow", action="append", default=[], metavar="NAME",
                        help="a distribution installed besides the lock (the project itself); repeatable")
    parser.add_argument("--site-packages", type=Path, default=None, metavar="DIR",
                        help="check the environment of this site-packages directory instead of this interpreter's")
    args = parser.parse_args(argv)
    try:
        problems = check(args.lock, args.allow, args.site_packages)
    except (OSError, ValueError) as exc:
        print(f"verify_install: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"verify_install: {problem}", file=sys.stderr)
    if problems:
        print(f"verify_install: {args.site_packages or sys.prefix} does not hold exactly {args.lock} ({len(problems)} problems)",
              file=sys.stderr)
        return 1
    print(f"verify_install: {args.site_packages or sys.prefix} holds exactly {args.lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
