"""The rotation engine: what is due (:mod:`~rotation.engine.planner`), the per-consumer lease and
fence (:mod:`~rotation.engine.lease`), the steps create -> set -> test -> distribute -> finish
(:mod:`~rotation.engine.steps`) with rollback (:mod:`~rotation.engine.rollback`), revocation and
its signals (:mod:`~rotation.engine.revocation`), the orphan sweep (:mod:`~rotation.engine.sweep`)
and reconciliation of the push targets (:mod:`~rotation.engine.reconcile`), driven per consumer by
:class:`~rotation.engine.runner.Engine`.

It talks to Vault and AWS only through :mod:`rotation.backends` and to apps through
:mod:`rotation.targets`; it never imports the dev stack.
"""

from rotation.engine.runner import ConsumerOutcome, Engine, RunSummary

__all__ = ["ConsumerOutcome", "Engine", "RunSummary"]
