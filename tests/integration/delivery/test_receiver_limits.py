"""The sample webhook receiver (rotation.client.receiver.serve_webhook) against peers that do not
play along, over real loopback sockets: an idle connection and a peer that keeps sending a byte
at a time are both cut at the connection's deadline, and connections beyond the limit are
answered 503 without a thread, so a peer cannot pin the server's threads.

Deadlines in these tests are generous upper bounds for a busy machine, never speed claims."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from rotation.client.receiver import WebhookReceiver, serve_webhook

GENEROUS = 60.0   # seconds a test waits for something the server must do long before


def _never_unwrap(token: str) -> dict:
    raise AssertionError("no request in these tests gets as far as an unwrap")


@pytest.fixture
def serve():
    servers = []

    def start(**kw):
        server = serve_webhook(WebhookReceiver("s" * 32, _never_unwrap), "127.0.0.1", 0, **kw)
        servers.append(server)
        return server.server_address[1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS)
    return sock


def _closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes the connection (EOF or reset); return what it sent."""
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def test_an_idle_connection_is_closed_by_the_server_after_its_timeout(serve):
    port = serve(connection_timeout=0.5)
    with _connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")        # then nothing more
        assert b"200" not in _closed_by_server(sock)


def test_a_peer_sending_one_byte_at_a_time_is_cut_at_the_connection_deadline(serve):
    """Each byte arrives well within the per-read timeout, so only the connection's overall
    deadline can end it; the client keeps going until the server closes the socket."""
    port = serve(connection_timeout=1.0)
    cut = threading.Event()

    def dribble(sock: socket.socket) -> None:
        end = time.monotonic() + GENEROUS
        line = b"POST / HTTP/1.1\r\nX-Slow: " + b"a" * 100_000
        for byte in line:
            if time.monotonic() > end:
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                cut.set()
                return
            time.sleep(0.05)           # pacing of the slow peer, below the per-read timeout

    with _connect(port) as sock:
        t = threading.Thread(target=dribble, args=(sock,), daemon=True)
        t.start()
        t.join(GENEROUS + 5)
        assert cut.is_set(), "the server never cut a peer that kept sending a byte at a time"


def test_connections_beyond_the_limit_get_503_and_no_thread_and_service_resumes(serve):
    port = serve(connection_timeout=GENEROUS, max_connections=3)
    threads_before = threading.active_count()
    held = [_connect(port) for _ in range(3)]
    for sock in held:                                       # each one is being served (a thread each)
        sock.sendall(b"POST / HTTP/1.1\r\n")
    try:
        for _ in range(20):
            with _connect(port) as extra:
                answer = _closed_by_server(extra)
            assert answer.startswith(b"HTTP/1.1 503 "), answer
        # 3 handler threads + the one that enforces deadlines; not one per refused connection
        assert threading.active_count() - threads_before <= 4
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + GENEROUS
    while True:                                             # the slots come back as the held ones close
        r = requests.post(f"http://127.0.0.1:{port}/", data=b"{}", timeout=GENEROUS)
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 401                             # served (no signature), not refused


@pytest.mark.parametrize(("kw", "field"), [({"connection_timeout": 0}, "connection_timeout"),
                                           ({"max_connections": 0}, "max_connections")])
def test_bad_limits_are_refused_naming_the_parameter(kw, field):
    with pytest.raises(ValueError, match=field):
        serve_webhook(WebhookReceiver("s" * 32, _never_unwrap), "127.0.0.1", 0, **kw)
