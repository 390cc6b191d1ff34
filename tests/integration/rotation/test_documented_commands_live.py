"""The documented ``rotation`` commands that can run on the embedded stack are run, as written
(the consumers file, and absolute paths such as ``/var/log/...``, pointed into the test's
directory), in the order the docs give them: each exits 0, and each ``--json`` command prints
one JSON document. Commands with placeholders (``<consumer>``, ``C``, ``[--output json]``) are
checked against the CLI only (tests/unit/docs/test_documented_commands.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.support.doc_commands import DocCommand, documented_commands

from .test_cli_live import cfile  # noqa: F401 - the consumers file fixture

RUNNABLE = {"status", "plan", "run", "rotate", "audit"}


def runnable(c: DocCommand) -> bool:
    words = c.words[1:]
    sub = next((w for i, w in enumerate(words) if not w.startswith("-")
                and (i == 0 or words[i - 1] not in ("--consumers", "--audit-to", "--metrics-textfile",
                                                     "--log-level"))), None)
    placeholder = any(w.startswith(("<", "[")) or w in ("...", '"') or re.fullmatch(r"[A-Z][A-Z_]*", w)
                      for w in words)
    if sub == "rotate" and words.index("rotate") == len(words) - 1:
        return False                       # the command's name in prose ("`rotation rotate` makes ..."), no consumer
    return c.program == "rotation" and sub in RUNNABLE and not placeholder


def as_run(c: DocCommand, tmp, consumers) -> list[str]:
    out, words = [], list(c.words[1:])
    for i, w in enumerate(words):
        if i and words[i - 1] == "--consumers":
            w = str(consumers)
        elif w.startswith("/"):
            w = str(tmp / "abs" / w.lstrip("/"))
        out.append(w)
    return out


@pytest.mark.slow
def test_every_documented_command_that_can_run_on_the_embedded_stack_runs_as_written(env, cfile, tmp_path):  # noqa: F811
    commands = [c for c in documented_commands() if runnable(c)]
    assert len(commands) >= 25 and {c.words[1] if not c.words[1].startswith("-") else "" for c in commands}
    base = {k: v for k, v in os.environ.items() if k != "ROTATION_AUDIT_LOG"}
    base["ROTATION_CONSUMERS_FILE"] = str(cfile)
    for path in ("var/log/mail-api", "var/lib/node_exporter/textfile"):
        (tmp_path / "abs" / path).mkdir(parents=True)
    failures = []
    for c in commands:
        args = as_run(c, tmp_path, cfile)
        r = subprocess.run([sys.executable, "-m", "rotation.cli", *args], env=base, text=True,
                           capture_output=True, timeout=180, check=False, cwd=tmp_path)
        if r.returncode != 0:
            failures.append(f"{c}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
        elif "--json" in args or ("--output" in args and "json" in args):
            try:
                json.loads(r.stdout)
            except ValueError:
                failures.append(f"{c}: stdout is not one JSON document: {r.stdout[:200]!r}")
    assert not failures, "\n".join(failures)
