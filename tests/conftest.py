"""Suite-wide isolation: no test reaches a real endpoint or a real credential by accident.

Every test starts with the ``VAULT_*``, ``AWS_*`` and ``ROTATION_*`` variables removed and
``HOME`` pointed at a temporary directory (hvac reads ``~/.vault-token``; boto3 reads ``~/.aws``).
"""

import os

import pytest


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
