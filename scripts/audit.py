"""Audit every lock file for known vulnerabilities: ``make audit`` (``python -m scripts.audit``).

Runs ``pip-audit --disable-pip --no-deps --require-hashes -r <lock>`` for ``requirements/dev.lock``,
``requirements/rotator.lock`` and ``requirements/mail-handler.lock`` (the exact pins that are
installed and shipped; nothing is resolved or installed) against a vulnerability service: the PyPI
JSON API (default, https://warehouse.pypa.io/api-reference/json.html) or OSV (``--service osv``,
https://google.github.io/osv.dev/api/).

It never reports "no known vulnerabilities" for a package it could not look up: when the service
cannot be reached, or answers nothing for some pins (pip-audit's ``skip_reason``), it says so and
exits 3. Exit codes: 0 every pin audited, none vulnerable; 1 known vulnerabilities (listed with
their ids and fixed versions); 3 the vulnerability database could not be reached or did not answer
for every pin (offline, proxy, a mirror without the JSON API): nothing was concluded; 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements/dev.lock", "requirements/rotator.lock", "requirements/mail-handler.lock")
#: Where each service is probed before auditing (a plain reachability check).
PROBES = {
    "pypi": ("GET", "https://pypi.org/pypi/pip/json", None),
    "osv": ("POST", "https://api.osv.dev/v1/query",
            {"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "0.0.0"}),
}
EXIT_VULNERABLE = 1
EXIT_UNREACHABLE = 3


def probe(service: str, timeout: float, osv_url: str | None = None) -> str | None:
    """None when the service answers HTTP at all, else why it cannot be reached."""
    import requests

    method, url, body = PROBES[service]
    url = osv_url if service == "osv" and osv_url else url
    try:
        requests.request(method, url, json=body, timeout=timeout)
    except requests.RequestException as exc:
        return f"{url}: {type(exc).__name__}"
    return None


def audit_lock(lock: str, service: str, timeout: float, osv_url: str | None = None) -> tuple[list[dict], str | None]:
    """(dependencies of pip-audit's JSON report, failure) for one lock file; failure is set (and the
    list empty) when pip-audit wrote no report."""
    with tempfile.TemporaryDirectory(prefix="pip-audit-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip_audit", "--disable-pip", "--no-deps", "--require-hashes",
               "--progress-spinner", "off", "--vulnerability-service", service, "--timeout", str(int(timeout)),
               "--format", "json", "--output", str(report), "-r", str(REPO_ROOT / lock)]
        if service == "osv" and osv_url:
            cmd += ["--osv-url", osv_url]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if not report.exists() or not report.read_text().strip():
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            return [], f"pip-audit exited {done.returncode} without a report: {tail}"
        data = json.loads(report.read_text())
    return data.get("dependencies", []), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=sorted(PROBES), default="pypi", help="vulnerability service (pypi)")
    parser.add_argument("--osv-url", default=None, help="OSV query endpoint (default https://api.osv.dev/v1/query)")
    parser.add_argument("--timeout", type=float, default=15.0, help="network timeout in seconds (15)")
    parser.add_argument("locks", nargs="*", default=list(LOCKS), help="lock files (default: all three)")
    args = parser.parse_args(argv)
    for lock in args.locks:
        if not (REPO_ROOT / lock).is_file():
            parser.error(f"lock file {lock} does not exist (expected one of {', '.join(LOCKS)})")

    if args.osv_url and args.service != "osv":
        parser.error("--osv-url needs --service osv")
    why = probe(args.service, args.timeout, args.osv_url)
    if why:
        print(f"make audit: the {args.service} vulnerability database could not be reached ({why}).\n"
              "NOTHING WAS AUDITED: no conclusion about vulnerabilities. Run `make audit` with network access.",
              file=sys.stderr)
        return EXIT_UNREACHABLE

    found = unreachable = False
    for lock in args.locks:
        deps, failure = audit_lock(lock, args.service, args.timeout, args.osv_url)
        vulnerable = [d for d in deps if d.get("vulns")]
        unaudited = [d for d in deps if d.get("skip_reason")]
        if failure:
            unreachable = True
            print(f"{lock}: NOT AUDITED: {failure}", file=sys.stderr)
            continue
        for dep in vulnerable:
            found = True
            for v in dep["vulns"]:
                fixes = ", ".join(v.get("fix_versions") or []) or "no fixed version yet"
                print(f"{lock}: {dep['name']} {dep.get('version', '?')}: {v['id']} (fixed in {fixes})")
        if unaudited:
            unreachable = True
            names = ", ".join(d["name"] for d in unaudited[:6]) + (", ..." if len(unaudited) > 6 else "")
            print(f"{lock}: NOT AUDITED: {len(unaudited)} of {len(deps)} pins got no "
                  f"answer from the {args.service} vulnerability database ({names}); pip-audit says: "
                  f"{unaudited[0]['skip_reason']}", file=sys.stderr)
        elif not vulnerable:
            print(f"{lock}: no known vulnerabilities")
    if found:
        return EXIT_VULNERABLE
    if unreachable:
        print("make audit: the vulnerability database could not be reached for every pin: the audit is "
              "incomplete (exit 3), not clean.", file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
