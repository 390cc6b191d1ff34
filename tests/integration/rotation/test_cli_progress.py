"""`rotation run` over 200 consumers: on a terminal (a pseudo-terminal here) a progress bar shows
consumers done / total and failures; piped, or with --quiet, nothing is drawn and stdout stays
line-oriented. 195 consumers are held by another runner's lease (taken through the real Vault,
so the run reads each of them and reports it locked) and 5 are really bootstrapped."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
import yaml

from rotation.backends.vault import VaultStore

N, REAL = 200, 5
BAR = "━"   # rich's bar glyph


def _consumers_file(env, names):
    data = {"version": 1,
            "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
            "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
            "consumers": [{"name": n, "tier": "standard",
                           "targets": [{"type": "file", "path": str(env.tmp / f"{n}.key")}]} for n in names]}
    path = env.tmp / "many.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env(env, path):
    return {**os.environ, "ROTATION_CONSUMERS_FILE": str(path), "ROTATION_AUDIT_LOG": str(env.tmp / "audit.jsonl"),
            "ROTATION_FILE_TARGET_DIRS": str(env.tmp), "TERM": "xterm-256color", "COLUMNS": "140",
            "LINES": "40"}


def _run_in_pty(args, environ, deadline_seconds=600) -> tuple[int, str]:
    """Run ``args`` with stdin/stdout/stderr on a pseudo-terminal; return (exit code, all output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=environ, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + deadline_seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:      # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.timeout(1200)
def test_a_run_over_200_consumers_draws_progress_on_a_terminal_and_nothing_when_piped(env):
    names = [f"app{i:03d}" for i in range(N)]
    path = _consumers_file(env, names)
    other = VaultStore(env.settings)
    for n in names[REAL:]:
        other.acquire_lease(n, "other-runner:1:feedbeef", 3600)
    code, out = _run_in_pty([sys.executable, "-m", "rotation.cli", "run"], _env(env, path))
    assert code == 3, out[-2000:]                        # 195 locked by the other runner: retry later
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)   # drop the terminal's control sequences
    assert BAR in plain and f"{N}/{N}" in plain, plain[-2000:]
    assert re.search(r"\b0 failed\b", plain)
    assert re.search(r"\d+/200", plain)
    assert f"{N} consumers, 0 failed, {N - REAL} locked or queued" in plain
    for n in names[:REAL]:
        assert env.state(n).current is not None

    # --quiet on the same terminal: no bar
    code, out = _run_in_pty([sys.executable, "-m", "rotation.cli", "--quiet", "run"], _env(env, path))
    assert code == 3 and BAR not in out and f"{N}/{N}" not in out

    # piped: no bar, no control sequences, one line per consumer plus the summary on stdout
    r = subprocess.run([sys.executable, "-m", "rotation.cli", "run"], env=_env(env, path), text=True,
                       capture_output=True, timeout=600, check=False)
    assert r.returncode == 3
    assert BAR not in r.stdout + r.stderr and "\x1b[" not in r.stdout + r.stderr and r.stderr == ""
    lines = r.stdout.splitlines()
    assert sum(line.startswith("app") for line in lines) == N and lines[-1].startswith(f"{N} consumers")
