"""`make audit` (scripts/audit.py): pip-audit over the lock files, never a clean verdict it did not earn.

A local OSV-compatible HTTP server stands in for the vulnerability database (pip-audit's
``--osv-url``; the OSV API shape: https://google.github.io/osv.dev/post-v1-query/); an unreachable
database is a closed local port behind HTTPS_PROXY.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
LOCK = "requirements/mail-handler.lock"


class _Osv(BaseHTTPRequestHandler):
    """POST /v1/query: a vulnerability for packages in ``vulnerable``, HTTP 503 for those in
    ``failing``, else ``{}`` (no known vulnerability)."""

    failing: frozenset[str] = frozenset()
    vulnerable: frozenset[str] = frozenset()

    def do_POST(self):
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        name = query.get("package", {}).get("name")
        if name in self.failing:
            self.send_response(503)
            self.end_headers()
            return
        body = {}
        if name in self.vulnerable:
            body = {"vulns": [{"id": "GHSA-test-0001", "summary": "planted", "affected": [
                {"package": {"name": name, "ecosystem": "PyPI"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}]}]}]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def osv():
    """Start a local OSV server; yields a function setting the failing packages, with ``.url``."""
    handler = type("Osv", (_Osv,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def configure(failing=(), vulnerable=()):
        handler.failing = frozenset(failing)
        handler.vulnerable = frozenset(vulnerable)

    configure.url = f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    yield configure
    server.shutdown()
    server.server_close()


def _audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    base["NO_PROXY"] = "127.0.0.1,localhost"
    return subprocess.run([sys.executable, "-m", "scripts.audit", *args], cwd=REPO_ROOT, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=300, check=False)


def test_every_pin_answered_and_none_vulnerable_is_clean(osv):
    osv()
    done = _audit("--service", "osv", "--osv-url", osv.url, LOCK)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{LOCK}: no known vulnerabilities"


def test_known_vulnerability_is_listed_with_its_fix_and_exits_1(osv):
    osv(vulnerable={"urllib3"})
    done = _audit("--service", "osv", "--osv-url", osv.url, LOCK)
    assert done.returncode == 1, done.stderr
    assert "urllib3" in done.stdout and "GHSA-test-0001 (fixed in 99.0)" in done.stdout


def test_a_database_that_fails_for_some_pins_is_not_a_clean_audit(osv):
    osv(failing={"boto3"})
    done = _audit("--service", "osv", "--osv-url", osv.url, LOCK)
    assert done.returncode == 3
    assert "NOT AUDITED" in done.stderr and "no known vulnerabilities" not in done.stdout


def test_unreachable_database_says_so_and_exits_3_without_a_verdict():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    proxy = f"http://127.0.0.1:{closed_port}"
    done = _audit("--timeout", "5", env={"HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": ""})
    assert done.returncode == 3
    assert "vulnerability database could not be reached" in done.stderr
    assert "NOTHING WAS AUDITED" in done.stderr
    assert "no known vulnerabilities" not in done.stdout


@pytest.mark.parametrize("args, field", [
    (["requirements/nope.lock"], "lock file requirements/nope.lock does not exist"),
    (["--osv-url", "http://127.0.0.1:1/v1/query"], "--osv-url needs --service osv"),
    (["--service", "snyk"], "--service"),
])
def test_usage_errors_exit_2_and_name_the_argument(args, field):
    done = _audit(*args)
    assert done.returncode == 2
    assert field in done.stderr
