"""Issue 19, pure logic: Vault's clock as a forward-only interval, the fencing rule, and the log
redactor under concurrent registration."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from rotation.audit import REDACTED, Redactor
from rotation.backends.vault import VaultClock
from rotation.client.fencing import Held, supersedes

DATE = "Wed, 02 Dec 2026 15:00:00 GMT"
T0 = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC).timestamp()


class _Resp:
    def __init__(self, date: str, rtt: float = 0.01):
        self.headers = {"Date": date}
        self.elapsed = dt.timedelta(seconds=rtt)


def test_vault_clock_never_moves_back_when_an_answer_held_in_transit_arrives_late():
    mono = [1000.0]
    clock = VaultClock(monotonic=lambda: mono[0])
    clock.observe(_Resp(DATE))
    mono[0] += 22                                     # the next answer is held in transit 22 s
    clock.observe(_Resp(DATE))                        # ... and its Date is from before the hold
    assert clock() >= T0 + 22, "a late answer moved Vault's clock back"
    assert clock.latest() >= clock()


def test_vault_clock_reads_date_as_a_lower_bound_and_adds_the_round_trip_to_the_upper_bound():
    mono = [50.0]
    clock = VaultClock(monotonic=lambda: mono[0])
    clock.observe(_Resp(DATE, rtt=4.0))
    assert clock() == T0                              # at least the Date (stamped inside the round trip)
    assert clock.latest() == T0 + 1 + 4.0             # one-second resolution + the round trip
    mono[0] += 10
    assert (clock(), clock.latest()) == (T0 + 10, T0 + 15)
    clock.observe(_Resp("Wed, 02 Dec 2026 15:00:12 GMT", rtt=0.0))   # a newer Date raises the lower bound
    assert clock() == T0 + 12 and clock.latest() == T0 + 15


def test_vault_clock_refuses_to_answer_before_any_vault_answer():
    from rotation.errors import VaultError
    with pytest.raises(VaultError, match="not known yet"):
        VaultClock()()


@pytest.mark.parametrize("write,held,ok", [
    ((2, 9), None, True),                             # nothing held yet
    ((2, 9), Held(3, 10), False),                     # a stalled runner (older fence): refused
    ((2, 11), Held(3, 10), True),                     # a later lease holder's rollback or repair
    ((2, 10), Held(3, 10), False),                    # same lease holder: the serial never goes back
    ((3, 10), Held(3, 10), True),                     # a retry of the same delivery
    ((1, 1), Held(5, 0), True),                       # a key written by hand (no fence)
])
def test_a_write_supersedes_what_is_held_only_when_not_older_by_fence_then_serial(write, held, ok):
    assert supersedes(*write, held) is ok


def test_redactor_scrubbing_while_another_thread_registers_a_secret_does_not_fail():
    """A worker scrubs a log line while another registers a new key value (multi-worker runs):
    the scrub is stalled inside its loop over the known secrets until the registration is done."""
    redactor = Redactor()
    redactor.register("first-secret-value", "second-secret-value")
    inside, registered = threading.Event(), threading.Event()

    class Stalls(str):
        """A log line whose membership test stalls the scrub mid-iteration (once)."""

        def __contains__(self, item: object) -> bool:
            if not inside.is_set():
                inside.set()
                assert registered.wait(60)
            return str.__contains__(self, item)

    def register() -> None:
        assert inside.wait(60)
        redactor.register("third-secret-value")
        registered.set()

    th = threading.Thread(target=register)
    th.start()
    try:
        out = redactor.scrub(Stalls("line with first-secret-value"))
    finally:
        registered.set()
        th.join(60)
    assert out == f"line with {REDACTED}"
    assert redactor.scrub("third-secret-value") == REDACTED


def test_a_runner_judges_its_own_lease_on_the_upper_bound_of_vaults_clock(tmp_path):
    """Vault's time is known to lie in [lower, lower + 5 s]: a lease that ends inside that
    interval may already have run out, so its holder stops (conservative end)."""
    import io

    from rotation.audit import AuditLog
    from rotation.engine.lease import Lease
    from rotation.errors import LeaseLost
    from rotation.records import RotationRecord

    lower = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC)
    audit = AuditLog(stream=io.StringIO())
    lease = Lease(None, audit, "runner-a", 300, clock=lambda: lower,  # type: ignore[arg-type]
                  latest=lambda: lower + dt.timedelta(seconds=5))
    inside = RotationRecord(owner="runner-a", lease_expires_at=lower.timestamp() + 3)
    with pytest.raises(LeaseLost, match="stalled past"):
        lease.check("billing", inside)
    assert audit.events[-1]["event"] == "lease" and audit.events[-1]["outcome"] == "expired"
    beyond = RotationRecord(owner="runner-a", lease_expires_at=lower.timestamp() + 6)
    assert lease.check("billing", beyond) is beyond
    with pytest.raises(LeaseLost):
        lease.check("billing", RotationRecord(owner="runner-b", lease_expires_at=lower.timestamp() + 600))
