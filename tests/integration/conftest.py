"""Integration tier: tests against real servers (OpenBao dev server, moto server).

``worker_stack`` (root ``tests/conftest.py``) starts one embedded stack per test worker
(pytest-xdist process) for the whole session; fixtures that need a clean stack call
:meth:`rotation.dev.stack.EmbeddedStack.reset` instead of starting new server processes.
"""
