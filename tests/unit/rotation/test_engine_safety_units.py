"""Issue 12, rotation items, pure logic: token lifetimes, Vault's clock, the daemon's clock,
exit codes."""

from __future__ import annotations

import datetime as dt
import itertools
import time

import pytest

from rotation.backends.vault import VaultClock, token_lifetime
from rotation.engine.runner import ConsumerOutcome, RunSummary
from rotation.scheduler import Daemon


@pytest.mark.parametrize("lookup,left", [
    ({"ttl": 0, "expire_time": None}, None),                       # root token: never expires
    ({"ttl": 0, "expire_time": "2026-12-02T10:00:00Z"}, 0.0),      # ran out: not "never"
    ({"ttl": 120, "expire_time": "2026-12-02T10:00:00Z"}, 120.0),
])
def test_token_with_ttl_zero_is_never_expiring_only_without_expire_time(lookup, left):
    assert token_lifetime(lookup) == left


class _Resp:
    def __init__(self, date):
        self.headers = {"Date": date}


def test_vault_clock_follows_vaults_date_header_and_ignores_the_local_wall_clock():
    mono = [1000.0]
    clock = VaultClock(monotonic=lambda: mono[0])
    clock.observe(_Resp("Wed, 02 Dec 2026 15:00:00 GMT"))
    t0 = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC).timestamp()
    assert t0 <= clock() <= t0 + 1
    mono[0] += 90                                               # 90 s pass (monotonic)
    assert t0 + 90 <= clock() <= t0 + 91
    clock.observe(_Resp("Wed, 02 Dec 2026 15:01:30 GMT"))      # consistent: no jump
    assert t0 + 90 <= clock() <= t0 + 91


def test_outcomes_locked_or_queued_exit_3_and_failures_win():
    ok = ConsumerOutcome("a", "none", "skipped")
    assert RunSummary([ok]).exit_code == 0
    assert RunSummary([ok, ConsumerOutcome("b", "resume", "locked")]).exit_code == 3
    assert RunSummary([ok, ConsumerOutcome("b", "emergency", "queued")]).exit_code == 3
    assert RunSummary([ConsumerOutcome("b", "resume", "locked"),
                       ConsumerOutcome("c", "rotate", "lost_lease")]).exit_code == 1


def test_daemon_keeps_its_interval_when_the_wall_clock_steps_back(monkeypatch):
    """The wall clock steps back an hour after the first run; the daemon, timed by a monotonic
    clock, still runs every interval (nothing in it reads the wall clock)."""
    mono = [0.0]
    real_datetime = dt.datetime
    real_time = time.time

    class SteppedBack(real_datetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime.now(tz) - dt.timedelta(hours=1)

    runs = []

    def job():
        runs.append(mono[0])
        monkeypatch.setattr(dt, "datetime", SteppedBack)   # the step happens now
        monkeypatch.setattr(time, "time", lambda: real_time() - 3600)
        return 0

    daemon = None

    def wait(seconds):
        mono[0] += seconds or 0.01
        if len(runs) >= 4 or mono[0] > 10_000:
            daemon.request_stop()
        return daemon.stop_event.is_set()

    daemon = Daemon(job, every_seconds=60, monotonic=lambda: mono[0], wait=wait, tick_seconds=5)
    daemon.serve(install_signals=False)
    assert len(runs) == 4, runs
    assert all(b - a == pytest.approx(60, abs=5) for a, b in itertools.pairwise(runs))
