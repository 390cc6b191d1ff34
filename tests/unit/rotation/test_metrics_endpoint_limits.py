"""The ``schedule`` daemon's Prometheus endpoint (rotation.metrics.PrometheusExporter) against
peers that do not play along, over real loopback sockets: idle connections are cut at their
deadline, connections beyond the limit get 503 at once, and scrapes work again afterwards.

Deadlines here are generous upper bounds for a busy machine, never speed claims."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

import rotation.metrics as rm

GENEROUS = 60.0


def _read_until_closed(sock: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    return got


@pytest.fixture
def exporter():
    made = []

    def start(**kw):
        e = rm.PrometheusExporter(0, "127.0.0.1", **kw)
        made.append(e)
        return e, e.server.server_address[1]

    yield start
    for e in made:
        e.close()


def test_an_idle_connection_to_the_metrics_endpoint_is_cut_at_its_deadline(exporter):
    _, port = exporter(connection_timeout=0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")          # and then nothing
        assert b"200 OK" not in _read_until_closed(sock)


def test_connections_beyond_the_limit_get_503_without_a_thread_and_scrapes_resume(exporter):
    _, port = exporter(connection_timeout=GENEROUS, max_connections=2)
    before = threading.active_count()
    held = [socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) for _ in range(2)]
    for sock in held:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
    try:
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as extra:
                assert _read_until_closed(extra).startswith(b"HTTP/1.1 503 ")
        assert threading.active_count() - before <= 3        # 2 served + the deadline thread
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + GENEROUS
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=GENEROUS) as r:
                assert r.status == 200
                break
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize(("kw", "field"), [({"connection_timeout": 0}, "connection_timeout"),
                                           ({"max_connections": 0}, "max_connections")])
def test_bad_endpoint_limits_are_refused_naming_the_parameter(kw, field):
    with pytest.raises(ValueError, match=field):
        rm.PrometheusExporter(0, "127.0.0.1", **kw)
