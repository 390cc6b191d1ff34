"""KeyClient never makes a caller holding a usable key wait on Vault (issue 21, item 1).

Real OpenBao behind a gate in the client's own HTTP session (a ``requests`` transport adapter):
the gate stalls a request until the test releases it (a ``threading.Event``), fails it like an
unreachable Vault, or pins a data read to an older KV version like a lagging standby. Time is a
fake clock injected into the client; nothing sleeps. Waits on events have generous deadlines.
"""

from __future__ import annotations

import logging
import re
import threading

import pytest
import requests
from requests.adapters import HTTPAdapter

from rotation.client.keys import ApiKey, KeyClient, VaultUnavailable

from .conftest import record

DEADLINE = 30.0   # seconds: generous, for a busy machine; a passing test never waits this long


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Gate(HTTPAdapter):
    """The client's transport to the real server: pass, stall until released, fail, or pin the
    key record's data reads to an older version."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = False
        self.fail = False
        self.pin_version: int | None = None
        self.entered = threading.Event()
        self.release = threading.Event()
        self.stalled = 0

    def arm(self) -> None:
        self.entered.clear()
        self.release.clear()
        self.stall = True

    def open(self) -> None:
        self.stall = False
        self.release.set()

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        if self.stall:
            self.stalled += 1
            self.entered.set()
            if not self.release.wait(DEADLINE):
                raise requests.ConnectionError("test gate: never released")
        if self.fail:
            raise requests.ConnectionError("test gate: Vault unreachable")
        if self.pin_version and request.method == "GET" and "/data/mail-api/keys/" in request.url:
            request.url = re.sub(r"\?.*$", "", request.url) + f"?version={self.pin_version}"
        return super().send(request, **kwargs)


@pytest.fixture
def gated(consumer):
    """(consumer, client, clock, gate): a client holding serial 1, its session behind the gate."""
    consumer.write_keys(current=record(1))
    clock = FakeClock()
    client = consumer.client(refresh_interval=10, min_forced_interval=5, clock=clock, jitter=lambda: 1.0,
                             backoff_base=4, max_backoff=64, max_stale=600, max_wait=DEADLINE)
    assert client.current_key().serial == 1          # no key yet: this one call waits for Vault
    assert client.wait_for_refresh(DEADLINE)
    gate = Gate()
    client._client.adapter.session.mount("http://", gate)
    yield consumer, client, clock, gate
    gate.fail = False
    gate.open()
    client.wait_for_refresh(DEADLINE)


def _call_in_thread(client: KeyClient, calls: int = 1) -> tuple[threading.Event, list]:
    returned, got = threading.Event(), []

    def caller() -> None:
        for _ in range(calls):
            got.append(client.current_key())
        returned.set()
    threading.Thread(target=caller, daemon=True).start()
    return returned, got


def test_caller_holding_a_valid_key_never_waits_on_a_refresh(gated):
    consumer, client, clock, gate = gated
    consumer.write_keys(current=record(2), previous=record(1))
    gate.arm()
    clock.advance(11)                                  # past refresh_interval: the advisory window
    callers = [_call_in_thread(client, calls=200) for _ in range(8)]
    assert gate.entered.wait(DEADLINE)                 # the background refresh is at Vault, stalled
    for returned, got in callers:
        assert returned.wait(DEADLINE)                 # ... and every caller got its key meanwhile
        assert {k.serial for k in got} == {1}
    assert not gate.release.is_set()                   # all of that while Vault still had not answered
    assert gate.stalled == 1                           # one background refresh, not one per caller
    gate.open()
    assert client.wait_for_refresh(DEADLINE)
    assert client.current_key().serial == 2            # revalidated: the new key from then on


def test_back_off_is_timed_from_the_end_of_a_failed_refresh(gated):
    _consumer, client, clock, gate = gated
    gate.arm()
    clock.advance(11)
    assert client.current_key().serial == 1
    assert gate.entered.wait(DEADLINE)
    clock.advance(30)                                  # the refresh hangs for 30 s, then fails
    gate.fail = True
    gate.open()
    assert client.wait_for_refresh(DEADLINE)
    sent = client.stats["metadata_reads"]
    clock.advance(3.9)                                 # back-off: 4 s (jitter 1.0) from the END of the failure
    assert client.current_key().serial == 1
    assert client.wait_for_refresh(DEADLINE)
    assert client.stats["metadata_reads"] == sent      # not asked again yet
    clock.advance(0.2)
    assert client.current_key().serial == 1            # served; the retry runs in the background
    assert client.wait_for_refresh(DEADLINE)
    assert client.stats["metadata_reads"] == sent + 1
    clock.advance(7.9)                                 # second failure: 8 s
    client.current_key()
    assert client.wait_for_refresh(DEADLINE)
    assert client.stats["metadata_reads"] == sent + 1
    clock.advance(0.2)
    client.current_key()
    assert client.wait_for_refresh(DEADLINE)
    assert client.stats["metadata_reads"] == sent + 2


def test_jitter_spreads_the_back_off_between_half_and_all_of_it(consumer):
    consumer.write_keys(current=record(1))
    for jitter, retry_after in ((0.0, 2.0), (0.5, 3.0), (1.0, 4.0)):
        clock = FakeClock()
        client = consumer.client(refresh_interval=10, clock=clock, jitter=lambda j=jitter: j, backoff_base=4)
        client.current_key()
        assert client.wait_for_refresh(DEADLINE)   # its ack written
        gate = Gate()
        gate.fail = True
        client._client.adapter.session.mount("http://", gate)
        clock.advance(11)
        client.current_key()
        assert client.wait_for_refresh(DEADLINE)
        sent = client.stats["metadata_reads"]
        clock.advance(retry_after - 0.01)
        client.current_key()
        assert client.wait_for_refresh(DEADLINE)
        assert client.stats["metadata_reads"] == sent, jitter
        clock.advance(0.02)
        client.current_key()
        assert client.wait_for_refresh(DEADLINE)
        assert client.stats["metadata_reads"] == sent + 1, jitter


def test_staleness_is_a_metric_and_a_log_line(gated, caplog):
    _consumer, client, clock, gate = gated
    caplog.set_level(logging.WARNING, logger="rotation.client.keys")
    assert client.stale_seconds == 0.0
    gate.fail = True
    clock.advance(25)                                  # 15 s overdue
    assert client.current_key().serial == 1
    assert client.wait_for_refresh(DEADLINE)
    assert client.stale_seconds == pytest.approx(15.0)
    assert client.metrics()["mail_api_key_stale_seconds"] == pytest.approx(15.0)
    assert client.metrics()["mail_api_key_refresh_failures_total"] == 1
    assert "stale for 15.0 s" in caplog.text and "serial 1" in caplog.text
    gate.fail = False
    clock.advance(4)                                   # after the back-off Vault answers: fresh again
    client.current_key()
    assert client.wait_for_refresh(DEADLINE)
    assert client.stale_seconds == 0.0


def test_a_client_without_a_key_waits_for_vault_at_most_max_wait(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client(max_wait=0.5)
    gate = Gate()
    gate.arm()
    client._client.adapter.session.mount("http://", gate)
    try:
        with pytest.raises(VaultUnavailable, match="no answer from Vault within 0.5 s"):
            client.current_key()
        assert gate.entered.is_set()
    finally:
        gate.open()
        client.wait_for_refresh(DEADLINE)
    assert client.current_key().serial == 1


def test_past_max_stale_the_cached_key_is_no_longer_served(gated):
    _consumer, client, clock, gate = gated
    gate.fail = True
    clock.advance(599)
    assert client.current_key().serial == 1            # still inside max_stale (600 s)
    assert client.wait_for_refresh(DEADLINE)
    clock.advance(2)
    with pytest.raises(VaultUnavailable):
        client.current_key()


def test_a_lagging_vault_answer_with_a_lower_serial_is_never_installed(gated):
    consumer, client, clock, gate = gated
    consumer.write_keys(current=record(2), previous=record(1))
    assert client.refresh().serial == 2
    gate.pin_version = 1                               # a standby still at version 1 (serial 1)
    client.report_forbidden(client.current_key())      # a 403-triggered read
    clock.advance(6)
    assert client.current_key().serial == 2
    assert client.refresh().serial == 2                # a forced read
    clock.advance(11)
    client.current_key()                               # a periodic read
    assert client.wait_for_refresh(DEADLINE)
    assert client.current_key().serial == 2
    assert client.stats["lower_serial_refused"] >= 2


def test_a_push_never_lowers_the_serial_in_use(gated):
    consumer, client, _clock, _gate = gated
    consumer.write_keys(current=record(2), previous=record(1))
    assert client.refresh().serial == 2
    assert client.notify_push(ApiKey(record(1)["value"], 1, "kid1")) is False
    assert client.current_key().serial == 2
