"""The rotation engine: what is due (:mod:`~rotation.engine.planner`), the per-consumer lease and
the steps create -> distribute -> test -> promote -> revoke with rollback
(:mod:`~rotation.engine.runner`), and the early-revoke signals (:mod:`~rotation.engine.revocation`).

It talks to Vault and AWS only through :mod:`rotation.backends` and to apps through
:mod:`rotation.targets`; it never imports the dev stack.
"""

from rotation.engine.runner import ConsumerOutcome, Engine, RunSummary

__all__ = ["ConsumerOutcome", "Engine", "RunSummary"]
