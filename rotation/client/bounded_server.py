"""Threaded socket servers that a peer cannot pin: a deadline for each connection and a bound on
the connections served at once (the sample webhook receiver, :func:`rotation.client.receiver.serve_webhook`,
and the ``schedule`` daemon's Prometheus endpoint, :class:`rotation.metrics.PrometheusExporter`).

``socketserver.ThreadingMixIn`` starts one thread per connection and waits on it without limit,
so idle or slowly sending peers hold threads for ever (300 idle connections held 302 threads).
:func:`bounded` derives a server class that

* serves at most ``max_connections`` connections at once; a connection beyond that gets
  ``HTTP/1.1 503`` and is closed at once, without a thread and without being read;
* gives each served connection ``connection_timeout`` seconds in all: every socket read and
  write waits at most that long (``socket.settimeout``), and one thread for the whole server
  shuts the connection down (``shutdown(SHUT_RDWR)``) when its time is up, however slowly the
  peer keeps sending or reading.

Standard library only (the app-side client's base install).
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import Any

__all__ = ["CONNECTION_TIMEOUT_SECONDS", "MAX_CONNECTIONS", "BoundedConnectionsMixIn", "bounded"]

#: Defaults: a whole connection (request line, headers, body, answer) in at most this many
#: seconds, and at most this many connections served at once.
CONNECTION_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 32
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Deadlines:
    """One thread for all connections: each registered socket is shut down (both directions) at
    its deadline, which ends any read or write blocked on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[socket.socket, float] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, sock: socket.socket, seconds: float) -> None:
        with self._cond:
            self._due[sock] = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="connection-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, sock: socket.socket) -> None:
        with self._cond:
            self._due.pop(sock, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for sock, due in list(self._due.items()):
                    if due <= now:
                        del self._due[sock]
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:      # already closed by its handler
                            pass
                nearest = min(self._due.values(), default=None)
                self._cond.wait(None if nearest is None else max(0.0, nearest - now))


class BoundedConnectionsMixIn:
    """Mix in before a ``socketserver.ThreadingMixIn`` server class (see the module docstring);
    :func:`bounded` sets ``connection_timeout`` (seconds) and ``max_connections``."""

    connection_timeout: float = CONNECTION_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._deadlines = _Deadlines()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        try:
            super().process_request(request, client_address)  # type: ignore[misc]
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(self.connection_timeout)
            self._deadlines.add(request, self.connection_timeout)
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._deadlines.remove(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A peer that timed out, was cut at its deadline or went away is not an error to print."""
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        self._deadlines.close()


def bounded(server_class: type[socketserver.ThreadingMixIn], *, connection_timeout: float = CONNECTION_TIMEOUT_SECONDS,
            max_connections: int = MAX_CONNECTIONS) -> type[Any]:
    """``server_class`` (a threading socket server, e.g. ``http.server.ThreadingHTTPServer``)
    with :class:`BoundedConnectionsMixIn`: at most ``max_connections`` served at once, each for at
    most ``connection_timeout`` seconds. The listen backlog is raised to 128 so that refused
    connections get their 503 promptly.

    :raises ValueError: ``connection_timeout`` is not a positive number of seconds, or
        ``max_connections`` is below 1 (the message names the parameter).
    """
    if not connection_timeout > 0:
        raise ValueError("connection_timeout: must be a positive number of seconds, e.g. 10")
    if max_connections < 1:
        raise ValueError("max_connections: must be at least 1, e.g. 32")
    return type(f"Bounded{server_class.__name__}", (BoundedConnectionsMixIn, server_class),
                {"connection_timeout": float(connection_timeout), "max_connections": int(max_connections),
                 "request_queue_size": 128})
