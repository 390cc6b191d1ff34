"""Suite-wide isolation: no test reaches a real endpoint or a real credential by accident.

Every test starts with the ``VAULT_*``, ``AWS_*`` and ``ROTATION_*`` variables removed and
``HOME`` pointed at a temporary directory (hvac reads ``~/.vault-token``; boto3 reads ``~/.aws``).

Property-based tests (Hypothesis) run under a settings profile chosen by ``HYPOTHESIS_PROFILE``
(docs/testing.md): ``ci`` (the default, ``make test``) is a small, deterministic budget;
``deep`` (``make fuzz``) a large, randomized one. A failure prints the shrunk example either way.
"""

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

#: ``make test``: few examples, the same ones every run (derandomized), no per-example deadline
#: (the machine is shared: a slow example is not a failure), no example database in the tree.
settings.register_profile(
    "ci", max_examples=40, derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: ``make fuzz``: many random examples per property; shrinking still on, so a failure is minimal.
settings.register_profile(
    "deep", max_examples=2_000, derandomize=False, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(("VAULT_", "AWS_", "ROTATION_", "BAO_")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "nonexistent-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "nonexistent-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def worker_stack(tmp_path_factory):
    """One embedded stack (OpenBao dev server + moto) per test worker for the whole session; tests
    that need a clean one call ``reset()`` (moto's reset API; OpenBao mounts, auth methods and
    policies removed) instead of starting new server processes."""
    from rotation.dev.stack import EmbeddedStack

    stack = EmbeddedStack(tmp_path_factory.mktemp("worker-stack")).start()
    try:
        yield stack
    finally:
        stack.stop()
