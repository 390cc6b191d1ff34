"""secure-mail-api: rotate a mail API's keys through Vault/OpenBao, and fetch them in apps.

Subpackages, one audience each; imports point one way (``client`` <- ``engine`` <- entry points):

==========================  ==================================================  =================
``rotation.client``         what apps import: key client, webhook receiver,     base install
                            signature check, Vault auth (hvac + requests)
``rotation.backends``       Vault KV v2 store, API Gateway keys, usage/traffic  ``[rotator]``
                            signals; one error-translation module per backend
``rotation.targets``        where a new key is pushed (webhook, Secrets          ``[rotator]``
                            Manager, SSM, file)
``rotation.verifiers``      proof that the API honours a new key (canary)      ``[rotator]``
``rotation.engine``         planner, lease, steps, rollback, revocation,         ``[rotator]``
                            sweep, reconcile
``rotation.cli`` ...        entry points: CLI, Lambda handler, daemon, wiring    ``[rotator]``
``rotation.dev``            embedded stack, local gateway, demo: repository     ``[dev]``
                            only, imported by nothing outside it and the tests
==========================  ==================================================  =================

The design: ``docs/architecture.md``. The import rules are checked by ``tests/unit/test_import_rules.py``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("secure-mail-api")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
