"""What a run reports per consumer (:class:`ConsumerOutcome`) and as a whole (:class:`RunSummary`,
its exit code: the table in ``rotation/cli.py`` and docs/operations.md, "Exit codes")."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFERRED_OUTCOMES", "FAILED_OUTCOMES", "ConsumerOutcome", "RunSummary"]


@dataclass
class ConsumerOutcome:
    consumer: str
    action: str            # none | bootstrap | rotate | emergency | resume | revoke | blocked
    outcome: str           # ok | failed | rolled_back | skipped | locked | queued | waiting | lost_lease
    detail: str = ""
    serial: int | None = None
    rotation_id: str | None = None
    current_promoted_at: str | None = None   # after this run; feeds the key-age metrics


#: outcomes that mean "not done": a failure (exit 1)
FAILED_OUTCOMES = ("failed", "rolled_back", "lost_lease")
#: outcomes that mean "not done yet, retry": another runner holds the lease (exit 3)
DEFERRED_OUTCOMES = ("locked", "queued")


@dataclass
class RunSummary:
    outcomes: list[ConsumerOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ConsumerOutcome]:
        return [o for o in self.outcomes if o.outcome in FAILED_OUTCOMES]

    @property
    def deferred(self) -> list[ConsumerOutcome]:
        return [o for o in self.outcomes if o.outcome in DEFERRED_OUTCOMES]

    @property
    def exit_code(self) -> int:
        """0 all done; 1 some consumer failed (rolled back, lost its lease); 3 none failed but
        some were skipped because another runner holds the lease, or an emergency is queued."""
        return 1 if self.failed else 3 if self.deferred else 0
