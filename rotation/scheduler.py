"""The rotation daemon: runs the job on a jittered interval, timed by a monotonic clock.

* Each run is isolated: an exception is logged and counted, and the next run stays scheduled
  (failure case S1).
* Timing uses ``time.monotonic`` (injectable), never the wall clock: a wall clock stepped back
  (NTP, a VM resumed) would otherwise push the next run into the future while the heartbeat
  stays fresh (the ``schedule`` library computes its next run from ``datetime.now()``).
* Jitter: each interval is drawn from ``[every, every + jitter]`` seconds, so many daemons do
  not hit Vault and AWS in lockstep.
* Graceful stop on SIGTERM/SIGINT: the run in progress finishes, then the loop exits.
* Heartbeat: after every loop tick the heartbeat file's content is a JSON object
  ``{"ts", "runs", "failures", "last_exit_code"}``, so a liveness probe can check its age.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Daemon", "DaemonStats"]

log = logging.getLogger(__name__)


@dataclass
class DaemonStats:
    runs: int = 0
    failures: int = 0
    last_exit_code: int | None = None


class Daemon:
    """Run ``job`` (returns an exit code) every ``every_seconds`` + up to ``jitter_seconds``."""

    def __init__(self, job: Callable[[], int], *, every_seconds: int, jitter_seconds: int = 0,
                 heartbeat_file: str | Path | None = None, tick_seconds: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], bool] | None = None, rng: random.Random | None = None):
        """``monotonic``: the clock runs are timed by; ``wait(seconds)``: sleeps, returns True
        when a stop was requested (default: the stop event's wait). Both injectable for tests."""
        if every_seconds < 1 or jitter_seconds < 0:
            raise ValueError("every_seconds must be >= 1 and jitter_seconds >= 0")
        self.job = job
        self.stats = DaemonStats()
        self.stop_event = threading.Event()
        self.heartbeat_file = Path(heartbeat_file) if heartbeat_file else None
        self.tick = tick_seconds
        self.every = every_seconds
        self.jitter = jitter_seconds
        self.monotonic = monotonic
        self.wait = wait or self.stop_event.wait
        self.rng = rng or random.Random()   # jitter, not a secret
        self.next_run = self.monotonic() + self._interval()

    def _interval(self) -> float:
        return self.every + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)

    def _safe_run(self) -> None:
        self.stats.runs += 1
        try:
            code = self.job()
            self.stats.last_exit_code = code
            if code:
                self.stats.failures += 1
        except Exception:
            self.stats.failures += 1
            self.stats.last_exit_code = 1
            log.exception("rotation run failed; the next run stays scheduled")

    def _beat(self) -> None:
        if not self.heartbeat_file:
            return
        tmp = self.heartbeat_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"ts": time.time(), "pid": os.getpid(), "runs": self.stats.runs,
                                   "failures": self.stats.failures, "last_exit_code": self.stats.last_exit_code}))
        os.replace(tmp, self.heartbeat_file)

    def request_stop(self, *_: object) -> None:
        self.stop_event.set()

    def serve(self, *, run_first: bool = True, install_signals: bool = True) -> DaemonStats:
        """Loop until :meth:`request_stop` (or SIGTERM/SIGINT); return the counters."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        if run_first:
            self._safe_run()
            self.next_run = self.monotonic() + self._interval()
        while not self.stop_event.is_set():
            if self.monotonic() >= self.next_run:
                self._safe_run()
                self.next_run = self.monotonic() + self._interval()
            self._beat()
            if self.wait(max(0.0, min(self.tick, self.next_run - self.monotonic()))):
                break
        self._beat()
        log.info("daemon stopped after %d runs (%d failed)", self.stats.runs, self.stats.failures)
        return self.stats
