"""Reuse the existing fixtures: ``env`` (real OpenBao + moto per test) and the delivery ``stack`` /
``consumer`` (one stack per module, a fresh consumer per test)."""

from tests.integration.delivery.conftest import consumer, stack  # noqa: F401
from tests.integration.rotation.conftest import env  # noqa: F401
