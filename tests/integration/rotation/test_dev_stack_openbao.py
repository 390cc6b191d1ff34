"""How the dev stack starts OpenBao (rotation.dev.stack.EmbeddedStack), checked on the worker's
running stack: the root token is on no process's command line (the process list every local user
can read), yet the server took it; what holds it on disk is readable by the owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

PROC = Path("/proc")


def _all_command_lines() -> list[bytes]:
    out = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                out.append((entry / "cmdline").read_bytes())
            except OSError:        # the process ended meanwhile, or is not ours to read
                continue
    return out


@pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux /proc to read the process list")
def test_the_root_token_is_on_no_command_line_and_the_server_accepts_it(worker_stack):
    token = worker_stack.root_token.encode()
    bao = worker_stack.vault_process
    assert bao is not None and bao.poll() is None
    assert (PROC / str(bao.pid) / "cmdline").read_bytes()           # the server's own line is readable ...
    assert not [line for line in _all_command_lines() if token in line]   # ... and no line holds the token
    me = worker_stack.root_client().auth.token.lookup_self()["data"]
    assert "root" in me["policies"]


def test_the_server_log_and_work_directory_are_owner_only_and_no_token_file_is_stored(worker_stack):
    workdir = Path(worker_stack.workdir)
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    log = workdir / "openbao.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert not (workdir / "home" / ".vault-token").exists()
