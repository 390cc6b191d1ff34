"""The existing SignedWebhookTarget against consumers that misbehave at the socket level
(failure case S2): one accepts the connection and never answers, one answers only after the read
timeout. Real sockets on loopback; the Vault side is the real OpenBao."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from rotation.backends.vault import VaultStore
from rotation.config import WebhookTarget
from rotation.settings import Settings
from rotation.targets import Delivery
from rotation.targets import webhook as webhook_mod
from rotation.targets.webhook import SignedWebhookTarget

from .conftest import make_consumer


class SlowServer:
    """Accepts connections; for each request reads it, then waits ``delay`` seconds (None: forever)
    before answering 204. Counts the requests it received."""

    def __init__(self, delay: float | None):
        self.delay = delay
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        data = b""
        conn.settimeout(5)
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            if self.delay is None:
                self.stop.wait(60)
                return
            time.sleep(self.delay)
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass

    def close(self):
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture(scope="module")
def rotator(stack):
    return VaultStore(Settings(**stack.env(stack.creds)))


def _push(stack, rotator, server, deadline):
    c = make_consumer(stack)
    target = SignedWebhookTarget(WebhookTarget(type="webhook", url=f"http://127.0.0.1:{server.port}/hook"),
                                 rotator, deadline_seconds=deadline, allow_loopback=True)
    d = Delivery(consumer=c.name, serial=2, rotation_id="rot-2", key_id="kid2", value="v" * 40)
    t0 = time.monotonic()
    result = target.push(d)
    return result, time.monotonic() - t0


def test_consumer_that_never_answers(stack, rotator):
    server = SlowServer(delay=None)
    try:
        result, took = _push(stack, rotator, server, deadline=2.0)
    finally:
        server.close()
    assert result.ok is False
    assert "no answer" in result.detail
    assert took < 2.0 + 1.0                 # the deadline holds, not the 10 s read timeout
    assert server.requests == 1             # the read timeout was capped by the deadline: no retry left


def test_consumer_that_answers_after_the_read_timeout(stack, rotator, monkeypatch):
    monkeypatch.setattr(webhook_mod, "READ_TIMEOUT_S", 0.5)   # shorten the 10 s production constant
    server = SlowServer(delay=1.0)
    try:
        result, took = _push(stack, rotator, server, deadline=8.0)
    finally:
        server.close()
    assert result.ok is False
    assert server.requests == webhook_mod.MAX_ATTEMPTS == 3   # bounded retries, same delivery each time
    assert took < 8.0


def test_prompt_consumer_for_contrast(stack, rotator):
    server = SlowServer(delay=0.0)
    try:
        result, took = _push(stack, rotator, server, deadline=5.0)
    finally:
        server.close()
    assert result.ok and server.requests == 1 and took < 2
