"""The demo end to end (``make demo`` with a short proof): every step as expected, the access-level
refusal shown, the audit run, and no key value printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_demo_runs_every_step_as_expected_and_shows_an_access_level_refusal():
    script = "from rotation.dev.demo import run_demo; raise SystemExit(run_demo(proof_seconds=5))"
    r = subprocess.run([sys.executable, "-c", script],
                       cwd=ROOT, capture_output=True, text=True, timeout=1100, check=False)
    out = r.stdout
    assert r.returncode == 0, out[-3000:] + r.stderr[-3000:]
    assert "all steps as expected" in out
    assert re.search(r"from billing@\S+ with billing's key -> HTTP 202", out)
    assert re.search(r"from crm@\S+ with billing's key -> HTTP 403 sender_not_allowed", out)
    assert "$ rotation audit" in out
    assert not re.search(r"\b[A-Za-z0-9]{40}\b", out), "a 40-character key value in the demo output"
    # what happened, whatever the machine's speed: no negative times, each pass says what it did,
    # the proof's rate reported as achieved beside its target
    assert "revoke in -" not in out and "!!" not in out
    assert out.count("=> this pass:") == 2
    assert re.search(r"rate: [\d.]+ requests/s achieved of the 50", out)
    report = ROOT / ".dev-stack" / "audit-report.html"
    assert oct(report.stat().st_mode & 0o777) == "0o600"
