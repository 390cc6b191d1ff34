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


# -- hostile receivers: trickle, flood (failure case P1) -------------------------------------------

class HostileServer:
    """Answers each request with ``behaviour(conn)`` on a raw socket; records the bytes it got
    sent out and sets ``client_gone`` when the client closed the connection under it."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sent = 0
        self.got_request = threading.Event()     # a whole request head arrived (set before any answer)
        self.client_gone = threading.Event()
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        data = b""
        conn.settimeout(30)
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.got_request.set()
            self.behaviour(self, conn)
        except OSError:
            self.client_gone.set()
        finally:
            conn.close()

    def send(self, conn, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def trickle(self, conn, data: bytes) -> None:
        """Send ``data`` one byte at a time, 0.2 s apart (inside every per-read timeout), then
        keep trickling filler until stopped or the client goes."""
        for i in range(len(data)):
            self.send(conn, data[i:i + 1])
            if self.stop.wait(0.2):
                return
        while not self.stop.wait(0.2):
            self.send(conn, b"a")

    def close(self):
        self.stop.set()
        self.sock.close()


def _push_in_thread(stack, rotator, server, deadline):
    """Run the push on a thread; returns (finished event, result holder)."""
    done, out = threading.Event(), {}

    def run():
        out["result"], out["took"] = _push(stack, rotator, server, deadline)
        done.set()
    threading.Thread(target=run, daemon=True).start()
    return done, out


@pytest.mark.parametrize("answer_head", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n",       # trickles its body
    b"HTTP/1.1 200 OK\r\nX-Slow: ",                            # trickles its headers
], ids=["body", "headers"])
def test_a_receiver_that_trickles_its_answer_cannot_hold_the_push_past_its_deadline(stack, rotator, answer_head):
    """One byte every 0.2 s never trips a per-read timeout; the overall deadline still ends the
    push (the receiver would go on for ever), and the connection is closed under the receiver."""
    def behaviour(server, conn):
        head = answer_head
        if b"Content-Length" in head:
            server.send(conn, head)
            head = b""
        server.trickle(conn, head)

    server = HostileServer(behaviour)
    try:
        done, out = _push_in_thread(stack, rotator, server, deadline=2.0)
        assert done.wait(60), "the push is still held by a trickling receiver"
        assert not server.stop.is_set()                 # ended by our side, not by the receiver
        assert server.client_gone.wait(30)              # and the socket was shut, not abandoned
    finally:
        server.close()
    result = out["result"]
    assert result.ok is False
    assert "within the 2 s deadline" in result.detail


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_receiver_that_floods_its_answer_costs_the_push_bounded_memory(stack, rotator, declared):
    """A 64 MiB answer (the issue saw 400 MiB take the rotator to 858 MiB RSS): at most
    MAX_ANSWER_BYTES are read, the push fails naming the cap, the receiver cannot push most of it
    through, and the push's peak Python allocation stays a small fraction of the flood."""
    import tracemalloc

    flood = 64 * 1024 * 1024
    block = b"x" * (1024 * 1024)

    def behaviour(server, conn):
        head = b"HTTP/1.1 200 OK\r\n" + (f"Content-Length: {flood}\r\n".encode() if declared else b"") + b"\r\n"
        server.send(conn, head)
        for _ in range(flood // len(block)):
            server.send(conn, block)

    server = HostileServer(behaviour)
    tracemalloc.start()
    try:
        result, _ = _push(stack, rotator, server, deadline=30.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.close()
    assert result.ok is False
    assert f"larger than {webhook_mod.MAX_ANSWER_BYTES} bytes" in result.detail
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes allocated during the push"
    assert server.client_gone.wait(30)
    assert server.sent < flood // 2                    # the rest was never read: socket buffers at most


def test_a_receiver_answering_with_a_short_body_is_a_success_for_contrast(stack, rotator):
    server = HostileServer(lambda s, conn: s.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    try:
        result, _ = _push(stack, rotator, server, deadline=10.0)
    finally:
        server.close()
    assert result.ok, result.detail


def test_the_push_connects_to_the_address_it_checked_not_to_a_later_dns_answer(stack, rotator, monkeypatch):
    """DNS rebinding (failure case H9): the name resolves to the receiver (loopback, allowed here)
    when it is checked, and to another address on every later lookup. The push goes to the
    address that was checked."""
    server = HostileServer(lambda s, conn: s.send(conn, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"))
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def rebinding(host, port, *a, **k):
        if host != "hooks.example.test":
            return real(host, port, *a, **k)
        address = next(answers, "10.255.255.1")                    # later: somewhere else entirely
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    c = make_consumer(stack)
    from datetime import timedelta
    # plain http to a name is refused by the consumers file (https only); built unchecked here so the
    # receiver can stay a plain socket: what is tested is where the connection goes
    spec = WebhookTarget.model_construct(type="webhook", url=f"http://hooks.example.test:{server.port}/hook",
                                         required=True, wrap_ttl=timedelta(minutes=5))
    target = SignedWebhookTarget(spec, rotator, deadline_seconds=10.0, allow_loopback=True, allow_private=True)
    try:
        result = target.push(Delivery(consumer=c.name, serial=2, rotation_id="rot-2", key_id="kid2", value="v" * 40))
    finally:
        server.close()
    assert result.ok, result.detail
    assert server.got_request.is_set()                             # the checked address got the request


def test_a_name_that_does_not_resolve_at_the_check_is_not_sent_anywhere(stack, rotator, monkeypatch):
    """The check is the only resolution that counts: a name whose first lookup fails is refused,
    never handed to the HTTP client to resolve again unchecked (which could answer a metadata or
    loopback address)."""
    server = HostileServer(lambda s, conn: s.send(conn, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"))
    real = socket.getaddrinfo
    lookups = []

    def flaky(host, port, *a, **k):
        if host != "hooks.example.test":
            return real(host, port, *a, **k)
        lookups.append(host)
        if len(lookups) == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    c = make_consumer(stack)
    from datetime import timedelta
    spec = WebhookTarget.model_construct(type="webhook", url=f"http://hooks.example.test:{server.port}/hook",
                                         required=True, wrap_ttl=timedelta(minutes=5))
    target = SignedWebhookTarget(spec, rotator, deadline_seconds=10.0, allow_loopback=False)
    try:
        result = target.push(Delivery(consumer=c.name, serial=2, rotation_id="rot-2", key_id="kid2", value="v" * 40))
    finally:
        server.close()
    assert result.ok is False and "does not resolve" in result.detail
    assert lookups == ["hooks.example.test"]                          # no second, unchecked lookup
    assert not server.got_request.is_set()
