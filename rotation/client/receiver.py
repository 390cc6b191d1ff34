"""Consumer side of the signed key webhook (:mod:`rotation.targets.webhook` is the sender).

:class:`WebhookReceiver` checks, in order:

1. the signature and timestamp: Standard Webhooks headers ``webhook-id``, ``webhook-timestamp``,
   ``webhook-signature`` (:func:`rotation.client.signing.standard_verify`, through the
   ``standardwebhooks`` package), or, deprecated and accepted for one release, ``X-Mail-Api-Timestamp``
   / ``X-Mail-Api-Signature`` (:func:`rotation.client.signing.verify`). A timestamp outside
   ``window_seconds`` is a replay;
2. the idempotency key, ``webhook-id`` (deprecated: ``Idempotency-Key``), ``<rotation id>:<serial>``: a key seen within the window is never
   processed twice. A repeat of a delivery that was *accepted* answers ``200 duplicate`` (the
   sender's retry after a lost response must not look like a failure); a repeat of anything else
   with the same wrapping token answers ``409 replay``. A delivery that failed (e.g. 410) may be
   re-issued under the same key with a *fresh* wrapping token: that one is processed;
3. the body (JSON: ``consumer``, ``serial``, ``fence``, ``rotation_id``, ``key_id``, ``fingerprint``,
   ``wrap_token``, ``wrap_ttl``) names this consumer, and is not older than the key this receiver
   last accepted (:func:`rotation.client.fencing.supersedes` on ``(serial, fence)``): an older one
   answers ``409 stale`` before its token is unwrapped, so a rotator that stalled past its lease can
   never move the app back to a revoked key. A body without ``fence`` (a rotator from before
   fencing, accepted for one release) is not checked, so its rollback restores still apply;
4. unwraps ``wrap_token`` exactly once (``sys/wrapping/lookup`` then ``sys/wrapping/unwrap``:
   https://openbao.org/api-docs/system/wrapping-lookup/, https://openbao.org/api-docs/system/wrapping-unwrap/)
   and checks that the unwrapped ``serial``/``key_id`` (and fingerprint, when sent) match the body.
   A token that was already used, expired or never issued raises :class:`~rotation.client.keys.TamperSuspected`
   (failure case V6): someone may have intercepted it; alert and let the rotation re-issue, never retry;
5. hands the key to the :class:`~rotation.client.keys.KeyClient` (``notify_push(ApiKey, fence=...)``: the
   fence decides there too, so a later lease holder's restore of a lower serial, e.g. a rollback's,
   is installed although Vault still lists the rolled-back key as pending) or to ``on_key``.

:func:`serve_webhook` wraps a receiver in a tiny ``http.server`` (for the sample app): 204 accepted,
200 duplicate, 400 bad request, 401 bad signature, 409 replay, 410 wrapping token already used or
otherwise suspect, 422 body/unwrapped mismatch, 503 Vault unreachable (the sender may retry).

Header text is validated before it is used: the timestamp by
:func:`rotation.client.signing.parse_timestamp` (1-12 ASCII digits, else 401), ``Content-Length``
as 1-10 ASCII digits (RFC 9110 section 8.6, else 400 before anything is read), and a signed
header (``webhook-*``, ``X-Mail-Api-*``, ``Idempotency-Key``) present twice, names differing only
in case, is a 400: which copy a proxy forwards is not ours to guess.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rotation.client.bounded_server import CONNECTION_TIMEOUT_SECONDS, MAX_CONNECTIONS, bounded
from rotation.client.errors import KeyClientError, TamperSuspected, VaultUnavailable
from rotation.client.fencing import Held, supersedes
from rotation.client.keys import ApiKey, KeyClient
from rotation.client.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    SignatureError,
    parse_timestamp,
    standard_verify,
    verify,
    webhook_key,
)

__all__ = ["MIN_SIGNING_SECRET_BYTES", "ReceiveResult", "TamperSuspected", "WebhookReceiver", "check_signing_secret",
           "serve_webhook"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REMEMBERED = 10_000
#: shortest HMAC-SHA256 signing secret accepted, in bytes (UTF-8): the hash's output size, as
#: RFC 2104 section 3 recommends ("less than L bytes is strongly discouraged", L = 32 for SHA-256).
MIN_SIGNING_SECRET_BYTES = 32


def check_signing_secret(secret: object) -> str:
    """Return ``secret`` if it is a string whose HMAC key (:func:`rotation.client.signing.webhook_key`:
    its UTF-8 bytes, or the decoded rest of a ``whsec_`` value) is at least
    :data:`MIN_SIGNING_SECRET_BYTES` bytes; ``ValueError`` otherwise (the message never contains the secret)."""
    try:
        key = webhook_key(secret) if isinstance(secret, str) else b""
    except ValueError:
        key = b""
    if not isinstance(secret, str) or len(key) < MIN_SIGNING_SECRET_BYTES:
        raise ValueError(f"signing_secret must be at least {MIN_SIGNING_SECRET_BYTES} bytes "
                         "(e.g. secrets.token_urlsafe(32)); rotate the consumer's webhook secret in Vault")
    return secret

_deprecation_logged = False


def _warn_deprecated() -> None:
    global _deprecation_logged
    if not _deprecation_logged:
        _deprecation_logged = True
        log.warning("key webhook signed with the deprecated X-Mail-Api-Signature scheme: accepted in 0.3.x only; "
                    "upgrade the rotator (it sends Standard Webhooks headers)")


#: outcome -> HTTP status used by :func:`serve_webhook`
STATUS = {"accepted": 204, "duplicate": 200, "bad_request": 400, "bad_signature": 401, "replay": 409,
          "stale": 409, "tamper_suspected": 410, "mismatch": 422, "vault_unavailable": 503}


@dataclass(frozen=True)
class ReceiveResult:
    """What :meth:`WebhookReceiver.handle` decided. ``processed`` is True only when a key was
    unwrapped and handed over by this call. Never holds the key value or the wrapping token."""

    outcome: str               # a key of STATUS
    processed: bool = False
    serial: int | None = None
    key_id: str | None = None
    detail: str = ""

    @property
    def status(self) -> int:
        return STATUS[self.outcome]


class WebhookReceiver:
    """Verify and apply key webhooks for one consumer.

    :param signing_secret: the consumer's HMAC secret (``KeyClient.webhook_signing_secret()``), at
        least :data:`MIN_SIGNING_SECRET_BYTES` bytes, else ``ValueError``.
    :param target: a :class:`KeyClient` (unwraps with its Vault address, then ``notify_push``) or a
        function ``unwrap(wrap_token) -> {"api_key", "serial", "key_id"}`` that raises
        :class:`TamperSuspected` for a used/expired token.
    :param window_seconds: replay window (seconds); idempotency keys are remembered this long.
    :param on_key: optional callback ``on_key(ApiKey)`` after a successful unwrap.
    :param consumer: expected ``consumer`` in the body (default: the KeyClient's consumer).
    """

    def __init__(self, signing_secret: str, target: KeyClient | Callable[[str], Mapping[str, Any]], *,
                 window_seconds: int = 300, on_key: Callable[[ApiKey], None] | None = None,
                 consumer: str | None = None, clock: Callable[[], float] = time.time):
        self._secret = check_signing_secret(signing_secret)
        if isinstance(target, KeyClient):
            self._unwrap: Callable[[str], Mapping[str, Any]] = target.unwrap
            self._client: KeyClient | None = target
            consumer = consumer or target.consumer
        else:
            self._unwrap = target
            self._client = None
        self.consumer = consumer
        self.window = int(window_seconds)
        self.on_key = on_key
        self._clock = clock
        # idempotency key -> (wall time, outcome, fingerprint of the wrapping token)
        self._seen: dict[str, tuple[float, str, str]] = {}
        self._lock = threading.Lock()
        self._held: Held | None = None           # (serial, fence) of the last key handed over
        self._apply = threading.Lock()           # the fence check and the hand-over, as one step

    def __repr__(self) -> str:
        return f"WebhookReceiver(consumer={self.consumer!r}, window_seconds={self.window})"

    def handle(self, headers: Mapping[str, str], body: bytes) -> ReceiveResult:
        """Process one webhook request. Returns a :class:`ReceiveResult` for every outcome except a
        suspect wrapping token, which raises :class:`TamperSuspected` (alert on it) after recording
        the idempotency key so the same delivery is not tried again."""
        now = self._clock()
        lower = {k.lower(): v for k, v in headers.items()}
        if _SIGNED_HEADERS & _repeated(headers):
            return ReceiveResult("bad_request", detail="a webhook header appears twice (names differ only in case)")
        standard = any(h in lower for h in (WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_SIGNATURE_HEADER))
        try:
            ts = parse_timestamp(lower.get(WEBHOOK_TIMESTAMP_HEADER if standard else TIMESTAMP_HEADER.lower()),
                                 WEBHOOK_TIMESTAMP_HEADER if standard else TIMESTAMP_HEADER)
        except SignatureError:
            return ReceiveResult("bad_signature", detail="missing or malformed timestamp header")
        if abs(now - ts) > self.window:
            return ReceiveResult("replay", detail=f"timestamp outside the {self.window}s window")
        idem: str | None
        try:
            if standard:
                idem, _ = standard_verify(self._secret, dict(headers), body, window_seconds=self.window, now=now)
            else:
                verify(self._secret, dict(headers), body, window_seconds=self.window, now=now)
                idem = lower.get(IDEMPOTENCY_HEADER.lower())
                _warn_deprecated()
        except SignatureError as exc:
            return ReceiveResult("bad_signature", detail=str(exc))
        if not idem:
            return ReceiveResult("bad_request", detail="missing Idempotency-Key header")
        fp = _token_fingerprint(body)
        with self._lock:
            self._forget_old(now)
            seen = self._seen.get(idem)
            if seen is not None:
                if seen[1] == "accepted" and seen[2] == fp:
                    return ReceiveResult("duplicate", detail="idempotency key already accepted")
                if seen[1] == "in_progress" or seen[2] == fp:
                    return ReceiveResult("replay", detail=f"idempotency key already seen ({seen[1]})")
                # else: the sender re-issued the delivery with a fresh wrapping token (after a failure,
                # or a rollback giving the current key back): process it
            self._seen[idem] = (now, "in_progress", fp)
        result = None
        try:
            result = self._process(idem, body)
            return result
        except TamperSuspected:
            self._record(idem, now, "tamper_suspected", fp)
            raise
        finally:
            if result is not None:
                if result.outcome == "vault_unavailable":
                    with self._lock:
                        self._seen.pop(idem, None)  # the token may be intact: let the sender retry
                else:
                    self._record(idem, now, result.outcome, fp)
            elif idem in self._seen and self._seen[idem][1] == "in_progress":
                self._record(idem, now, "error", fp)

    def _report_unwrap_failure(self, token: str, serial: int) -> None:
        """Let the rotator check the token (tamper detection); best effort."""
        report = getattr(self._client, "report_unwrap_failure", None)
        if report is None:
            return
        try:
            report(token, serial)
        except KeyClientError as exc:
            log.warning("could not report the unwrap failure of serial %s: %s", serial, type(exc).__name__)

    def _process(self, idem: str, body: bytes) -> ReceiveResult:
        try:
            msg = json.loads(body)
            serial, key_id, token = msg["serial"], msg["key_id"], msg["wrap_token"]
            fence = msg.get("fence")
            if not isinstance(serial, int) or not isinstance(key_id, str) or not isinstance(token, str) \
                    or (fence is not None and (not isinstance(fence, int) or isinstance(fence, bool))):
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError):
            return ReceiveResult("bad_request", detail="body is not a key notification")
        if self.consumer and msg.get("consumer") != self.consumer:
            return ReceiveResult("bad_request", serial=serial, key_id=key_id,
                                 detail="notification is for another consumer")
        if idem != f"{msg.get('rotation_id')}:{serial}":
            return ReceiveResult("bad_request", serial=serial, key_id=key_id,
                                 detail="Idempotency-Key does not match rotation_id:serial")
        stale = self._stale(serial, fence)
        if stale is not None:
            return stale
        try:
            data = self._unwrap(token)
        except VaultUnavailable as exc:
            return ReceiveResult("vault_unavailable", serial=serial, key_id=key_id, detail=str(exc))
        except TamperSuspected as exc:
            log.error("key webhook serial %s: wrapping token suspect (%s); alert, do not retry", serial, exc)
            self._report_unwrap_failure(token, serial)
            raise
        value = data.get("api_key")
        if data.get("serial") != serial or data.get("key_id") != key_id or not isinstance(value, str) or not value:
            log.error("key webhook serial %s: unwrapped data does not match the notification", serial)
            raise TamperSuspected(f"unwrapped serial/key_id do not match the notification (serial {serial})")
        key = ApiKey(value=value, serial=serial, key_id=key_id)
        fp = msg.get("fingerprint")
        if fp and fp != key.fingerprint:
            raise TamperSuspected(f"unwrapped key's fingerprint does not match the notification (serial {serial})")
        with self._apply:
            stale = self._stale(serial, fence)      # again: a newer delivery may have landed meanwhile
            if stale is not None:
                return stale
            try:
                if self._client is not None and not self._client.notify_push(key, fence=fence):
                    return ReceiveResult("stale", serial=serial, key_id=key_id,
                                         detail="an older key than the one in use, and not Vault's current: ignored")
                if self.on_key is not None:
                    self.on_key(key)
            except KeyClientError as exc:
                return ReceiveResult("mismatch", serial=serial, key_id=key_id, detail=str(exc))
            if fence is not None:
                self._held = Held(serial, fence, key_id)
        log.info("key webhook: serial %s (%s) accepted", serial, key.fingerprint)
        return ReceiveResult("accepted", processed=True, serial=serial, key_id=key_id)

    def _stale(self, serial: int, fence: int | None) -> ReceiveResult | None:
        """``409 stale`` when ``(serial, fence)`` is older than the fenced key last handed over;
        ``None`` (go on) otherwise, and for an unfenced body (module docstring)."""
        held = self._held
        if held is None or fence is None or supersedes(serial, fence, held):
            return None
        return ReceiveResult("stale", serial=serial,
                             detail=f"serial {serial} (fence {fence}) is older than the key in use "
                                    f"(serial {held.serial}, fence {held.fence}): refused")

    def _record(self, idem: str, now: float, outcome: str, fp: str) -> None:
        with self._lock:
            self._seen[idem] = (now, outcome, fp)

    def _forget_old(self, now: float) -> None:
        horizon = now - 2 * self.window
        old = [k for k, (t, _, _) in self._seen.items() if t < horizon]
        for k in old:
            del self._seen[k]
        while len(self._seen) >= MAX_REMEMBERED:  # bounded memory; oldest first
            self._seen.pop(next(iter(self._seen)))


#: Headers whose value decides the outcome: each must appear once (case-insensitively).
_SIGNED_HEADERS = frozenset(h.lower() for h in (WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_SIGNATURE_HEADER,
                                                TIMESTAMP_HEADER, SIGNATURE_HEADER, IDEMPOTENCY_HEADER))


def _repeated(headers: Mapping[str, str]) -> set[str]:
    """Header names of ``headers`` that another key repeats case-insensitively."""
    seen: dict[str, int] = {}
    for name in headers:
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
    return {name for name, count in seen.items() if count > 1}


def _token_fingerprint(body: bytes) -> str:
    """sha256 of the body's ``wrap_token`` (never stored in clear), or ``""``."""
    try:
        token = json.loads(body).get("wrap_token")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return hashlib.sha256(token.encode()).hexdigest() if isinstance(token, str) else ""


_CONTENT_LENGTH = re.compile(r"[0-9]{1,10}", re.ASCII)


def _content_length(raw: str | None) -> int:
    """``Content-Length`` (RFC 9110 section 8.6: ``1*DIGIT``) as an int: 0 when absent, -1 when it is
    not 1 to 10 ASCII digits (a sign, a space, a non-ASCII digit), which the caller answers 400."""
    if raw is None:
        return 0
    return int(raw) if _CONTENT_LENGTH.fullmatch(raw) else -1


def serve_webhook(receiver: WebhookReceiver, host: str = "127.0.0.1", port: int = 0, *,
                  path: str = "/", background: bool = True,
                  connection_timeout: float = CONNECTION_TIMEOUT_SECONDS,
                  max_connections: int = MAX_CONNECTIONS) -> ThreadingHTTPServer:
    """Serve ``receiver`` on ``http://host:port<path>`` (POST only; bodies up to 64 KiB; one
    request per connection).

    A peer cannot hold the server (:mod:`rotation.client.bounded_server`): each connection gets
    ``connection_timeout`` seconds in all (every socket read and write waits at most that long,
    and the connection is shut down when the time is up, however slowly the peer keeps sending),
    and at most ``max_connections`` are served at once (one thread each); a connection beyond that
    is answered ``503`` and closed.

    Returns the server (``server.server_address`` holds the bound port; call ``shutdown()`` to stop).
    With ``background=True`` it runs in a daemon thread; otherwise call ``serve_forever()`` yourself.
    Put it behind TLS (a reverse proxy) outside loopback.

    :raises ValueError: ``connection_timeout`` is not positive or ``max_connections`` is below 1.
    """
    server_class = bounded(ThreadingHTTPServer, connection_timeout=connection_timeout,
                           max_connections=max_connections)

    class Handler(BaseHTTPRequestHandler):
        server_version = "mail-api-key-webhook"
        sys_version = ""

        def do_POST(self) -> None:
            if self.path.split("?")[0] != path:
                return self._answer(404, "not found")
            length = _content_length(self.headers.get("Content-Length"))
            if length < 0 or length > MAX_BODY_BYTES:
                return self._answer(413 if length > 0 else 400, "bad length")
            try:
                body = self.rfile.read(length)
            except OSError:                    # a read timed out, or the connection's time was up
                body = b""
            if len(body) < length:             # the peer stopped sending: no answer, the socket closes
                self.close_connection = True
                return None
            if any(len(self.headers.get_all(name) or ()) > 1 for name in _SIGNED_HEADERS):
                return self._answer(400, "bad_request")
            try:
                result = receiver.handle({k: v for k, v in self.headers.items()}, body)
            except TamperSuspected:
                return self._answer(410, "tamper_suspected")
            except Exception:
                log.exception("key webhook handler failed")
                return self._answer(500, "error")
            self._answer(result.status, result.outcome)

        def _answer(self, status: int, text: str) -> None:
            payload = b"" if status == 204 else (json.dumps({"outcome": text}).encode())
            self.send_response(status)
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("webhook %s", fmt % args)

    server: ThreadingHTTPServer = server_class((host, port), Handler)
    if background:
        threading.Thread(target=server.serve_forever, name="key-webhook", daemon=True).start()
    return server
