"""Progress of a run over many consumers, for a person at a terminal.

On a terminal (stderr is a TTY and ``--quiet`` is not given) a ``rich`` progress bar shows
consumers done / total, failures, rate (consumers per second) and time elapsed; otherwise nothing
is drawn and the output stays line-oriented: each finished consumer is one INFO log line
(``event="consumer_done"``, ``consumer``, ``outcome``, ``done``, ``total``, ``failed``; shown with
``-v`` / ``--log-level info``). Fed by the engine's progress hook
(:data:`rotation.engine.runner.ProgressHook`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Self, TextIO

import structlog

from rotation.engine.runner import FAILED_OUTCOMES
from rotation.terminal import for_terminal

if TYPE_CHECKING:    # rich is imported only when the bar is shown
    from rich.progress import Progress, TaskID

__all__ = ["RunProgress", "wants_progress"]

log = structlog.get_logger("rotation.progress")


def wants_progress(quiet: bool, stream: TextIO | None = None) -> bool:
    """Draw a progress bar: not ``quiet`` and ``stream`` (default stderr) is a terminal."""
    stream = stream or sys.stderr
    return not quiet and hasattr(stream, "isatty") and stream.isatty()


class RunProgress:
    """A context manager; pass :meth:`hook` as the engine's ``progress``. Disabled: a no-op."""

    def __init__(self, enabled: bool, stream: TextIO | None = None, label: str = "rotating"):
        self.enabled = enabled
        self.done = 0
        self.failed = 0
        self.total: int | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            console = Console(file=stream or sys.stderr, force_terminal=True)
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("consumers"), TaskProgressColumn(),
                TextColumn("[red]{task.fields[failed]} failed"),
                TextColumn("{task.fields[rate]} /s"), TimeElapsedColumn(),
                console=console, transient=False, refresh_per_second=8)
            from rich.markup import escape
            self._label = escape(for_terminal(label))     # shown by rich: no markup, no control characters

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def hook(self, kind: str, data: Any) -> None:
        """``("started", total)`` then ``("done", ConsumerOutcome)`` per consumer."""
        if kind == "started":
            self.total = int(data)
            if self._progress is not None:
                self._task = self._progress.add_task(self._label, total=self.total, failed=0, rate="0.0")
        elif kind == "done":
            self.done += 1
            self.failed += data.outcome in FAILED_OUTCOMES
            if self._progress is not None and self._task is not None:
                task = self._progress.tasks[0]
                elapsed = task.elapsed or 0.0
                rate = f"{self.done / elapsed:.1f}" if elapsed > 0 else "-"
                self._progress.update(self._task, advance=1, failed=self.failed, rate=rate)
            else:
                log.info("consumer_done", consumer=data.consumer, action=data.action, outcome=data.outcome,
                         done=self.done, total=self.total, failed=self.failed)
