"""Integration tier: tests against real servers (OpenBao dev server, moto server).

``worker_stack`` starts one embedded stack per test worker (pytest-xdist process) for the whole
session; fixtures that need a clean stack call :meth:`rotation.dev.stack.EmbeddedStack.reset`
(moto's reset API; OpenBao mounts, auth methods and policies removed) instead of starting new
server processes for every test.
"""

from __future__ import annotations

import pytest

from rotation.dev.stack import EmbeddedStack


@pytest.fixture(scope="session")
def worker_stack(tmp_path_factory):
    stack = EmbeddedStack(tmp_path_factory.mktemp("worker-stack")).start()
    try:
        yield stack
    finally:
        stack.stop()
