"""One HTTP POST to a peer we do not control, bounded in time and in memory whatever the peer does.

A peer can accept the connection and never answer (*hang*), answer one byte at a time just inside
every per-read timeout (*trickle*), or send far more than any answer needs (*flood*). Per-read
timeouts (``requests``' ``timeout=``, urllib3's ``Timeout(read=)``) bound each ``recv`` only, so a
trickling peer holds the caller for as long as it likes, and a whole-body read of a flood holds it
all in memory. :func:`post` bounds the *exchange*:

* **one wall-clock deadline** for connect, TLS handshake, request, status line, headers and body:
  a watchdog timer shuts the socket down (``shutdown(SHUT_RDWR)`` wakes a thread blocked in
  ``recv``) when the deadline passes, whatever stage the exchange is in; each socket operation
  also has its own timeout (``connect_timeout``, ``read_timeout``, capped by the time left);
* **a cap on what is read**: the body is read in chunks of at most 64 KiB with
  ``preload_content=False`` and ``decode_content=False`` (no decompression: a gzip bomb stays its
  compressed size), and an answer longer than ``max_body_bytes`` (declared by ``Content-Length`` or
  found while reading) is refused. The status line and headers are bounded by ``http.client``
  (65,536 bytes a line, 100 header lines) and by the deadline.

Built on urllib3's connection classes (``urllib3.connection.HTTP(S)Connection``, the layer under
``requests``): one connection per call, never pooled, never redirected, no proxy (a proxy would
make the destination checks of the webhook target meaningless). TLS: certificate and host name
verified against ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, else certifi's bundle, as
``requests`` does.

Errors (all :class:`ExchangeFailed`, with ``retryable`` set for a failure a new attempt may cure):
:class:`DeadlineExceeded` (not retryable), :class:`AnswerTooLarge` (not retryable),
``ExchangeFailed(retryable=True)`` for a refused/reset connection or a per-read timeout,
``ExchangeFailed(retryable=False)`` for a malformed answer (oversized header line, too many headers).
Messages name the failure only, never the request body or headers (they carry signatures).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection

__all__ = ["READ_CHUNK_BYTES", "Answer", "AnswerTooLarge", "DeadlineExceeded", "ExchangeFailed", "post"]

#: the largest single read from the socket (bytes)
READ_CHUNK_BYTES = 64 * 1024


class ExchangeFailed(Exception):
    """The exchange did not produce a complete answer; ``retryable``: a new attempt may succeed."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class DeadlineExceeded(ExchangeFailed):
    """The overall deadline passed before the answer was complete."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"gave up while {stage}", retryable=False)


class AnswerTooLarge(ExchangeFailed):
    """The answer's body is longer than the cap (bytes, as sent: never decompressed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer body larger than {limit} bytes; not read further", retryable=False)


@dataclass(frozen=True)
class Answer:
    """A complete answer: HTTP ``status`` and ``body`` (at most the cap, as sent)."""

    status: int
    body: bytes


def _ca_bundle() -> str:
    import certifi

    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()


def _connection(url: str, timeout: float, connect_to: str | None) -> tuple[HTTPConnection, str, str | None]:
    """``(connection, request target, Host header or None)``; with ``connect_to`` the socket goes
    to that address while TLS (SNI, certificate check) and ``Host`` still use the URL's name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme not in ("http", "https"):
        raise ExchangeFailed(f"unsupported URL scheme {parts.scheme!r}", retryable=False)
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    address = connect_to or host
    host_header = None
    if connect_to:
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default else f"{shown}:{port}"
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=_ca_bundle())
        return HTTPSConnection(address, port, timeout=timeout, ssl_context=ctx, server_hostname=host,
                               assert_hostname=host), target, host_header
    return HTTPConnection(address, port, timeout=timeout), target, host_header


def post(url: str, body: bytes, headers: Mapping[str, str], *, deadline: float, connect_timeout: float,
         read_timeout: float, max_body_bytes: int, connect_to: str | None = None,
         clock: Callable[[], float] = time.monotonic) -> Answer:
    """POST ``body`` to ``url`` and return the :class:`Answer`, all before ``deadline``.

    :param deadline: when the whole exchange must be over, on ``clock`` (seconds, monotonic).
    :param connect_timeout: seconds for the TCP connect (capped by the time left).
    :param read_timeout: seconds any one socket read may wait (capped by the time left).
    :param max_body_bytes: the longest answer body accepted (bytes on the wire).
    :param connect_to: an IP address to connect to instead of resolving the URL's host again (the
        address the caller checked: no DNS rebinding between check and connect); TLS still
        verifies the certificate for the URL's host name.
    :raises ExchangeFailed: :class:`DeadlineExceeded`, :class:`AnswerTooLarge`, or another failure.
    """
    left = deadline - clock()
    if left <= 0:
        raise DeadlineExceeded("waiting to start")
    conn, target, host_header = _connection(url, min(connect_timeout, left), connect_to)
    if host_header is not None:
        headers = {**headers, "Host": host_header}
    fired = threading.Event()

    def abort() -> None:
        fired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(left, abort)
    watchdog.daemon = True
    stage = "connecting"
    resp = None
    watchdog.start()
    try:
        conn.connect()
        stage = "sending the request"
        conn.timeout = max(0.001, min(read_timeout, deadline - clock()))
        if conn.sock is not None:
            conn.sock.settimeout(conn.timeout)
        conn.request("POST", target, body=body, headers=dict(headers), preload_content=False,
                     decode_content=False)
        stage = "waiting for the status line and headers"
        resp = conn.getresponse()
        stage = "reading the body"
        declared = resp.headers.get("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > max_body_bytes:
            raise AnswerTooLarge(max_body_bytes)
        data = bytearray()
        while True:
            chunk = resp.read(min(READ_CHUNK_BYTES, max_body_bytes + 1 - len(data)), decode_content=False)
            if not chunk:
                break
            data += chunk
            if len(data) > max_body_bytes:
                raise AnswerTooLarge(max_body_bytes)
            if clock() >= deadline:
                raise DeadlineExceeded(stage)
        if fired.is_set():              # the watchdog's shutdown reads as the end of the body
            raise DeadlineExceeded(stage)
        return Answer(resp.status, bytes(data))
    except ExchangeFailed:
        raise
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
        if fired.is_set() or clock() >= deadline:
            raise DeadlineExceeded(stage) from exc
        raise _ours(exc, stage) from exc
    finally:
        watchdog.cancel()
        if resp is not None:
            resp.close()            # releases the socket the response holds (conn.close() alone does not)
        conn.close()


def _ours(exc: BaseException, stage: str) -> ExchangeFailed:
    """A third-party failure as :class:`ExchangeFailed`, by type (never by message text)."""
    if isinstance(exc, (http.client.LineTooLong, urllib3.exceptions.LocationParseError)) or (
            isinstance(exc, http.client.HTTPException)
            and not isinstance(exc, (http.client.RemoteDisconnected, http.client.IncompleteRead))):
        return ExchangeFailed(f"malformed answer while {stage} ({type(exc).__name__})", retryable=False)
    if isinstance(exc, (TimeoutError, urllib3.exceptions.TimeoutError)):
        return ExchangeFailed(f"timed out while {stage}", retryable=True)
    return ExchangeFailed(f"connection error while {stage} ({type(exc).__name__})", retryable=True)
